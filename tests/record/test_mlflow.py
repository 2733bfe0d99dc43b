"""MLFlowLogger on a local SQLite store, read back with MlflowClient."""

from __future__ import annotations

import sys

import pytest
import torch

from trainers.record.loggers import MLFlowLogger, get_logger

# mlflow's SQLAlchemy store uses an option SQLAlchemy deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:mlflow.*")


def test_mlflow_values_read_back_and_resume_same_run(tmp_path):
    from mlflow.tracking import MlflowClient

    logger = get_logger("mlflow", tmp_path, "exp")
    assert isinstance(logger, MLFlowLogger)
    logger.log_hparams({"optimizer": {"lr": 3e-4}, "env": "Pendulum-v1", "seed": None})
    logger.log_scalars({"r_training": -5.25, "train/loss": 0.5}, step=100)
    logger.log_scalars({"r_training": 2.0, "train/loss": 0.25}, step=200)
    logger.log_scalar("r_training", 4.0)  # step None: one past the last step of that name
    video = torch.zeros(3, 3, 8, 8, dtype=torch.uint8)
    logger.log_video("eval/video", video, step=200)
    state = logger.state_dict()
    logger.close()

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(state["run_id"])
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "exp"
    history = client.get_metric_history(run.info.run_id, "r_training")
    assert [(m.step, m.value) for m in history] == [(100, -5.25), (200, 2.0), (201, 4.0)]
    loss = client.get_metric_history(run.info.run_id, "train/loss")
    assert [(m.step, m.value) for m in loss] == [(100, 0.5), (200, 0.25)]
    assert run.data.params == {"optimizer.lr": "0.0003", "env": "Pendulum-v1", "seed": "None"}
    (artifact,) = client.list_artifacts(run.info.run_id, "videos/eval/video")
    assert artifact.path == "videos/eval/video/200.gif"
    assert (tmp_path / "artifacts").is_dir()  # next to the database, not under the cwd

    resumed = get_logger("mlflow", tmp_path, "exp")
    resumed.load_state_dict(state)
    resumed.log_scalar("r_training", 3.0, step=300)
    with pytest.warns(UserWarning, match=r"keeps its first values of \['env'\]"):
        resumed.log_hparams({"env": "HalfCheetah-v4", "total_frames": 10})
    resumed.close()
    run = client.get_run(state["run_id"])
    history = client.get_metric_history(run.info.run_id, "r_training")
    assert [m.step for m in history] == [100, 200, 201, 300]
    assert run.data.params["env"] == "Pendulum-v1" and run.data.params["total_frames"] == "10"
    assert len(client.search_runs([run.info.experiment_id])) == 1


def test_mlflow_missing_tells_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)  # what an absent package gives
    with pytest.raises(ImportError, match=r"pip install 'trainrl\[mlflow\]'"):
        MLFlowLogger("exp", tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
