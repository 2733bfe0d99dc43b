"""Ctrl-C in a terminal, or a SIGTERM sent to the job, reaches the whole process group."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.integration.runner import subprocess_env, train_command


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize(
    "overrides",
    [
        ["collector=multi_sync", "collector.num_workers=2", "training_env.num_workers=2"],
        ["training_env.batched_env_type=parallel", "training_env.num_workers=2"],
    ],
    ids=["collector_workers", "env_workers"],
)
def test_a_signal_to_the_process_group_stops_cleanly_with_a_checkpoint(tmp_path, overrides, signum):
    run_dir = tmp_path / "run"
    command = train_command(
        "ppo", run_dir, *overrides, "trainer.total_frames=1000000", "collector.frames_per_batch=512",
        "replay_buffer.batch_size=128", "trainer.num_epochs=1", "trainer.log_interval=512",
        "trainer.progress_bar=false", "loss.compile=false", tiny=False,
    )  # fmt: skip
    # Its own process group, as a terminal gives a foreground job; Ctrl-C signals all of it.
    proc = subprocess.Popen(
        command, cwd=tmp_path, env=subprocess_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    first_log = run_dir / "logs" / "ppo_Pendulum-v1" / "scalars" / "r_training.csv"
    deadline = time.monotonic() + 120
    while not first_log.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()[1]
    os.killpg(proc.pid, signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert f"interrupted by {signal.Signals(signum).name}" in stderr
    assert "Traceback" not in stderr
    assert (run_dir / "checkpoint.pt").exists()
