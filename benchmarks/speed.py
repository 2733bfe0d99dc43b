"""End-to-end training speed: trainrl vs a hand-written loop, Stable-Baselines3 and raw stepping.

One command measures, on CPU and sequentially (one subprocess per measurement, never two at
once), the training frames per second of

* **raw**: ``gymnasium.vector.SyncVectorEnv`` with random actions, the same number of envs
  (no learning: the ceiling set by the simulators);
* **minimal**: the single-file loops ``benchmarks/minimal_ppo.py`` / ``minimal_sac.py`` (plain
  torch + gymnasium);
* **sb3**: Stable-Baselines3 ``PPO`` / ``SAC`` with every setting made explicit;
* **trainrl**: ``PPOTrainer`` / ``SACTrainer`` built through the Python API
  (``GymEnv``, ``SyncDataCollector``, ``trainers.modules`` builders, ``trainers.objectives``),
  ``progress_bar=False``, ``logger=None``, no checkpoint;

for PPO at two settings (``ppo-cleanrl``, ``ppo-light``) and SAC, on ``Pendulum-v1`` and
``HalfCheetah-v5``, and prints markdown tables with frames/s and the ratios trainrl/SB3,
trainrl/minimal and trainrl/raw, plus hardware, versions, thread count and machine load.

Timed window: every contender records ``(frames, time)`` after each iteration; frames/s are
measured between two such marks, so process start-up, imports, construction and warm-up stay
out of it for everyone. PPO: the first batch is warm-up, then whole batches (collect + all
epochs) are timed. SAC: the random warm-up (``learning_starts`` frames) is excluded for all;
SB3 and the minimal loop then run 100 untimed update frames before the window, trainrl is
already warm (it also updates on its random batch, see ``docs/benchmarks.md``); the window
holds exactly one gradient step per frame for every contender.

Run: ``python benchmarks/speed.py`` (about 12 minutes on 2 cores) or ``--quick`` (about 3
minutes); ``--profile`` prints a cProfile breakdown of trainrl's PPO and SAC iterations instead.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import json
import math
import os
import platform
import pstats
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # the benchmarks folder is not a package
    SETTINGS,
    Marks,
    PPOSettings,
    SACSettings,
    window,
)

ENVS = ("Pendulum-v1", "HalfCheetah-v5")
CONTENDERS = ("raw", "minimal", "sb3", "trainrl")
LABELS = {
    "raw": "raw SyncVectorEnv",
    "minimal": "minimal loop",
    "sb3": "SB3",
    "trainrl": "trainrl",
}
SAC_WARM_UPDATES = 100  # untimed update frames of SB3 and the minimal loop before the window
SAC_TRAINRL_BATCH = 1000  # trainrl SAC frames per batch (conf/sac.yaml); --quick: 500
RAW_MIN_FRAMES = 20_000  # raw stepping is fast: time at least this many frames


@dataclass(frozen=True)
class Case:
    """One measurement: a contender on a setting and env with a torch thread count."""

    contender: str
    setting: str
    env: str
    threads: int
    timed_frames: int  # frames in the timed window


# Contenders ---------------------------------------------------------------------------------
# Each runner trains (or steps) for the case and returns its marks and the window's start.


def run_raw(case: Case, settings: PPOSettings | SACSettings) -> tuple[list, int]:
    import gymnasium as gym

    venv = gym.vector.SyncVectorEnv([lambda: gym.make(case.env)] * settings.num_envs)
    venv.reset(seed=0)
    venv.action_space.seed(0)
    marks = Marks()
    frames = max(case.timed_frames, RAW_MIN_FRAMES)
    warm = 1000
    for step in range(warm + frames // settings.num_envs):
        if step == warm:
            marks(0)
        venv.step(venv.action_space.sample())
    marks(frames - frames % settings.num_envs)
    venv.close()
    return marks.marks, 0


def run_minimal(case: Case, settings: PPOSettings | SACSettings) -> tuple[list, int]:
    marks = Marks()
    if isinstance(settings, PPOSettings):
        import minimal_ppo

        start = settings.frames_per_batch
        minimal_ppo.train(
            case.env,
            total_frames=start + case.timed_frames,
            num_envs=settings.num_envs,
            steps_per_env=settings.steps_per_env,
            num_epochs=settings.num_epochs,
            minibatch_size=settings.minibatch_size,
            num_cells=settings.num_cells,
            lr=settings.lr,
            adam_eps=settings.adam_eps,
            gamma=settings.gamma,
            lmbda=settings.lmbda,
            clip_epsilon=settings.clip_epsilon,
            max_grad_norm=settings.max_grad_norm,
            critic_coeff=settings.critic_coeff,
            entropy_coeff=settings.entropy_coeff,
            on_iteration=marks,
        )
        return marks.marks, start
    import minimal_sac

    start = settings.learning_starts + SAC_WARM_UPDATES
    minimal_sac.train(
        case.env,
        total_frames=start + case.timed_frames,
        num_cells=settings.num_cells,
        batch_size=settings.batch_size,
        lr=settings.lr,
        tau=settings.tau,
        gamma=settings.gamma,
        learning_starts=settings.learning_starts,
        buffer_size=settings.buffer_size,
        on_step=marks,
    )
    return marks.marks, start


def run_sb3(case: Case, settings: PPOSettings | SACSettings) -> tuple[list, int]:
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from torch import nn

    marks = Marks()

    class MarkIterations(BaseCallback):
        """A mark at the start of each rollout: the previous iteration's training is done."""

        def _on_rollout_start(self) -> None:
            marks(self.num_timesteps)

        def _on_step(self) -> bool:
            return True

    venv = make_vec_env(case.env, n_envs=settings.num_envs, seed=0)
    model: Any
    if isinstance(settings, PPOSettings):
        start = settings.frames_per_batch
        model = PPO(
            "MlpPolicy",
            venv,
            learning_rate=settings.lr,
            n_steps=settings.steps_per_env,
            batch_size=settings.minibatch_size,
            n_epochs=settings.num_epochs,
            gamma=settings.gamma,
            gae_lambda=settings.lmbda,
            clip_range=settings.clip_epsilon,
            normalize_advantage=True,
            ent_coef=settings.entropy_coeff,
            vf_coef=settings.critic_coeff,
            max_grad_norm=settings.max_grad_norm,
            policy_kwargs={
                "net_arch": {"pi": list(settings.num_cells), "vf": list(settings.num_cells)},
                "activation_fn": nn.Tanh,
                "optimizer_kwargs": {"eps": settings.adam_eps},
            },
            device="cpu",
            seed=0,
            verbose=0,
        )
    else:
        start = settings.learning_starts + SAC_WARM_UPDATES
        model = SAC(
            "MlpPolicy",
            venv,
            learning_rate=settings.lr,
            buffer_size=settings.buffer_size,
            learning_starts=settings.learning_starts,
            batch_size=settings.batch_size,
            tau=settings.tau,
            gamma=settings.gamma,
            train_freq=1,
            gradient_steps=settings.updates_per_frame,
            ent_coef="auto",
            target_update_interval=1,
            policy_kwargs={"net_arch": list(settings.num_cells), "activation_fn": nn.ReLU},
            device="cpu",
            seed=0,
            verbose=0,
        )
    model.learn(total_timesteps=start + case.timed_frames, callback=MarkIterations())
    marks(model.num_timesteps)
    return marks.marks, start


