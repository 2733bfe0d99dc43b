"""Learning benchmark: trains PPO and SAC with the real entry points and tabulates returns.

Each run is ``sota_implementations/<algo>_trainer/train.py`` in its own run directory under
``benchmarks/results/learning/``. The script is resumable: finished runs are skipped, and an
interrupted run continues from its checkpoint (``--resume``). Run it in the background, e.g.

    nohup .venv/bin/python benchmarks/learning.py > learning.log 2>&1 &
    .venv/bin/python benchmarks/learning.py --only ppo:Pendulum-v1 --seeds 0 1 2
    .venv/bin/python benchmarks/learning.py --report      # tables and plots from what finished

The metric is CleanRL's: the mean of the last 100 training-episode returns of a run
(from the run's ``episodes.csv``), then mean +- std over seeds. It writes the table of
``docs/learning.md`` (between its ``results`` markers; the notes around it are kept) and one
PNG of learning curves per task in ``docs/learning/``.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "learning"
DOC = ROOT / "docs" / "learning.md"
PLOTS = ROOT / "docs" / "learning"
LAST_EPISODES = 100
SEEDS = (0, 1, 2)  # seeds per task in the table


@dataclass(frozen=True)
class Task:
    algo: str
    env: str
    frames: int
    overrides: tuple[str, ...] = ()
    published: str = ""  # published figure at this budget, with its source
    preset: str = "defaults"
    last_episodes: int = LAST_EPISODES  # fewer for budgets that hold fewer than 100 episodes


@dataclass
class RunResult:
    seed: int
    last_mean: float
    wall_s: float
    curve: list[tuple[int, float]] = field(default_factory=list)


CLEANRL_PPO = (
    "CleanRL ppo_continuous_action, MuJoCo v4, 1M steps (docs.cleanrl.dev/rl-algorithms/ppo)"
)
# CleanRL's PPO returns at 1M steps, mean +- std over 3 seeds (the source above).
CLEANRL_PPO_RETURNS = {
    "HalfCheetah-v5": "1442.64 +- 46.03",
    "Hopper-v5": "2382.86 +- 271.74",
    "Walker2d-v5": "2287.95 +- 571.78",
}
RL_ZOO_PPO_HALFCHEETAH = (
    "RL Baselines3 Zoo ppo, HalfCheetah-v3, 1M steps, deterministic evaluation of one agent "
    "(github.com/DLR-RM/rl-baselines3-zoo, benchmark.md)"
)


def _ppo_mujoco_tasks(preset: str, overrides: tuple[str, ...]) -> list[Task]:
    """PPO at 1M frames on the three MuJoCo tasks CleanRL reports, next to its figures."""
    return [
        Task("ppo", env, 1_000_000, overrides, f"{score} ({CLEANRL_PPO})", preset)
        for env, score in CLEANRL_PPO_RETURNS.items()
    ]


TASKS = [
    Task("ppo", "Pendulum-v1", 200_000, published="issue target: >= -200 within 200k frames"),
    Task("sac", "Pendulum-v1", 15_000, ("collector.init_random_frames=1000",),
         published="issue target: >= -200 within 15k frames", last_episodes=10),
    *_ppo_mujoco_tasks("mujoco_ppo", ("+preset=mujoco_ppo",)),
    Task("ppo", "HalfCheetah-v5", 1_000_000, ("+preset=halfcheetah_ppo",),
         published=f"5819 +- 663 ({RL_ZOO_PPO_HALFCHEETAH})", preset="halfcheetah_ppo"),
    # PPO's Pendulum-tuned defaults (8 envs, gamma 0.9, lr 1e-3, no normalization) on MuJoCo,
    # where a command line gets mujoco_ppo unless it says +preset=none (docs/learning.md).
    *_ppo_mujoco_tasks("none", ("+preset=none",)),
    # Earlier versions of the presets, kept for comparison (docs/learning.md).
    *_ppo_mujoco_tasks("mujoco_ppo-no_clip_value", ("+preset=mujoco_ppo", "loss.clip_value=null")),
    Task("ppo", "HalfCheetah-v5", 1_000_000,
         ("+preset=halfcheetah_ppo", "optimizer.lr=2.0633e-05"),
         published=f"5819 +- 663 ({RL_ZOO_PPO_HALFCHEETAH})", preset="halfcheetah_ppo-lr2.06e-5"),
    Task("sac", "HalfCheetah-v5", 300_000, published="issue target: >= 5000 at 300k frames"),
    Task("sac", "Hopper-v5", 300_000),
]  # fmt: skip


def _named(task: Task) -> set[str]:
    """The names ``--only`` knows a task by."""
    return {f"{task.algo}:{task.env}", f"{task.algo}:{task.env}:{task.preset}"}


def run_dir(task: Task, seed: int) -> Path:
    return RESULTS / f"{task.algo}-{task.env}-{task.preset}-s{seed}"


def train(task: Task, seed: int) -> None:
    """Runs (or resumes) one training run to completion; records its wall time."""
    directory = run_dir(task, seed)
    summary = directory / "summary.json"
    if summary.exists():
        return
    script = ROOT / "sota_implementations" / f"{task.algo}_trainer" / "train.py"
    if (directory / ".hydra" / "config.yaml").exists():
        command = [sys.executable, str(script), "--resume", str(directory)]
    else:
        command = [
            sys.executable,
            str(script),
            f"training_env.create_env_fn.base_env.env_name={task.env}",
            f"trainer.total_frames={task.frames}",
            f"trainer.seed={seed}",
            "trainer.progress_bar=false",
            *task.overrides,
            f"hydra.run.dir={directory}",
        ]
    print(
        f"[{time.strftime('%H:%M:%S')}] {task.algo} {task.env} seed {seed}: {' '.join(command[1:3])}"
    )
    start = time.monotonic()
    recorded = _recorded(directory)
    # The code each attempt starts with (the process keeps it, whatever is checked out later).
    commits = [*recorded.get("commits", []), _commit()]
    try:
        _run_forwarding_sigterm(command)
    finally:  # an interrupted attempt's time still counts
        wall = recorded.get("wall_s", 0.0) + time.monotonic() - start
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "wall.json").write_text(json.dumps({"wall_s": wall, "commits": commits}))
    frames = _checkpointed_frames(directory)
    if frames < task.frames:  # stopped early (Ctrl-C, SIGTERM) with a checkpoint: not finished
        raise RuntimeError(
            f"{directory.name} stopped at {frames} of {task.frames} frames; run this script "
            "again to resume it"
        )
    commit = ", ".join(dict.fromkeys(commits))  # one entry per distinct code version
    summary.write_text(json.dumps({"wall_s": wall, "frames": task.frames, "commit": commit}))


def _commit() -> str:
    """The checked-out commit (``+`` if the tree had changes): which code produced a run."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run([*git, "status", "--porcelain", "--", "trainers", "configs", "conf"],
                           capture_output=True, text=True)  # fmt: skip
    return head.stdout.strip() + ("+" if dirty.stdout.strip() else "")


