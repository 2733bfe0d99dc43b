"""Collectors: iterate batched envs with a policy and yield ``[num_envs, T]`` TensorDicts."""

from trainers.collectors.background import AsyncReplayCollector
from trainers.collectors.builders import (
    make_collector_offpolicy,
    make_collector_onpolicy,
    sync_async_collector,
    sync_sync_collector,
)
from trainers.collectors.multi import MultiaSyncDataCollector, MultiSyncDataCollector
from trainers.collectors.sync import SyncDataCollector

__all__ = [
    "AsyncReplayCollector",
    "MultiSyncDataCollector",
    "MultiaSyncDataCollector",
    "SyncDataCollector",
    "make_collector_offpolicy",
    "make_collector_onpolicy",
    "sync_async_collector",
    "sync_sync_collector",
]
