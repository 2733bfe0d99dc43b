"""RewardNorm against a plain numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tensordict import TensorDict

from trainers.envs import RewardNorm


def _step(norm: RewardNorm, rewards: np.ndarray) -> np.ndarray:
    next_td = TensorDict({"reward": torch.tensor(rewards, dtype=torch.float32)[:, None]}, [2])
    return norm.on_step(TensorDict({}, [2]), next_td)["reward"].squeeze(-1).numpy()


def test_reward_norm_matches_numpy_with_episode_resets():
    rng = np.random.default_rng(0)
    norm = RewardNorm(gamma=0.9, clip=None)
    norm.on_reset(TensorDict({}, [2]), None)
    returns, seen = np.zeros(2), []
    for t in range(30):
        if t == 12:  # env 1 starts a new episode
            mask = torch.tensor([False, True])
            norm.on_reset(TensorDict({}, [2]), mask)
            returns[1] = 0.0
        rewards = rng.normal(size=2) * 5
        returns = 0.9 * returns + rewards
        seen.extend(returns)
        expected = rewards / np.sqrt(np.var(seen) + 1e-8)
        np.testing.assert_allclose(_step(norm, rewards), expected, rtol=1e-5)


def test_reward_norm_clips_and_frozen_copy_shares_statistics():
    norm = RewardNorm(gamma=0.0, clip=1.0)
    norm.on_reset(TensorDict({}, [2]), None)
    _step(norm, np.array([1.0, -1.0]))  # var of returns = 1
    frozen = norm.frozen_copy()
    frozen.on_reset(TensorDict({}, [2]), None)
    out = _step(frozen, np.array([5.0, 0.5]))
    np.testing.assert_allclose(out, [1.0, 0.5], rtol=1e-6)
    assert float(norm.state_dict()["count"]) == 2  # the frozen copy did not update
    _step(norm, np.array([3.0, 3.0]))
    assert float(frozen.state_dict()["count"]) == 4  # but it reads the live statistics


def test_reward_norm_state_round_trip_and_validation():
    a, b = RewardNorm(gamma=0.5), RewardNorm(gamma=0.5)
    a.on_reset(TensorDict({}, [2]), None)
    _step(a, np.array([2.0, 4.0]))
    b.load_state_dict(a.state_dict())
    np.testing.assert_allclose(_step(a, np.array([1.0, 1.0])), _step(b, np.array([1.0, 1.0])))
    with pytest.raises(ValueError, match="gamma must be in"):
        RewardNorm(gamma=1.5)
