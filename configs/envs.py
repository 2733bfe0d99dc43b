"""Schemas of the ``training_env`` group: Gymnasium envs, transforms, batching."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from configs.validation import between, checked, ge, gt, one_of

# The command-line path of the env id, as the reference's commands spell it.
ENV_NAME_KEY = "training_env.create_env_fn.base_env.env_name"


@dataclass(kw_only=True)
class GymEnvConfig:
    """A Gymnasium env by id (classic control, MuJoCo v4/v5, ...); batched by its parent."""

    _target_: str = "trainers.envs.GymEnv"
    _partial_: bool = True  # the batched env calls it with num_envs and vectorization
    env_name: str = "Pendulum-v1"
    frame_skip: int = checked(1, ge(1))
    max_episode_steps: int | None = checked(None, ge(1))
    env_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class StepCounterConfig:
    _target_: str = "trainers.envs.StepCounter"
    max_steps: int | None = checked(None, ge(1))


@dataclass(kw_only=True)
class RewardSumConfig:
    _target_: str = "trainers.envs.RewardSum"


@dataclass(kw_only=True)
class VecNormConfig:
    """Running observation normalization (statistics are checkpointed)."""

    _target_: str = "trainers.envs.VecNorm"
    decay: float = checked(0.9999, between(0, 1))
    eps: float = checked(1e-4, gt(0))


@dataclass(kw_only=True)
class RewardNormConfig:
    """Rewards divided by a running std of the discounted return (put after RewardSum)."""

    _target_: str = "trainers.envs.RewardNorm"
    gamma: float = checked(0.99, between(0, 1))
    eps: float = checked(1e-8, gt(0))
    clip: float | None = checked(10.0, gt(0))


@dataclass(kw_only=True)
class RewardScalingConfig:
    _target_: str = "trainers.envs.RewardScaling"
    loc: float = 0.0
    scale: float = checked(1.0, gt(0))
    standard_normal: bool = False


@dataclass(kw_only=True)
class DoubleToFloatConfig:
    _target_: str = "trainers.envs.DoubleToFloat"


@dataclass(kw_only=True)
class ComposeConfig:
    """Transforms applied in order; give them as ``_args_`` (a list of transform configs)."""

    _target_: str = "trainers.envs.Compose"
    _args_: list[Any] = field(default_factory=list)


@dataclass(kw_only=True)
class TransformedEnvConfig:
    """A base env plus an optional transform, applied once to the whole batch."""

    _target_: str = "trainers.envs.TransformedEnv"
    _partial_: bool = True
    base_env: GymEnvConfig = field(default_factory=GymEnvConfig)
    transform: Any = None


@dataclass(kw_only=True)
class BatchedEnvConfig:
    """``num_workers`` copies of ``create_env_fn`` stepped as one batched env.

    ``batched_env_type``: ``serial`` steps them in this process (fastest on few cores),
    ``parallel`` in one worker process each.
    """

    _target_: str = "trainers.envs.make_batched_env"
    create_env_fn: TransformedEnvConfig = field(default_factory=TransformedEnvConfig)
    num_workers: int = checked(8, ge(1))
    batched_env_type: str = checked("serial", one_of("serial", "parallel"))
