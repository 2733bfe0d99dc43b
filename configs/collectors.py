"""Schemas of the ``collector`` group: ``sync`` (default), ``multi_sync``, ``multi_async``.

The env, the policy and ``total_frames`` are passed by the trainer factory.
"""

from __future__ import annotations

from dataclasses import dataclass

from configs.validation import checked, ge, one_of, torch_device

EXPLORATION_TYPES = ("random", "deterministic", "mode", "mean")


@dataclass(kw_only=True)
class SyncDataCollectorConfig:
    """Steps the training env in this process (fastest on few cores)."""

    _target_: str = "trainers.collectors.SyncDataCollector"
    _partial_: bool = True
    frames_per_batch: int = checked(1000, ge(1))
    init_random_frames: int = checked(0, ge(0))
    max_frames_per_traj: int | None = checked(None, ge(1))
    exploration_type: str = checked("random", one_of(*EXPLORATION_TYPES))
    device: str | None = checked(None, torch_device())
    storing_device: str | None = checked(None, torch_device())
    reset_at_each_iter: bool = False


@dataclass(kw_only=True)
class MultiSyncDataCollectorConfig:
    """``num_workers`` processes, each stepping a copy of the training env; each batch
    concatenates one from every worker (so ``frames_per_batch`` is split between them)."""

    _target_: str = "trainers.collectors.MultiSyncDataCollector"
    _partial_: bool = True
    num_workers: int = checked(2, ge(1))  # worker processes, each with its own batched env
    frames_per_batch: int = checked(1000, ge(1))
    init_random_frames: int = checked(0, ge(0))
    max_frames_per_traj: int | None = checked(None, ge(1))
    exploration_type: str = checked("random", one_of(*EXPLORATION_TYPES))
    reset_at_each_iter: bool = False
    device: str | None = checked(None, torch_device())


@dataclass(kw_only=True)
class MultiaSyncDataCollectorConfig:
    """``num_workers`` processes, each stepping a copy of the training env; a batch is yielded
    as soon as any worker finishes one."""

    _target_: str = "trainers.collectors.MultiaSyncDataCollector"
    _partial_: bool = True
    num_workers: int = checked(2, ge(1))  # worker processes, each with its own batched env
    frames_per_batch: int = checked(1000, ge(1))
    init_random_frames: int = checked(0, ge(0))
    max_frames_per_traj: int | None = checked(None, ge(1))
    exploration_type: str = checked("random", one_of(*EXPLORATION_TYPES))
    reset_at_each_iter: bool = False
    device: str | None = checked(None, torch_device())
