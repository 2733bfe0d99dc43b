"""Hook classes: small stateful objects that attach themselves to a Trainer's stages."""

from trainers.hooks.base import TrainerHookBase
from trainers.hooks.data import BatchSubSampler, RewardNormalizer, SelectKeys
from trainers.hooks.evaluation import LogValidationReward
from trainers.hooks.logging import (
    CountFramesLog,
    EarlyStopping,
    EpisodeWriter,
    LogEpisodeStats,
    LogNorm,
    LogScalar,
    UTDRHook,
)
from trainers.hooks.optim import ClearCudaCache, LRSchedulerHook, OptimizerHook
from trainers.hooks.replay_buffer import ReplayBufferTrainer
from trainers.hooks.weights import TargetNetUpdaterHook, UpdateWeights

__all__ = [
    "BatchSubSampler",
    "ClearCudaCache",
    "CountFramesLog",
    "EarlyStopping",
    "EpisodeWriter",
    "LRSchedulerHook",
    "LogEpisodeStats",
    "LogNorm",
    "LogScalar",
    "LogValidationReward",
    "OptimizerHook",
    "ReplayBufferTrainer",
    "RewardNormalizer",
    "SelectKeys",
    "TargetNetUpdaterHook",
    "TrainerHookBase",
    "UTDRHook",
    "UpdateWeights",
]
