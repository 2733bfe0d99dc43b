"""Gymnasium envs as batched TensorDict envs, their specs and transforms.

See ``docs/architecture.md`` ("Envs") for the contract every env follows.
"""

from trainers.envs.batched import ParallelEnv, SerialEnv, make_batched_env, make_env
from trainers.envs.common import EnvBase
from trainers.envs.gym import GymEnv
from trainers.envs.specs import Bounded, Categorical, TensorSpec, Unbounded
from trainers.envs.transforms import (
    Compose,
    DoubleToFloat,
    NoopReset,
    ObservationNorm,
    RewardNorm,
    RewardScaling,
    RewardSum,
    StepCounter,
    Transform,
    TransformedEnv,
    VecNorm,
)
from trainers.envs.utils import correct_for_frame_skip, get_stats_random_rollout

__all__ = [
    "Bounded",
    "Categorical",
    "Compose",
    "DoubleToFloat",
    "EnvBase",
    "GymEnv",
    "NoopReset",
    "ObservationNorm",
    "ParallelEnv",
    "RewardNorm",
    "RewardScaling",
    "RewardSum",
    "SerialEnv",
    "StepCounter",
    "TensorSpec",
    "Transform",
    "TransformedEnv",
    "Unbounded",
    "VecNorm",
    "correct_for_frame_skip",
    "get_stats_random_rollout",
    "make_batched_env",
    "make_env",
]
