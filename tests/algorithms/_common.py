"""Shared pieces of the algorithm-trainer tests: a recording logger, a padded collector, and
plain-Python references for the batch metrics."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from tensordict import TensorDictBase

from trainers import keys
from trainers.algorithms import PPOTrainer, SACTrainer
from trainers.collectors import AsyncReplayCollector, SyncDataCollector
from trainers.data import LazyTensorStorage, RandomSampler, Sampler, TensorDictReplayBuffer
from trainers.envs import GymEnv
from trainers.modules import make_qvalue_network, make_tanh_normal_actor, make_value_network
from trainers.objectives import ClipPPOLoss, SACLoss, SoftUpdate
from trainers.record.loggers import Logger
from trainers.trainer.stages import Stage
from trainers.trainer.trainer import Trainer

# Padding frames carry this value; no Pendulum value comes near it.
SENTINEL = 1.0e6
NUM_ENVS = 2
# Short episodes, so that a few tiny batches hold finished (truncated) ones.
MAX_EPISODE_STEPS = 15
LR = 1e-3


class RecordingLogger(Logger):
    """A logger backend that keeps what it is given, in memory."""

    def __init__(self) -> None:
        super().__init__("test", log_dir=".")
        self.scalars: list[tuple[int, dict[str, float]]] = []
        self.hparams: dict[str, Any] = {}
        self.videos: list[str] = []
        self.closed = False

    def log_scalars(self, values: Mapping[str, float], step: int | None = None) -> None:
        self.scalars.append((self._resolve_step("scalars", step), dict(values)))

    def log_hparams(self, cfg: Mapping) -> None:
        self.hparams.update(cfg)

    def log_video(
        self, name: str, video: torch.Tensor, step: int | None = None, fps: int | None = None
    ) -> None:
        self.videos.append(name)

    def close(self) -> None:
        self.closed = True


class PaddedCollector:
    """Wraps a collector; in each batch the last ``pad`` steps of the last env become padding.

    Padding frames get ``("collector", "mask") = False``, ``SENTINEL`` as observation, action,
    next observation, reward and episode return, and ``done``/``terminated`` set, so any of
    them that is stored, counted or written shows up.
    """

    def __init__(self, collector: Any, pad: int) -> None:
        self.collector = collector
        self.pad = pad
        self.frames_per_batch = collector.frames_per_batch
        self.init_random_frames = collector.init_random_frames

    def __iter__(self) -> Iterator[TensorDictBase]:
        for batch in self.collector:
            mask = torch.ones(batch.batch_size, dtype=torch.bool)
            mask[-1, -self.pad :] = False
            floats = (keys.OBSERVATION, keys.ACTION, keys.NEXT_OBSERVATION, keys.REWARD)
            for key in (*floats, keys.EPISODE_REWARD):
                batch.get(key)[-1, -self.pad :] = SENTINEL
            for key in (keys.DONE, keys.TERMINATED):
                batch.get(key)[-1, -self.pad :] = True
            batch.set(keys.MASK, mask)
            yield batch

    def shutdown(self) -> None:
        self.collector.shutdown()


def valid_rows(batch: TensorDictBase, key: Any) -> list[list[float]]:
    """The rows ``[*batch] -> list of floats`` of ``key`` at the frames the mask keeps."""
    value = batch.get(key)
    rows = value.reshape(batch.numel(), -1).tolist()
    mask = batch.get(keys.MASK, None)
    if mask is None:
        return rows
    return [row for row, keep in zip(rows, mask.reshape(-1).tolist(), strict=True) if keep]


WINDOW_MAXIMA = ("r_max", "r_total")


def batch_metrics(batch: TensorDictBase) -> dict[str, float]:
    """The per-batch logged metrics, computed with Python's ``statistics`` and ``math``."""
    rewards = [row[0] for row in valid_rows(batch, keys.REWARD)]
    done = [row[0] for row in valid_rows(batch, keys.DONE)]
    running_returns = [row[0] for row in valid_rows(batch, keys.EPISODE_REWARD)]
    action_norms = [math.sqrt(sum(x * x for x in row)) for row in valid_rows(batch, keys.ACTION)]
    return {
        "done_percentage": sum(done) / len(done),
        "r_training": statistics.fmean(rewards),
        "r_training_std": statistics.stdev(rewards),
        "r_max": max(rewards),
        "r_total": max(running_returns),
        "action_norm": statistics.fmean(action_norms),
        "action_norm_std": statistics.stdev(action_norms),
    }


def finished_episodes(batch: TensorDictBase) -> list[tuple[float, int]]:
    """``(return, length)`` of every episode that ends at a valid frame of ``batch``."""
    done = valid_rows(batch, keys.DONE)
    returns = valid_rows(batch, keys.EPISODE_REWARD)
    lengths = valid_rows(batch, keys.STEP_COUNT)
    return [
        (ret[0], int(length[0]))
        for flag, ret, length in zip(done, returns, lengths, strict=True)
        if flag[0]
    ]


