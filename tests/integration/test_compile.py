"""``networks.compile=true`` end to end: real train.py runs of PPO and SAC with compiled
networks, stopped and resumed (slow: compiling takes about a minute per run on CPU)."""

from __future__ import annotations

import math

import pytest

from tests.integration.runner import read_scalar, resume_train, run_train


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_compiled_networks_train_and_resume(tmp_path, algo):
    run_dir = tmp_path / algo
    first = run_train(algo, run_dir, "networks.compile=true", timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    frames = 2048 if algo == "ppo" else 600  # the tiny budgets of tests/integration/runner.py
    longer = resume_train(algo, run_dir, f"trainer.total_frames={2 * frames}", timeout=900)
    assert longer.returncode == 0, longer.stderr[-3000:]
    metric = "loss_critic" if algo == "ppo" else "loss_qvalue"
    (exp_name,) = [path.name for path in (run_dir / "logs").iterdir()]
    losses = read_scalar(run_dir, exp_name, metric)
    assert losses[-1][0] == 2 * frames
    assert all(math.isfinite(value) for _, value in losses)