def run_trainrl(case: Case, settings: PPOSettings | SACSettings) -> tuple[list, int]:
    trainer, start = build_trainrl(case, settings)
    marks = Marks()
    trainer.register_op("post_epoch", lambda: marks(trainer.state.frames))
    trainer.train()
    return marks.marks, start


def build_trainrl(case: Case, settings: PPOSettings | SACSettings) -> tuple[Any, int]:
    """The trainer for ``case`` and the frame count at which its timed window starts."""
    import torch

    from trainers.algorithms import PPOTrainer, SACTrainer
    from trainers.collectors import SyncDataCollector
    from trainers.data import LazyTensorStorage, RandomSampler, TensorDictReplayBuffer
    from trainers.envs import GymEnv
    from trainers.modules import make_qvalue_network, make_tanh_normal_actor, make_value_network
    from trainers.objectives import ClipPPOLoss, SACLoss, SoftUpdate

    torch.manual_seed(0)
    env = GymEnv(case.env, num_envs=settings.num_envs)
    cells = list(settings.num_cells)
    if isinstance(settings, PPOSettings):
        start = settings.frames_per_batch
        total = start + case.timed_frames
        # A learned state-independent log-std, like SB3's and the minimal loop's policies.
        actor = make_tanh_normal_actor(
            env, num_cells=cells, activation_class="tanh", state_independent_scale=True,
            scale_mapping="exp",
        )  # fmt: skip
        critic = make_value_network(env, num_cells=cells, activation_class="tanh")
        loss = ClipPPOLoss(
            actor,
            critic,
            clip_epsilon=settings.clip_epsilon,
            entropy_coeff=settings.entropy_coeff,
            critic_coeff=settings.critic_coeff,
            normalize_advantage=True,
        )
        # fused=True: trainrl's configs default to the fused Adam kernel (configs/optim.py).
        optimizer = torch.optim.Adam(
            loss.parameters(), lr=settings.lr, eps=settings.adam_eps, fused=True
        )
        trainer = PPOTrainer(
            collector=SyncDataCollector(
                env, actor, frames_per_batch=settings.frames_per_batch, total_frames=total
            ),
            total_frames=total,
            loss_module=loss,
            optimizer=optimizer,
            batch_size=settings.minibatch_size,
            num_epochs=settings.num_epochs,
            gamma=settings.gamma,
            lmbda=settings.lmbda,
            clip_norm=settings.max_grad_norm,
            logger=None,
            progress_bar=False,
            save_trainer_file=None,
            seed=0,
        )
        return trainer, start
    # After its first (random) batch trainrl has done learning_starts updates: it is warm.
    start = settings.learning_starts
    total = start + case.timed_frames
    batch = math.gcd(SAC_TRAINRL_BATCH, case.timed_frames, start)
    actor = make_tanh_normal_actor(env, num_cells=cells, activation_class="relu")
    qvalue = make_qvalue_network(env, num_cells=cells, activation_class="relu")
    loss = SACLoss(actor, qvalue, gamma=settings.gamma, action_spec=env.action_spec)
    trainer = SACTrainer(
        collector=SyncDataCollector(
            env,
            actor,
            frames_per_batch=batch,
            total_frames=total,
            init_random_frames=settings.learning_starts,
        ),
        total_frames=total,
        frame_skip=1,
        optim_steps_per_batch=batch * settings.updates_per_frame,
        loss_module=loss,
        optimizer=torch.optim.Adam(loss.parameters(), lr=settings.lr, fused=True),
        replay_buffer=TensorDictReplayBuffer(
            storage=LazyTensorStorage(settings.buffer_size),
            sampler=RandomSampler(),
            batch_size=settings.batch_size,
        ),
        batch_size=settings.batch_size,
        target_net_updater=SoftUpdate(loss, tau=settings.tau),
        logger=None,
        progress_bar=False,
        save_trainer_file=None,
        seed=0,
    )
    return trainer, start


