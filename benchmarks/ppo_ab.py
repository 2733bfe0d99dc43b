"""A/B of PPO's ``loss.compile`` on two copies of one training state.

A ``PPOTrainer`` (the speed benchmark's, ``speed.build_trainrl``, at ``--setting``) trains one
batch, keeping its minibatches as the loss saw them (advantages included); its loss (networks,
batched actor-critic) and optimizer are then copied twice, one copy with ``compile=True`` and
one without. The copies continue in alternating chunks of ``--chunk`` gradient steps (the order
reversed every other round) on those minibatches: loss, backward, gradient clipping, Adam step,
as the trainer's optimizer hook does. The compiled
copy's first step, which compiles, runs before the timed rounds. Prints the time per gradient
step of each.
Run: ``python benchmarks/ppo_ab.py [--env HalfCheetah-v5] [--setting ppo-cleanrl] [--rounds 10]
[--threads 1]``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDictBase

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import SETTINGS, PPOSettings  # the benchmarks folder is not a package
from speed import Case, build_trainrl


@dataclass
class Arm:
    """One copy of the training state and its timings (ms per gradient step)."""

    label: str
    loss: Any
    optimizer: torch.optim.Optimizer
    step_ms: list[float] = field(default_factory=list)


def copy_arm(trainer: Any, label: str, compiled: bool) -> Arm:
    """A deep copy of the trainer's loss (built with ``compile=True``; a copy compiles its own
    graph) and optimizer state (its learning rate and epsilon included), compiled or not."""
    loss = copy.deepcopy(trainer.loss_module)
    if not compiled:
        loss.compiled = None
    optimizer = torch.optim.Adam(loss.parameters(), fused=True)
    optimizer.load_state_dict(copy.deepcopy(trainer.optimizer.state_dict()))
    return Arm(label, loss, optimizer)


def run_chunk(arm: Arm, minibatches: list[TensorDictBase], max_grad_norm: float) -> None:
    """One gradient step of ``arm`` per minibatch."""
    start = time.perf_counter()
    for minibatch in minibatches:
        losses = arm.loss(minibatch)
        sum(v for k, v in losses.items() if k.startswith("loss_")).backward()
        torch.nn.utils.clip_grad_norm_(arm.loss.parameters(), max_grad_norm)
        arm.optimizer.step()
        arm.optimizer.zero_grad(set_to_none=True)
    arm.step_ms.append((time.perf_counter() - start) / len(minibatches) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="HalfCheetah-v5")
    parser.add_argument("--setting", choices=["ppo-cleanrl", "ppo-light"], default="ppo-cleanrl")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=100, help="gradient steps per turn")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = SETTINGS[args.setting]
    assert isinstance(settings, PPOSettings)
    seen: list[TensorDictBase] = []
    case = Case("trainrl", args.setting, args.env, args.threads, settings.frames_per_batch)
    trainer, _ = build_trainrl(case, settings, compile=True)
    trainer.register_op("process_optim_batch", lambda td: seen.append(td.clone()) or None)
    trainer.train()
    minibatches = seen[-args.chunk :]
    arms = [copy_arm(trainer, "compiled", True), copy_arm(trainer, "eager", False)]
    for arm in arms:  # compiles the compiled arm's step
        run_chunk(arm, minibatches[:1], settings.max_grad_norm)
        arm.step_ms.clear()
    for round_index in range(args.rounds):
        for arm in arms if round_index % 2 else arms[::-1]:
            run_chunk(arm, minibatches, settings.max_grad_norm)
    print(f"{args.env}, {args.setting}: minibatch {settings.minibatch_size}, {args.rounds} "
          f"rounds x {len(minibatches)} gradient steps per copy, "
          f"torch threads = {args.threads}\n")  # fmt: skip
    print("| arm | ms per gradient step (median) | range over rounds |")
    print("| --- | ---: | ---: |")
    for arm in arms:
        print(f"| {arm.label} | {statistics.median(arm.step_ms):.3f} | "
              f"{min(arm.step_ms):.3f}-{max(arm.step_ms):.3f} |")  # fmt: skip
    compiled, eager = arms
    ratio = statistics.median(eager.step_ms) / statistics.median(compiled.step_ms)
    print(f"\neager gradient steps take {ratio:.2f}x the time of compiled ones")


if __name__ == "__main__":
    main()
