"""End-to-end training speed: trainrl vs a hand-written loop, Stable-Baselines3 and raw stepping.

One command measures, on CPU, the training frames per second of

* **raw**: ``gymnasium.vector.SyncVectorEnv`` with random actions, the same number of envs
  (no learning: the ceiling set by the simulators);
* **minimal**: the single-file loops ``benchmarks/minimal_ppo.py`` / ``minimal_sac.py`` (plain
  torch + gymnasium);
* **sb3**: Stable-Baselines3 ``PPO`` / ``SAC`` with every setting made explicit;
* **trainrl**: ``PPOTrainer`` / ``SACTrainer`` built through the Python API
  (``GymEnv``, ``SyncDataCollector``, ``trainers.modules`` builders, ``trainers.objectives``,
  Adam with ``fused=True`` as trainrl's configs default to), ``progress_bar=False``,
  ``logger=None``, no checkpoint;

for PPO at two settings (``ppo-cleanrl``, ``ppo-light``) and SAC, on ``Pendulum-v1`` and
``HalfCheetah-v5``, and prints markdown tables with frames/s and the ratios trainrl/SB3,
trainrl/minimal and trainrl/raw, plus hardware, versions, thread count and machine load.

Turns: the contenders of a table row run in their own processes at the same time, but only
one computes at any moment: after its warm-up each waits for its turn, runs one iteration (a
PPO batch with all its epochs, or 1,000 SAC frames with their updates), records it, and hands
over. Rounds of turns alternate the order. So all contenders are timed within seconds of each
other, and a slow minute of this shared machine slows all of them, not one.

Timed window: process start-up, imports, construction and warm-up stay out of it for
everyone. PPO: the first batch is warm-up. SAC: the random warm-up (``learning_starts``
frames) is excluded for all; SB3 and the minimal loop then run 100 untimed update frames before
the window, trainrl is already warm (it also updates on its random batch); the window holds
exactly one gradient step per frame for every contender.

Run: ``python benchmarks/speed.py`` (about 15 minutes on 2 cores) or ``--quick`` (about 4
minutes); ``--profile`` prints a cProfile breakdown of trainrl's PPO and SAC iterations instead.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import datetime
import importlib.util
import itertools
import json
import math
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
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
    StopTimed,
    Turns,
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
SAC_TRAINRL_BATCH = 1000  # trainrl SAC frames per batch, as conf/sac.yaml
# Turns each contender gets per table row (one iteration each); --quick: fewer.
ROUNDS = {"ppo-cleanrl": 10, "ppo-light": 20, "sac": 3}


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


def run_raw(case: Case, settings: PPOSettings | SACSettings, marks: Marks) -> None:
    import gymnasium as gym

    venv = gym.vector.SyncVectorEnv([lambda: gym.make(case.env)] * settings.num_envs)
    venv.reset(seed=0)
    venv.action_space.seed(0)
    for _ in range(1000):  # warm-up
        venv.step(venv.action_space.sample())
    steps = max(1, marks.every // settings.num_envs)
    frames = 0
    marks(frames)
    while frames < case.timed_frames:
        for _ in range(steps):
            venv.step(venv.action_space.sample())
        frames += steps * settings.num_envs
        marks(frames)
    venv.close()


def run_minimal(case: Case, settings: PPOSettings | SACSettings, marks: Marks) -> None:
    if isinstance(settings, PPOSettings):
        import minimal_ppo

        start = marks.start = settings.frames_per_batch
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
        return
    import minimal_sac

    start = marks.start = settings.learning_starts + SAC_WARM_UPDATES
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


def run_sb3(case: Case, settings: PPOSettings | SACSettings, marks: Marks) -> None:
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from torch import nn

    class MarkIterations(BaseCallback):
        """A mark at the start of each rollout: the previous iteration's training is done."""

        def _on_rollout_start(self) -> None:
            marks(self.num_timesteps)

        def _on_step(self) -> bool:
            return True

    venv = make_vec_env(case.env, n_envs=settings.num_envs, seed=0)
    model: Any
    if isinstance(settings, PPOSettings):
        start = marks.start = settings.frames_per_batch
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
        start = marks.start = settings.learning_starts + SAC_WARM_UPDATES
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


