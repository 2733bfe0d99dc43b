"""Algorithm trainers: the Trainer core plus each algorithm's hooks and defaults."""

from trainers.algorithms.ppo import PPOTrainer
from trainers.algorithms.sac import SACTrainer

__all__ = ["PPOTrainer", "SACTrainer"]
