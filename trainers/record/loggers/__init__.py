"""Loggers: one interface (:class:`Logger`) over CSV files, TensorBoard, W&B and MLflow.

Backends import their library (tensorboard, wandb, mlflow) only when a logger is created.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from trainers.record.loggers.common import Logger
from trainers.record.loggers.csv import CSVLogger
from trainers.record.loggers.mlflow import MLFlowLogger, sqlite_tracking_uri
from trainers.record.loggers.tensorboard import TensorboardLogger
from trainers.record.loggers.utils import generate_exp_name
from trainers.record.loggers.wandb import WandbLogger

__all__ = [
    "CSVLogger",
    "Logger",
    "MLFlowLogger",
    "TensorboardLogger",
    "WandbLogger",
    "generate_exp_name",
    "get_logger",
]


def get_logger(
    logger_type: str, logger_name: str | Path, experiment_name: str, **kwargs: Any
) -> Logger:
    """Creates a logger by backend name.

    Args:
        logger_type: ``"csv"``, ``"tensorboard"`` (alias ``"tb"``), ``"wandb"`` or ``"mlflow"``.
        logger_name: the folder the backend writes under: ``log_dir`` of CSV and TensorBoard,
            ``save_dir`` of W&B, and for MLflow the folder of the SQLite store
            ``<logger_name>/mlflow.db`` (unless ``tracking_uri`` is in ``kwargs``).
        experiment_name: the run's ``exp_name``.
        **kwargs: passed to the backend's constructor.

    Examples:
        >>> logger = get_logger("csv", "logs", generate_exp_name("PPO", "pendulum"))  # doctest: +SKIP
    """

    def mlflow() -> Logger:
        uri = kwargs.pop("tracking_uri", None) or sqlite_tracking_uri(logger_name)
        return MLFlowLogger(experiment_name, tracking_uri=uri, **kwargs)

    factories: dict[str, Callable[[], Logger]] = {
        "csv": lambda: CSVLogger(experiment_name, log_dir=logger_name, **kwargs),
        "tensorboard": lambda: TensorboardLogger(experiment_name, log_dir=logger_name, **kwargs),
        "tb": lambda: TensorboardLogger(experiment_name, log_dir=logger_name, **kwargs),
        "wandb": lambda: WandbLogger(experiment_name, save_dir=logger_name, **kwargs),
        "mlflow": mlflow,
    }
    if logger_type not in factories:
        raise ValueError(f"logger_type must be one of {list(factories)}, got {logger_type!r}")
    return factories[logger_type]()
