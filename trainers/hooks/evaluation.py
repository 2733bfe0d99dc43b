"""Evaluation of the current policy on a separate env, logged as validation returns."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from tensordict.nn import set_interaction_type

from trainers import keys
from trainers.hooks.base import TrainerHookBase
from trainers.modules.exploration import ExplorationType
from trainers.trainer.stages import Stage

if TYPE_CHECKING:
    from trainers.envs import EnvBase
    from trainers.trainer.trainer import Trainer


class LogValidationReward(TrainerHookBase):
    """Every ``record_interval`` batches, runs the policy on ``environment`` and logs it.

    Each of the env's ``num_envs`` sub-envs plays until its first episode ends (or
    ``record_frames`` steps pass). Logged: ``r_evaluation`` (mean per-step reward) and
    ``episode_return_eval`` (mean return of the finished episodes). The policy acts
    deterministically by default (the mode of its distribution). The evaluation env must not
    share mutable normalization statistics with training unless frozen
    (``VecNorm.frozen_copy()``), so evaluating never changes training.

    Args:
        record_interval: batches between two evaluations.
        record_frames: the most steps one evaluation runs.
        policy_exploration: the policy (a TensorDict module).
        environment: the evaluation env; it is reset at each evaluation.
        exploration_type: ``"deterministic"``, ``"mode"``, ``"mean"`` or ``"random"``.
        log_pbar: also show the values on the progress bar.
        recorder: optional object with ``dump(step)`` called after each evaluation (e.g. a
            ``VideoRecorder`` transform of ``environment``).

    Examples:
        >>> eval_env = GymEnv("Pendulum-v1", num_envs=4)
        >>> LogValidationReward(record_interval=10, record_frames=1000,
        ...                     policy_exploration=actor, environment=eval_env).register(trainer)
    """

    def __init__(
        self,
        *,
        record_interval: int,
        record_frames: int,
        policy_exploration: Any,
        environment: EnvBase,
        exploration_type: str = "deterministic",
        log_pbar: bool = False,
        recorder: Any | None = None,
    ) -> None:
        if record_interval < 1:
            raise ValueError(f"record_interval must be >= 1, got {record_interval}")
        if record_frames < 1:
            raise ValueError(f"record_frames must be >= 1, got {record_frames}")
        self.record_interval = record_interval
        self.record_frames = record_frames
        self.policy = policy_exploration
        self.environment = environment
        self.exploration_type = ExplorationType(exploration_type)
        self.log_pbar = log_pbar
        self.recorder = recorder
        self.count = 0
        self._trainer: Trainer | None = None

    def register(self, trainer: Trainer, name: str | None = "log_validation_reward") -> None:
        self._trainer = trainer
        trainer.register_module(name or "log_validation_reward", self)
        trainer.register_op(Stage.POST_STEPS_LOG, self)

    def __call__(self, batch: Any) -> dict[str, Any] | None:
        del batch
        self.count += 1
        if (self.count - 1) % self.record_interval:
            return None
        mean_reward, mean_return = self.evaluate()
        if self.recorder is not None:
            self.recorder.dump(self._trainer.state.frames if self._trainer else None)
        return {
            "r_evaluation": mean_reward,
            "episode_return_eval": mean_return,
            "log_pbar": self.log_pbar,
        }

    @torch.no_grad()
    def evaluate(self) -> tuple[float, float]:
        """Plays one episode per sub-env; returns (mean step reward, mean episode return)."""
        env = self.environment
        device = _device_of(self.policy)
        running = torch.zeros(env.num_envs)
        returns = torch.full((env.num_envs,), float("nan"))
        rewards: list[torch.Tensor] = []
        td = env.reset()
        with set_interaction_type(self.exploration_type):
            for _ in range(self.record_frames):
                action = self.policy(td.to(device)).get(keys.ACTION)
                td.set(keys.ACTION, action.to(env.device))
                td, next_root = env.step_and_maybe_reset(td)
                reward = td.get(keys.REWARD).reshape(-1).float().cpu()
                done = td.get(keys.DONE).reshape(-1).cpu()
                rewards.append(reward)
                running += reward
                first_end = done & returns.isnan()
                returns[first_end] = running[first_end]
                running[done] = 0.0
                if not returns.isnan().any():
                    break
                td = next_root
        unfinished = returns.isnan()
        returns[unfinished] = running[unfinished]  # cut by record_frames: partial returns
        return float(torch.stack(rewards).mean()), float(returns.mean())

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.count = state_dict["count"]


def _device_of(policy: Any) -> torch.device:
    parameter = next(iter(getattr(policy, "parameters", lambda: iter(()))()), None)
    return parameter.device if parameter is not None else torch.device("cpu")
