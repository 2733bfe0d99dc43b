"""A logger writing to Weights & Biases, online or offline (no network needed)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from trainers.record.loggers.common import Logger
from trainers.record.loggers.utils import encode_gif, flatten_hparams, video_frames


class WandbLogger(Logger):
    """Logs to a W&B run; ``offline=True`` (or ``WANDB_MODE=offline``) needs no network or account.

    The run starts at the first call that needs it (a ``log_*`` call or :attr:`experiment`), so
    :meth:`load_state_dict` can pick the run to resume before anything is written. It is created
    with ``wandb.init(name=exp_name, project=project, dir=save_dir, id=id, resume="allow",
    reinit="create_new", settings=wandb.Settings(quiet=True), **kwargs)``: several loggers may
    be open in one process, and wandb prints only where the run is stored. ``kwargs`` override
    any of these (``entity``, ``group``, ``tags``, ``settings``, ...).

    * Offline runs are stored in ``<save_dir>/wandb/offline-run-<time>-<id>/run-<id>.wandb``;
      ``wandb sync <that folder>`` uploads them later.
    * Scalars: one ``run.log(values, step=step)`` per call. W&B's step must grow: a value at a
      step below the run's current step is dropped by wandb (with a warning). W&B cannot delete
      logged steps, so after a kill the values the killed run logged after its last checkpoint
      stay, and the resumed run's values for those same steps are dropped.
    * Hyperparameters: ``run.config.update(flat, allow_val_change=True)``.
    * Videos: encoded as a GIF with Pillow (no moviepy) and logged as ``wandb.Video``.
    * :meth:`state_dict` holds the run id; a resumed trainer continues the same run
      (online: the same run page; offline: a new folder with the same id, merged by ``wandb sync``).

    Args:
        exp_name: the run's display name.
        offline: True forces ``mode="offline"``; False uses ``WANDB_MODE`` as it is when the run
            starts, else wandb's own choice (``wandb offline`` in the folder, online).
        save_dir: folder under which wandb creates its ``wandb/`` folder; None: wandb's default
            (``WANDB_DIR`` or the working directory).
        id: the run id, to resume a known run; None: a new random id.
        project: the W&B project; None: wandb's default (``WANDB_PROJECT`` or "uncategorized").
        **kwargs: passed to ``wandb.init``.

    Examples:
        >>> logger = WandbLogger("ppo_pendulum", offline=True, save_dir="wandb_logs")  # doctest: +SKIP
        >>> logger.log_scalars({"r_training": -6.0}, step=1000)  # doctest: +SKIP
        >>> logger.close()  # doctest: +SKIP
    """

    def __init__(
        self,
        exp_name: str,
        offline: bool = False,
        save_dir: str | Path | None = None,
        id: str | None = None,
        project: str | None = None,
        **kwargs: Any,
    ) -> None:
        import wandb  # imported here: it is slow to import and only this backend needs it

        super().__init__(exp_name, "." if save_dir is None else save_dir)
        self.offline = offline
        self.save_dir = save_dir
        self.id = id
        self.project = project
        self._init_kwargs = kwargs
        self._wandb = wandb
        self._run: Any = None

    @property
    def experiment(self) -> Any:
        """The ``wandb.Run``, started on first access."""
        if self._run is None:
            self._run = self._start()
        return self._run

    def _start(self) -> Any:
        if self.save_dir is not None:
            Path(self.save_dir).mkdir(parents=True, exist_ok=True)
        init_kwargs: dict[str, Any] = {
            "name": self.exp_name,
            "project": self.project,
            "dir": None if self.save_dir is None else str(self.save_dir),
            "id": self.id,
            "resume": "allow",
            # wandb reads WANDB_MODE once per process; reading it here honours later changes.
            "mode": "offline" if self.offline else os.environ.get("WANDB_MODE"),
            "reinit": "create_new",
            "settings": self._wandb.Settings(quiet=True),
            **self._init_kwargs,
        }
        run = self._wandb.init(**init_kwargs)
        self.id = run.id
        return run

    def log_scalars(self, values: Mapping[str, float], step: int | None = None) -> None:
        self.experiment.log(
            {name: float(value) for name, value in values.items()},
            step=None if step is None else int(step),
        )

    def log_hparams(self, cfg: Mapping) -> None:
        self.experiment.config.update(flatten_hparams(cfg), allow_val_change=True)

    def log_video(
        self, name: str, video: torch.Tensor, step: int | None = None, fps: int | None = None
    ) -> None:
        gif = encode_gif(video_frames(video), self.video_fps if fps is None else fps)
        # wandb copies the file into the run folder during `log`, so a temporary file suffices.
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "video.gif"
            path.write_bytes(gif)
            self.experiment.log(
                {name: self._wandb.Video(str(path), format="gif")},
                step=None if step is None else int(step),
            )

    def close(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "id": self.id}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Continues the run ``state_dict["id"]``; a run already started here is finished first."""
        super().load_state_dict(state_dict)
        run_id = state_dict.get("id")
        if run_id is None or run_id == self.id:
            return
        self.close()
        self.id = run_id
