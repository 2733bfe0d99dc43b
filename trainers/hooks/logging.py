"""Hooks that turn batches and counters into logged scalars."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tensordict import TensorDictBase

from trainers import keys
from trainers.hooks.base import TrainerHookBase
from trainers.trainer.metrics import WINDOW_REDUCTIONS, WindowValue
from trainers.trainer.stages import Stage

if TYPE_CHECKING:
    from trainers.trainer.trainer import Trainer

_REDUCTIONS = ("mean", *WINDOW_REDUCTIONS)


class LogScalar(TrainerHookBase):
    """Logs a reduction (and optionally the std) of one batch entry.

    Frames marked invalid by ``("collector", "mask")`` are ignored. Values stay on their device:
    the trainer syncs once per log write. Returned names: ``logname`` and ``logname + "_std"``.

    Args:
        key: the entry to reduce, e.g. ``("next", "reward")``.
        logname: the logged name.
        log_pbar: also show the value on the progress bar.
        include_std: also log the standard deviation.
        reduction: one of ``mean``, ``max``, ``min``, ``sum``; over a log window of several
            batches, means are averaged and the others combined alike (the max of the maxima).

    Examples:
        >>> LogScalar(("next", "reward"), "r_training", log_pbar=True).register(trainer)
    """

    def __init__(
        self,
        key: str | tuple[str, ...] = keys.REWARD,
        logname: str = "r_training",
        log_pbar: bool = False,
        include_std: bool = True,
        reduction: str = "mean",
    ) -> None:
        if reduction not in _REDUCTIONS:
            raise ValueError(f"LogScalar reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.key = key
        self.logname = logname
        self.log_pbar = log_pbar
        self.include_std = include_std
        self.reduction = reduction

    def register(self, trainer: Trainer, name: str | None = None) -> None:
        del name
        trainer.register_op(Stage.PRE_STEPS_LOG, self)

    def __call__(self, batch: TensorDictBase) -> dict[str, Any] | None:
        value = batch.get(self.key, None)
        if value is None:
            return None
        value = value.float()
        mask = batch.get(keys.MASK, None)
        if mask is not None:
            value = value[mask]
        if value.numel() == 0:
            return None
        reduced = getattr(torch, self.reduction)(value)
        # A log window averages the batches' means, but takes the max of their maxima, etc.
        out: dict[str, Any] = {
            self.logname: reduced
            if self.reduction == "mean"
            else WindowValue(reduced, self.reduction)
        }
        if self.include_std and value.numel() > 1:
            out[f"{self.logname}_std"] = value.std()
        out["log_pbar"] = self.log_pbar
        return out


class CountFramesLog(TrainerHookBase):
    """Logs the number of frames collected so far as ``n_frames``.

    Examples:
        >>> CountFramesLog().register(trainer)
    """

    def __init__(self, log_pbar: bool = False) -> None:
        self.log_pbar = log_pbar
        self._trainer: Trainer | None = None

    def register(self, trainer: Trainer, name: str | None = None) -> None:
        del name
        self._trainer = trainer
        trainer.register_op(Stage.PRE_STEPS_LOG, self)

    def __call__(self, batch: TensorDictBase) -> dict[str, Any]:
        del batch
        frames = self._trainer.state.frames if self._trainer is not None else 0
        return {"n_frames": frames, "log_pbar": self.log_pbar}


class UTDRHook(TrainerHookBase):
    """Logs the update-to-data ratio as ``utd_ratio``: optimization steps per collected frame
    since the previous logger write (not a mean of running ratios, which lags behind).

    Examples:
        >>> UTDRHook(trainer).register(trainer)
    """

    def __init__(self, trainer: Trainer | None = None) -> None:
        self._trainer = trainer
        self._seen = (0, 0)  # (optim_steps, frames) at the previous batch

    def register(self, trainer: Trainer, name: str | None = None) -> None:
        del name
        self._trainer = trainer
        trainer.register_op(Stage.SETUP, self._start)  # after a checkpoint is loaded
        trainer.register_op(Stage.POST_STEPS_LOG, self)

    def _start(self) -> None:
        if self._trainer is not None:
            self._seen = (self._trainer.state.optim_steps, self._trainer.state.frames)

    def __call__(self, batch: TensorDictBase) -> dict[str, Any] | None:
        del batch
        trainer = self._trainer
        if trainer is None:
            return None
        steps, frames = trainer.state.optim_steps, trainer.state.frames
        new_steps, new_frames = steps - self._seen[0], frames - self._seen[1]
        self._seen = (steps, frames)
        if new_frames <= 0:
            return None
        # A (sum, count) pair: the logged value is steps / frames over the whole log window.
        return {"utd_ratio": (float(new_steps), float(new_frames)), "log_pbar": False}


class EarlyStopping(TrainerHookBase):
    """Stops training when a logged metric reaches a target or stops improving.

    Checked after each logger write (``trainer.logged``). Stops through
    ``trainer.request_stop``, so the final checkpoint and shutdown hooks still run.

    Args:
        metric: a logged name, e.g. ``"episode_return"``.
        threshold: stop once the metric is at least (``mode="max"``) / at most this value.
        patience: stop after this many log writes without an improvement by ``min_delta``.
        mode: ``"max"`` or ``"min"``.
        min_delta: the smallest change that counts as an improvement.

    Examples:
        >>> EarlyStopping("episode_return", threshold=-200.0).register(trainer)
    """

    def __init__(
        self,
        metric: str,
        *,
        threshold: float | None = None,
        patience: int | None = None,
        mode: str = "max",
        min_delta: float = 0.0,
    ) -> None:
        if mode not in ("max", "min"):
            raise ValueError(f"EarlyStopping mode must be 'max' or 'min', got {mode!r}")
        if threshold is None and patience is None:
            raise ValueError("EarlyStopping needs a threshold, a patience, or both")
        if patience is not None and patience < 1:
            raise ValueError(f"EarlyStopping patience must be >= 1, got {patience}")
        self.metric = metric
        self.threshold = threshold
        self.patience = patience
        self.sign = 1.0 if mode == "max" else -1.0
        self.min_delta = min_delta
        self.best: float | None = None
        self.stale_logs = 0
        self._seen_log_at = -1
        self._trainer: Trainer | None = None

    def register(self, trainer: Trainer, name: str | None = "early_stopping") -> None:
        self._trainer = trainer
        trainer.register_module(name or "early_stopping", self)
        trainer.register_op(Stage.POST_EPOCH, self)

    def __call__(self) -> None:
        trainer = self._trainer
        if trainer is None or trainer.state.frames_at_last_log == self._seen_log_at:
            return
        self._seen_log_at = trainer.state.frames_at_last_log
        value = trainer.logged.get(self.metric)
        if value is None:
            return
        if self.threshold is not None and self.sign * (value - self.threshold) >= 0:
            trainer.request_stop(f"early stopping: {self.metric}={value:.4g} reached target")
            return
        if self.best is None or self.sign * (value - self.best) > self.min_delta:
            self.best, self.stale_logs = value, 0
            return
        self.stale_logs += 1
        if self.patience is not None and self.stale_logs >= self.patience:
            trainer.request_stop(
                f"early stopping: {self.metric} did not improve for {self.patience} logs"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "stale_logs": self.stale_logs, "seen": self._seen_log_at}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict["best"]
        self.stale_logs = state_dict["stale_logs"]
        self._seen_log_at = state_dict["seen"]


class LogEpisodeStats(TrainerHookBase):
    """Logs ``episode_return`` and ``episode_length``: means over the episodes that ended
    since the last logger write (not over batches), read at the frames where ``("next",
    "done")`` is true from ``("next", "episode_reward")`` and ``("next", "step_count")``.

    Examples:
        >>> LogEpisodeStats().register(trainer)
    """

    def __init__(self, log_pbar: bool = True, stage: Stage | str = Stage.PRE_STEPS_LOG) -> None:
        self.log_pbar = log_pbar
        self.stage = Stage.parse(stage)

    def register(self, trainer: Trainer, name: str | None = None) -> None:
        del name
        trainer.register_op(self.stage, self)

    def __call__(self, batch: TensorDictBase) -> dict[str, Any] | None:
        done = batch.get(keys.DONE, None)
        if done is None:
            return None
        mask = batch.get(keys.MASK, None)
        if mask is not None:
            done = done & mask.unsqueeze(-1)
        done = done.float()
        count = done.sum()
        out: dict[str, Any] = {"log_pbar": self.log_pbar}
        episode_return = batch.get(keys.EPISODE_REWARD, None)
        if episode_return is not None:
            out["episode_return"] = ((episode_return * done).sum(), count)
        episode_length = batch.get(keys.STEP_COUNT, None)
        if episode_length is not None:
            out["episode_length"] = ((episode_length * done).sum(), count)
        return out


class LogNorm(TrainerHookBase):
    """Logs the mean Euclidean norm (over the last dimension) of a batch entry.

    Args:
        key: the entry, e.g. ``"action"``.
        logname: the logged name, e.g. ``"action_norm"``.
        include_std: also log the standard deviation of the norms.

    Examples:
        >>> LogNorm("action", "action_norm").register(trainer)
    """

    def __init__(self, key: str | tuple[str, ...], logname: str, include_std: bool = True) -> None:
        self.key = key
        self.logname = logname
        self.include_std = include_std

    def register(self, trainer: Trainer, name: str | None = None) -> None:
        del name
        trainer.register_op(Stage.PRE_STEPS_LOG, self)

    def __call__(self, batch: TensorDictBase) -> dict[str, Any] | None:
        value = batch.get(self.key, None)
        if value is None:
            return None
        value = value.float()
        norms = value.norm(dim=-1) if value.ndim > batch.ndim else value.abs()
        mask = batch.get(keys.MASK, None)
        if mask is not None:
            norms = norms[mask]
        out: dict[str, Any] = {self.logname: norms.mean(), "log_pbar": False}
        if self.include_std and norms.numel() > 1:
            out[f"{self.logname}_std"] = norms.std()
        return out


class EpisodeWriter(TrainerHookBase):
    """Appends one CSV row ``frames,return,length`` per finished episode to ``path``.

    The per-episode record that learning curves and "mean of the last 100 episodes" need;
    ``frames`` is the trainer's frame count at the end of the batch the episode ended in.
    Padding frames (``("collector", "mask")`` false) are skipped, as in
    :class:`LogEpisodeStats`. It syncs once per batch. On resume, rows written after the
    checkpoint are dropped, so a resumed run's file matches an uninterrupted one.

    Examples:
        >>> EpisodeWriter("episodes.csv").register(trainer)
    """

    HEADER = "frames,return,length\n"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows = 0
        self._trainer: Trainer | None = None

    def register(self, trainer: Trainer, name: str | None = "episode_writer") -> None:
        self._trainer = trainer
        trainer.register_module(name or "episode_writer", self)
        trainer.register_op(Stage.PRE_STEPS_LOG, self)

    def __call__(self, batch: TensorDictBase) -> None:
        done = batch.get(keys.DONE, None)
        returns = batch.get(keys.EPISODE_REWARD, None)
        lengths = batch.get(keys.STEP_COUNT, None)
        if done is None or returns is None or lengths is None:
            return
        mask = done.reshape(-1)
        valid = batch.get(keys.MASK, None)
        if valid is not None:
            mask = mask & valid.reshape(-1)
        ended = torch.stack(
            [returns.reshape(-1)[mask].double(), lengths.reshape(-1)[mask].double()]
        )
        if ended.shape[1] == 0:
            return
        frames = self._trainer.state.frames if self._trainer is not None else 0
        if self.rows == 0:
            self.path.write_text(self.HEADER)
        with open(self.path, "a") as f:
            for episode_return, length in ended.T.tolist():
                f.write(f"{frames},{episode_return:.6g},{int(length)}\n")
        self.rows += ended.shape[1]

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = state_dict["rows"]
        if self.path.exists():
            lines = self.path.read_text().splitlines(keepends=True)
            self.path.write_text("".join(lines[: self.rows + 1]))
