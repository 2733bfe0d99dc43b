"""The interface every logger backend implements."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import torch

DEFAULT_VIDEO_FPS = 30
_LoggerT = TypeVar("_LoggerT", bound="Logger")


class Logger(abc.ABC):
    """Writes scalars, hyperparameters and videos of one run to a backend.

    The trainer calls :meth:`log_scalars` once per log interval with Python floats and
    ``step=frames``. Backends keep what a resumed run needs to continue its curves in
    :meth:`state_dict` (the trainer stores it in its checkpoint), including the last step logged
    under each name. A run killed between two checkpoints has logged past the one it resumes
    from; loading that state makes CSV and TensorBoard drop (or hide) what was logged under a
    name after its last step in the state, so the resumed run's values appear once. W&B and
    MLflow cannot remove logged points: see their classes.

    ``step=None`` lets the backend choose: CSV, TensorBoard and MLflow use one past the last step
    logged under that name (0 for the first value), which :meth:`state_dict` remembers; W&B
    advances its own run step at every call.

    Subclasses implement :meth:`log_scalars`, :meth:`log_hparams`, :meth:`log_video` and
    :meth:`close`. A logger is also a context manager that closes itself.

    Args:
        exp_name: the run's name (see :func:`~trainers.record.loggers.generate_exp_name`).
        log_dir: the folder the backend writes under.

    Examples:
        >>> from trainers.record.loggers import CSVLogger
        >>> with CSVLogger("demo", log_dir=tmp_path) as logger:  # doctest: +SKIP
        ...     logger.log_scalars({"r_training": -5.2, "loss_actor": 0.3}, step=1000)
        ...     logger.log_hparams({"optimizer": {"lr": 3e-4}})
    """

    def __init__(self, exp_name: str, log_dir: str | Path) -> None:
        if not exp_name:
            raise ValueError(f"exp_name must be a non-empty string, got {exp_name!r}")
        self.exp_name = exp_name
        self.log_dir = Path(log_dir)
        self.video_fps = DEFAULT_VIDEO_FPS
        self._last_step: dict[str, int] = {}

    def log_scalar(self, name: str, value: float, step: int | None = None) -> None:
        """Logs one scalar; see :meth:`log_scalars`."""
        self.log_scalars({name: value}, step=step)

    @abc.abstractmethod
    def log_scalars(self, values: Mapping[str, float], step: int | None = None) -> None:
        """Logs several scalars at the same step, in one write to the backend.

        Args:
            values: metric name -> value (a Python float; numbers that ``float()`` accepts work).
            step: the x-axis value (the trainer passes frames); see the class docstring for None.
        """

    @abc.abstractmethod
    def log_hparams(self, cfg: Mapping) -> None:
        """Logs a run's configuration as hyperparameters.

        Nested mappings are flattened to dotted keys (``{"optim": {"lr": 1e-3}}`` ->
        ``optim.lr``); values that are not bool, int, float or str are stringified.
        """

    @abc.abstractmethod
    def log_video(
        self, name: str, video: torch.Tensor, step: int | None = None, fps: int | None = None
    ) -> None:
        """Logs a video.

        Args:
            name: the video's tag.
            video: uint8 tensor ``[T, C, H, W]``, or ``[B, T, C, H, W]`` (``B`` videos tiled in a
                grid); ``C`` is 1 or 3.
            step: the x-axis value; see the class docstring for None.
            fps: frames per second; None uses ``self.video_fps`` (30 unless the backend sets it).
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Flushes and releases the backend (files, runs). Safe to call twice."""

    def state_dict(self) -> dict[str, Any]:
        """What a resumed run needs to continue this run's curves (plain Python values)."""
        return {"last_step": dict(self._last_step)}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restores :meth:`state_dict`; call before logging anything in the resumed run.

        Backends that can also drop what they wrote after ``state_dict`` was taken do it here.
        """
        self._last_step = dict(state_dict.get("last_step", {}))

    def _resolve_step(self, name: str, step: int | None) -> int:
        """Returns ``step``, or one past the last step logged under ``name`` when it is None."""
        resolved = self._last_step.get(name, -1) + 1 if step is None else int(step)
        self._last_step[name] = resolved
        return resolved

    def __enter__(self: _LoggerT) -> _LoggerT:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(exp_name={self.exp_name!r}, log_dir={str(self.log_dir)!r})"
