"""Runs the real ``train.py`` entry points in subprocesses, as a user would."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = {
    "ppo": ROOT / "sota_implementations" / "ppo_trainer" / "train.py",
    "sac": ROOT / "sota_implementations" / "sac_trainer" / "train.py",
}
# Small budgets that still run several batches, logs and checkpoints.
TINY = {
    "ppo": [
        "trainer.total_frames=2048",
        "collector.frames_per_batch=512",
        "replay_buffer.batch_size=128",
        "trainer.num_epochs=2",
        "trainer.log_interval=512",
        "trainer.save_trainer_interval=1024",
        "trainer.progress_bar=false",
        # 32 gradient steps: compiling them would cost more than it saves (the resume tests
        # run the compiled default).
        "loss.compile=false",
    ],
    "sac": [
        "trainer.total_frames=600",
        "collector.frames_per_batch=100",
        "collector.init_random_frames=200",
        "replay_buffer.batch_size=32",
        "replay_buffer.storage.max_size=10000",
        "trainer.utd_ratio=0.1",
        "trainer.num_threads=1",  # tests share 2 cores; 2 torch threads oversubscribe them
        "trainer.log_interval=100",
        "trainer.save_trainer_interval=200",
        "trainer.progress_bar=false",
    ],
}


def train_command(algo: str, run_dir: Path, *overrides: str, tiny: bool = True) -> list[str]:
    args = [*(TINY[algo] if tiny else []), *overrides]
    return [sys.executable, str(SCRIPTS[algo]), *args, f"hydra.run.dir={run_dir}"]


def run_train(
    algo: str, run_dir: Path, *overrides: str, tiny: bool = True, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Runs train.py from an unrelated working directory; returns the finished process."""
    return subprocess.run(
        train_command(algo, run_dir, *overrides, tiny=tiny),
        cwd=run_dir.parent,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def resume_train(
    algo: str, run_dir: Path, *overrides: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``train.py --resume RUN_DIR [overrides]`` from an unrelated working directory."""
    return subprocess.run(
        [sys.executable, str(SCRIPTS[algo]), "--resume", str(run_dir), *overrides],
        cwd=run_dir.parent,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}


def read_scalar(run_dir: Path, exp_name: str, metric: str) -> list[tuple[int, float]]:
    path = run_dir / "logs" / exp_name / "scalars" / f"{metric}.csv"
    with open(path, newline="") as f:
        return [(int(row["step"]), float(row["value"])) for row in csv.DictReader(f)]


def read_scalars(run_dir: Path, exp_name: str) -> dict[str, list[tuple[int, float]]]:
    """Every scalar CSV of a run, keyed by its metric name (its path under ``scalars/``)."""
    scalars = run_dir / "logs" / exp_name / "scalars"
    paths = sorted(scalars.rglob("*.csv"))
    names = [path.relative_to(scalars).with_suffix("").as_posix() for path in paths]
    return {name: read_scalar(run_dir, exp_name, name) for name in names}
