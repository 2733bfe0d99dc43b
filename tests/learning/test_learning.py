"""Learning runs on real environments (slow: `python -m pytest -m slow`).

They run the real entry points with their defaults and read back the returns they logged.
"""

from __future__ import annotations

import csv
import statistics

import pytest

from tests.integration.runner import run_train

pytestmark = pytest.mark.slow


def _returns(run_dir) -> list[float]:
    with open(run_dir / "episodes.csv", newline="") as f:
        return [float(row["return"]) for row in csv.DictReader(f)]


def test_default_ppo_learns_pendulum_within_200k_frames(tmp_path):
    """Over seeds 0-2: one seed's trajectory depends on the CPU's float rounding (without
    gradient clipping, seed 0's best reached -171 on an Intel VM and -204 on an AMD one with the
    same code, and seed 1 fell back to -376 over its last 100 episodes on another Intel VM, which
    the last check caught). With the norm clipped at 0.5, the default since, seeds 0-2 ended at
    -179, -186 and -190 on that VM."""
    best, last = [], []
    for seed in range(3):
        run_dir = tmp_path / f"run{seed}"
        result = run_train("ppo", run_dir, f"trainer.seed={seed}", tiny=False, timeout=1800)
        assert result.returncode == 0, result.stderr[-3000:]
        returns = _returns(run_dir)
        assert len(returns) == 1000  # 200k frames of 200-step episodes
        # The best mean over 100 consecutive training episodes (with exploration noise)...
        best.append(max(statistics.fmean(returns[i : i + 100]) for i in range(len(returns) - 99)))
        last.append(statistics.fmean(returns[-100:]))  # CleanRL's metric
    # ...reaches -200 on average over the seeds, and every seed keeps close to it.
    assert statistics.fmean(best) >= -200, best
    assert min(last) >= -230, last


def test_sac_learns_pendulum_within_15k_frames(tmp_path):
    run_dir = tmp_path / "run"
    result = run_train(
        "sac",
        run_dir,
        "training_env.create_env_fn.base_env.env_name=Pendulum-v1",
        "trainer.total_frames=15000",
        "collector.init_random_frames=1000",
        "trainer.seed=0",
        "trainer.progress_bar=false",
        tiny=False,
        timeout=1800,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    last = _returns(run_dir)[-10:]  # the last 10 episodes: frames 13k-15k
    assert statistics.fmean(last) >= -200, statistics.fmean(last)