def window_metrics(batches: Sequence[TensorDictBase]) -> dict[str, float]:
    """What one log write over ``batches`` holds: batch metrics averaged over the batches
    (each batch counts once) but maxima maximized, episode stats averaged over the episodes that
    ended in them."""
    per_batch = [batch_metrics(batch) for batch in batches]
    out = {name: statistics.fmean(m[name] for m in per_batch) for name in per_batch[0]}
    for name in WINDOW_MAXIMA:
        out[name] = max(m[name] for m in per_batch)
    episodes = [episode for batch in batches for episode in finished_episodes(batch)]
    if episodes:
        out["episode_return"] = statistics.fmean(ret for ret, _ in episodes)
        out["episode_length"] = statistics.fmean(length for _, length in episodes)
    return out


def log_windows(
    logger: RecordingLogger, batches: Sequence[tuple[TensorDictBase, int]]
) -> list[tuple[dict[str, float], list[TensorDictBase]]]:
    """Pairs each log write with the batches (from :func:`record_batches`) collected since the
    previous write."""
    windows = []
    previous = 0
    for step, values in logger.scalars:
        window = [batch for batch, frames in batches if previous < frames <= step]
        windows.append((values, window))
        previous = step
    return windows


def _pendulum() -> GymEnv:
    return GymEnv("Pendulum-v1", num_envs=NUM_ENVS, max_episode_steps=MAX_EPISODE_STEPS)


def make_ppo(
    *,
    frames_per_batch: int = 40,
    total_frames: int = 160,
    batch_size: int = 16,
    num_epochs: int = 2,
    log_interval: int | None = None,
    pad: int = 0,
    **kwargs: Any,
) -> tuple[PPOTrainer, RecordingLogger]:
    """A PPO trainer on Pendulum with tiny networks; one log write per batch by default.

    ``pad > 0`` wraps the collector in a :class:`PaddedCollector`.
    """
    torch.manual_seed(0)
    env = _pendulum()
    actor = make_tanh_normal_actor(env, num_cells=[16])
    loss = ClipPPOLoss(actor, make_value_network(env, num_cells=[16]))
    logger = RecordingLogger()
    collector: Any = SyncDataCollector(
        env, actor, frames_per_batch=frames_per_batch, total_frames=-1 if pad else total_frames
    )
    if pad:
        collector = PaddedCollector(collector, pad)
    trainer = PPOTrainer(
        collector=collector,
        total_frames=total_frames,
        loss_module=loss,
        optimizer=torch.optim.Adam(loss.parameters(), lr=LR),
        batch_size=batch_size,
        num_epochs=num_epochs,
        logger=logger,
        log_interval=log_interval or frames_per_batch,
        progress_bar=False,
        seed=0,
        **kwargs,
    )
    return trainer, logger


def make_sac(
    *,
    frames_per_batch: int = 20,
    total_frames: int = 80,
    init_random_frames: int = 0,
    optim_steps_per_batch: int = 2,
    sampler: Sampler | None = None,
    tau: float | None = 0.1,
    pad: int = 0,
    log_interval: int | None = None,
    async_collection: bool = False,
    loss_compile: bool = False,
    adam_options: dict[str, Any] | None = None,
    **kwargs: Any,
) -> tuple[SACTrainer, RecordingLogger]:
    """A SAC trainer on Pendulum with tiny networks; one log write per batch by default.

    ``tau=None`` builds it without a target-net updater. ``pad > 0`` wraps the collector in a
    :class:`PaddedCollector` (which runs until the trainer has ``total_frames`` valid frames);
    ``async_collection=True`` in an :class:`AsyncReplayCollector` that fills the buffer.
    ``loss_compile``: ``SACLoss(compile=...)``; ``adam_options``: more arguments of the Adam
    optimizer.
    """
    torch.manual_seed(0)
    env = _pendulum()
    actor = make_tanh_normal_actor(env, num_cells=[16], activation_class="relu")
    loss = SACLoss(
        actor,
        make_qvalue_network(env, num_cells=[16]),
        action_spec=env.action_spec,
        compile=loss_compile,
    )
    collector: Any = SyncDataCollector(
        env,
        actor,
        frames_per_batch=frames_per_batch,
        total_frames=-1 if pad else total_frames,
        init_random_frames=init_random_frames,
    )
    if pad:
        collector = PaddedCollector(collector, pad)
    buffer = TensorDictReplayBuffer(
        storage=LazyTensorStorage(200), sampler=sampler or RandomSampler(), batch_size=16
    )
    if async_collection:
        collector = AsyncReplayCollector(collector, buffer)
    logger = RecordingLogger()
    trainer = SACTrainer(
        collector=collector,
        total_frames=total_frames,
        frame_skip=1,
        optim_steps_per_batch=optim_steps_per_batch,
        loss_module=loss,
        optimizer=torch.optim.Adam(loss.parameters(), **{"lr": LR, **(adam_options or {})}),
        replay_buffer=buffer,
        target_net_updater=None if tau is None else SoftUpdate(loss, tau=tau),
        logger=logger,
        log_interval=log_interval or frames_per_batch,
        progress_bar=False,
        seed=0,
        async_collection=async_collection,
        **kwargs,
    )
    return trainer, logger


def record_batches(trainer: Trainer) -> list[tuple[TensorDictBase, int]]:
    """Records each collected batch as the collector yielded it, with the trainer's frame count
    after it (filled in while the trainer runs)."""
    seen: list[tuple[TensorDictBase, int]] = []
    trainer.register_op(
        Stage.PRE_EPOCH, lambda batch: seen.append((batch.clone(), trainer.state.frames))
    )
    return seen