def run_trainrl(case: Case, settings: PPOSettings | SACSettings, marks: Marks) -> None:
    trainer, marks.start = build_trainrl(case, settings)
    trainer.register_op("post_epoch", lambda: marks(trainer.state.frames))
    trainer.train()


def build_trainrl(
    case: Case, settings: PPOSettings | SACSettings, compile: bool = True
) -> tuple[Any, int]:
    """The trainer for ``case`` and the frame count at which its timed window starts.

    ``compile``: the loss's ``loss.compile``, on by default on CPU as in the configs."""
    import torch

    from trainers.algorithms import PPOTrainer, SACTrainer
    from trainers.collectors import SyncDataCollector
    from trainers.data import LazyTensorStorage, RandomSampler, TensorDictReplayBuffer
    from trainers.envs import GymEnv
    from trainers.modules import (
        batch_actor_critic,
        make_qvalue_network,
        make_tanh_normal_actor,
        make_value_network,
    )
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
        batch_actor_critic(actor, critic)  # the configs' default (networks.batch_actor_critic)
        loss = ClipPPOLoss(
            actor,
            critic,
            clip_epsilon=settings.clip_epsilon,
            entropy_coeff=settings.entropy_coeff,
            critic_coeff=settings.critic_coeff,
            normalize_advantage=True,
            compile=compile,
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
    loss = SACLoss(
        actor, qvalue, gamma=settings.gamma, action_spec=env.action_spec, compile=compile
    )
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


RUNNERS: dict[str, Callable[[Case, Any, Marks], None]] = {
    "raw": run_raw,
    "minimal": run_minimal,
    "sb3": run_sb3,
    "trainrl": run_trainrl,
}


def iteration_frames(settings: PPOSettings | SACSettings) -> int:
    """Frames of one turn: a PPO batch (collect + all epochs), or SAC_TRAINRL_BATCH SAC frames."""
    return settings.frames_per_batch if isinstance(settings, PPOSettings) else SAC_TRAINRL_BATCH


def worker(case: Case, turns: Turns | None) -> dict[str, Any]:
    """Runs one case in this process (taking turns when ``turns``) and returns its window."""
    import torch

    torch.set_num_threads(case.threads)
    settings = SETTINGS[case.setting]
    load_before = os.getloadavg()[0]
    if case.contender == "floor":
        assert isinstance(settings, SACSettings)
        fps = 1000 / sac_gemm_floor_ms(case.env, settings, case.threads)
        load = (load_before + os.getloadavg()[0]) / 2
        return {"case": case.__dict__, "frames": 0, "fps": fps, "round_fps": [], "load": load}
    marks = Marks(turns, every=iteration_frames(settings))
    with contextlib.suppress(StopTimed):
        RUNNERS[case.contender](case, settings, marks)
    frames, wall, cpu = window(marks.marks, marks.start)
    rounds = itertools.pairwise(marks.turn_marks)
    return {
        "case": case.__dict__,
        "frames": frames,
        "wall_s": wall,
        "cpu_s": cpu,
        "fps": frames / wall,
        "cpu_fps": frames / cpu,
        "round_fps": [(b[0] - a[0]) / (b[1] - a[1]) for a, b in rounds],
        "load": (load_before + os.getloadavg()[0]) / 2,
    }


# Orchestration ------------------------------------------------------------------------------


def plan(
    quick: bool, threads: list[int], sac_threads: list[int], rounds_override: int | None = None
) -> list[list[Case]]:
    """The table rows in run order: per setting, env and thread count, its contenders."""
    rounds = plan_rounds(quick, rounds_override)
    rows = []
    for setting in ("ppo-cleanrl", "ppo-light", "sac"):
        settings = SETTINGS[setting]
        # Enough frames that no contender ends before the last round.
        timed = (rounds[setting] + 2) * iteration_frames(settings)
        for env in ENVS:
            for n in sac_threads if setting == "sac" else threads:
                rows.append([Case(contender, setting, env, n, timed) for contender in CONTENDERS])
    return rows


def plan_rounds(quick: bool, rounds_override: int | None = None) -> dict[str, int]:
    """Rounds per setting: ``--rounds`` when given, else the defaults (fewer with ``--quick``)."""
    if rounds_override is not None:
        return dict.fromkeys(ROUNDS, rounds_override)
    return {"ppo-cleanrl": 3, "ppo-light": 6, "sac": 1} if quick else ROUNDS


class _Contender:
    """A contender's worker process, driven one turn at a time over its stdin/stdout."""

    def __init__(self, case: Case) -> None:
        self.case = case
        self.stderr = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed by the row)
        env = dict(os.environ, OMP_NUM_THREADS=str(case.threads), MKL_NUM_THREADS=str(case.threads))
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", json.dumps(case.__dict__)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
            env=env,
        )  # fmt: skip

    def say(self, word: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()

    def until(self, prefix: str) -> str:
        """Reads the worker's output up to its next line starting with ``prefix``."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(prefix):
                return line[len(prefix) :]
        self.stderr.seek(0)
        raise RuntimeError(f"{self.case} failed:\n{self.stderr.read()[-3000:]}")


def run_row(row: list[Case], rounds: int) -> list[dict[str, Any]]:
    """Runs a row's contenders in turns: each gets ``rounds`` iterations, one at a time.

    All start together and warm up in turn; then every round gives each contender one
    iteration (the order reversed every other round), so all are timed under the same
    conditions within seconds of each other.
    """
    contenders = [_Contender(case) for case in row]
    try:
        for contender in contenders:  # construction and warm-up, up to the timed window
            contender.until("TURN done")
        for i in range(rounds):
            for contender in contenders if i % 2 == 0 else contenders[::-1]:
                contender.say("go")
                contender.until("TURN done")
        results = []
        for contender in contenders:
            contender.say("stop")
            results.append(json.loads(contender.until("RESULT ")))
        return results
    finally:
        for contender in contenders:
            if contender.proc.poll() is None:
                contender.proc.kill()
            contender.stderr.close()


def run_case(case: Case) -> dict[str, Any]:
    """Runs one case on its own (no turns), e.g. the GEMM floor."""
    contender = _Contender(case)
    try:
        return json.loads(contender.until("RESULT "))
    finally:
        contender.proc.wait()
        contender.stderr.close()


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


def _ratio(row: dict[str, dict[str, Any]], other: str) -> str:
    """trainrl / ``other`` over all rounds, then the median and range of the per-round ratios."""
    if "trainrl" not in row or other not in row:
        return "-"
    ours, theirs = row["trainrl"], row[other]
    overall = f"**{_fmt_ratio(ours['fps'] / theirs['fps'])}**"
    per_round = [a / b for a, b in zip(ours["round_fps"], theirs["round_fps"], strict=False)]
    if len(per_round) < 2:
        return overall
    low, mid, high = min(per_round), statistics.median(per_round), max(per_round)
    return f"{overall} ({_fmt_ratio(mid)}; {_fmt_ratio(low)}-{_fmt_ratio(high)})"


def report(results: list[dict[str, Any]]) -> list[str]:
    """Markdown tables: one per setting and thread count, one row per env."""
    by_key: dict[tuple, dict[str, dict[str, Any]]] = {}
    for r in results:
        c = r["case"]
        by_key.setdefault((c["setting"], c["threads"], c["env"]), {})[c["contender"]] = r
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
            + (" GEMM floor | trainrl/floor | SB3/floor |" if floor else "")
            + " rounds x frames | load |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
            + (" ---: | ---: | ---: |" if floor else "")
            + " ---: | ---: |",
        ]
        for env in ENVS:
            row = by_key.get((setting, threads, env))
            if row is None:
                continue
            cells = [f"{row[k]['fps']:,.0f}" if k in row else "-" for k in CONTENDERS]
            ratios = [_ratio(row, k) for k in ("sb3", "minimal", "raw")]
            if floor and "floor" in row:
                floor_fps = row["floor"]["fps"]
                sb3 = _fmt_ratio(row["sb3"]["fps"] / floor_fps) if "sb3" in row else "-"
                ratios += [f"{floor_fps:,.0f}", _ratio(row, "floor"), sb3]
            elif floor:
                ratios += ["-"] * 3
            ours = row.get("trainrl", next(iter(row.values())))
            rounds = len(ours["round_fps"])
            loads = statistics.mean(r["load"] for r in row.values())
            lines.append(
                f"| {env} | {' | '.join(cells)} | {' | '.join(ratios)} "
                f"| {rounds} x {iteration_frames(settings):,} | {loads:.1f} |"
            )
    lines += [
        "",
        "frames/s: wall clock over the timed rounds. The contenders of a row run in turns, one "
        "iteration (a PPO batch with all its epochs, or 1,000 SAC frames) each, so all are "
        "timed within seconds of each other. Ratios: over all rounds in bold, then the median "
        "and the range of the ratios of single rounds. load: mean 1-minute load average during "
        "the row (1 = the benchmark alone). GEMM floor (SAC): the frames/s an implementation "
        "would reach if an update cost only its matrix products (`sac_gemm_floor_ms`), one "
        "update per frame. No implementation of the same arithmetic (fp32, the same threads) "
        "exceeds it, so trainrl/SB3 >= 2 needs SB3/floor <= 0.5.",
    ]
    return lines


# The GEMM floor of SAC ------------------------------------------------------------------------


def sac_gemm_floor_ms(env: str, settings: SACSettings, threads: int, repeats: int = 30) -> float:
    """Milliseconds of the matrix products alone in one SAC update, on this CPU.

    The products an fp32 implementation computes per update (batch ``B``), 42 of them: forward
    passes of the actor on ``s'`` and ``s``, of the two target critics, of the two critics on
    ``(s, a)`` and on ``(s, a~pi)``; backward passes through the critics (weight and input
    gradients), through the frozen critics of the actor loss and through the actor. The actor
    loss's backward through the critics needs input gradients only, for the action columns at
    the first layer, and only through the critic that ``min()`` picked at each row: the rows of
    both critics add up to one critic's batch (``trainers/objectives/sac_fused.py`` computes
    exactly this). Elementwise work, sampling and the optimizer come on top.
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
    for layers, networks, weight_grads, first_input_cols in (
        (critic, 2, True, 0),  # critic loss
        (critic, 1, False, act),  # actor loss through the frozen critics (rows split, see above)
        (actor, 1, True, 0),  # actor loss
    ):
        for i, (n_in, n_out) in enumerate(layers):
            if weight_grads:
                products += [(n_in, batch, n_out)] * networks  # dW = X^T dY
            input_cols = n_in if i > 0 else first_input_cols
            if input_cols:
                products += [(batch, n_out, input_cols)] * networks  # dX = dY W^T
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
        "--sac-threads",
        type=int,
        nargs="+",
        help="torch threads for SAC (default: 1 and 2; 1 with --quick)",
    )
    parser.add_argument(
        "--rounds", type=int, help=f"turns of each contender per row (default: {ROUNDS})"
    )
    parser.add_argument(
        "--only", nargs="+", help="run only cases whose setting/env/contender match"
    )
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--profile", action="store_true", help="cProfile trainrl's iterations")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        case = Case(**json.loads(args.worker))
        turns = None if case.contender == "floor" else Turns()
        print("RESULT " + json.dumps(worker(case, turns)), flush=True)
        return
    if args.profile:
        print("\n".join(system_info() + profile(args.threads[0])))
        return

    if importlib.util.find_spec("stable_baselines3") is None:
        sys.exit(
            "benchmarks/speed.py compares against Stable-Baselines3, which is not installed: "
            '.venv/bin/pip install -e ".[bench]"'
        )
    sac_threads = args.sac_threads or ([1] if args.quick else [1, 2])
    rows = plan(args.quick, args.threads, sac_threads, args.rounds)
    if args.only:
        rows = [
            [c for c in row if all(w in (c.setting, c.env, c.contender) for w in args.only)]
            for row in rows
        ]
    began = time.perf_counter()
    load_start = os.getloadavg()
    results = []
    for row in [r for r in rows if r]:
        case = row[0]
        rounds = plan_rounds(args.quick, args.rounds)[case.setting]
        try:
            row_results = run_row(row, rounds)
            if case.setting == "sac":
                row_results.append(run_case(dataclasses.replace(case, contender="floor")))
        except RuntimeError as err:
            print(err, file=sys.stderr, flush=True)
            continue
        results += row_results
        summary = ", ".join(f"{r['case']['contender']} {r['fps']:,.0f}" for r in row_results)
        print(
            f"[{time.perf_counter() - began:6.0f} s] {case.setting} {case.env} "
            f"threads={case.threads}: {summary} frames/s",
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
