"""Every command of CONTRACT section 1, run as written with shrunken budgets."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.integration.runner import (
    ROOT,
    SCRIPTS,
    read_scalar,
    resume_train,
    run_train,
    subprocess_env,
)


def _ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stderr[-3000:]


def test_ppo_default_command_writes_logs_checkpoint_and_resolved_config(tmp_path):
    run_dir = tmp_path / "run"
    _ok(run_train("ppo", run_dir))
    returns = read_scalar(run_dir, "ppo_Pendulum-v1", "episode_return")
    # 8 envs x 64 steps per batch: Pendulum's 200-step episodes first end in the 4th batch.
    assert [step for step, _ in returns] == [2048]
    assert -2000 < returns[0][1] < 0
    assert read_scalar(run_dir, "ppo_Pendulum-v1", "episode_length") == [(2048, 200.0)]
    losses = read_scalar(run_dir, "ppo_Pendulum-v1", "loss_objective")
    assert [step for step, _ in losses] == [512, 1024, 1536, 2048]
    resolved = yaml.safe_load((run_dir / "config_resolved.yaml").read_text())
    assert resolved["training_env"]["create_env_fn"]["base_env"]["env_name"] == "Pendulum-v1"
    assert resolved["trainer"]["total_frames"] == 2048
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert checkpoint["state"]["state"]["frames"] == 2048
    hparams = (run_dir / "logs" / "ppo_Pendulum-v1" / "hparams.yaml").read_text()
    assert "Pendulum-v1" in hparams


def test_sac_default_command_runs_on_halfcheetah(tmp_path):
    run_dir = tmp_path / "run"
    _ok(run_train("sac", run_dir))
    resolved = yaml.safe_load((run_dir / "config_resolved.yaml").read_text())
    assert resolved["training_env"]["create_env_fn"]["base_env"]["env_name"] == "HalfCheetah-v5"
    utd = read_scalar(run_dir, "sac_HalfCheetah-v5", "utd_ratio")
    # The last log window (one 100-frame batch) had 0.1 x 100 updates.
    assert utd[-1] == (600, pytest.approx(0.1, rel=1e-6))
    # The window that ends the warm-up (frames 100-200): updates on the 200th frame's batch only.
    assert (200, pytest.approx(10 / 100, rel=1e-6)) in utd
    assert read_scalar(run_dir, "sac_HalfCheetah-v5", "loss_qvalue")[-1][0] == 600


def test_ppo_override_command_with_mujoco_v4_and_bigger_networks(tmp_path):
    run_dir = tmp_path / "run"
    result = run_train(
        "ppo",
        run_dir,
        "trainer.total_frames=2048",
        "training_env.create_env_fn.base_env.env_name=HalfCheetah-v4",
        "networks.policy_network.num_cells=[256,256]",
        "optimizer.lr=0.0003",
    )
    _ok(result)
    resolved = yaml.safe_load((run_dir / "config_resolved.yaml").read_text())
    assert resolved["networks"]["policy_network"]["num_cells"] == [256, 256]
    assert resolved["optimizer"]["lr"] == 0.0003
    params = torch.load(run_dir / "checkpoint.pt", weights_only=True)["state"]["modules"]
    first_layer = params["loss_module"]["actor_network.network.0.weight"]
    assert first_layer.shape == (256, 17)  # HalfCheetah's observation has 17 entries
    # A MuJoCo task brings the MuJoCo preset; the command line's own values win over it.
    assert "note: HalfCheetah-v4: MuJoCo, so PPO runs with +preset=mujoco_ppo" in result.stderr
    overrides = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
    assert "+preset=mujoco_ppo" in overrides
    assert resolved["trainer"]["gamma"] == 0.99 and resolved["training_env"]["num_workers"] == 1
    assert resolved["training_env"]["create_env_fn"]["base_env"]["env_name"] == "HalfCheetah-v4"
    # The resumed run continues the preset's config from the run directory.
    resumed = resume_train("ppo", run_dir, "trainer.total_frames=4096")
    _ok(resumed)
    assert "note:" not in resumed.stderr and "stopped at 4096 frames" in resumed.stderr
    assert yaml.safe_load((run_dir / "config_resolved.yaml").read_text()) == {
        **resolved,
        "trainer": {**resolved["trainer"], "total_frames": 4096},
    }


def test_sac_walker_with_tensorboard_logger(tmp_path):
    run_dir = tmp_path / "run"
    _ok(
        run_train(
            "sac",
            run_dir,
            "training_env.create_env_fn.base_env.env_name=Walker2d-v4",
            "logger=tensorboard",
            "logger.exp_name=sac_walker2d",
        )
    )
    events = EventAccumulator(str(run_dir / "tb_logs" / "sac_walker2d"))
    events.Reload()
    steps = [event.step for event in events.Scalars("loss_actor")]
    assert steps[-1] == 600
    assert "r_training" in events.Tags()["scalars"]


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_help_lists_groups_options_and_default_config(algo):
    result = subprocess.run(
        [sys.executable, str(SCRIPTS[algo]), "--help"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=ROOT,
        timeout=120,
    )
    _ok(result)
    out = result.stdout
    for group_line in (
        "logger: csv, mlflow, tensorboard, wandb",
        "optimizer: adam, adamw, rmsprop, sgd",
        "collector: multi_async, multi_sync, sync",
    ):
        assert group_line in out
    assert "env_name:" in out and "total_frames:" in out
    assert "--resume" in out


@pytest.mark.parametrize(
    ("sweep", "expected"),
    [
        (["optimizer.lr=0.0001,0.001,0.01"], {(0.0001, 8), (0.001, 8), (0.01, 8)}),
        (
            ["optimizer.lr=0.0001,0.001", "training_env.num_workers=1,2"],
            {(0.0001, 1), (0.0001, 2), (0.001, 1), (0.001, 2)},
        ),
    ],
    ids=["lr", "lr_x_num_workers"],
)
def test_multirun_sweeps_give_one_run_dir_per_job(tmp_path, sweep, expected):
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPTS["ppo"]),
            "--multirun",
            *sweep,
            "trainer.total_frames=512",
            "collector.frames_per_batch=256",
            "replay_buffer.batch_size=128",
            "trainer.num_epochs=1",
            "trainer.progress_bar=false",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        cwd=tmp_path,
        timeout=300,
    )
    _ok(result)
    jobs = sorted(p for p in (tmp_path / "sweep").iterdir() if p.is_dir())
    assert [p.name for p in jobs] == [str(i) for i in range(len(expected))]
    seen = set()
    for job in jobs:
        resolved = yaml.safe_load((job / "config_resolved.yaml").read_text())
        seen.add((resolved["optimizer"]["lr"], resolved["training_env"]["num_workers"]))
        assert (job / "checkpoint.pt").exists()
    assert seen == expected


@pytest.mark.parametrize("collector", ["multi_sync", "multi_async"])
def test_worker_process_collectors_train_from_the_command_line(tmp_path, collector):
    run_dir = tmp_path / "run"
    _ok(run_train("ppo", run_dir, f"collector={collector}", "training_env.num_workers=4"))
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)["state"]
    assert state["state"]["frames"] == 2048
    assert read_scalar(run_dir, "ppo_Pendulum-v1", "loss_objective")[-1][0] == 2048


def test_sac_async_collection_trains_and_resumes_from_the_command_line(tmp_path):
    run_dir = tmp_path / "run"
    pendulum = "training_env.create_env_fn.base_env.env_name=Pendulum-v1"
    _ok(run_train("sac", run_dir, pendulum, "trainer.async_collection=true"))
    checkpoint = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert checkpoint["state"]["state"]["frames"] == 600
    collected = checkpoint["state"]["modules"]["collector"]["collector"]["frames"]
    assert collected >= 600  # the thread may have run a batch ahead; those frames are pending
    _ok(resume_train("sac", run_dir, "trainer.total_frames=800"))
    resumed = torch.load(run_dir / "checkpoint.pt", weights_only=True)["state"]["state"]
    assert resumed["frames"] == 800


def test_wandb_logger_runs_offline_from_the_command_line(tmp_path):
    run_dir = tmp_path / "run"
    _ok(run_train("ppo", run_dir, "logger=wandb", "logger.project=trainrl-tests"))
    runs = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1 and runs[0].stat().st_size > 0


def test_mlflow_logger_writes_a_local_store(tmp_path):
    from mlflow.tracking import MlflowClient

    run_dir = tmp_path / "run"
    _ok(run_train("ppo", run_dir, "logger=mlflow"))
    stores = list(run_dir.rglob("mlflow.db"))
    assert len(stores) == 1
    client = MlflowClient(tracking_uri=f"sqlite:///{stores[0]}")
    experiment = client.get_experiment_by_name("ppo_Pendulum-v1")
    (run,) = client.search_runs([experiment.experiment_id])
    history = client.get_metric_history(run.info.run_id, "loss_objective")
    assert [m.step for m in history] == [512, 1024, 1536, 2048]


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        ("mujoco_ppo", {"num_workers": 1, "frames_per_batch": 2048, "lr": 3e-4, "clip_norm": 0.5}),
        ("halfcheetah_ppo", {"num_workers": 1, "frames_per_batch": 512, "lr": 3e-05}),
    ],
)
def test_presets_compose_and_train(tmp_path, preset, expected):
    run_dir = tmp_path / "run"
    _ok(
        run_train(
            "ppo",
            run_dir,
            f"+preset={preset}",
            "trainer.total_frames=4096",
            "trainer.num_epochs=1",
            "trainer.progress_bar=false",
            "loss.compile=false",  # a short run: compiling would not pay
            tiny=False,
        )
    )
    resolved = yaml.safe_load((run_dir / "config_resolved.yaml").read_text())
    got = {
        "num_workers": resolved["training_env"]["num_workers"],
        "frames_per_batch": resolved["collector"]["frames_per_batch"],
        "lr": resolved["optimizer"]["lr"],
        "clip_norm": resolved["trainer"]["clip_norm"],
    }
    assert {k: got[k] for k in expected} == expected
    assert resolved["training_env"]["create_env_fn"]["base_env"]["env_name"] == "HalfCheetah-v5"
    transforms = resolved["training_env"]["create_env_fn"]["transform"]["_args_"]
    assert [t["_target_"].rsplit(".", 1)[-1] for t in transforms] == [
        "RewardSum", "VecNorm", "RewardNorm"
    ]  # fmt: skip
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)["state"]
    assert state["state"]["frames"] >= 4096
    # The normalizers' statistics are part of the checkpoint (VecNorm, then RewardNorm).
    normalizers = state["modules"]["collector"]["env"]["transform"]
    assert normalizers["1"]["count"] >= 4096 and normalizers["2"]["count"] >= 4096