RUNNERS: dict[str, Callable[[Case, Any], tuple[list, int]]] = {
    "raw": run_raw,
    "minimal": run_minimal,
    "sb3": run_sb3,
    "trainrl": run_trainrl,
}


def worker(case: Case) -> dict[str, Any]:
    """Runs one case in this process and returns its timed window."""
    import torch

    torch.set_num_threads(case.threads)
    load_before = os.getloadavg()[0]
    if case.contender == "floor":
        settings = SETTINGS[case.setting]
        assert isinstance(settings, SACSettings)
        fps = 1000 / sac_gemm_floor_ms(case.env, settings, case.threads)
        load = (load_before + os.getloadavg()[0]) / 2
        return {"case": case.__dict__, "frames": 0, "fps": fps, "load": load}
    marks, start = RUNNERS[case.contender](case, SETTINGS[case.setting])
    frames, wall, cpu = window(marks, start)
    return {
        "case": case.__dict__,
        "frames": frames,
        "wall_s": wall,
        "cpu_s": cpu,
        "fps": frames / wall,
        "cpu_fps": frames / cpu,
        "load": (load_before + os.getloadavg()[0]) / 2,
    }


# Orchestration ------------------------------------------------------------------------------


def plan(quick: bool, threads: list[int], sac_threads: list[int]) -> list[Case]:
    """Every case of one repeat, in run order (the contenders of a table row back to back)."""
    batches = {"ppo-cleanrl": 1 if quick else 2, "ppo-light": 2 if quick else 4}
    cases = []
    for setting in ("ppo-cleanrl", "ppo-light", "sac"):
        settings = SETTINGS[setting]
        if isinstance(settings, PPOSettings):
            timed = batches[setting] * settings.frames_per_batch
        else:
            timed = 500 if quick else 1000
        for env in ENVS:
            for n in sac_threads if setting == "sac" else threads:
                extra = ("floor",) if setting == "sac" else ()
                for contender in (*CONTENDERS, *extra):
                    cases.append(Case(contender, setting, env, n, timed))
    return cases


