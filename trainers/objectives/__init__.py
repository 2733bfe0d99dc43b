"""Losses (PPO, SAC, DQN), value estimators and target-network updaters.

A loss is an ``nn.Module`` called with a TensorDict; it returns a TensorDict whose ``loss_*``
entries are scalars summed for backward, the other entries being detached diagnostics.
"""

from __future__ import annotations

from trainers.objectives.builders import make_dqn_loss, make_target_updater
from trainers.objectives.common import LossModule
from trainers.objectives.dqn import DQNLoss
from trainers.objectives.ppo import ClipPPOLoss, KLPENPPOLoss, PPOLoss
from trainers.objectives.sac import SACLoss
from trainers.objectives.utils import HardUpdate, SoftUpdate, TargetNetUpdater
from trainers.objectives.value import GAE, generalized_advantage_estimate, td0_return_estimate

__all__ = [
    "GAE",
    "ClipPPOLoss",
    "DQNLoss",
    "HardUpdate",
    "KLPENPPOLoss",
    "LossModule",
    "PPOLoss",
    "SACLoss",
    "SoftUpdate",
    "TargetNetUpdater",
    "generalized_advantage_estimate",
    "make_dqn_loss",
    "make_target_updater",
    "td0_return_estimate",
]
