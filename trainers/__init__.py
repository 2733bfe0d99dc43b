"""trainrl's library: a hook-driven Trainer and the RL parts it needs (no Hydra here)."""

from trainers.hooks import (
    BatchSubSampler,
    ClearCudaCache,
    CountFramesLog,
    EarlyStopping,
    LogScalar,
    LRSchedulerHook,
    OptimizerHook,
    RewardNormalizer,
    SelectKeys,
    TargetNetUpdaterHook,
    TrainerHookBase,
    UpdateWeights,
    UTDRHook,
)
from trainers.trainer import CheckpointError, Stage, Trainer, TrainerState

__all__ = [
    "BatchSubSampler",
    "CheckpointError",
    "ClearCudaCache",
    "CountFramesLog",
    "EarlyStopping",
    "LRSchedulerHook",
    "LogScalar",
    "OptimizerHook",
    "RewardNormalizer",
    "SelectKeys",
    "Stage",
    "TargetNetUpdaterHook",
    "Trainer",
    "TrainerHookBase",
    "TrainerState",
    "UTDRHook",
    "UpdateWeights",
]