def default_repeats(quick: bool) -> dict[str, int]:
    """Runs of each case; SAC's are long, so it gets fewer."""
    if quick:
        return dict.fromkeys(SETTINGS, 1)
    return {"ppo-cleanrl": 5, "ppo-light": 5, "sac": 3}


def run_case(case: Case) -> dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS=str(case.threads), MKL_NUM_THREADS=str(case.threads))
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(case.__dict__)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{case} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def system_info() -> list[str]:
    import gymnasium
    import mujoco
    import stable_baselines3
    import tensordict
    import torch

    model = platform.processor() or "unknown"
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next(
            (x.split(":", 1)[1].strip() for x in lscpu.splitlines() if x.startswith("Model name")),
            model,
        )
    except OSError:
        pass
    return [
        f"- date: {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}",
        f"- CPU: {model}, {os.cpu_count()} logical cores (lscpu), {platform.machine()}, "
        f"{platform.system()} {platform.release()}",
        f"- python {platform.python_version()}, torch {torch.__version__}, tensordict "
        f"{tensordict.__version__}, gymnasium {gymnasium.__version__}, mujoco "
        f"{mujoco.__version__}, stable-baselines3 {stable_baselines3.__version__}",
    ]


def _fmt_ratio(value: float) -> str:
    return f"{value:.2f}" if value >= 0.1 else f"{value:.2g}"


def _ratios(best: dict[str, float], median: dict[str, float], other: str) -> str:
    """trainrl / ``other``: from the best runs in bold, from the medians in parentheses."""
    if "trainrl" not in best or other not in best:
        return "-"
    return (
        f"**{_fmt_ratio(best['trainrl'] / best[other])}** "
        f"({_fmt_ratio(median['trainrl'] / median[other])})"
    )


def report(results: list[dict[str, Any]]) -> list[str]:
    """Markdown tables: one per setting and thread count, one row per env."""
    by_key: dict[tuple, dict[str, list[dict[str, Any]]]] = {}
    for r in results:
        c = r["case"]
        row = by_key.setdefault((c["setting"], c["threads"], c["env"]), {})
        row.setdefault(c["contender"], []).append(r)
    lines: list[str] = []
    tables = sorted(
        {(s, t) for s, t, _ in by_key}, key=lambda k: (list(SETTINGS).index(k[0]), k[1])
    )
    for setting, threads in tables:
        settings = SETTINGS[setting]
        floor = isinstance(settings, SACSettings)
        lines += [
            "",
            f"### {setting}, torch threads = {threads}",
            "",
            f"{settings.describe()}.",
            "",
            "| env | raw SyncVectorEnv | minimal loop | SB3 | trainrl | trainrl/SB3 "
            "| trainrl/minimal | trainrl/raw |"
            + (" GEMM floor (trainrl/floor) |" if floor else "")
            + " runs x timed frames | load |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
            + (" ---: |" if floor else "")
            + " ---: | ---: |",
        ]
        for env in ENVS:
            row = by_key.get((setting, threads, env))
            if row is None:
                continue
            best = {k: max(r["fps"] for r in v) for k, v in row.items()}
            median = {k: statistics.median(r["fps"] for r in v) for k, v in row.items()}
            runs = row.get("trainrl", next(iter(row.values())))
            loads = [r["load"] for v in row.values() for r in v]
            cells = [f"{best[k]:,.0f}" if k in best else "-" for k in CONTENDERS]
            ratios = [_ratios(best, median, k) for k in ("sb3", "minimal", "raw")]
            if "floor" in best:
                ratios.append(f"{best['floor']:,.0f} ({_ratios(best, median, 'floor')})")
            lines.append(
                f"| {env} | {' | '.join(cells)} | {' | '.join(ratios)} "
                f"| {len(runs)} x {runs[0]['frames']:,} | {statistics.mean(loads):.1f} |"
            )
    lines += [
        "",
        "frames/s: wall clock over the timed window, best of the runs (other jobs on the machine "
        "can only slow a run down). Ratios: from the best runs in bold, from the median runs in "
        "parentheses. load: mean 1-minute load average during the row's runs (2 = both cores "
        "busy). Raw stepping times at least 20,000 frames. GEMM floor (SAC): the frames/s "
        "an implementation would reach if an update cost only its matrix products "
        "(`sac_gemm_floor_ms`), one update per frame.",
    ]
    return lines


