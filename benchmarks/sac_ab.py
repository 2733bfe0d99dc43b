"""A/B of one SAC speed setting on two copies of one warm training state.

``--compare denormals``: what flushing denormals saves (``trainer.flush_denormals``).
``--compare workers --threads 2``: what flushing them on torch's OpenMP workers too saves, as
``train()`` does since 6d59761, against flushing on the training thread only.
``--compare fused``: what SAC's hand-derived backward pass saves (``loss.fused``), both arms
flushing denormals.
``--compare compile``: what compiling the fused path saves (``loss.compile``; the first compiled
update, which compiles, runs before the timed rounds), both arms fused and flushing denormals.
``--compare fused_update``: what skipping autograd's backward pass saves
(``trainer.fused_update``): each arm is a ``SACTrainer`` over its copy, taking the trainer's own
optimization steps (sampling included), both with the compiled loss and flushing denormals.

A ``SACTrainer`` (the speed benchmark's, ``speed.build_trainrl``) trains 1,000 random warm-up
frames and then ``--frames`` frames with ``flush_denormals=False``, so its Adam moments hold the
denormals that dead ReLU units leave. Its loss (networks and target networks) and optimizer are
then copied twice; the copies continue, one with each value of the setting, in alternating chunks
of ``--chunk`` updates (the order reversed every other round), sampling from the same replay
buffer. Prints the time per update (loss, backward, Adam step, target update) and per Adam step
of each, and the share of denormal Adam moments at the end.
Run: ``python benchmarks/sac_ab.py --compare fused [--env HalfCheetah-v5] [--rounds 10]
[--threads 1]``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SAC  # the benchmarks folder is not a package
from speed import Case, build_trainrl

from trainers.objectives import SoftUpdate
from trainers.trainer.denormals import denormals_flushed


@dataclass
class Arm:
    """One copy of the training state and its timings (ms per update, ms per Adam step)."""

    label: str
    flush: str  # "all" threads (as train()), the training thread only ("main"), or "none"
    loss: Any
    optimizer: torch.optim.Optimizer
    target_updater: SoftUpdate
    update_ms: list[float] = field(default_factory=list)
    adam_ms: list[float] = field(default_factory=list)
    trainer: Any = None  # --compare fused_update: the arm's SACTrainer, which takes the steps


def trainer_arm(trainer: Any, label: str, fused_update: bool, lr: float, tau: float) -> Arm:
    """A copy of the trainer's state (compiled loss) in a ``SACTrainer`` of its own, sampling
    from the trainer's replay buffer, with ``fused_update`` as given."""
    from trainers.algorithms import SACTrainer

    arm = copy_arm(trainer, label, "all", "compiled", lr, tau)
    arm.trainer = SACTrainer(
        collector=trainer.collector,  # never iterated: the arm only takes optimization steps
        total_frames=trainer.total_frames,
        frame_skip=1,
        optim_steps_per_batch=1,
        loss_module=arm.loss,
        optimizer=arm.optimizer,
        replay_buffer=trainer.replay_buffer,
        batch_size=SAC.batch_size,
        target_net_updater=arm.target_updater,
        logger=None,
        progress_bar=False,
        save_trainer_file=None,
        fused_update=fused_update,
    )
    return arm


def copy_arm(trainer: Any, label: str, flush: str, path: str, lr: float, tau: float) -> Arm:
    """A deep copy of the trainer's loss and optimizer state (no tensor shared), whose losses
    come from ``path``: ``fused``, ``compiled`` (fused, ``compile=True``) or ``autograd``."""
    loss = copy.deepcopy(trainer.loss_module)
    if path == "autograd":
        loss.fused_path, loss.fused_unsupported = None, "fused=False"
    else:
        loss.fused_path.compile = path == "compiled"
    optimizer = torch.optim.Adam(loss.parameters(), lr=lr, fused=True)
    optimizer.load_state_dict(copy.deepcopy(trainer.optimizer.state_dict()))
    return Arm(label, flush, loss, optimizer, SoftUpdate(loss, tau=tau))


