"""MLFlowLogger on a local SQLite store, read back with MlflowClient."""

from __future__ import annotations

import sys

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate

import configs  # noqa: F401  (registers the schemas)
from tests.integration.runner import ROOT
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


def _client(tmp_path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


def _run_of(logger: MLFlowLogger, tmp_path):
    """Logs one value, closes the logger and returns its run read back from the store."""
    logger.log_scalar("x", 1.0, step=0)
    logger.close()
    return _client(tmp_path).get_run(logger.state_dict()["run_id"])


def test_mlflow_project_is_the_experiment_and_exp_name_the_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = _run_of(MLFlowLogger("seed0", tracking_uri=uri, project="pendulum"), tmp_path)
    client = _client(tmp_path)
    assert client.get_experiment(run.info.experiment_id).name == "pendulum"
    assert run.info.run_name == "seed0"
    assert client.get_experiment_by_name("seed0") is None
    with pytest.raises(ValueError, match="project must be a non-empty MLflow experiment name"):
        MLFlowLogger("seed0", tracking_uri=uri, project="")


def _compose_logger(*overrides: str):
    with initialize_config_dir(str(ROOT / "conf"), version_base=None):
        return compose("ppo", overrides=list(overrides)).logger


def test_logger_project_override_reaches_the_mlflow_logger(tmp_path):
    node = _compose_logger("logger=mlflow", "logger.project=pendulum-sweep")
    logger = instantiate(node, tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert isinstance(logger, MLFlowLogger) and logger.project == "pendulum-sweep"
    run = _run_of(logger, tmp_path)
    assert _client(tmp_path).get_experiment(run.info.experiment_id).name == "pendulum-sweep"
    assert run.info.run_name == "ppo_Pendulum-v1"  # logger.exp_name of conf/ppo.yaml


@pytest.mark.parametrize("backend", ["csv", "tensorboard"])
def test_logger_project_is_refused_where_the_backend_has_no_projects(backend):
    with pytest.raises(ConfigCompositionException, match=r"Could not override 'logger\.project'"):
        _compose_logger(f"logger={backend}", "logger.project=foo")