# The GEMM floor of SAC ------------------------------------------------------------------------


def sac_gemm_floor_ms(env: str, settings: SACSettings, threads: int, repeats: int = 30) -> float:
    """Milliseconds of the matrix products alone in one SAC update, on this CPU.

    The products any fp32 implementation must compute per update (batch ``B``): forward
    passes of the actor on ``s'`` and ``s``, of the two target critics, of the two critics on
    ``(s, a)`` and on ``(s, a~pi)``; backward passes through the critics (weight and input
    gradients), through the frozen critics of the actor loss (input gradients only) and
    through the actor. Elementwise work, sampling and the optimizer come on top.
    """
    import gymnasium as gym
    import torch

    torch.set_num_threads(threads)
    spec = gym.make(env)
    obs, act = spec.observation_space.shape[0], spec.action_space.shape[0]
    batch, (h1, h2) = settings.batch_size, settings.num_cells
    actor = [(obs, h1), (h1, h2), (h2, 2 * act)]
    critic = [(obs + act, h1), (h1, h2), (h2, 1)]
    products = []  # (rows, inner, cols) of each product
    for layers, passes in ((actor, 2), (critic, 6)):  # forward passes
        products += [(batch, n_in, n_out) for n_in, n_out in layers] * passes
    for layers, networks, weight_grads, first_input_grad in (
        (critic, 2, True, False),  # critic loss
        (critic, 2, False, True),  # actor loss through the frozen critics: d/d action only
        (actor, 1, True, False),  # actor loss
    ):
        for i, (n_in, n_out) in enumerate(layers):
            if weight_grads:
                products += [(n_in, batch, n_out)] * networks  # dW = X^T dY
            if i > 0 or first_input_grad:
                products += [(batch, n_out, n_in)] * networks  # dX = dY W^T
    operands = [(torch.randn(m, k), torch.randn(k, n)) for m, k, n in products]
    for a, b in operands:  # warm-up
        torch.mm(a, b)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for a, b in operands:
            torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 1000 * best


# Profiling ----------------------------------------------------------------------------------

# (label, file substrings, function name): cumulative time of these functions in the window.
# Indented rows are parts of the row above.
PROFILE_ROWS = [
    ("collection: `SyncDataCollector.collect_batch`", ("collectors/sync.py",), "collect_batch"),
    ("  env stepping: 8 or 1 `env.step` per step (`_gym_backend`)", ("envs/_gym_backend.py",),
     "step"),
    ("  policy forward: `TanhNormalActor.forward`", ("modules/actors.py",), "forward"),
    ("  episode bookkeeping: `EpisodeTracker.annotate`", ("collectors/sync.py",), "annotate"),
    ("GAE over the batch: `GAE.forward`", ("value/advantages.py",), "forward"),
    ("replay buffer write: `ReplayBufferTrainer.extend`", ("hooks/replay_buffer.py",), "extend"),
    ("minibatch sampling: `ReplayBufferTrainer.sample`", ("hooks/replay_buffer.py",), "sample"),
    ("loss forward: `ClipPPOLoss.forward` / `SACLoss.forward`",
     ("objectives/ppo.py", "objectives/sac.py"), "forward"),
    ("optimizer hook: `OptimizerHook.__call__`", ("hooks/optim.py",), "__call__"),
    ("  backward: `Tensor.backward`", ("torch/_tensor.py",), "backward"),
    ("  grad clipping: `clip_grad_norm_`", ("nn/utils/clip_grad.py",), "clip_grad_norm_"),
    ("  `Adam.step`", ("torch/optim/adam.py",), "step"),
    ("  `zero_grad`", ("torch/optim/optimizer.py",), "zero_grad"),
    ("target-network update: `TargetNetUpdaterHook`", ("hooks/weights.py",), "__call__"),
    ("loss metrics: `MetricAccumulator.add`", ("trainer/metrics.py",), "add"),
    ("batch logging hooks: `trainers/hooks/logging.py`", ("hooks/logging.py",), "__call__"),
]  # fmt: skip


