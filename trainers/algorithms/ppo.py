"""PPOTrainer: on-policy batches, GAE once per batch, shuffled minibatch epochs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDictBase

from trainers import keys
from trainers.algorithms.common import register_batch_logging, register_weight_updates
from trainers.data import LazyTensorStorage, ReplayBuffer, SamplerWithoutReplacement
from trainers.hooks.optim import LRSchedulerHook
from trainers.hooks.replay_buffer import ReplayBufferTrainer
from trainers.objectives.value import GAE
from trainers.trainer.stages import Stage
from trainers.trainer.trainer import Trainer


class PPOTrainer(Trainer):
    """Proximal Policy Optimization on the hook-driven :class:`Trainer`.

    Each collected ``[num_envs, T]`` batch gets its advantages and value targets from GAE
    (bootstrapping on truncation, not on termination), is written into a replay buffer that
    holds exactly that batch, and is then read for ``num_epochs`` epochs of shuffled minibatches
    of ``batch_size`` frames, each an optimization step. Loss terms are averaged over all
    epochs of all batches since the last log. Weights reach the collector after each batch.

    Args:
        collector: yields on-policy batches; must expose ``frames_per_batch`` unless
            ``optim_steps_per_batch`` is given.
        loss_module: a PPO loss with ``actor_network`` and ``critic_network``.
        replay_buffer: minibatch source; default: a buffer of ``frames_per_batch`` frames
            sampled without replacement. A given buffer must sample without replacement.
        batch_size: minibatch size; default: the replay buffer's.
        num_epochs: passes over each batch.
        gamma: discount.
        lmbda: GAE lambda.
        optim_steps_per_batch: default ``num_epochs * ceil(frames_per_batch / batch_size)``
            (``floor`` when the sampler drops the last incomplete minibatch, ``drop_last``).
        enable_logging, log_rewards, log_actions, log_observations: which batch metrics to log.
        anneal_lr: decay the learning rate linearly to 0 over ``total_frames`` (stepped once
            per batch), as in the PPO paper's MuJoCo setup; logged as ``lr``.
        Other arguments: as :class:`Trainer`.

    Examples:
        >>> trainer = PPOTrainer(collector=collector, total_frames=200_000,
        ...                      loss_module=ClipPPOLoss(actor, critic), optimizer=optim,
        ...                      batch_size=64, num_epochs=10)
        >>> trainer.train()
    """

    def __init__(
        self,
        *,
        collector: Any,
        total_frames: int,
        loss_module: Any,
        frame_skip: int = 1,
        optim_steps_per_batch: int | None = None,
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
        num_epochs: int = 4,
        gamma: float = 0.99,
        lmbda: float = 0.95,
        enable_logging: bool = True,
        log_rewards: bool = True,
        log_actions: bool = True,
        log_observations: bool = False,
        async_collection: bool = False,
        anneal_lr: bool = False,
        flush_denormals: bool = True,
    ) -> None:
        if async_collection:
            raise ValueError(
                "PPOTrainer: async_collection=True is not supported; PPO is on-policy and "
                "must train on the batch its current policy collected"
            )
        if num_epochs < 1:
            raise ValueError(f"PPOTrainer: num_epochs must be >= 1, got {num_epochs}")
        own_gae = getattr(loss_module, "value_estimator", None)
        if own_gae is not None and (own_gae.gamma, own_gae.lmbda) != (gamma, lmbda):
            raise ValueError(
                f"PPOTrainer: gamma={gamma}, lmbda={lmbda}, but the loss was built with "
                f"gamma={own_gae.gamma}, lmbda={own_gae.lmbda}; the trainer computes the "
                "advantages, so give the same values to both (or none to the loss)"
            )
        frames_per_batch = getattr(collector, "frames_per_batch", None)
        if replay_buffer is None:  # not `or`: an empty buffer is falsy (it has a __len__)
            replay_buffer = _default_minibatch_buffer(frames_per_batch, batch_size)
        batch_size = batch_size or replay_buffer.batch_size
        if batch_size is None or batch_size < 1:
            raise ValueError(f"PPOTrainer: batch_size must be >= 1, got {batch_size}")
        if not isinstance(replay_buffer.sampler, SamplerWithoutReplacement):
            raise ValueError(
                "PPOTrainer needs a replay buffer sampled without replacement (each frame once "
                f"per epoch), got sampler {type(replay_buffer.sampler).__name__}"
            )
        if optim_steps_per_batch is None:
            if frames_per_batch is None:
                raise ValueError(
                    "PPOTrainer: pass optim_steps_per_batch, or a collector that exposes "
                    "frames_per_batch so it can be derived from num_epochs"
                )
            optim_steps_per_batch = num_epochs * _steps_per_epoch(
                frames_per_batch, batch_size, replay_buffer.sampler.drop_last
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
            async_collection=False,
            flush_denormals=flush_denormals,
        )
        self.num_epochs = num_epochs
        self.replay_buffer = replay_buffer
        self.gae = GAE(gamma, lmbda, value_network=loss_module.critic_network)
        network_inputs = [
            *getattr(loss_module.actor_network, "in_keys", [keys.OBSERVATION]),
            *getattr(loss_module.critic_network, "in_keys", [keys.OBSERVATION]),
        ]
        # What the loss reads; minibatches are gathered from these entries only.
        self._loss_keys = list(
            dict.fromkeys(
                [
                    *network_inputs,
                    *(keys.ACTION, keys.PRE_TANH_ACTION, keys.SAMPLE_LOG_PROB),
                    *(keys.ADVANTAGE, keys.VALUE_TARGET),
                    *(keys.STATE_VALUE, keys.MASK),
                ]
            )
        )
        self._rb_trainer = ReplayBufferTrainer(replay_buffer, batch_size=batch_size, device=None)
        self.register_module("replay_buffer", self._rb_trainer)
        self.register_op(Stage.BATCH_PROCESS, self._fill_minibatch_buffer)
        self.register_op(Stage.PROCESS_OPTIM_BATCH, self._rb_trainer.sample)
        register_weight_updates(self, collector, loss_module.actor_network)
        if anneal_lr:
            self._register_lr_annealing()
        if enable_logging:
            register_batch_logging(
                self,
                log_rewards=log_rewards,
                log_actions=log_actions,
                log_observations=log_observations,
                async_collection=False,
            )

    def _register_lr_annealing(self) -> None:
        if self.optimizer is None:
            raise ValueError("PPOTrainer(anneal_lr=True) needs an optimizer")
        # From the frames counted, not from the batches done: a batch with padding frames
        # (a validity mask) counts fewer, and the rate reaches 0 at total_frames, not before.
        schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda _: max(0.0, 1.0 - self.state.frames / self.total_frames)
        )
        LRSchedulerHook(schedule, every="batch").register(self)

    def _fill_minibatch_buffer(self, batch: TensorDictBase) -> TensorDictBase:
        """GAE over the ``[num_envs, T]`` batch, then the buffer holds exactly this batch."""
        batch = self.gae(batch)
        self.replay_buffer.empty()
        present = batch.keys(include_nested=True, leaves_only=True)
        self._rb_trainer.extend(batch.select(*[k for k in self._loss_keys if k in present]))
        return batch


def _steps_per_epoch(frames_per_batch: int, batch_size: int, drop_last: bool) -> int:
    """Minibatches in one pass over a batch; with ``drop_last`` the short last one is skipped."""
    if not drop_last:
        return math.ceil(frames_per_batch / batch_size)
    if batch_size > frames_per_batch:
        raise ValueError(
            f"PPOTrainer: batch_size={batch_size} is larger than frames_per_batch="
            f"{frames_per_batch} and the sampler drops incomplete minibatches (drop_last=True), "
            "so no minibatch would be drawn; lower batch_size or use drop_last=False"
        )
    return frames_per_batch // batch_size


def _default_minibatch_buffer(frames_per_batch: int | None, batch_size: int | None) -> ReplayBuffer:
    if frames_per_batch is None or batch_size is None:
        raise ValueError(
            "PPOTrainer: without a replay_buffer, pass batch_size and a collector that exposes "
            "frames_per_batch"
        )
    return ReplayBuffer(
        storage=LazyTensorStorage(frames_per_batch),
        sampler=SamplerWithoutReplacement(),
        batch_size=batch_size,
    )
