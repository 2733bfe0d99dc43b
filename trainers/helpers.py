"""The reference's builder functions, in one place.

Most live next to what they build and are re-exported here; this module adds the env-factory
builders and ``make_trainer``, which wires a generic off- or on-policy :class:`Trainer` from
built parts. The algorithm trainers (``trainers.algorithms``) are the better-tested route for
PPO and SAC; ``make_trainer`` is for other losses (e.g. DQN).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import torch

from trainers.algorithms.common import register_weight_updates
from trainers.collectors.builders import (
    make_collector_offpolicy,
    make_collector_onpolicy,
    sync_async_collector,
    sync_sync_collector,
)
from trainers.data.builders import make_replay_buffer
from trainers.envs.batched import make_env
from trainers.envs.common import EnvBase
from trainers.envs.transforms import Transform
from trainers.envs.utils import correct_for_frame_skip, get_stats_random_rollout
from trainers.hooks.evaluation import LogValidationReward
from trainers.hooks.logging import LogEpisodeStats, LogScalar
from trainers.hooks.replay_buffer import ReplayBufferTrainer
from trainers.hooks.weights import TargetNetUpdaterHook
from trainers.objectives.builders import make_dqn_loss, make_target_updater
from trainers.trainer.trainer import Trainer

__all__ = [
    "correct_for_frame_skip",
    "get_stats_random_rollout",
    "make_collector_offpolicy",
    "make_collector_onpolicy",
    "make_dqn_loss",
    "make_replay_buffer",
    "make_target_updater",
    "make_trainer",
    "parallel_env_constructor",
    "sync_async_collector",
    "sync_sync_collector",
    "transformed_env_constructor",
]


def transformed_env_constructor(
    env_name: str,
    *,
    transforms: Sequence[Transform] = (),
    num_envs: int = 1,
    frame_skip: int = 1,
    max_episode_steps: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> Callable[[], EnvBase]:
    """A picklable no-argument factory of ``env_name`` with ``transforms`` (in-process envs).

    Examples:
        >>> make = transformed_env_constructor("Pendulum-v1", num_envs=2)
        >>> make().batch_size
        torch.Size([2])
    """
    return partial(
        make_env,
        env_name,
        num_envs=num_envs,
        frame_skip=frame_skip,
        max_episode_steps=max_episode_steps,
        env_kwargs=env_kwargs,
        transforms=tuple(transforms),
    )


def parallel_env_constructor(
    env_name: str,
    *,
    num_workers: int,
    transforms: Sequence[Transform] = (),
    frame_skip: int = 1,
    max_episode_steps: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> Callable[[], EnvBase]:
    """Like :func:`transformed_env_constructor`, with each of ``num_workers`` envs in a process.

    Examples:
        >>> make = parallel_env_constructor("Pendulum-v1", num_workers=2)
    """
    return partial(
        make_env,
        env_name,
        num_envs=num_workers,
        vectorization="parallel",
        frame_skip=frame_skip,
        max_episode_steps=max_episode_steps,
        env_kwargs=env_kwargs,
        transforms=tuple(transforms),
    )


def make_trainer(
    *,
    collector: Any,
    loss_module: Any,
    optimizer: torch.optim.Optimizer,
    total_frames: int,
    optim_steps_per_batch: int,
    replay_buffer: Any | None = None,
    batch_size: int | None = None,
    target_net_updater: Any | None = None,
    policy_exploration: Any | None = None,
    recorder: EnvBase | None = None,
    record_interval: int = 10,
    record_frames: int = 1000,
    logger: Any | None = None,
    frame_skip: int = 1,
    clip_norm: float | None = None,
    log_interval: int = 10000,
    save_trainer_file: str | Path | None = None,
    save_trainer_interval: int = 10000,
    seed: int | None = None,
    progress_bar: bool = True,
) -> Trainer:
    """A :class:`Trainer` wired with the usual hooks for the given parts.

    With a ``replay_buffer``: extend / sample / priority updates (off-policy). With a
    ``target_net_updater``: a target step after every optimizer step. With a
    ``policy_exploration`` and a collector that accepts weights: weights pushed after each batch.
    With a ``recorder`` env: deterministic evaluation every ``record_interval`` batches. Always:
    ``r_training`` and the episode returns and lengths.

    Examples:
        >>> loss, updater = make_dqn_loss(qvalue_actor, gamma=0.99)
        >>> trainer = make_trainer(collector=collector, loss_module=loss,
        ...                        optimizer=torch.optim.Adam(loss.parameters()),
        ...                        total_frames=100_000, optim_steps_per_batch=100,
        ...                        replay_buffer=make_replay_buffer("cpu", buffer_size=100_000,
        ...                                                         batch_size=128),
        ...                        target_net_updater=updater, policy_exploration=qvalue_actor)
    """
    trainer = Trainer(
        collector=collector,
        total_frames=total_frames,
        frame_skip=frame_skip,
        optim_steps_per_batch=optim_steps_per_batch,
        loss_module=loss_module,
        optimizer=optimizer,
        logger=logger,
        clip_norm=clip_norm,
        progress_bar=progress_bar,
        seed=seed,
        save_trainer_interval=save_trainer_interval,
        log_interval=log_interval,
        save_trainer_file=save_trainer_file,
    )
    if replay_buffer is not None:
        ReplayBufferTrainer(replay_buffer, batch_size=batch_size, device=None).register(trainer)
    if target_net_updater is not None:
        TargetNetUpdaterHook(target_net_updater).register(trainer)
    if policy_exploration is not None:
        register_weight_updates(trainer, collector, policy_exploration)
        if recorder is not None:
            LogValidationReward(
                record_interval=record_interval,
                record_frames=record_frames,
                policy_exploration=policy_exploration,
                environment=recorder,
            ).register(trainer)
    LogScalar(log_pbar=True).register(trainer)
    LogEpisodeStats().register(trainer)
    return trainer
