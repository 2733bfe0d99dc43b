"""Schemas of the ``trainer`` group: ``PPOTrainerConfig`` and ``SACTrainerConfig``.

A trainer config points at a factory in :mod:`configs.factories` that builds every component
in order (env -> networks -> loss -> optimizer -> collector -> buffer -> logger) so that one
network instance is shared by the collector and the loss, and sizes come from the env. The
component fields interpolate the top-level groups, so ``optimizer.lr=...`` and friends work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from configs.validation import between, checked, ge, gt, torch_device


@dataclass(kw_only=True)
class _TrainerConfigBase:
    _recursive_: bool = False  # the factory instantiates the components itself, in order
    total_frames: int = checked(1_000_000, ge(1))
    # Env frames per collected frame, for counting total_frames; follows the env's setting.
    frame_skip: int = checked("${training_env.create_env_fn.base_env.frame_skip}", ge(1))
    clip_grad_norm: bool = True
    clip_norm: float | None = checked(None, gt(0))
    progress_bar: bool = True
    seed: int | None = checked(0, ge(0))  # None: not seeded
    save_trainer_interval: int = checked(100_000, ge(1))
    log_interval: int = checked(10_000, ge(1))
    save_trainer_file: str | None = "checkpoint.pt"  # relative to the run directory
    resume: bool = True  # continue from save_trainer_file when it exists
    # Networks, losses and optimization; envs always step on the CPU.
    device: str = checked("cpu", torch_device())
    # torch intra-op CPU threads; None keeps torch's default. Small networks train faster on 1.
    num_threads: int | None = checked(None, ge(1))
    # Flush denormal floats to zero while training (CPU ops ~100x slower on them; see README).
    flush_denormals: bool = True
    enable_logging: bool = True
    log_rewards: bool = True
    log_actions: bool = True
    log_observations: bool = False
    episodes_file: str | None = "episodes.csv"  # one row per finished episode; None: off
    training_env: Any = "${training_env}"
    networks: Any = "${networks}"
    collector: Any = "${collector}"
    replay_buffer: Any = "${replay_buffer}"
    loss_module: Any = "${loss}"
    optimizer: Any = "${optimizer}"
    logger: Any = "${logger}"


@dataclass(kw_only=True)
class PPOTrainerConfig(_TrainerConfigBase):
    """PPO: ``num_epochs`` passes of ``replay_buffer.batch_size`` minibatches per batch."""

    _target_: str = "configs.factories.make_ppo_trainer"
    num_epochs: int = checked(10, ge(1))
    gamma: float = checked(0.99, between(0, 1))
    lmbda: float = checked(0.95, between(0, 1))
    anneal_lr: bool = False  # linear decay of optimizer.lr to 0 over total_frames


@dataclass(kw_only=True)
class SACTrainerConfig(_TrainerConfigBase):
    """SAC: ``utd_ratio`` optimization steps per collected frame."""

    _target_: str = "configs.factories.make_sac_trainer"
    utd_ratio: float = checked(1.0, gt(0))
    target_net_updater: Any = "${target_net_updater}"
    async_collection: bool = False
    # The fused path's gradients straight into .grad, without autograd's backward pass, where
    # the loss and the optimizer hook are the defaults: the hooks' results to the bit, faster
    # (README, "SAC's fused update").
    fused_update: bool = True
