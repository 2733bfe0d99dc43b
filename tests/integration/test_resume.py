"""A run stopped with SIGINT and resumed from its run directory ends like an uninterrupted one."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import torch

from tests.integration.runner import SCRIPTS, read_scalar, subprocess_env, train_command

OVERRIDES = (
    "trainer.total_frames=8192",
    "collector.frames_per_batch=512",
    "replay_buffer.batch_size=256",
    "trainer.num_epochs=2",
    "trainer.log_interval=1024",
    "trainer.save_trainer_interval=1024",
    "trainer.progress_bar=false",
)


def _final_state(run_dir):
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["state"]


def test_sigint_then_resume_matches_an_uninterrupted_run(tmp_path):
    straight = tmp_path / "straight"
    subprocess.run(
        train_command("ppo", straight, *OVERRIDES, tiny=False),
        cwd=tmp_path,
        env=subprocess_env(),
        check=True,
        capture_output=True,
        timeout=300,
    )

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

    resumed = subprocess.run(
        [sys.executable, str(SCRIPTS["ppo"]), "--resume", str(paused)],
        cwd=tmp_path,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"at {stopped_at} frames" in resumed.stdout

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