def _run_forwarding_sigterm(command: list[str]) -> None:
    """Runs ``command``; a SIGTERM to this script is passed on to it, so the run stops with a
    checkpoint and this script still records the attempt's wall time before it exits."""
    with subprocess.Popen(command, cwd=ROOT) as process:
        previous = signal.signal(signal.SIGTERM, lambda *_: process.terminate())
        try:
            returncode = process.wait()
        finally:
            signal.signal(signal.SIGTERM, previous)
    if returncode:
        raise subprocess.CalledProcessError(returncode, command)


def _checkpointed_frames(directory: Path) -> int:
    import torch

    checkpoint = torch.load(directory / "checkpoint.pt", weights_only=True)
    return int(checkpoint["state"]["state"]["frames"])


def _recorded(directory: Path) -> dict[str, Any]:
    """Wall time and commits of the earlier attempts of a run (none for a new run)."""
    path = directory / "wall.json"
    return json.loads(path.read_text()) if path.exists() else {}


def read_result(task: Task, seed: int) -> RunResult | None:
    directory = run_dir(task, seed)
    summary, episodes = directory / "summary.json", directory / "episodes.csv"
    if not summary.exists() or not episodes.exists():
        return None
    with open(episodes, newline="") as f:
        rows = [(int(r["frames"]), float(r["return"])) for r in csv.DictReader(f)]
    returns = [r for _, r in rows]
    last = returns[-task.last_episodes :]
    return RunResult(seed, statistics.fmean(last), json.loads(summary.read_text())["wall_s"], rows)


