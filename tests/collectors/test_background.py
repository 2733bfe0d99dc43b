"""AsyncReplayCollector: background collection into a replay buffer."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict, TensorDictBase

from tests.collectors._policies import ConstantPolicy
from trainers import keys
from trainers.collectors import AsyncReplayCollector, SyncDataCollector
from trainers.envs import GymEnv


class ListBuffer:
    def __init__(self) -> None:
        self.items: list[TensorDictBase] = []

    def extend(self, td: TensorDictBase) -> None:
        self.items.append(td)


def test_every_frame_is_written_once_and_yielded_once():
    buffer = ListBuffer()
    collector = AsyncReplayCollector(
        SyncDataCollector(
            GymEnv("Pendulum-v1", num_envs=2), None, frames_per_batch=20, total_frames=200
        ),
        buffer,
    )
    yielded = []
    for batch in collector:
        yielded.append(batch)
        assert batch.batch_size[0] == 2 and batch.batch_size[1] % 10 == 0
    collector.shutdown()
    assert collector.frames == 200
    assert sum(b.numel() for b in yielded) == 200
    written = torch.cat(buffer.items)
    assert written.batch_size == (200,)
    flat = torch.cat([b.reshape(-1) for b in yielded])
    # Same frames, possibly grouped differently (several batches may be yielded at once).
    assert torch.equal(
        written[keys.NEXT_OBSERVATION].sort(0).values, flat[keys.NEXT_OBSERVATION].sort(0).values
    )


def test_weights_reach_the_background_copy_only_when_pushed():
    policy = ConstantPolicy(0.5)
    collector = AsyncReplayCollector(
        SyncDataCollector(GymEnv("Pendulum-v1"), policy, frames_per_batch=5, total_frames=-1),
        ListBuffer(),
    )
    batches = iter(collector)
    next(batches)
    with torch.no_grad():
        policy.value.fill_(-1.0)  # trained, not pushed: the background copy keeps 0.5
    for _ in range(3):
        assert (next(batches)[keys.ACTION] == 0.5).all()
    collector.update_policy_weights_()
    for _ in range(100):
        if (next(batches)[keys.ACTION][:, -1] == -1.0).all():
            break
    else:
        pytest.fail("the pushed weights never reached the background collector")
    collector.shutdown()
    assert collector.frames >= 25


def test_weights_pushed_before_the_thread_starts_collect_its_first_batch():
    policy = ConstantPolicy(0.5)
    collector = AsyncReplayCollector(
        SyncDataCollector(GymEnv("Pendulum-v1"), policy, frames_per_batch=5, total_frames=5),
        ListBuffer(),
    )
    with torch.no_grad():
        policy.value.fill_(-1.0)  # e.g. loaded from a checkpoint after the copy was made
    collector.update_policy_weights_()  # what the trainer's setup does
    (batch,) = list(collector)
    assert (batch[keys.ACTION] == -1.0).all()
    collector.shutdown()


def test_errors_in_the_thread_are_raised_by_the_iterator():
    class Broken:
        def extend(self, td: TensorDict) -> None:
            raise OSError("disk full")

    collector = AsyncReplayCollector(
        SyncDataCollector(GymEnv("Pendulum-v1"), None, frames_per_batch=5, total_frames=20),
        Broken(),
    )
    with pytest.raises(RuntimeError, match="background collector failed"):
        list(collector)
    collector.shutdown()
