"""Transforms against plain numpy references."""

from __future__ import annotations

import io
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import pytest
import torch
from tensordict import TensorDict

from trainers import keys
from trainers.envs import (
    Compose,
    DoubleToFloat,
    GymEnv,
    NoopReset,
    ObservationNorm,
    RewardScaling,
    RewardSum,
    StepCounter,
    TransformedEnv,
    VecNorm,
    correct_for_frame_skip,
    get_stats_random_rollout,
)


def rollout_with_actions(env, steps, seed=0):
    torch.manual_seed(seed)
    actions = torch.stack([env.action_spec.rand(env.batch_size) for _ in range(steps)], dim=1)
    root = env.reset()
    out = []
    for t in range(steps):
        root.set(keys.ACTION, actions[:, t])
        td, root = env.step_and_maybe_reset(root)
        out.append(td)
    return torch.stack(out, dim=1)


def raw_rollout(env_name, num_envs, seed, steps, **kwargs):
    env = GymEnv(env_name, num_envs=num_envs, **kwargs)
    env.set_seed(seed)
    return rollout_with_actions(env, steps)


def test_vecnorm_matches_numpy_running_statistics():
    decay, eps = 0.9, 1e-4
    vecnorm = VecNorm(decay=decay, eps=eps)
    env = TransformedEnv(GymEnv("Pendulum-v1", num_envs=3), vecnorm)
    env.set_seed(0)
    td = rollout_with_actions(env, 10)
    raw = raw_rollout("Pendulum-v1", 3, 0, 10)  # no episode ends in 10 steps
    s = np.zeros(3)
    q = np.zeros(3)
    c = 0.0

    def update_and_normalize(x):
        nonlocal s, q, c
        s = decay * s + x.sum(0)
        q = decay * q + (x**2).sum(0)
        c = decay * c + len(x)
        mean = s / c
        std = np.maximum(np.sqrt(np.maximum(q / c - mean**2, eps)), eps)
        return (x - mean) / std

    first = update_and_normalize(raw[keys.OBSERVATION][:, 0].double().numpy())
    np.testing.assert_allclose(td[keys.OBSERVATION][:, 0].numpy(), first, rtol=1e-5, atol=1e-5)
    for t in range(10):
        expected = update_and_normalize(raw[keys.NEXT_OBSERVATION][:, t].double().numpy())
        np.testing.assert_allclose(
            td[keys.NEXT_OBSERVATION][:, t].numpy(), expected, rtol=1e-5, atol=1e-5
        )
    # Root and next observations are normalized consistently (the root is the carried next).
    assert torch.equal(td[keys.OBSERVATION][:, 1:], td[keys.NEXT_OBSERVATION][:, :-1])
    np.testing.assert_allclose(vecnorm.loc.numpy(), s / c)


def test_vecnorm_frozen_copy_shares_statistics_without_updating_them():
    vecnorm = VecNorm()
    train = TransformedEnv(GymEnv("Pendulum-v1", num_envs=2), vecnorm)
    frozen = vecnorm.frozen_copy()
    evaluation = TransformedEnv(GymEnv("Pendulum-v1"), frozen)
    train.rollout(5)
    assert torch.equal(frozen.loc, vecnorm.loc)
    before = {k: v.clone() for k, v in vecnorm.state_dict().items()}
    evaluation.rollout(5)
    assert all(torch.equal(before[k], v) for k, v in vecnorm.state_dict().items())
    train.rollout(1)
    assert torch.equal(frozen.loc, vecnorm.loc) and not torch.equal(
        frozen.loc, before["sum"] / before["count"]
    )
    # load_state_dict writes in place: the frozen copy follows.
    buffer = io.BytesIO()
    torch.save(before, buffer)
    buffer.seek(0)
    vecnorm.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(frozen.loc, before["sum"] / before["count"])


def test_reward_sum_and_step_counter_match_hand_computation_across_resets():
    env = TransformedEnv(
        GymEnv("Pendulum-v1", num_envs=2), Compose(StepCounter(max_steps=4), RewardSum())
    )
    env.set_seed(2)
    td = rollout_with_actions(env, 11)
    reward = td[keys.REWARD].squeeze(-1).numpy().astype(np.float64)
    done = td[keys.DONE].squeeze(-1).numpy()
    for i in range(2):
        running, count = 0.0, 0
        for t in range(11):
            running += reward[i, t]
            count += 1
            assert td[keys.EPISODE_REWARD][i, t, 0].item() == pytest.approx(running, rel=1e-5)
            assert td[keys.STEP_COUNT][i, t, 0].item() == count
            if done[i, t]:
                running, count = 0.0, 0
    assert done[:, 3].all() and done[:, 7].all()
    assert (td["episode_reward"][:, 4] == 0).all()  # the root of a new episode starts at 0


