"""Logging hooks shared by the algorithm trainers (the reference's metric names)."""

from __future__ import annotations

from typing import Any

from tensordict import TensorDict

from trainers import keys
from trainers.hooks.logging import LogEpisodeStats, LogNorm, LogScalar
from trainers.hooks.weights import UpdateWeights
from trainers.trainer.stages import Stage
from trainers.trainer.trainer import Trainer


def register_batch_logging(
    trainer: Trainer,
    *,
    log_rewards: bool,
    log_actions: bool,
    log_observations: bool,
    async_collection: bool,
) -> None:
    """Registers the reference metrics over collected batches.

    ``done_percentage`` (share of frames that end an episode), ``r_training`` (+ std, on the
    progress bar), ``r_max``, ``r_total`` (the largest running episode return at any frame of
    the batch, finished episodes or not), ``action_norm``, ``obs_norm``, and
    ``episode_return``/``episode_length`` (means over episodes ended since the last log). The
    per-batch values are averaged over the batches since the last log, the maxima maximized.
    In async mode, as in the reference, these read the sampled optimization batch at
    ``post_optim_log`` instead: the trainer then trains on what the background thread wrote,
    not on the batches it is handed.
    """
    stage = Stage.POST_OPTIM_LOG if async_collection else Stage.PRE_STEPS_LOG
    hooks: list = [LogScalar(keys.DONE, "done_percentage", include_std=False)]
    if log_rewards:
        hooks += [
            LogScalar(keys.REWARD, "r_training", log_pbar=True, include_std=True),
            LogScalar(keys.REWARD, "r_max", include_std=False, reduction="max"),
            LogScalar(keys.EPISODE_REWARD, "r_total", include_std=False, reduction="max"),
        ]
    if log_actions:
        hooks.append(LogNorm(keys.ACTION, "action_norm"))
    if log_observations:
        hooks.append(LogNorm(keys.OBSERVATION, "obs_norm"))
    for hook in hooks:
        trainer.register_op(stage, hook)
    LogEpisodeStats(stage=stage).register(trainer)


def register_weight_updates(trainer: Trainer, collector: Any, policy: Any) -> None:
    """Pushes ``policy``'s weights to ``collector`` after every batch, if it takes weights.

    A collector that shares the policy object in-process gets no copy; one that runs worker
    processes or another device receives the weights as a TensorDict.
    """
    if callable(getattr(collector, "update_policy_weights_", None)):
        UpdateWeights(collector, 1, lambda: TensorDict.from_module(policy)).register(trainer)