@contextlib.contextmanager
def flushing(mode: str) -> Iterator[None]:
    """Denormals flushed on every torch thread (``all``, as ``train()`` does), on this thread
    only (``main``, as ``train()`` did before 6d59761) or nowhere (``none``)."""
    if mode != "main":
        with denormals_flushed(mode == "all"):
            yield
        return
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def run_chunk(arm: Arm, buffer: Any, updates: int) -> None:
    """``updates`` SAC updates of ``arm`` with flushing set as the arm says."""
    with flushing(arm.flush):
        adam = 0.0
        start = time.perf_counter()
        for _ in range(updates if arm.trainer is not None else 0):  # the trainer's own steps
            arm.trainer._optim_step(None)
        for _ in range(updates if arm.trainer is None else 0):
            losses = arm.loss(buffer.sample())
            (losses["loss_actor"] + losses["loss_qvalue"] + losses["loss_alpha"]).backward()
            before_step = time.perf_counter()
            arm.optimizer.step()
            adam += time.perf_counter() - before_step
            arm.optimizer.zero_grad()
            arm.target_updater.step()
        arm.update_ms.append((time.perf_counter() - start) / updates * 1e3)
        arm.adam_ms.append(adam / updates * 1e3)


def denormal_share(optimizer: torch.optim.Optimizer) -> float:
    """Fraction of the Adam moments that are denormal (non-zero, below float32's tiny)."""
    tiny = torch.finfo(torch.float32).tiny
    total = denormal = 0
    for state in optimizer.state.values():
        for name in ("exp_avg", "exp_avg_sq"):
            moment = state[name]
            total += moment.numel()
            denormal += int(((moment != 0) & (moment.abs() < tiny)).sum())
    return denormal / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--compare",
        choices=["denormals", "workers", "fused", "compile", "fused_update"],
        default="denormals",
    )
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument(
        "--frames", type=int, default=2000, help="frames trained after the warm-up, before the A/B"
    )
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=100, help="updates per turn")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    if not torch.set_flush_denormal(True):
        raise SystemExit("this CPU cannot flush denormals (torch.set_flush_denormal is False)")
    torch.set_flush_denormal(False)
    torch.set_num_threads(args.threads)
    settings = SAC
    case = Case("trainrl", "sac", args.env, args.threads, args.frames)
    trainer, _ = build_trainrl(case, settings, compile=False)
    trainer.flush_denormals = False
    trainer.train()
    arm_settings = {
        "denormals": [("flush denormals", "all", "fused"), ("keep denormals", "none", "fused")],
        "workers": [
            ("flush on every thread", "all", "fused"),
            ("flush on the training thread only", "main", "fused"),
        ],
        "fused": [("fused", "all", "fused"), ("autograd", "all", "autograd")],
        "compile": [("compiled", "all", "compiled"), ("fused", "all", "fused")],
        "fused_update": [("fused update", "all", "on"), ("hook by hook", "all", "off")],
    }[args.compare]
    arms = [
        trainer_arm(trainer, label, path == "on", settings.lr, settings.tau)
        if args.compare == "fused_update"
        else copy_arm(trainer, label, flush, path, settings.lr, settings.tau)
        for label, flush, path in arm_settings
    ]
    for arm in arms:  # compiles the compiled arm's update
        run_chunk(arm, trainer.replay_buffer, 1)
        arm.update_ms.clear()
        arm.adam_ms.clear()
    for round_index in range(args.rounds):
        for arm in arms if round_index % 2 else arms[::-1]:
            run_chunk(arm, trainer.replay_buffer, args.chunk)
    print(f"{args.env}: SAC updates after {trainer.state.frames} frames, "
          f"{args.rounds} rounds x {args.chunk} updates per copy, "
          f"torch threads = {args.threads}\n")  # fmt: skip
    print("| arm | ms per update (median) | ms per Adam step (median) | "
          "denormal Adam moments at the end |")  # fmt: skip
    print("| --- | ---: | ---: | ---: |")
    for arm in arms:
        print(
            f"| {arm.label} | {statistics.median(arm.update_ms):.2f} | "
            f"{'-' if arm.trainer is not None else f'{statistics.median(arm.adam_ms):.2f}'} | "
            f"{denormal_share(arm.optimizer):.1%} |"
        )
    first, second = arms
    ratio = statistics.median(second.update_ms) / statistics.median(first.update_ms)
    print(f"\nupdates with {second.label} take {ratio:.2f}x the time of those with {first.label}")


if __name__ == "__main__":
    main()
