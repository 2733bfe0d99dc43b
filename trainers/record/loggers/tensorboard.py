"""A logger writing TensorBoard event files through ``torch.utils.tensorboard``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from trainers.record.loggers.common import Logger
from trainers.record.loggers.utils import encode_gif, flatten_hparams, safe_relpath, video_frames

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter


class TensorboardLogger(Logger):
    """Writes scalars, hyperparameters and videos to ``<log_dir>/<exp_name>/events.out.tfevents.*``.

    * Scalars: one ``add_scalar`` per value, tagged with its name (``/`` groups them in the UI).
      Each :meth:`log_scalars` call flushes the event file (one call per ``log_interval``
      frames, so the cost is negligible), so a crash or kill loses none of it. A resumed run
      writes a new event file in the same folder, and TensorBoard joins them into one curve. That file starts with a ``purge_step`` (one past the last step
      in the state given to :meth:`load_state_dict`): TensorBoard discards the earlier files'
      events at and after it, so what a killed run logged after its last checkpoint is shown
      once, as the resumed run logs it again.
    * Hyperparameters: written twice, in the same run folder. The HParams plugin summary shows
      them in the HPARAMS tab; a Markdown table under the text tag ``hparams`` shows them in the
      TEXT tab. :meth:`state_dict` remembers them: a resumed run with the same ones does not
      write them again, one with changed ones (an override on resume) writes them at its first
      step, so the TEXT tab shows from which step on they held.
    * Videos: encoded as an animated GIF with Pillow and written as an image summary, which the
      IMAGES tab plays. This is what ``SummaryWriter.add_video`` does, without its moviepy
      dependency.

    Args:
        exp_name: the run's folder name (characters outside ``[A-Za-z0-9._-]`` become ``_``; a
            ``/`` makes subfolders).
        log_dir: parent folder of the run (point ``tensorboard --logdir`` at it).

    Examples:
        >>> logger = TensorboardLogger("sac_walker2d", log_dir="tb_logs")  # doctest: +SKIP
        >>> logger.log_scalars({"r_training": 1.5}, step=1000)  # doctest: +SKIP
        >>> logger.close()  # doctest: +SKIP
    """

    def __init__(self, exp_name: str, log_dir: str | Path = "tb_logs") -> None:
        super().__init__(exp_name, log_dir)
        self.run_dir = self.log_dir / safe_relpath(exp_name)
        self._writer: SummaryWriter | None = None
        self._purge_step: int | None = None
        self._first_step = 0  # of this attempt: 0, or the purge step of a resumed run
        self._hparams: dict[str, bool | int | float | str] | None = None  # the last logged

    @property
    def experiment(self) -> SummaryWriter:
        """The ``SummaryWriter``, created (with its event file) on first access.

        Created late so that :meth:`load_state_dict` can set its ``purge_step`` first.
        """
        if self._writer is None:
            # imported here: torch.utils.tensorboard takes about a second to import
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(log_dir=str(self.run_dir), purge_step=self._purge_step)
            self._purge_step = None
        return self._writer

    def log_scalars(self, values: Mapping[str, float], step: int | None = None) -> None:
        for name, value in values.items():
            self.experiment.add_scalar(name, float(value), self._resolve_step(name, step))
        self.experiment.flush()

    def log_hparams(self, cfg: Mapping) -> None:
        from torch.utils.tensorboard.summary import hparams

        flat = flatten_hparams(cfg)
        if flat == self._hparams:
            return  # a resumed run's earlier event files hold them
        # `SummaryWriter.add_hparams` would write to a new sub-run; these three summaries keep the
        # hyperparameters in this run's folder.
        file_writer = self.experiment._get_file_writer()
        for summary in hparams(flat, {}):
            file_writer.add_summary(summary, self._first_step)
        rows = "\n".join(f"| {_cell(key)} | {_cell(value)} |" for key, value in flat.items())
        table = f"| name | value |\n| --- | --- |\n{rows}"
        self.experiment.add_text("hparams", table, self._first_step)
        self._hparams = flat

    def log_video(
        self, name: str, video: torch.Tensor, step: int | None = None, fps: int | None = None
    ) -> None:
        from tensorboard.compat.proto.summary_pb2 import Summary

        frames = video_frames(video)
        _, height, width, channels = frames.shape
        image = Summary.Image(
            height=height,
            width=width,
            colorspace=channels,
            encoded_image_string=encode_gif(frames, self.video_fps if fps is None else fps),
        )
        summary = Summary(value=[Summary.Value(tag=name, image=image)])
        self.experiment._get_file_writer().add_summary(summary, self._resolve_step(name, step))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restores :meth:`state_dict`; the next event file purges what was logged after it.

        The purge step is one past the largest step in the state (0 when it holds none), so
        TensorBoard keeps the earlier events up to the checkpoint and drops the rest, in every
        tag. A writer already open here is closed first.
        """
        super().load_state_dict(state_dict)
        self.close()
        self._purge_step = self._first_step = max(self._last_step.values(), default=-1) + 1
        self._hparams = state_dict.get("hparams")

    def state_dict(self) -> dict[str, Any]:
        """The base state, plus the hyperparameters logged last (``None`` before any)."""
        return {**super().state_dict(), "hparams": self._hparams}


def _cell(value: object) -> str:
    """A Markdown table cell; an unescaped ``|`` inside it would end the cell."""
    return str(value).replace("|", r"\|")
