"""A logger writing to an MLflow tracking store (a local SQLite file by default)."""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from trainers.record.loggers.common import Logger
from trainers.record.loggers.utils import encode_gif, flatten_hparams, safe_relpath, video_frames

DEFAULT_LOG_DIR = "mlflow_logs"
_SQLITE_PREFIX = "sqlite:///"
_PARAMS_PER_BATCH = 100  # MLflow's limit on params in one log_batch call


def sqlite_tracking_uri(log_dir: str | Path) -> str:
    """Returns the URI of the SQLite store ``<log_dir>/mlflow.db`` (absolute)."""
    return f"{_SQLITE_PREFIX}{(Path(log_dir).resolve() / 'mlflow.db').as_posix()}"


class MLFlowLogger(Logger):
    """Logs to one MLflow run of an experiment; needs ``pip install trainrl[mlflow]``.

    The experiment is ``project`` (W&B's word for the same grouping), or ``exp_name`` when no
    project is given. With a project, ``exp_name`` names the run; without one, runs get MLflow's
    generated names.

    MLflow 3 refuses the plain-folder store (``file:./mlruns``) unless
    ``MLFLOW_ALLOW_FILE_STORE=true``, so the default store is a SQLite file that needs no server:
    ``sqlite:///<abs path>/mlflow_logs/mlflow.db``. With a SQLite store, a newly created experiment
    keeps its artifacts (videos) in ``artifacts/`` next to the database instead of MLflow's
    default ``./mlruns`` under the working directory. ``mlflow ui --backend-store-uri <uri>``
    shows the runs.

    The run starts at the first call that needs it, so :meth:`load_state_dict` can pick the run to
    resume first.

    * Scalars: one ``MlflowClient.log_batch`` per call. MLflow keeps every point and cannot
      delete one: after a kill, each step the killed run logged after its last checkpoint has
      two points in the history, the killed run's and the resumed run's.
    * Hyperparameters: params (strings), 100 per batch. MLflow params are immutable: when a
      resumed run logs a key again with a different value, the first value is kept and a warning
      names the keys.
    * Videos: GIF artifacts ``videos/<name>/<step>.gif``.
    * :meth:`state_dict` holds the run id; a resumed trainer continues the same run.

    Args:
        exp_name: the run's name when ``project`` is set; else the MLflow experiment.
        tracking_uri: the tracking store (``sqlite:///...``, ``http://host:5000``, ...); None: the
            SQLite file above.
        run_id: continue this run instead of starting a new one.
        tags: tags of a new run.
        project: the MLflow experiment (created if missing); None: ``exp_name``.

    Examples:
        >>> logger = MLFlowLogger("ppo_pendulum")  # doctest: +SKIP
        >>> logger = MLFlowLogger("ppo_seed0", project="pendulum")  # doctest: +SKIP
        >>> logger.log_scalars({"r_training": -6.0}, step=1000)  # doctest: +SKIP
        >>> logger.close()  # doctest: +SKIP
    """

    def __init__(
        self,
        exp_name: str,
        tracking_uri: str | None = None,
        run_id: str | None = None,
        tags: Mapping[str, str] | None = None,
        project: str | None = None,
    ) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError as error:
            raise ImportError(
                "MLFlowLogger needs mlflow, an optional dependency: pip install 'trainrl[mlflow]'"
            ) from error
        if project == "":
            raise ValueError("project must be a non-empty MLflow experiment name or None")
        if tracking_uri is None:
            tracking_uri = sqlite_tracking_uri(DEFAULT_LOG_DIR)
        db_dir = _sqlite_dir(tracking_uri)
        super().__init__(exp_name, "." if db_dir is None else db_dir)
        if db_dir is not None:
            db_dir.mkdir(parents=True, exist_ok=True)
        self.tracking_uri = tracking_uri
        self.tags = dict(tags or {})
        self.project = project
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self._resume_id = run_id  # the run to continue when the logger starts
        self._active_id: str | None = None

    @property
    def run_id(self) -> str:
        """The id of the run, started (or resumed) on first access."""
        if self._active_id is None:
            self._active_id = self._start()
        return self._active_id

    def _start(self) -> str:
        if self._resume_id is not None:
            self.client.update_run(self._resume_id, status="RUNNING")
            return self._resume_id
        run_name = None if self.project is None else self.exp_name
        run = self.client.create_run(self._experiment_id(), tags=self.tags, run_name=run_name)
        return run.info.run_id

    def _experiment_id(self) -> str:
        from mlflow.exceptions import MlflowException

        name = self.exp_name if self.project is None else self.project
        experiment = self.client.get_experiment_by_name(name)
        if experiment is not None:
            return experiment.experiment_id
        artifacts = None if _sqlite_dir(self.tracking_uri) is None else self.log_dir / "artifacts"
        try:
            return self.client.create_experiment(
                name,
                artifact_location=None if artifacts is None else artifacts.resolve().as_uri(),
            )
        except MlflowException:  # another process of a sweep created it in between
            experiment = self.client.get_experiment_by_name(name)
            if experiment is None:
                raise
            return experiment.experiment_id

    def log_scalars(self, values: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        metrics = [
            Metric(name, float(value), timestamp, self._resolve_step(name, step))
            for name, value in values.items()
        ]
        self.client.log_batch(self.run_id, metrics=metrics)

    def log_hparams(self, cfg: Mapping) -> None:
        from mlflow.entities import Param

        logged = self.client.get_run(self.run_id).data.params
        new = {key: str(value) for key, value in flatten_hparams(cfg).items()}
        changed = sorted(key for key, value in new.items() if logged.get(key, value) != value)
        if changed:
            warnings.warn(
                f"MLflow params are immutable; run {self.run_id} keeps its first values of "
                f"{changed}",
                stacklevel=2,
            )
        params = [Param(key, value) for key, value in new.items() if key not in logged]
        for start in range(0, len(params), _PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=params[start : start + _PARAMS_PER_BATCH])

    def log_video(
        self, name: str, video: torch.Tensor, step: int | None = None, fps: int | None = None
    ) -> None:
        gif = encode_gif(video_frames(video), self.video_fps if fps is None else fps)
        artifact_dir = Path("videos", safe_relpath(name)).as_posix()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{self._resolve_step(name, step)}.gif"
            path.write_bytes(gif)
            self.client.log_artifact(self.run_id, str(path), artifact_path=artifact_dir)

    def close(self) -> None:
        if self._active_id is not None:
            self.client.set_terminated(self._active_id)
            self._resume_id, self._active_id = self._active_id, None

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "run_id": self._active_id or self._resume_id}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Continues the run ``state_dict["run_id"]``; a run already started here is ended first."""
        super().load_state_dict(state_dict)
        run_id = state_dict.get("run_id")
        if run_id is None or run_id == (self._active_id or self._resume_id):
            return
        self.close()
        self._resume_id = run_id


def _sqlite_dir(tracking_uri: str) -> Path | None:
    """The folder of a ``sqlite:///`` store's database file, None for other stores."""
    if not tracking_uri.startswith(_SQLITE_PREFIX):
        return None
    return Path(tracking_uri[len(_SQLITE_PREFIX) :]).parent
