"""Collector overhead: SyncDataCollector vs raw Gymnasium stepping on 8 HalfCheetah-v5 envs.

Measures, in one process and interleaved repeat by repeat (so that machine load hits both
alike), the frames per second of

(a) ``gymnasium.vector.SyncVectorEnv`` over 8 ``HalfCheetah-v5`` envs with random actions;
(b) ``SyncDataCollector`` over ``GymEnv("HalfCheetah-v5", num_envs=8)`` with a 64x64 Tanh MLP
    tanh-normal policy written below as a minimal ``TensorDictModuleBase``;
(c) the same collector with ``trainers.modules.TanhNormalActor`` (when that package imports).

and prints a markdown table with the medians and the ratio of the time per frame of each
collector to the raw stepping. Run: ``python benchmarks/collector.py [--repeats 7]``.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from collections.abc import Callable

import gymnasium as gym
import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import (
    InteractionType,
    TensorDictModuleBase,
    interaction_type,
    set_interaction_type,
)
from torch import nn
from torch.nn import functional as F

from trainers.collectors import SyncDataCollector
from trainers.collectors.sync import splits_outputs
from trainers.envs import GymEnv

ENV_NAME = "HalfCheetah-v5"
NUM_ENVS = 8
FRAMES_PER_BATCH = 1000
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class MinimalTanhNormalPolicy(TensorDictModuleBase):
    """obs -> 64x64 Tanh MLP -> (loc, log_std) -> tanh(loc + std * eps), with its log-prob.

    Written with functional calls (no ``nn.Sequential`` dispatch) and fused ops: this is the
    cheapest eager form of the policy, so the benchmark shows the collector's own overhead.
    """

    in_keys = ["observation"]
    out_keys = ["action", "sample_log_prob"]

    def __init__(self, obs_dim: int, action_dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            [nn.Linear(obs_dim, 64), nn.Linear(64, 64), nn.Linear(64, 2 * action_dim)]
        )
        self.register_buffer("log_const", torch.tensor(action_dim * HALF_LOG_2PI))
        self.register_buffer("one", torch.tensor(1.0 + 1e-6))

    def forward(self, td: TensorDictBase) -> TensorDictBase:
        first, second, last = self.layers
        h = torch.tanh(F.linear(td.get("observation"), first.weight, first.bias))
        h = torch.tanh(F.linear(h, second.weight, second.bias))
        loc, log_std = F.linear(h, last.weight, last.bias).chunk(2, dim=-1)
        if interaction_type() in (None, InteractionType.RANDOM):
            eps = torch.randn_like(loc)
            action = torch.tanh(torch.addcmul(loc, log_std.exp(), eps))
        else:
            eps = torch.zeros_like(loc)
            action = torch.tanh(loc)
        # log N(eps) - log std - log(1 - tanh^2), summed over the action dimensions
        log_det = torch.addcmul(self.one, action, action, value=-1.0).log_()
        per_dim = torch.addcmul(log_std, eps, eps, value=0.5).add_(log_det)
        td.set("action", action)
        td.set("sample_log_prob", per_dim.sum(-1).neg_().sub_(self.log_const))
        return td


def modules_policy(obs_dim: int, action_dim: int) -> nn.Module | None:
    """``trainers.modules.TanhNormalActor`` with a 64x64 Tanh MLP, if that package imports."""
    try:
        from trainers.modules import MLP, TanhNormalActor
    except ImportError:
        return None
    network = MLP(obs_dim, 2 * action_dim, [64, 64], activation_class=nn.Tanh)
    return TanhNormalActor(network, low=-torch.ones(action_dim), high=torch.ones(action_dim))


def time_raw(venv: gym.vector.SyncVectorEnv, steps: int) -> tuple[float, float]:
    """Wall and CPU seconds per frame of raw vector stepping with random actions."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        venv.step(venv.action_space.sample())
    frames = steps * NUM_ENVS
    return (time.perf_counter() - wall) / frames, (time.process_time() - cpu) / frames


def time_collector(collector: SyncDataCollector, batches: int) -> tuple[float, float]:
    """Wall and CPU seconds per frame of collecting ``batches`` batches."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        collector.collect_batch()
    frames = batches * FRAMES_PER_BATCH
    return (time.perf_counter() - wall) / frames, (time.process_time() - cpu) / frames


def time_policy(policy: nn.Module, calls: int = 3000) -> float:
    """Median wall seconds per call of ``policy`` on a batch of 8 observations.

    The call is the one the collector makes per step: ``act`` for a policy that splits its
    outputs (``TanhNormalActor``; its log-probability is computed once per batch).
    """
    td = TensorDict({"observation": torch.randn(NUM_ENVS, 17)}, batch_size=[NUM_ENVS])
    call = policy.act if splits_outputs(policy) else policy
    times = []
    with torch.no_grad(), set_interaction_type(InteractionType.RANDOM):
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(calls):
                call(td)
            times.append((time.perf_counter() - start) / calls)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--batches", type=int, default=4, help="batches of 1000 frames per repeat")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)

    venv = gym.vector.SyncVectorEnv([lambda: gym.make(ENV_NAME) for _ in range(NUM_ENVS)])
    venv.reset(seed=0)
    venv.action_space.seed(0)
    steps = args.batches * FRAMES_PER_BATCH // NUM_ENVS

    policies: dict[str, nn.Module] = {"minimal policy": MinimalTanhNormalPolicy(17, 6)}
    actor = modules_policy(17, 6)
    if actor is not None:
        policies["trainers.modules.TanhNormalActor"] = actor
    runs: dict[str, Callable[[], tuple[float, float]]] = {
        "raw SyncVectorEnv, random actions": lambda: time_raw(venv, steps)
    }
    collectors = []
    for name, policy in policies.items():
        collector = SyncDataCollector(
            GymEnv(ENV_NAME, num_envs=NUM_ENVS), policy, frames_per_batch=FRAMES_PER_BATCH
        )
        collector.set_seed(0)
        collectors.append(collector)
        runs[f"SyncDataCollector, {name}"] = lambda c=collector: time_collector(c, args.batches)
    for run in runs.values():  # warm-up
        run()
    # Interleaved repeats: a load spike from other processes hits every variant alike.
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            samples[name].append(run())

    raw_wall = statistics.median(w for w, _ in samples["raw SyncVectorEnv, random actions"])
    raw_cpu = statistics.median(c for _, c in samples["raw SyncVectorEnv, random actions"])
    print(
        f"{ENV_NAME} x {NUM_ENVS} envs, {args.repeats} interleaved repeats of "
        f"{args.batches * FRAMES_PER_BATCH} frames after a warm-up, torch threads = 1, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}\n"
    )
    print(
        "| what | frames/s (median) | us per vector step | time ratio vs raw "
        "| CPU-time ratio vs raw |"
    )
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, values in samples.items():
        wall = statistics.median(w for w, _ in values)
        cpu = statistics.median(c for _, c in values)
        print(
            f"| {name} | {1 / wall:,.0f} | {wall * NUM_ENVS * 1e6:.0f} "
            f"| {wall / raw_wall:.3f} | {cpu / raw_cpu:.3f} |"
        )
    print("\n| policy alone, batch 8, no_grad, hot loop (the per-step call) | us per call |")
    print("| --- | ---: |")
    for name, policy in policies.items():
        print(f"| {name} | {time_policy(policy) * 1e6:.1f} |")
    for collector in collectors:
        collector.shutdown()
    venv.close()


if __name__ == "__main__":
    main()
