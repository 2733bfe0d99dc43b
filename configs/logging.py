"""Schemas of the ``logger`` group: ``csv`` (default), ``tensorboard``, ``wandb``, ``mlflow``.

Paths are relative to the run directory (Hydra changes into it).
"""

from __future__ import annotations

from dataclasses import dataclass

from configs.validation import checked, gt, one_of


@dataclass(kw_only=True)
class CSVLoggerConfig:
    _target_: str = "trainers.record.loggers.CSVLogger"
    exp_name: str = "run"
    log_dir: str = "logs"
    video_format: str = checked("pt", one_of("pt", "gif"))
    video_fps: int = checked(30, gt(0))


@dataclass(kw_only=True)
class TensorboardLoggerConfig:
    _target_: str = "trainers.record.loggers.TensorboardLogger"
    exp_name: str = "run"
    log_dir: str = "tb_logs"


@dataclass(kw_only=True)
class WandbLoggerConfig:
    """W&B; ``offline: true`` (the default here) needs no account and no network."""

    _target_: str = "trainers.record.loggers.WandbLogger"
    exp_name: str = "run"
    project: str = "trainrl"
    offline: bool = True  # runs sync later with `wandb sync`; set false to stream live
    save_dir: str = "."
    id: str | None = None


@dataclass(kw_only=True)
class MLFlowLoggerConfig:
    """MLflow with a local SQLite store (no server); needs the ``mlflow`` extra.

    ``project`` is the MLflow experiment (the run is then named ``exp_name``); None puts the run
    in the experiment ``exp_name``, under a generated name.
    """

    _target_: str = "trainers.record.loggers.MLFlowLogger"
    exp_name: str = "run"
    project: str | None = None
    tracking_uri: str | None = None
