"""Multi-process collectors (worker start-up is slow: few, small tests)."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from tests.collectors._policies import ConstantPolicy
from trainers import keys
from trainers.collectors import (
    MultiaSyncDataCollector,
    MultiSyncDataCollector,
    SyncDataCollector,
    sync_sync_collector,
)
from trainers.envs import GymEnv

make_pendulum = partial(GymEnv, "Pendulum-v1", num_envs=2)


def test_multi_sync_concatenates_workers_and_pushes_weights():
    policy = ConstantPolicy(0.25)
    collector = MultiSyncDataCollector(
        make_pendulum, policy, num_workers=2, frames_per_batch=40, total_frames=80
    )
    try:
        assert collector.set_seed(0) == 4
        batches = []
        for batch in collector:
            batches.append(batch)
            with torch.no_grad():
                policy.value.fill_(-1.0)
            collector.update_policy_weights_()
        assert collector.frames == 80 and len(batches) == 2
        first, second = batches
        assert first.batch_size == (4, 10)
        assert (first[keys.ACTION] == 0.25).all() and (second[keys.ACTION] == -1.0).all()
        ids = first[keys.TRAJ_IDS][:, 0].tolist()
        assert len(set(ids)) == 4  # unique across workers
        # Worker 0 saw what a local collector with the same seed sees.
        local = SyncDataCollector(make_pendulum(), ConstantPolicy(0.25), frames_per_batch=20)
        local.set_seed(0)
        expected = local.collect_batch()
        assert torch.equal(first[keys.NEXT_OBSERVATION][:2], expected[keys.NEXT_OBSERVATION])
        assert collector.state_dict()["frames"] == 80
    finally:
        collector.shutdown()


def test_multi_async_yields_worker_batches_until_total_frames():
    collector = MultiaSyncDataCollector(
        [make_pendulum, make_pendulum], None, frames_per_batch=20, total_frames=100
    )
    try:
        sizes = [batch.batch_size for batch in collector]
        assert sizes == [torch.Size([2, 10])] * 5 and collector.frames == 100
    finally:
        collector.shutdown()


def test_unpicklable_env_factory_and_bad_split_are_rejected():
    with pytest.raises(TypeError, match="picklable"):
        MultiSyncDataCollector(lambda: make_pendulum(), None, num_workers=2, frames_per_batch=40)
    with pytest.raises(ValueError, match="not divisible"):
        sync_sync_collector(make_pendulum, None, num_collectors=3, frames_per_batch=40)


def test_multi_sync_state_dict_resumes_the_workers_exactly():
    def make_collector():
        return MultiSyncDataCollector(make_pendulum, None, num_workers=2, frames_per_batch=40)

    first = make_collector()
    try:
        first.set_seed(1)
        batches = iter(first)
        next(batches)
        state = first.state_dict()
        expected = next(batches)
    finally:
        first.shutdown()
    resumed = make_collector()
    try:
        resumed.load_state_dict(state)
        assert resumed.frames == 40
        got = next(iter(resumed))
        assert (got == expected).all()  # random actions too: worker RNGs are restored
    finally:
        resumed.shutdown()
