"""Factories that batch envs the trainrl way: one env object over ``num_envs`` sub-envs.

A TorchRL config says ``training_env.create_env_fn.base_env.env_name=...`` and
``training_env.num_workers=8``; here ``create_env_fn`` is called once with
``num_envs=num_workers`` (and the vectorization), so the transforms of a ``TransformedEnv`` run
once on the whole batch instead of once per worker.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch

from trainers.envs.common import EnvBase
from trainers.envs.gym import VECTORIZATIONS, GymEnv
from trainers.envs.transforms import Compose, Transform, TransformedEnv


def _accepts_batch_kwargs(fn: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True  # builtins and the like: let the call decide
    names = {p.name for p in params}
    has_var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    return has_var_kw or {"num_envs", "vectorization"} <= names


def make_batched_env(
    create_env_fn: Callable[..., EnvBase],
    num_workers: int = 1,
    batched_env_type: str = "serial",
) -> EnvBase:
    """Calls ``create_env_fn(num_envs=num_workers, vectorization=batched_env_type)``.

    Args:
        create_env_fn: makes a batched env given ``num_envs`` and ``vectorization``, e.g.
            ``functools.partial(GymEnv, "Pendulum-v1")`` or a ``partial(TransformedEnv, ...)``.
        num_workers: number of sub-envs; >= 1.
        batched_env_type: ``"serial"`` (in-process) or ``"parallel"`` (worker processes).

    Examples:
        >>> from functools import partial
        >>> from trainers.envs import GymEnv, make_batched_env
        >>> env = make_batched_env(partial(GymEnv, "Pendulum-v1"), num_workers=4)
        >>> env.num_envs
        4
    """
    if not isinstance(num_workers, int) or num_workers < 1:
        raise ValueError(f"num_workers must be an int >= 1, got {num_workers!r}")
    if batched_env_type not in VECTORIZATIONS:
        raise ValueError(
            f"batched_env_type must be one of {VECTORIZATIONS}, got {batched_env_type!r}"
        )
    if not callable(create_env_fn):
        raise TypeError(f"create_env_fn must be callable, got {create_env_fn!r}")
    if not _accepts_batch_kwargs(create_env_fn):
        raise TypeError(
            f"create_env_fn {create_env_fn!r} must accept num_envs= and vectorization= keyword "
            "arguments (e.g. functools.partial(GymEnv, 'Pendulum-v1') or "
            "functools.partial(TransformedEnv, base_env=..., transform=...)): trainrl batches "
            "inside one env instead of wrapping one env per worker"
        )
    env = create_env_fn(num_envs=num_workers, vectorization=batched_env_type)
    if not isinstance(env, EnvBase):
        raise TypeError(f"create_env_fn returned {type(env).__name__}, expected an EnvBase")
    return env


def SerialEnv(num_workers: int, create_env_fn: Callable[..., EnvBase]) -> EnvBase:
    """TorchRL-style alias of ``make_batched_env(create_env_fn, num_workers, "serial")``."""
    return make_batched_env(create_env_fn, num_workers, "serial")


def ParallelEnv(num_workers: int, create_env_fn: Callable[..., EnvBase]) -> EnvBase:
    """TorchRL-style alias of ``make_batched_env(create_env_fn, num_workers, "parallel")``."""
    return make_batched_env(create_env_fn, num_workers, "parallel")


def make_env(
    env_name: str,
    *,
    num_envs: int = 1,
    vectorization: str = "serial",
    frame_skip: int = 1,
    device: torch.device | str = "cpu",
    max_episode_steps: int | None = None,
    env_kwargs: dict[str, Any] | None = None,
    transforms: Sequence[Transform] = (),
) -> EnvBase:
    """A ``GymEnv``, wrapped in a ``TransformedEnv`` when ``transforms`` are given.

    Examples:
        >>> from trainers.envs import RewardSum, StepCounter, make_env
        >>> env = make_env("Pendulum-v1", num_envs=4, transforms=[StepCounter(), RewardSum()])
        >>> env.reset()["episode_reward"].shape
        torch.Size([4, 1])
    """
    env = GymEnv(
        env_name,
        num_envs=num_envs,
        vectorization=vectorization,
        frame_skip=frame_skip,
        device=device,
        max_episode_steps=max_episode_steps,
        env_kwargs=env_kwargs,
    )
    if not transforms:
        return env
    return TransformedEnv(env, Compose(*transforms))
