"""A logger that writes plain files: one CSV per scalar, a YAML of hyperparameters, video files."""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import torch
import yaml

from trainers.record.loggers.common import Logger
from trainers.record.loggers.utils import (
    check_video,
    encode_gif,
    flatten_hparams,
    safe_relpath,
    video_frames,
)

VIDEO_FORMATS = ("pt", "gif")


class CSVLogger(Logger):
    """Writes each scalar to its own CSV file; needs nothing beyond the standard library.

    Layout under ``<log_dir>/<exp_name>/`` (``exp_name`` sanitized like scalar names):

    * ``scalars/<name>.csv``: a ``step,value`` header, then one ``step,value`` row per call. A
      ``/`` in a name makes a subfolder (``train/loss`` -> ``scalars/train/loss.csv``); other
      characters outside ``[A-Za-z0-9._-]`` become ``_``. Two names that map to the same file
      raise ``ValueError``. Files stay open and are flushed after every call, so a crash loses
      nothing; an existing file is appended to (a resumed run continues it).
      :meth:`load_state_dict` first cuts each file back to the checkpoint: rows written after it
      (by a run killed before its next checkpoint) are dropped, so the resumed run writes them
      once.
    * ``hparams.yaml``: the flattened hyperparameters (rewritten by each :meth:`log_hparams`).
    * ``videos/<name>_<step>.pt`` (the uint8 tensor, ``torch.load``-able) or ``.gif``. A resumed
      run that logs a video at the same step overwrites the file.

    Args:
        exp_name: the run's folder name.
        log_dir: parent folder of the run; None means ``"csv_logs"``.
        video_format: ``"pt"`` (lossless tensor) or ``"gif"`` (viewable, 256 colours per frame).
        video_fps: frame rate of GIFs when :meth:`log_video` gets no ``fps``.

    Examples:
        >>> logger = CSVLogger("ppo_pendulum", log_dir="csv_logs")  # doctest: +SKIP
        >>> logger.log_scalars({"r_training": -6.1, "train/loss": 0.25}, step=1000)  # doctest: +SKIP
        >>> logger.close()  # doctest: +SKIP
    """

    def __init__(
        self,
        exp_name: str,
        log_dir: str | Path | None = None,
        video_format: str = "pt",
        video_fps: int = 30,
    ) -> None:
        super().__init__(exp_name, "csv_logs" if log_dir is None else log_dir)
        if video_format not in VIDEO_FORMATS:
            raise ValueError(f"video_format must be one of {VIDEO_FORMATS}, got {video_format!r}")
        if video_fps <= 0:
            raise ValueError(f"video_fps must be > 0, got {video_fps}")
        self.video_format = video_format
        self.video_fps = video_fps
        self.run_dir = self.log_dir / safe_relpath(exp_name)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._files: dict[str, tuple[IO[str], Any]] = {}  # name -> (open file, csv writer)
        self._names_by_path: dict[Path, str] = {}

    def scalar_path(self, name: str) -> Path:
        """Returns the CSV file that holds the scalar ``name``."""
        path = self.run_dir / "scalars" / safe_relpath(name)
        return path.with_name(f"{path.name}.csv")

    def log_scalars(self, values: Mapping[str, float], step: int | None = None) -> None:
        touched = []
        for name, value in values.items():
            file, writer = self._files.get(name) or self._open(name)
            writer.writerow((self._resolve_step(name, step), float(value)))
            touched.append(file)
        for file in touched:
            file.flush()

    def log_hparams(self, cfg: Mapping) -> None:
        text = yaml.safe_dump(flatten_hparams(cfg), sort_keys=False, allow_unicode=True)
        (self.run_dir / "hparams.yaml").write_text(text, encoding="utf-8")

    def log_video(
        self, name: str, video: torch.Tensor, step: int | None = None, fps: int | None = None
    ) -> None:
        check_video(video)
        path = self.run_dir / "videos" / safe_relpath(name)
        path = path.with_name(f"{path.name}_{self._resolve_step(name, step)}.{self.video_format}")
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.video_format == "pt":
            torch.save(video.detach().cpu(), path)
        else:
            path.write_bytes(
                encode_gif(video_frames(video), self.video_fps if fps is None else fps)
            )

    def close(self) -> None:
        for file, _ in self._files.values():
            file.close()
        self._files.clear()
        self._names_by_path.clear()

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restores :meth:`state_dict` and drops the rows written after it was taken.

        Each ``scalars/**/*.csv`` keeps the rows whose step is <= the last step the state holds
        for its name; a file of a name the state has never seen keeps only its header. Rows
        that do not parse (one cut short by a kill) are dropped too. A file that changes is
        rewritten atomically (a new file, then a rename), so a crash here loses nothing.
        """
        super().load_state_dict(state_dict)
        self.close()  # reopened, after the cut, by the next log_scalars
        last_steps = {self.scalar_path(name): step for name, step in self._last_step.items()}
        for path in sorted((self.run_dir / "scalars").rglob("*.csv")):
            _truncate_rows(path, last_steps.get(path))

    def _open(self, name: str) -> tuple[IO[str], Any]:
        path = self.scalar_path(name)
        other = self._names_by_path.setdefault(path, name)
        if other != name:
            raise ValueError(
                f"scalar names {other!r} and {name!r} both map to {path}; rename one of them"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        is_new = not path.exists() or path.stat().st_size == 0
        file = path.open("a", newline="", encoding="utf-8")
        writer = csv.writer(file)
        if is_new:
            writer.writerow(("step", "value"))
        self._files[name] = (file, writer)
        return file, writer


def _truncate_rows(path: Path, last_step: int | None) -> None:
    """Rewrites the ``step,value`` file ``path`` without its rows past ``last_step`` (None: all)."""
    text = path.read_text(encoding="utf-8")
    rows = list(csv.reader(text.splitlines()))
    header, body = rows[:1], rows[1:]
    kept = [row for row in body if last_step is not None and _keep_row(row, last_step)]
    if len(kept) == len(body) and text.endswith("\n"):  # a row cut short lacks its newline
        return
    temporary = path.with_name(f"{path.name}.tmp")
    with temporary.open("w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows(header + kept)
    os.replace(temporary, path)


def _keep_row(row: list[str], last_step: int) -> bool:
    """Whether ``row`` is a complete ``step,value`` row with ``step <= last_step``."""
    if len(row) != 2:
        return False
    try:
        step = int(row[0])
        float(row[1])
    except ValueError:
        return False
    return step <= last_step