def report(seeds: list[int]) -> None:
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, {_cpu_count()} cores, "
        f"Python {platform.python_version()}, {_versions()}.",
        "",
        "| algo | task | frames | overrides | seeds done | return (mean +- std) | published | wall time / run |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for task in TASKS:
        results = [r for s in seeds if (r := read_result(task, s)) is not None]
        if results:
            values = [r.last_mean for r in results]
            score = f"{statistics.fmean(values):.1f}"
            if len(values) > 1:
                score += f" +- {statistics.stdev(values):.1f}"
            else:  # a std over one seed would read as a spread of 0
                score += f" (seed {results[0].seed} only)"
            wall = f"{statistics.fmean(r.wall_s for r in results) / 60:.1f} min"
            _plot(task, results)
        else:
            score, wall = "not run yet", "-"
        overrides = " ".join(f"`{o}`" for o in task.overrides) or "-"
        lines.append(
            f"| {task.algo} | {task.env} | {task.frames:,} | {overrides} | {len(results)}/{len(seeds)} "
            f"| {score} | {task.published or '-'} | {wall} |"
        )
    _write_results(lines)
    print("\n".join(lines))


def _write_results(lines: list[str]) -> None:
    """Replaces the generated part of ``docs/learning.md``; the notes around it stay."""
    begin, end = "<!-- results: written by benchmarks/learning.py -->", "<!-- /results -->"
    text = DOC.read_text() if DOC.exists() else f"{begin}\n{end}\n"
    if begin not in text or end not in text:
        text = f"{begin}\n{end}\n\n{text}"
    head, rest = text.split(begin, 1)
    tail = rest.split(end, 1)[1]
    DOC.write_text(f"{head}{begin}\n" + "\n".join(lines) + f"\n{end}{tail}")


def _plot(task: Task, results: list[RunResult]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    PLOTS.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for result in results:
        frames = [f for f, _ in result.curve]
        smoothed = _moving_average([r for _, r in result.curve], 20)
        ax.plot(frames, smoothed, label=f"seed {result.seed}")
    ax.set_xlabel("frames")
    ax.set_ylabel("episode return (moving average of 20)")
    ax.set_title(f"{task.algo.upper()} {task.env} ({task.preset})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(PLOTS / f"{task.algo}-{task.env}-{task.preset}.png", dpi=100)
    plt.close(fig)


def _moving_average(values: list[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def _cpu_count() -> int:
    import os

    return os.cpu_count() or 0


def _versions() -> str:
    import gymnasium
    import mujoco
    import torch

    return (
        f"torch {torch.__version__}, gymnasium {gymnasium.__version__}, mujoco {mujoco.__version__}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument(
        "--only",
        nargs="+",
        default=None,
        help="algo:env or algo:env:preset, e.g. ppo:Hopper-v5 ppo:HalfCheetah-v5:halfcheetah_ppo",
    )
    parser.add_argument("--report", action="store_true", help="only write the tables and plots")
    args = parser.parse_args()
    selected = [t for t in TASKS if args.only is None or _named(t) & set(args.only)]
    if not args.report:
        for task in selected:
            for seed in args.seeds:
                train(task, seed)
    # Every task's finished seeds, not only those of this call: a run of one seed or one task
    # must not drop the others from the table.
    report(sorted({*SEEDS, *args.seeds}))


if __name__ == "__main__":
    main()