def profile(threads: int) -> list[str]:
    """cProfile of trainrl's timed window for PPO (cleanrl setting) and SAC on HalfCheetah."""
    import torch

    torch.set_num_threads(threads)
    lines: list[str] = []
    for setting, timed in (("ppo-cleanrl", 2048 * 2), ("ppo-light", 2048 * 4), ("sac", 1000)):
        case = Case("trainrl", setting, "HalfCheetah-v5", threads, timed)
        trainer, start = build_trainrl(case, SETTINGS[setting])
        profiler = cProfile.Profile()
        clock: list[float] = []

        def toggle(trainer: Any = trainer, start: int = start, profiler=profiler, clock=clock):
            if trainer.state.frames == start:
                clock.append(time.perf_counter())
                profiler.enable()

        trainer.register_op("post_epoch", toggle)
        trainer.train()
        profiler.disable()
        total = time.perf_counter() - clock[0]
        stats = pstats.Stats(profiler)
        entries = stats.stats  # type: ignore[attr-defined]
        lines += [
            "",
            f"#### trainrl {setting}, HalfCheetah-v5, {timed:,} frames, torch threads = "
            f"{threads}: {total:.2f} s under cProfile ({timed / total:,.0f} frames/s)",
            "",
            "| where | share of the window | ms per 1,000 frames |",
            "| --- | ---: | ---: |",
        ]
        for label, file_parts, name in PROFILE_ROWS:
            cum = sum(
                v[3]
                for (file, _, func), v in entries.items()
                if func == name and any(part in file for part in file_parts)
            )
            if cum > 0:
                lines.append(f"| {label} | {cum / total:.1%} | {1000 * cum / timed * 1000:.1f} |")
        top = sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)[:12]
        lines += ["", "Top functions by own time:", "", "| function | own time share | calls |"]
        lines += ["| --- | ---: | ---: |"]
        for (file, line, func), v in top:
            where = "/".join(Path(file).parts[-2:]) if file != "~" else "built-in"
            lines.append(f"| `{func}` ({where}:{line}) | {v[2] / total:.1%} | {v[1]:,} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter windows, SAC at 1 thread")
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="torch threads (PPO)")
    parser.add_argument(
        "--sac-threads", type=int, nargs="+", help="torch threads for SAC (default: 1)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        help="runs of each case, median reported (default: PPO 3, SAC 2; quick: 1)",
    )
    parser.add_argument(
        "--only", nargs="+", help="run only cases whose setting/env/contender match"
    )
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--profile", action="store_true", help="cProfile trainrl's iterations")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print("RESULT " + json.dumps(worker(Case(**json.loads(args.worker)))), flush=True)
        return
    if args.profile:
        print("\n".join(system_info() + profile(args.threads[0])))
        return

    sac_threads = args.sac_threads or [1]
    cases = plan(args.quick, args.threads, sac_threads)
    if args.only:
        cases = [c for c in cases if all(w in (c.setting, c.env, c.contender) for w in args.only)]
    began = time.perf_counter()
    load_start = os.getloadavg()
    results = []
    repeats = default_repeats(args.quick)
    if args.repeats is not None:
        repeats = dict.fromkeys(SETTINGS, args.repeats)
    for repeat in range(max(repeats.values())):
        for case in cases:
            if repeat >= repeats[case.setting]:
                continue
            try:
                result = run_case(case)
            except RuntimeError as err:
                print(err, file=sys.stderr, flush=True)
                continue
            results.append(result)
            print(
                f"[{time.perf_counter() - began:6.0f} s] repeat {repeat + 1}: {case.setting} "
                f"{case.env} threads={case.threads} {case.contender}: "
                f"{result['fps']:,.0f} frames/s over {result['frames']:,} frames "
                f"(load {result['load']:.1f})",
                file=sys.stderr,
                flush=True,
            )
    elapsed = time.perf_counter() - began
    lines = [
        f"Command: `{' '.join([Path(sys.executable).name, *sys.argv])}`, {elapsed / 60:.1f} min, "
        f"load average at start {load_start[0]:.1f}, at end {os.getloadavg()[0]:.1f}",
        "",
        *system_info(),
        *report(results),
    ]
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
