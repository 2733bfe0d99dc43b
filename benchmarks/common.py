"""Settings and timing helpers shared by the speed benchmark's contenders.

Every contender (raw stepping, the minimal loops, Stable-Baselines3, trainrl) records *marks*:
``(frames collected so far, wall seconds, process CPU seconds)`` at the end of each training
iteration. Frames per second are measured between two marks, so process start-up, imports,
network construction and the warm-up iterations stay out of the timed window for everyone.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass

Mark = tuple[int, float, float]  # (frames, perf_counter, process_time)


@dataclass(frozen=True)
class PPOSettings:
    """PPO hyperparameters shared by every PPO contender.

    ``cleanrl`` is CleanRL's ``ppo_continuous_action`` setting; ``light`` keeps the same batch
    and does 2 epochs of minibatch 128: 32 gradient steps per 2,048 frames (15.6 per 1,000).
    """

    name: str
    num_envs: int = 8
    steps_per_env: int = 256
    num_epochs: int = 10
    minibatch_size: int = 64
    num_cells: tuple[int, ...] = (64, 64)
    lr: float = 3e-4
    adam_eps: float = 1e-5  # SB3's and CleanRL's PPO Adam epsilon
    gamma: float = 0.99
    lmbda: float = 0.95
    clip_epsilon: float = 0.2
    max_grad_norm: float = 0.5
    critic_coeff: float = 0.5  # loss = ... + 0.5 * mean((V - target)^2), SB3's vf_coef
    entropy_coeff: float = 0.0

    @property
    def frames_per_batch(self) -> int:
        return self.num_envs * self.steps_per_env

    @property
    def steps_per_batch(self) -> int:
        """Gradient steps per collected batch (minibatches x epochs)."""
        return self.num_epochs * -(-self.frames_per_batch // self.minibatch_size)

    def describe(self) -> str:
        return (
            f"{self.num_envs} envs x {self.steps_per_env} steps = {self.frames_per_batch} "
            f"frames/batch, {self.num_epochs} epochs x minibatch {self.minibatch_size} = "
            f"{self.steps_per_batch} grad steps/batch "
            f"({1000 * self.steps_per_batch / self.frames_per_batch:.1f} per 1,000 frames)"
        )


@dataclass(frozen=True)
class SACSettings:
    """SAC hyperparameters shared by every SAC contender (Haarnoja et al. 2018)."""

    name: str = "sac"
    num_envs: int = 1
    num_cells: tuple[int, ...] = (256, 256)
    batch_size: int = 256
    lr: float = 3e-4
    tau: float = 0.005
    gamma: float = 0.99
    learning_starts: int = 1000  # random-action frames before the first update
    buffer_size: int = 1_000_000
    updates_per_frame: int = 1

    def describe(self) -> str:
        return (
            f"1 env, 1 update/frame, batch {self.batch_size}, "
            f"{'x'.join(map(str, self.num_cells))} ReLU, lr {self.lr}, tau {self.tau}, "
            f"{self.learning_starts} random warm-up frames"
        )


PPO_CLEANRL = PPOSettings("cleanrl")
PPO_LIGHT = PPOSettings("light", num_epochs=2, minibatch_size=128)
SAC = SACSettings()
SETTINGS: dict[str, PPOSettings | SACSettings] = {
    "ppo-cleanrl": PPO_CLEANRL,
    "ppo-light": PPO_LIGHT,
    "sac": SAC,
}


def settings_dict(settings: PPOSettings | SACSettings) -> dict[str, object]:
    return asdict(settings)


class StopTimed(Exception):
    """Raised in a contender when the orchestrator ends the measurement."""


class Turns:
    """The contender's side of turn-taking with the orchestrator, over stdin/stdout lines.

    ``done()`` says an iteration is finished and blocks until the orchestrator answers ``go``
    (run one more iteration) or ``stop`` (raises :class:`StopTimed`).
    """

    def done(self) -> None:
        print("TURN done", flush=True)
        answer = sys.stdin.readline().strip()
        if answer != "go":
            raise StopTimed(answer)


class Marks:
    """Appends a :data:`Mark` per call; ``window(start_frames)`` gives the timed window.

    With ``turns``, from ``start`` frames on and then every ``every`` frames, the contender
    hands over to the orchestrator and waits for its next turn; the time spent waiting is left
    out of the marks, so contenders interleaved this way share the machine's state of the
    moment (this machine's speed drifts by tens of percent within a minute).
    """

    def __init__(self, turns: Turns | None = None, every: int = 1) -> None:
        self.marks: list[Mark] = []
        self.start = 0
        self.every = every
        self._turns = turns
        self.turn_marks: list[Mark] = []  # the marks at which a turn ended
        self._waited = 0.0
        self._next_turn: int | None = None

    def __call__(self, frames: int) -> None:
        now = time.perf_counter()
        mark = (int(frames), now - self._waited, time.process_time())
        self.marks.append(mark)
        if self._turns is None or frames < self.start:
            return
        if self._next_turn is None or frames >= self._next_turn:
            self._next_turn = frames + self.every
            self.turn_marks.append(mark)
            self._turns.done()
            self._waited += time.perf_counter() - now


def window(marks: list[Mark], start_frames: int) -> tuple[int, float, float]:
    """``(frames, wall seconds, CPU seconds)`` from the first mark at ``>= start_frames`` to
    the last mark."""
    begin = next((m for m in marks if m[0] >= start_frames), None)
    if begin is None or begin is marks[-1]:
        raise ValueError(f"no timed window after {start_frames} frames in marks {marks}")
    end = marks[-1]
    return end[0] - begin[0], end[1] - begin[1], end[2] - begin[2]
