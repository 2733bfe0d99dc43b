"""A run stopped (SIGINT) or killed (SIGKILL) and resumed from its run directory ends like an
uninterrupted one."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
import torch

from tests.integration.runner import (
    read_scalar,
    read_scalars,
    resume_train,
    run_train,
    subprocess_env,
    train_command,
)

# The SIGINT and SIGKILL tests' runs (these overrides, not the tiny budget) train with the
# default loss.compile, compiled on CPU: resuming is exact with the compiled loss too.
OVERRIDES = (
    "trainer.total_frames=8192",
    "collector.frames_per_batch=512",
    "replay_buffer.batch_size=256",
    "trainer.num_epochs=2",
    "trainer.log_interval=1024",
    "trainer.save_trainer_interval=1024",
    "trainer.progress_bar=false",
)

EXP_NAME = "ppo_Pendulum-v1"
# Logs every batch, checkpoints every second batch: a kill right after an odd batch's log leaves
# rows past the last checkpoint.
KILL_OVERRIDES = (
    "trainer.total_frames=4096",
    "collector.frames_per_batch=512",
    "replay_buffer.batch_size=256",
    "trainer.num_epochs=2",
    "trainer.log_interval=512",
    "trainer.save_trainer_interval=1024",
    "trainer.progress_bar=false",
)


def _final_state(run_dir):
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["state"]


def test_sigint_then_resume_matches_an_uninterrupted_run(tmp_path):
    straight = tmp_path / "straight"
    finished = subprocess.run(
        train_command("ppo", straight, *OVERRIDES, tiny=False),
        cwd=tmp_path,
        env=subprocess_env(),
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "loss.compile" not in finished.stderr  # compiled: no fallback to eager

    paused = tmp_path / "paused"
    process = subprocess.Popen(
        train_command("ppo", paused, *OVERRIDES, tiny=False),
        cwd=tmp_path,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (paused / "checkpoint.pt").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    stopped_at = _final_state(paused)["state"]["frames"]
    assert 0 < stopped_at < 8192, "the interrupt came too late to test anything"
    assert "interrupted by SIGINT" in stderr
    assert f"--resume {paused}" in stderr

    resumed = resume_train("ppo", paused)
    assert resumed.returncode == 0, resumed.stderr
    assert f"at {stopped_at} frames" in resumed.stdout
    assert "loss.compile" not in stderr + resumed.stderr

    expected, got = _final_state(straight), _final_state(paused)
    assert got["state"]["frames"] == expected["state"]["frames"] == 8192
    assert got["state"]["optim_steps"] == expected["state"]["optim_steps"]
    for name, tensor in expected["modules"]["loss_module"].items():
        assert torch.equal(got["modules"]["loss_module"][name], tensor), name
    for index, moments in expected["modules"]["optimizer"]["state"].items():
        for key, tensor in moments.items():
            assert torch.equal(got["modules"]["optimizer"]["state"][index][key], tensor)
    # The curves continue: the same rows at the same steps, no gap and no duplicate.
    episodes = (paused / "episodes.csv").read_text()
    assert episodes == (straight / "episodes.csv").read_text()
    assert len(episodes.splitlines()) == 1 + 8 * 5  # 8 envs x 5 Pendulum episodes in 8192 frames
    for metric in ("loss_objective", "episode_return"):
        assert read_scalar(paused, "ppo_Pendulum-v1", metric) == read_scalar(
            straight, "ppo_Pendulum-v1", metric
        )


def _last_logged_step(run_dir):
    path = run_dir / "logs" / EXP_NAME / "scalars" / "loss_objective.csv"
    if not path.exists():
        return None
    rows = path.read_text().splitlines()
    return int(rows[-1].split(",")[0]) if len(rows) > 1 else None


def test_sigkill_then_resume_logs_each_step_once_like_an_uninterrupted_run(tmp_path):
    straight = tmp_path / "straight"
    subprocess.run(
        train_command("ppo", straight, *KILL_OVERRIDES, tiny=False),
        cwd=tmp_path,
        env=subprocess_env(),
        check=True,
        capture_output=True,
        timeout=300,
    )

    killed = tmp_path / "killed"
    process = subprocess.Popen(
        train_command("ppo", killed, *KILL_OVERRIDES, tiny=False),
        cwd=tmp_path,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Kill right after a log that no checkpoint covers yet (1536 frames: checkpoint at 1024).
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        step = _last_logged_step(killed)
        if step is not None and step % 1024 == 512 and (killed / "checkpoint.pt").exists():
            break
        time.sleep(0.01)
    process.kill()
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    checkpointed = _final_state(killed)["state"]["frames"]
    logged = read_scalars(killed, EXP_NAME)
    assert max(step for step, _ in logged["loss_objective"]) > checkpointed, (
        "the kill came too late to leave rows past the last checkpoint"
    )

    resumed = resume_train("ppo", killed)
    assert resumed.returncode == 0, resumed.stderr
    assert f"at {checkpointed} frames" in resumed.stdout
    assert _final_state(killed)["state"]["frames"] == 4096

    expected, got = read_scalars(straight, EXP_NAME), read_scalars(killed, EXP_NAME)
    assert set(got) == set(expected) and "loss_objective" in got
    for metric, rows in got.items():
        steps = [step for step, _ in rows]
        assert steps == sorted(set(steps)), f"{metric}: steps not strictly increasing: {steps}"
        assert rows == expected[metric], metric  # deterministic on CPU: the same values too
    assert (killed / "episodes.csv").read_text() == (straight / "episodes.csv").read_text()


# mlflow's SQLAlchemy store uses an option SQLAlchemy deprecates; not ours to fix.
@pytest.mark.filterwarnings("ignore::DeprecationWarning:mlflow.*")
def test_mlflow_resume_continues_the_same_run_and_logs_its_params_there(tmp_path):
    from mlflow.tracking import MlflowClient

    run_dir = tmp_path / "run"
    first = run_train("ppo", run_dir, "logger=mlflow")
    assert first.returncode == 0, first.stderr
    resumed = resume_train("ppo", run_dir, "trainer.total_frames=3072")
    assert resumed.returncode == 0, resumed.stderr
    assert "at 2048 frames" in resumed.stdout

    client = MlflowClient(tracking_uri=f"sqlite:///{run_dir / 'mlflow_logs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(EXP_NAME)
    (run,) = client.search_runs([experiment.experiment_id])  # no stray run of the resume
    history = client.get_metric_history(run.info.run_id, "loss_objective")
    assert [m.step for m in history] == [512, 1024, 1536, 2048, 2560, 3072]
    assert run.data.params["training_env.create_env_fn.base_env.env_name"] == "Pendulum-v1"
    # The resumed process logged its params to this run: MLflow keeps the first value.
    assert run.data.params["trainer.total_frames"] == "2048"
    assert (
        f"run {run.info.run_id} keeps its first values of ['trainer.total_frames']"
        in resumed.stderr
    )


def test_a_run_saved_before_batch_actor_critic_existed_resumes_with_separate_networks(tmp_path):
    """Its saved config has no ``networks.batch_actor_critic`` and its checkpoint separate
    actor and critic weights: resuming it must not stack them (the checkpoint would not load)."""
    run_dir = tmp_path / "old"
    first = run_train("ppo", run_dir, "networks.batch_actor_critic=false")
    assert first.returncode == 0, first.stderr
    config = run_dir / ".hydra" / "config.yaml"
    text = config.read_text()
    assert "batch_actor_critic: false" in text
    config.write_text(text.replace("  batch_actor_critic: false\n", ""))
    frames = _final_state(run_dir)["state"]["frames"]

    resumed = resume_train("ppo", run_dir, f"trainer.total_frames={frames + 1024}")
    assert resumed.returncode == 0, resumed.stderr
    state = _final_state(run_dir)
    assert state["state"]["frames"] == frames + 1024
    assert "actor_network.network.0.weight" in state["modules"]["loss_module"]


def test_tensorboard_gets_the_hparams_once_and_again_only_when_a_resume_changes_them(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    logger = ("logger=tensorboard", "logger.exp_name=tb")

    def hparams_steps() -> list[int]:
        events = EventAccumulator(str(run_dir / "tb_logs" / "tb"), size_guidance={"tensors": 0})
        events.Reload()
        return [event.step for event in events.Tensors("hparams/text_summary")]

    first = run_train("ppo", run_dir, *logger)
    assert first.returncode == 0, first.stderr
    time.sleep(1.01)  # event files sort by their name, which starts with the time in seconds
    same = resume_train("ppo", run_dir)  # the checkpoint's config: nothing new to log
    assert same.returncode == 0, same.stderr
    assert hparams_steps() == [0]
    time.sleep(1.01)
    extended = resume_train("ppo", run_dir, "trainer.total_frames=2560")
    assert extended.returncode == 0, extended.stderr
    assert _final_state(run_dir)["state"]["frames"] == 2560
    assert hparams_steps() == [0, 2049]  # from the step after the checkpoint's last log on
