"""A/B of SAC's optimization step at a git revision against the working tree, in one process.

On a shared VM the time of one program differs by 10-30% between runs minutes apart, more than
most changes save, and both arms of an A/B must therefore share a process and take turns. Two
versions of ``trainers`` cannot be imported under one name, so the revision's ``trainers``
package (and the benchmark modules that build a trainer, ``speed.py`` and ``common.py``) is
exported with ``git archive`` into a temporary folder and renamed ``trainers_at_rev``, its imports
rewritten to match. Each version builds the speed benchmark's SAC trainer
(``speed.build_trainrl``, compiled loss) and trains ``--frames`` frames; then the two take turns,
``--chunk`` optimization steps each (replay sample, loss and gradients, Adam, target update:
``Trainer._optim_step``), the order reversed every other round, with denormals flushed as
``train()`` does.

Run: ``python benchmarks/commit_ab.py REV [--env HalfCheetah-v5] [--threads 2] [--rounds 16]``.
Prints the median ms per step of each and the per-round ratio of the revision's time to the
working tree's (above 1: the working tree is faster). On the 2-core AMD VM the working tree
against its own HEAD gave 1.00-1.02, so smaller differences are not resolved
(``docs/benchmarks.md``).
"""

from __future__ import annotations

import argparse
import importlib
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from trainers.trainer.denormals import denormals_flushed

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))  # the benchmarks folder is not a package

PACKAGE = "trainers_at_rev"
# `from trainers...`/`import trainers...` and dotted names in strings ("trainers.objectives").
_IMPORT = re.compile(r"\b(from|import) trainers\b")
_DOTTED = re.compile(r"([\"'])trainers\.")


def export_revision(revision: str, folder: Path) -> None:
    """Writes ``revision``'s ``trainers`` as ``PACKAGE`` and its ``speed.py``/``common.py`` as
    ``speed_at_rev``/``common_at_rev`` into ``folder``, imports rewritten to those names."""
    paths = ["trainers", "benchmarks/speed.py", "benchmarks/common.py"]
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, *paths], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    (folder / "trainers").rename(folder / PACKAGE)
    for name in ("speed", "common"):
        (folder / "benchmarks" / f"{name}.py").rename(folder / f"{name}_at_rev.py")
    for source in [*folder.glob(f"{PACKAGE}/**/*.py"), *folder.glob("*_at_rev.py")]:
        text = _IMPORT.sub(rf"\1 {PACKAGE}", source.read_text())
        text = _DOTTED.sub(rf"\1{PACKAGE}.", text)
        source.write_text(text.replace("from common import", "from common_at_rev import"))


def build(speed: ModuleType, common: ModuleType, env: str, threads: int, frames: int) -> Any:
    """The speed benchmark's SAC trainer of one version, trained ``frames`` frames."""
    case = speed.Case("trainrl", "sac", env, threads, frames)
    trainer, _ = speed.build_trainrl(case, common.SAC, compile=True)
    trainer.train()
    return trainer


def time_chunk(trainer: Any, steps: int) -> float:
    """Milliseconds per optimization step over ``steps`` steps (the batch argument is unused by
    SAC's replay sampling)."""
    start = time.perf_counter()
    for _ in range(steps):
        trainer._optim_step(None)
    return (time.perf_counter() - start) / steps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revision", help="a git revision, e.g. HEAD~3 or a commit hash")
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--frames", type=int, default=2000, help="frames trained before the A/B")
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--chunk", type=int, default=100, help="steps per turn")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        export_revision(args.revision, Path(folder))
        sys.path.insert(0, folder)
        versions = {
            args.revision: (
                importlib.import_module("speed_at_rev"),
                importlib.import_module("common_at_rev"),
            ),
            "working tree": (importlib.import_module("speed"), importlib.import_module("common")),
        }
        trainers = {
            label: build(speed, common, args.env, args.threads, args.frames)
            for label, (speed, common) in versions.items()
        }
        packages = [type(trainer).__module__.split(".")[0] for trainer in trainers.values()]
        if packages != [PACKAGE, "trainers"]:
            raise SystemExit(f"the two trainers come from {packages}, not the two versions")
        times: dict[str, list[float]] = {label: [] for label in trainers}
        with denormals_flushed():  # on every torch thread, as train() does
            for round_index in range(args.rounds):
                order = list(trainers) if round_index % 2 == 0 else list(trainers)[::-1]
                for label in order:
                    times[label].append(time_chunk(trainers[label], args.chunk))
    print(f"{args.env}, SAC, torch threads = {args.threads}, {args.rounds} rounds x {args.chunk} "
          "steps per version\n")  # fmt: skip
    print("| version | ms per step (median) | range |")
    print("| --- | ---: | ---: |")
    for label, values in times.items():
        print(f"| {label} | {statistics.median(values):.3f} | "
              f"{min(values):.2f}-{max(values):.2f} |")  # fmt: skip
    ratios = [a / b for a, b in zip(*times.values(), strict=True)]
    print(f"\n{args.revision} / working tree, per round: median {statistics.median(ratios):.3f}, "
          f"range {min(ratios):.3f}-{max(ratios):.3f}")  # fmt: skip


if __name__ == "__main__":
    main()
