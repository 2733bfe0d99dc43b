"""AsyncReplayCollector: background collection into a replay buffer."""

from __future__ import annotations

import time

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


def test_collection_runs_at_most_max_batches_ahead_of_a_slow_trainer():
    for ahead in (1, 3):
        collector = AsyncReplayCollector(
            SyncDataCollector(
                GymEnv("Pendulum-v1", num_envs=2), None, frames_per_batch=20, total_frames=400
            ),
            ListBuffer(),
            max_batches_ahead=ahead,
        )
        yielded = 0
        sizes = []
        for batch in collector:
            yielded += batch.numel()
            sizes.append(batch.numel())
            time.sleep(0.05)  # a trainer much slower than Pendulum's collection
            # Pending + the batch in progress: at most `ahead` + 1 batches past what was yielded.
            assert collector.frames - yielded <= (ahead + 1) * 20
        collector.shutdown()
        assert yielded == 400
        if ahead == 1:
            assert sizes == [20] * 20  # one batch per step: a fixed number of updates per batch
        else:
            assert max(sizes) > 20  # it does run ahead when allowed to
    with pytest.raises(ValueError, match="max_batches_ahead must be an int >= 1, got 0"):
        AsyncReplayCollector(
            SyncDataCollector(GymEnv("Pendulum-v1"), None, frames_per_batch=5),
            ListBuffer(),
            max_batches_ahead=0,
        )


def test_state_dict_from_another_thread_never_stalls_the_iteration():
    import threading

    collector = AsyncReplayCollector(
        SyncDataCollector(
            GymEnv("Pendulum-v1", num_envs=2), None, frames_per_batch=20, total_frames=4000
        ),
        ListBuffer(),
    )
    yielded = []
    consumer = threading.Thread(target=lambda: yielded.extend(collector), daemon=True)
    consumer.start()
    for _ in range(20):  # pauses the thread at a batch boundary; the next batch resumes it
        collector.state_dict()
        time.sleep(0.005)
    consumer.join(timeout=60)
    assert not consumer.is_alive(), "the iteration stalled"
    collector.shutdown()
    assert sum(b.numel() for b in yielded) == 4000


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


TOTAL = 20_000  # about a second of collection: long enough to pause it half-way


def _pendulum_collector(buffer: ListBuffer) -> AsyncReplayCollector:
    sync = SyncDataCollector(
        GymEnv("Pendulum-v1", num_envs=2), None, frames_per_batch=20, total_frames=TOTAL
    )
    return AsyncReplayCollector(sync, buffer)


def test_state_dict_pauses_at_a_batch_boundary_and_a_restored_collector_yields_the_rest():
    first_buffer = ListBuffer()
    first = _pendulum_collector(first_buffer)
    batches = iter(first)
    yielded = next(batches).numel()
    time.sleep(0.02)  # the thread runs ahead of the consumer
    state = first.state_dict()
    written = sum(td.numel() for td in first_buffer.items)
    pending = sum(torch.Size(batch["batch_size"]).numel() for batch in state["pending"])
    assert state["collector"]["frames"] == written == yielded + pending
    time.sleep(0.1)
    assert first.frames == written, "the thread kept collecting after state_dict"
    next(batches)  # asking for a batch lets it go on
    deadline = time.monotonic() + 10
    while first.frames == written and time.monotonic() < deadline:
        time.sleep(0.01)
    assert first.frames > written
    first.shutdown()

    second_buffer = ListBuffer()
    second = _pendulum_collector(second_buffer)
    second.load_state_dict(state)
    rest = sum(batch.numel() for batch in second)
    second.shutdown()
    assert yielded + rest == TOTAL
    assert written + sum(td.numel() for td in second_buffer.items) == TOTAL
    with pytest.raises(RuntimeError, match="before the background collection starts"):
        second.load_state_dict(state)


def test_stored_keys_and_the_validity_mask_decide_what_is_written():
    buffer = ListBuffer()
    sync = SyncDataCollector(GymEnv("Pendulum-v1"), None, frames_per_batch=10, total_frames=10)
    collector = AsyncReplayCollector(sync, buffer, stored_keys=[keys.OBSERVATION, keys.NEXT])
    (batch,) = list(collector)
    collector.shutdown()
    (written,) = buffer.items
    assert keys.ACTION in batch.keys(True) and keys.ACTION not in written.keys(True)
    assert torch.equal(written[keys.OBSERVATION], batch[keys.OBSERVATION].reshape(-1, 3))


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