@pytest.mark.parametrize("standard_normal", [False, True])
def test_observation_norm_fixed_affine(standard_normal):
    loc, scale = torch.tensor([0.5, -1.0, 2.0]), torch.tensor([2.0, 0.5, 4.0])
    env = TransformedEnv(
        GymEnv("Pendulum-v1", num_envs=2),
        ObservationNorm(loc, scale, standard_normal=standard_normal),
    )
    env.set_seed(0)
    td = rollout_with_actions(env, 5)
    raw = raw_rollout("Pendulum-v1", 2, 0, 5)
    for key in (keys.OBSERVATION, keys.NEXT_OBSERVATION):
        x = raw[key].numpy()
        expected = (
            (x - loc.numpy()) / scale.numpy()
            if standard_normal
            else x * scale.numpy() + loc.numpy()
        )
        np.testing.assert_allclose(td[key].numpy(), expected, rtol=1e-6)


def test_observation_norm_init_stats_and_get_stats_random_rollout():
    norm = ObservationNorm(standard_normal=True)
    env = TransformedEnv(GymEnv("Pendulum-v1", num_envs=2), norm)
    env.set_seed(0)
    torch.manual_seed(0)
    norm.init_stats(env, num_iter=50)
    reference = GymEnv("Pendulum-v1", num_envs=2)
    reference.set_seed(0)
    torch.manual_seed(0)
    obs = reference.rollout(50)[keys.OBSERVATION].reshape(-1, 3).double().numpy()
    np.testing.assert_allclose(norm.loc.numpy(), obs.mean(0), rtol=1e-5)
    np.testing.assert_allclose(norm.scale.numpy(), obs.std(0, ddof=1), rtol=1e-5)
    reference.set_seed(0)
    torch.manual_seed(0)
    loc, scale = get_stats_random_rollout(reference, 50)
    assert torch.equal(loc, norm.loc) and torch.equal(scale, norm.scale)


def test_reward_scaling_and_double_to_float():
    env = TransformedEnv(
        GymEnv("Pendulum-v1", num_envs=2),
        Compose(RewardScaling(loc=1.0, scale=0.1), DoubleToFloat()),
    )
    env.set_seed(0)
    td = rollout_with_actions(env, 5)
    raw = raw_rollout("Pendulum-v1", 2, 0, 5)
    np.testing.assert_allclose(
        td[keys.REWARD].numpy(), raw[keys.REWARD].numpy() * 0.1 + 1.0, rtol=1e-6
    )
    cast = DoubleToFloat().on_step(
        TensorDict({}, [2]), TensorDict({"x": torch.zeros(2, dtype=torch.float64)}, [2])
    )
    assert cast["x"].dtype == torch.float32


def test_noop_reset_takes_the_drawn_random_actions():
    env = TransformedEnv(GymEnv("Pendulum-v1", num_envs=2), NoopReset(3, random=False))
    env.set_seed(9)
    torch.manual_seed(0)
    obs = env.reset()[keys.OBSERVATION]
    torch.manual_seed(0)
    actions = [env.action_spec.rand((3,)) for _ in range(2)]
    for i in range(2):
        raw = gym.make("Pendulum-v1")
        raw.reset(seed=9 + i)
        for a in actions[i].numpy():
            expected, *_ = raw.step(a)
        np.testing.assert_array_equal(obs[i].numpy(), expected.astype(np.float32))


def test_compose_state_dict_roundtrip():
    vecnorm = VecNorm()
    env = TransformedEnv(GymEnv("Pendulum-v1"), Compose(StepCounter(3), vecnorm))
    env.rollout(4)
    state = env.state_dict()["transform"]
    other = Compose(StepCounter(3), VecNorm())
    other.load_state_dict(state)
    assert torch.equal(other[1].loc, vecnorm.loc)
    with pytest.raises(ValueError, match="2 transforms"):
        Compose(StepCounter()).load_state_dict(state)


@dataclass
class _Cfg:
    frame_skip: int
    total_frames: int
    frames_per_batch: int
    lr: float = 1e-3


def test_correct_for_frame_skip():
    assert correct_for_frame_skip({"frame_skip": 4, "total_frames": 1000, "lr": 0.1}) == {
        "frame_skip": 4,
        "total_frames": 250,
        "lr": 0.1,
    }
    cfg = _Cfg(frame_skip=2, total_frames=1001, frames_per_batch=64)
    out = correct_for_frame_skip(cfg)
    assert (out.total_frames, out.frames_per_batch, out.lr) == (500, 32, 1e-3)
    assert cfg.total_frames == 1001
