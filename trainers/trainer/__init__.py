"""The Trainer core: loop, stages, checkpoints."""

from trainers.trainer.checkpoint import CheckpointError
from trainers.trainer.stages import Stage, StageKind
from trainers.trainer.trainer import Trainer, TrainerState

__all__ = ["CheckpointError", "Stage", "StageKind", "Trainer", "TrainerState"]
