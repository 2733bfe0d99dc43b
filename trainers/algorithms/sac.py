"""SACTrainer: off-policy training from a replay buffer with target-network updates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDictBase

from trainers import keys
from trainers.algorithms.common import register_batch_logging, register_weight_updates
from trainers.algorithms.sac_update import FusedSACUpdate
from trainers.data import ReplayBuffer
from trainers.hooks.logging import UTDRHook
from trainers.hooks.optim import OptimizerHook
from trainers.hooks.replay_buffer import ReplayBufferTrainer
from trainers.hooks.weights import TargetNetUpdaterHook
from trainers.objectives.sac import SACLoss
from trainers.trainer.stages import Stage
from trainers.trainer.trainer import Trainer


class SACTrainer(Trainer):
    """Soft Actor-Critic on the hook-driven :class:`Trainer`.

    Every collected batch, the random warm-up ones included, is stored in the replay buffer
    (the reference drops the warm-up batches); optimization starts once the collector's
    ``init_random_frames`` are in. Each optimization step samples ``batch_size`` transitions,
    updates priorities when the sampler is prioritized, and then steps the target networks.
    Policy weights reach the collector after each batch.

    With ``async_collection=True`` the collector fills the buffer from a background thread
    (it must own the buffer), and batch metrics are read from the sampled batches.

    Args:
        replay_buffer: the transition buffer (required).
        batch_size: transitions per optimization step; default: the buffer's.
        target_net_updater: ``SoftUpdate``/``HardUpdate`` over the loss's target networks
            (required when the loss has target networks).
        enable_logging, log_rewards, log_actions, log_observations: which metrics to log;
            the update-to-data ratio is logged as ``utd_ratio``.
        fused_update: put the gradients that the loss's fused path computes in its forward
            pass into ``.grad`` directly, skipping autograd's backward pass, where the loss and
            the ``optimizer`` hook are the defaults (``trainers/algorithms/sac_update.py``); the
            results are the hooks' to the bit. Otherwise, and with False, the hooks run one by
            one. ``trainer.fused_update.steps`` counts the steps it ran.
        Other arguments: as :class:`Trainer`.

    Examples:
        >>> trainer = SACTrainer(collector=collector, total_frames=1_000_000, frame_skip=1,
        ...                      optim_steps_per_batch=1000, loss_module=loss,
        ...                      optimizer=optim, replay_buffer=rb, batch_size=256,
        ...                      target_net_updater=SoftUpdate(loss, tau=0.005))
        >>> trainer.train()
    """

    def __init__(
        self,
        *,
        collector: Any,
        total_frames: int,
        frame_skip: int,
        optim_steps_per_batch: int,
        loss_module: Any,
        optimizer: torch.optim.Optimizer | None = None,
        logger: Any | None = None,
        clip_grad_norm: bool = True,
        clip_norm: float | None = None,
        progress_bar: bool = True,
        seed: int | None = None,
        save_trainer_interval: int = 10000,
        log_interval: int = 10000,
        save_trainer_file: str | Path | None = None,
        replay_buffer: ReplayBuffer | None = None,
        batch_size: int | None = None,
        enable_logging: bool = True,
        log_rewards: bool = True,
        log_actions: bool = True,
        log_observations: bool = False,
        target_net_updater: Any | None = None,
        async_collection: bool = False,
        flush_denormals: bool = True,
        fused_update: bool = True,
    ) -> None:
        if replay_buffer is None:
            raise ValueError("SACTrainer needs a replay_buffer")
        if target_net_updater is None and hasattr(loss_module, "target_qvalue_network"):
            raise ValueError(
                "SACTrainer: the loss has target networks but no target_net_updater was given; "
                "pass SoftUpdate(loss_module, tau=0.005) or HardUpdate(...)"
            )
        super().__init__(
            collector=collector,
            total_frames=total_frames,
            frame_skip=frame_skip,
            optim_steps_per_batch=optim_steps_per_batch,
            loss_module=loss_module,
            optimizer=optimizer,
            logger=logger,
            clip_grad_norm=clip_grad_norm,
            clip_norm=clip_norm,
            progress_bar=progress_bar,
            seed=seed,
            save_trainer_interval=save_trainer_interval,
            log_interval=log_interval,
            save_trainer_file=save_trainer_file,
            async_collection=async_collection,
            flush_denormals=flush_denormals,
        )
        if async_collection and getattr(collector, "replay_buffer", None) is not replay_buffer:
            raise ValueError(
                "SACTrainer(async_collection=True) needs a collector that writes into "
                "replay_buffer itself, e.g. AsyncReplayCollector(collector, replay_buffer); got "
                f"a {type(collector).__name__}"
            )
        self.replay_buffer = replay_buffer
        actor_inputs = getattr(loss_module.actor_network, "in_keys", [keys.OBSERVATION])
        self._transition_keys = [*actor_inputs, keys.ACTION, keys.NEXT, keys.MASK]
        if async_collection and getattr(collector, "stored_keys", ()) is None:
            collector.stored_keys = self._transition_keys  # what the sync path stores too
        rb_trainer = ReplayBufferTrainer(replay_buffer, batch_size=batch_size, device=None)
        target_hook = (
            TargetNetUpdaterHook(target_net_updater) if target_net_updater is not None else None
        )
        self.register_module("replay_buffer", rb_trainer)
        if not async_collection:
            self.register_op(Stage.BATCH_PROCESS, self._transitions_only)
            self.register_op(Stage.BATCH_PROCESS, rb_trainer.extend)
        self.register_op(Stage.PROCESS_OPTIM_BATCH, rb_trainer.sample)
        self.register_op(Stage.POST_LOSS, rb_trainer.update_priority)
        if target_hook is not None:
            target_hook.register(self)
        optimizer_hook = next(
            (op for op in self.ops(Stage.OPTIMIZER) if isinstance(op, OptimizerHook)), None
        )
        self.fused_update: FusedSACUpdate | None = None
        if fused_update and isinstance(loss_module, SACLoss) and optimizer_hook:
            self.fused_update = FusedSACUpdate(
                loss_module, optimizer_hook, rb_trainer.update_priority
            )
        register_weight_updates(self, collector, loss_module.actor_network)
        if enable_logging:
            register_batch_logging(
                self,
                log_rewards=log_rewards,
                log_actions=log_actions,
                log_observations=log_observations,
                async_collection=async_collection,
            )
            UTDRHook().register(self)

    def _fused_step(self, sub_batch: TensorDictBase) -> TensorDictBase | None:
        update = self.fused_update
        return None if update is None else update(self, sub_batch)

    def _transitions_only(self, batch: TensorDictBase) -> TensorDictBase:
        """Drops what the collecting policy wrote (its random warm-up batches write none).

        The collector's validity mask stays, so that the buffer and the batch metrics skip
        padding frames.
        """
        return batch.select(*self._transition_keys, strict=False)
