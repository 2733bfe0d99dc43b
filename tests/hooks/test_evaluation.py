"""LogValidationReward against a plain Gymnasium rollout."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from tensordict.nn import InteractionType, interaction_type

from trainers.envs import GymEnv
from trainers.hooks.evaluation import LogValidationReward


class ConstantPolicy:
    """Writes the same action everywhere and records the interaction type it saw."""

    def __init__(self, value: float):
        self.value = value
        self.seen = []

    def __call__(self, td):
        self.seen.append(interaction_type())
        td.set("action", torch.full((*td.batch_size, 1), self.value))
        return td


def _reference_return(seed: int, action: float) -> float:
    env = gym.make("Pendulum-v1")
    env.reset(seed=seed)
    total, done = 0.0, False
    while not done:
        _, reward, terminated, truncated, _ = env.step(np.array([action], dtype=np.float32))
        total += float(reward)
        done = terminated or truncated
    return total


def test_validation_return_matches_a_gymnasium_rollout():
    env = GymEnv("Pendulum-v1", num_envs=2)
    env.set_seed(7)
    policy = ConstantPolicy(0.5)
    hook = LogValidationReward(
        record_interval=2, record_frames=1000, policy_exploration=policy, environment=env
    )
    out = hook(None)
    expected = np.mean([_reference_return(7, 0.5), _reference_return(8, 0.5)])
    assert out["episode_return_eval"] == pytest.approx(expected, rel=1e-5)
    assert out["r_evaluation"] == pytest.approx(expected / 200, rel=1e-5)
    assert len(policy.seen) == 200  # stops once every env finished an episode
    assert policy.seen[0] == InteractionType.DETERMINISTIC
    assert hook(None) is None  # record_interval=2: skipped
    env.close()


def test_record_frames_caps_the_rollout_and_reports_partial_returns():
    env = GymEnv("Pendulum-v1", num_envs=1)
    env.set_seed(3)
    hook = LogValidationReward(
        record_interval=1, record_frames=10, policy_exploration=ConstantPolicy(0.0), environment=env
    )
    mean_reward, mean_return = hook.evaluate()
    assert mean_return == pytest.approx(mean_reward * 10, rel=1e-5)
    with pytest.raises(ValueError, match="record_frames must be >= 1"):
        LogValidationReward(
            record_interval=1, record_frames=0, policy_exploration=None, environment=env
        )
    env.close()
