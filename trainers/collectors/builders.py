"""Collector builders of the reference API (``trainers.helpers`` re-exports them).

Thin wrappers that pick the collector class; every keyword is the collector's own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from trainers.collectors.multi import MultiaSyncDataCollector, MultiSyncDataCollector
from trainers.collectors.sync import PolicyType, SyncDataCollector
from trainers.envs.batched import make_batched_env
from trainers.envs.common import EnvBase

EnvFactory = Callable[..., EnvBase]


def make_collector_onpolicy(
    make_env: EnvBase | EnvFactory,
    policy: PolicyType | None,
    frames_per_batch: int,
    total_frames: int = -1,
    *,
    num_collectors: int = 1,
    device: Any = None,
    storing_device: Any = None,
    max_frames_per_traj: int | None = None,
    exploration_type: str = "random",
    reset_at_each_iter: bool = False,
) -> SyncDataCollector | MultiSyncDataCollector:
    """An on-policy collector: every batch comes from the current policy.

    One ``SyncDataCollector`` in this process, or with ``num_collectors > 1`` a
    ``MultiSyncDataCollector`` (workers wait for each other, so no batch is stale).

    Examples:
        >>> from functools import partial
        >>> from trainers.collectors import make_collector_onpolicy
        >>> from trainers.envs import GymEnv
        >>> make_env = partial(GymEnv, "Pendulum-v1", num_envs=4)
        >>> collector = make_collector_onpolicy(make_env, None, 1000, 100_000)
        >>> type(collector).__name__
        'SyncDataCollector'
    """
    if num_collectors == 1:
        return SyncDataCollector(
            make_env,
            policy,
            frames_per_batch=frames_per_batch,
            total_frames=total_frames,
            max_frames_per_traj=max_frames_per_traj,
            exploration_type=exploration_type,
            device=device,
            storing_device=storing_device,
            reset_at_each_iter=reset_at_each_iter,
        )
    if isinstance(make_env, EnvBase):
        raise TypeError("num_collectors > 1 needs an env factory, not an env instance")
    return MultiSyncDataCollector(
        make_env,
        policy,
        num_workers=num_collectors,
        frames_per_batch=frames_per_batch,
        total_frames=total_frames,
        max_frames_per_traj=max_frames_per_traj,
        exploration_type=exploration_type,
        reset_at_each_iter=reset_at_each_iter,
        device=device,
    )


def make_collector_offpolicy(
    make_env: EnvBase | EnvFactory,
    policy: PolicyType | None,
    frames_per_batch: int,
    total_frames: int = -1,
    *,
    init_random_frames: int = 0,
    num_collectors: int = 1,
    device: Any = None,
    storing_device: Any = None,
    max_frames_per_traj: int | None = None,
    exploration_type: str = "random",
) -> SyncDataCollector | MultiaSyncDataCollector:
    """An off-policy collector: random actions for ``init_random_frames``, then the policy.

    One ``SyncDataCollector`` in this process, or with ``num_collectors > 1`` a
    ``MultiaSyncDataCollector`` (each worker's batch is yielded as it comes: batches may lag
    the newest weights, which off-policy learning tolerates).

    Examples:
        >>> from functools import partial
        >>> from trainers.collectors import make_collector_offpolicy
        >>> from trainers.envs import GymEnv
        >>> make_env = partial(GymEnv, "Pendulum-v1", num_envs=4)
        >>> collector = make_collector_offpolicy(make_env, None, 1000, 1_000_000,
        ...                                      init_random_frames=5000)
        >>> collector.init_random_frames
        5000
    """
    if num_collectors == 1:
        return SyncDataCollector(
            make_env,
            policy,
            frames_per_batch=frames_per_batch,
            total_frames=total_frames,
            init_random_frames=init_random_frames,
            max_frames_per_traj=max_frames_per_traj,
            exploration_type=exploration_type,
            device=device,
            storing_device=storing_device,
        )
    if isinstance(make_env, EnvBase):
        raise TypeError("num_collectors > 1 needs an env factory, not an env instance")
    return MultiaSyncDataCollector(
        make_env,
        policy,
        num_workers=num_collectors,
        frames_per_batch=frames_per_batch,
        total_frames=total_frames,
        init_random_frames=init_random_frames,
        max_frames_per_traj=max_frames_per_traj,
        exploration_type=exploration_type,
        device=device,
    )


def _worker_env_fns(
    create_env_fn: EnvFactory | Sequence[EnvFactory],
    num_collectors: int | None,
    num_env_per_collector: int | None,
) -> list[EnvFactory]:
    fns = list(create_env_fn) if isinstance(create_env_fn, Sequence) else None
    if fns is None:
        if num_collectors is None:
            raise ValueError("num_collectors is needed with a single env factory")
        fns = [create_env_fn] * num_collectors  # type: ignore[list-item]
    elif num_collectors is not None and num_collectors != len(fns):
        raise ValueError(f"num_collectors={num_collectors} but {len(fns)} env factories given")
    if num_env_per_collector is not None:
        fns = [partial(make_batched_env, fn, num_env_per_collector) for fn in fns]
    return fns


def sync_sync_collector(
    create_env_fn: EnvFactory | Sequence[EnvFactory],
    policy: PolicyType | None = None,
    *,
    frames_per_batch: int,
    total_frames: int = -1,
    num_collectors: int | None = None,
    num_env_per_collector: int | None = None,
    **collector_kwargs: Any,
) -> MultiSyncDataCollector:
    """A ``MultiSyncDataCollector`` over ``num_collectors`` workers.

    With ``num_env_per_collector``, each worker's env is
    ``make_batched_env(create_env_fn, num_env_per_collector)`` (so ``create_env_fn`` takes
    ``num_envs``/``vectorization``); otherwise ``create_env_fn()``.

    Examples:
        >>> from functools import partial
        >>> from trainers.collectors import sync_sync_collector
        >>> from trainers.envs import GymEnv
        >>> collector = sync_sync_collector(partial(GymEnv, "Pendulum-v1"), None,
        ...     num_collectors=2, num_env_per_collector=4, frames_per_batch=800)  # doctest: +SKIP
    """
    return MultiSyncDataCollector(
        _worker_env_fns(create_env_fn, num_collectors, num_env_per_collector),
        policy,
        frames_per_batch=frames_per_batch,
        total_frames=total_frames,
        **collector_kwargs,
    )


def sync_async_collector(
    create_env_fn: EnvFactory | Sequence[EnvFactory],
    policy: PolicyType | None = None,
    *,
    frames_per_batch: int,
    total_frames: int = -1,
    num_collectors: int | None = None,
    num_env_per_collector: int | None = None,
    **collector_kwargs: Any,
) -> MultiaSyncDataCollector:
    """A ``MultiaSyncDataCollector`` over ``num_collectors`` workers (see ``sync_sync_collector``).

    Examples:
        >>> from functools import partial
        >>> from trainers.collectors import sync_async_collector
        >>> from trainers.envs import GymEnv
        >>> collector = sync_async_collector(partial(GymEnv, "Pendulum-v1"), None,
        ...     num_collectors=2, frames_per_batch=200)  # doctest: +SKIP
    """
    return MultiaSyncDataCollector(
        _worker_env_fns(create_env_fn, num_collectors, num_env_per_collector),
        policy,
        frames_per_batch=frames_per_batch,
        total_frames=total_frames,
        **collector_kwargs,
    )
