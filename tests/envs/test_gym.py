"""GymEnv against plain Gymnasium loops: auto-reset, final observations, seeding, frame skip,
exact resume, errors."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from functools import partial

import gymnasium as gym
import numpy as np
import pytest
import torch

from trainers import keys
from trainers.envs import (
    Bounded,
    Categorical,
    Compose,
    GymEnv,
    RewardSum,
    SerialEnv,
    StepCounter,
    TransformedEnv,
    make_batched_env,
)


def random_actions(env: GymEnv, steps: int, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.stack([env.action_spec.rand(env.batch_size) for _ in range(steps)], dim=1)


def run_env(env, actions: torch.Tensor):
    """Steps ``env`` with ``actions[:, t]`` (auto-reset) and stacks the step TensorDicts."""
    root = env.reset()
    steps = []
    for t in range(actions.shape[1]):
        root.set(keys.ACTION, actions[:, t])
        td, root = env.step_and_maybe_reset(root)
        steps.append(td)
    return torch.stack(steps, dim=1)


def reference(env_name, seed, actions, max_steps=None, frame_skip=1, **make_kwargs):
    """One raw Gymnasium env per row of ``actions``, reset by hand on an episode end."""
    out = {k: [] for k in ("obs", "next_obs", "reward", "terminated", "truncated")}
    for i in range(actions.shape[0]):
        env = gym.make(env_name, **make_kwargs)
        obs, _ = env.reset(seed=seed + i)
        rows = {k: [] for k in out}
        count = 0
        for a in actions[i].numpy():
            reward, te, tr = 0.0, False, False
            for _ in range(frame_skip):
                next_obs, r, te, tr, _ = env.step(a)
                reward += float(r)
                if te or tr:
                    break
            count += 1
            tr = tr or (max_steps is not None and count >= max_steps)
            for k, v in zip(rows, (obs, next_obs, reward, te, tr), strict=True):
                rows[k].append(v)
            obs = next_obs
            if te or tr:
                obs, _ = env.reset()
                count = 0
        for k in out:
            out[k].append(np.array(rows[k]))
        env.close()
    return {k: np.stack(v) for k, v in out.items()}


def assert_matches(td, ref):
    np.testing.assert_array_equal(td[keys.OBSERVATION].numpy(), ref["obs"].astype(np.float32))
    np.testing.assert_array_equal(
        td[keys.NEXT_OBSERVATION].numpy(), ref["next_obs"].astype(np.float32)
    )
    np.testing.assert_array_equal(
        td[keys.REWARD].squeeze(-1).numpy(), ref["reward"].astype(np.float32)
    )
    np.testing.assert_array_equal(td[keys.TERMINATED].squeeze(-1).numpy(), ref["terminated"])
    np.testing.assert_array_equal(td[keys.TRUNCATED].squeeze(-1).numpy(), ref["truncated"])
    np.testing.assert_array_equal(
        td[keys.DONE].squeeze(-1).numpy(), ref["terminated"] | ref["truncated"]
    )


def test_pendulum_truncates_at_200_and_keeps_true_final_observation():
    env = GymEnv("Pendulum-v1", num_envs=2)
    env.set_seed(3)
    actions = random_actions(env, 205)
    td = run_env(env, actions)
    ref = reference("Pendulum-v1", 3, actions)
    assert_matches(td, ref)
    done = td[keys.DONE].squeeze(-1)
    assert done[:, 199].all() and done.sum() == 2
    assert td[keys.TRUNCATED][:, 199].all() and not td[keys.TERMINATED].any()
    # The next root starts the new episode; "next" kept the episode's last observation.
    assert not torch.equal(td[keys.NEXT_OBSERVATION][:, 199], td[keys.OBSERVATION][:, 200])


def test_cartpole_terminates_with_discrete_actions():
    env = GymEnv("CartPole-v1", num_envs=3)
    assert isinstance(env.action_spec, Categorical) and env.action_spec.n == 2
    env.set_seed(0)
    actions = torch.ones(3, 60, dtype=torch.int64)  # always push right: falls within ~10 steps
    td = run_env(env, actions)
    assert td[keys.ACTION].dtype == torch.int64 and td[keys.ACTION].shape == (3, 60)
    assert td[keys.TERMINATED].any() and not td[keys.TRUNCATED].any()
    assert_matches(td, reference("CartPole-v1", 0, actions))


def test_step_counter_truncation_resets_and_keeps_final_observation():
    env = TransformedEnv(GymEnv("Pendulum-v1", num_envs=2), StepCounter(max_steps=5))
    env.set_seed(1)
    actions = random_actions(env, 12)
    td = run_env(env, actions)
    assert_matches(td, reference("Pendulum-v1", 1, actions, max_steps=5))
    expected_counts = torch.tensor([1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 1, 2])
    assert torch.equal(td[keys.STEP_COUNT].squeeze(-1), expected_counts.expand(2, -1))
    assert td[keys.TRUNCATED].squeeze(-1)[:, [4, 9]].all()


def test_per_env_seeding_is_reproducible():
    a, b = GymEnv("Pendulum-v1", num_envs=3), GymEnv("Pendulum-v1", num_envs=3)
    assert a.set_seed(10) == 13
    b.set_seed(10)
    actions = random_actions(a, 20)
    ta, tb = run_env(a, actions), run_env(b, actions)
    assert torch.equal(ta[keys.NEXT_OBSERVATION], tb[keys.NEXT_OBSERVATION])
    for i in range(3):
        first, _ = gym.make("Pendulum-v1").reset(seed=10 + i)
        np.testing.assert_array_equal(ta[keys.OBSERVATION][i, 0].numpy(), first.astype(np.float32))
    b.set_seed(11)
    assert not torch.equal(b.reset()[keys.OBSERVATION][0], ta[keys.OBSERVATION][0, 0])


@pytest.mark.parametrize(("env_name", "frame_skip"), [("Pendulum-v1", 3), ("CartPole-v1", 4)])
def test_frame_skip_sums_rewards_and_stops_at_episode_end(env_name, frame_skip):
    env = GymEnv(env_name, num_envs=2, frame_skip=frame_skip)
    env.set_seed(5)
    actions = random_actions(env, 80)
    td = run_env(env, actions)
    ref = reference(env_name, 5, actions, frame_skip=frame_skip)
    assert_matches(td, ref)
    if env_name == "Pendulum-v1":  # 200 inner steps = 66 full skips + 2 inner steps
        assert td[keys.TRUNCATED].squeeze(-1)[:, 66].all()
    else:
        assert td[keys.TERMINATED].any()


@pytest.mark.filterwarnings("ignore:.*is out of date:DeprecationWarning")
@pytest.mark.parametrize("env_name", ["HalfCheetah-v4", "HalfCheetah-v5", "Hopper-v5"])
def test_mujoco_envs_make_and_step(env_name):
    env = GymEnv(env_name, num_envs=2)
    assert isinstance(env.action_spec, Bounded)
    env.set_seed(0)
    td = env.rollout(5)
    raw = gym.make(env_name)
    obs_dim = raw.observation_space.shape[0]
    act_dim = raw.action_space.shape[0]
    assert td.batch_size == (2, 5)
    assert td[keys.OBSERVATION].dtype == torch.float32
    assert td[keys.NEXT_OBSERVATION].shape == (2, 5, obs_dim)
    assert td[keys.ACTION].shape == (2, 5, act_dim) and td[keys.ACTION].dtype == torch.float32
    assert td[keys.REWARD].shape == (2, 5, 1) and td[keys.DONE].shape == (2, 5, 1)
    assert env.action_spec.is_in(td[keys.ACTION])


def _roundtrip(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize(
    ("env_name", "kwargs", "before", "after"),
    [
        ("Pendulum-v1", {}, 195, 12),  # crosses the TimeLimit reset: RNG state matters
        ("HalfCheetah-v5", {"max_episode_steps": 40}, 30, 20),
    ],
)
def test_state_dict_resumes_exactly(env_name, kwargs, before, after):
    env = GymEnv(env_name, num_envs=2, **kwargs)
    env.set_seed(7)
    actions = random_actions(env, before + after)
    root = env.reset()
    for t in range(before):
        root.set(keys.ACTION, actions[:, t])
        _, root = env.step_and_maybe_reset(root)
    state = _roundtrip(env.state_dict())
    saved_root = root.clone()
    expected = []
    for t in range(before, before + after):
        root.set(keys.ACTION, actions[:, t])
        td, root = env.step_and_maybe_reset(root)
        expected.append(td)
    fresh = GymEnv(env_name, num_envs=2, **kwargs)
    fresh.load_state_dict(state)
    root = saved_root
    for i, t in enumerate(range(before, before + after)):
        root.set(keys.ACTION, actions[:, t])
        td, root = fresh.step_and_maybe_reset(root)
        assert (td == expected[i]).all(), f"diverged at step {t}"
    assert torch.stack(expected)[keys.DONE].any()  # an episode ended during the comparison


def test_state_dict_resumes_exactly_in_a_fresh_process(tmp_path):
    env = GymEnv("HalfCheetah-v5", num_envs=2, max_episode_steps=25)
    env.set_seed(0)
    actions = random_actions(env, 30)
    root = env.reset()
    for t in range(20):
        root.set(keys.ACTION, actions[:, t])
        _, root = env.step_and_maybe_reset(root)
    torch.save(
        {"env": env.state_dict(), "root": root.to_dict(), "actions": actions}, tmp_path / "s.pt"
    )
    for t in range(20, 30):
        root.set(keys.ACTION, actions[:, t])
        _, root = env.step_and_maybe_reset(root)
    torch.save(root[keys.OBSERVATION], tmp_path / "expected.pt")
    script = textwrap.dedent(
        f"""
        import torch
        from tensordict import TensorDict
        from trainers.envs import GymEnv
        s = torch.load({str(tmp_path / "s.pt")!r}, weights_only=True)
        env = GymEnv("HalfCheetah-v5", num_envs=2, max_episode_steps=25)
        env.load_state_dict(s["env"])
        root = TensorDict(s["root"], batch_size=[2])
        for t in range(20, 30):
            root.set("action", s["actions"][:, t])
            _, root = env.step_and_maybe_reset(root)
        torch.save(root["observation"], {str(tmp_path / "resumed.pt")!r})
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    expected = torch.load(tmp_path / "expected.pt")
    assert torch.equal(torch.load(tmp_path / "resumed.pt"), expected)


def test_unknown_env_id_suggests_close_matches():
    with pytest.raises(ValueError, match="unknown Gymnasium env id 'HalfCheetah-v9'") as info:
        GymEnv("HalfCheetah-v9")
    assert "did you mean" in str(info.value) and "HalfCheetah-v5" in str(info.value)


def test_wrong_action_shape_names_env_and_key():
    env = GymEnv("Pendulum-v1", num_envs=2)
    root = env.reset()
    root.set(keys.ACTION, torch.zeros(2, 3))
    with pytest.raises(
        ValueError, match=r"GymEnv\('Pendulum-v1'\): key 'action' has shape \(2, 3\)"
    ):
        env.step(root)


class _NaNAfterThree(gym.Env):
    """Returns a NaN observation on its third step."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        obs = np.full(2, np.nan if self.t == 3 else 0.0, np.float32)
        return obs, 0.0, False, False, {}


def test_non_finite_observation_names_env_and_key():
    gym.register(id="TrainrlNaNTest-v0", entry_point=_NaNAfterThree, disable_env_checker=True)
    env = GymEnv("TrainrlNaNTest-v0", num_envs=2)
    root = env.reset()
    root.set(keys.ACTION, torch.zeros(2, dtype=torch.int64))
    env.step(root)
    env.step(root)
    with pytest.raises(
        ValueError, match=r"TrainrlNaNTest-v0.*non-finite value in key 'observation'"
    ):
        env.step(root)


def test_discrete_env_rejects_float_actions():
    env = GymEnv("CartPole-v1")
    root = env.reset()
    root.set(keys.ACTION, torch.zeros(1))
    with pytest.raises(ValueError, match="integer tensor"):
        env.step(root)


def test_parallel_vectorization_matches_serial():
    kwargs = {"num_envs": 2, "max_episode_steps": 15}
    serial = GymEnv("Pendulum-v1", **kwargs)
    parallel = GymEnv("Pendulum-v1", vectorization="parallel", **kwargs)
    try:
        serial.set_seed(4)
        parallel.set_seed(4)
        actions = random_actions(serial, 40)
        ts, tp = run_env(serial, actions), run_env(parallel, actions)
        assert ts[keys.DONE].any()
        assert (ts == tp).all()
        # One state format: a parallel env's state continues a serial env exactly.
        serial.load_state_dict(parallel.state_dict())
        root = parallel.reset()  # both now reset from the same RNG states
        assert torch.equal(serial.reset()[keys.OBSERVATION], root[keys.OBSERVATION])
        # The collectors' batched loop gives the same data over worker processes.
        torch.manual_seed(0)
        from_parallel, _ = parallel.collect_steps(root, 20, parallel.rand_action)
        torch.manual_seed(0)
        from_serial, _ = serial.collect_steps(root.clone(), 20, serial.rand_action)
        assert from_serial[keys.DONE].any() and (from_serial == from_parallel).all()
    finally:
        parallel.close()


def test_make_batched_env_builds_one_transformed_env_over_one_gym_env():
    create = partial(
        TransformedEnv,
        base_env=partial(GymEnv, env_name="Pendulum-v1"),
        transform=Compose(StepCounter(), RewardSum()),
    )
    env = make_batched_env(create, num_workers=4)
    assert isinstance(env, TransformedEnv) and isinstance(env.base_env, GymEnv)
    assert env.num_envs == env.base_env.num_envs == 4
    root = env.reset()
    assert root["step_count"].shape == (4, 1) and root["episode_reward"].shape == (4, 1)
    assert SerialEnv(3, partial(GymEnv, "CartPole-v1")).num_envs == 3
    with pytest.raises(TypeError, match="num_envs= and vectorization="):
        make_batched_env(lambda: GymEnv("Pendulum-v1"), num_workers=2)
    with pytest.raises(ValueError, match="batched_env_type"):
        make_batched_env(create, num_workers=2, batched_env_type="threads")


def test_fast_collect_steps_equals_the_generic_loop():
    """GymEnv.collect_steps (numpy buffers) gives exactly what EnvBase.collect_steps gives."""
    from trainers.envs.common import EnvBase

    def act(td):
        td.set(keys.ACTION, torch.rand(td.batch_size[0], 1) * 4 - 2)
        td.set("extra", torch.randn(td.batch_size[0]))
        return td

    results = []
    for collect in (GymEnv.collect_steps, EnvBase.collect_steps):
        env = GymEnv("Pendulum-v1", num_envs=3, max_episode_steps=7)
        env.set_seed(2)
        torch.manual_seed(0)
        root = env.reset()
        first, root = collect(env, root, 10, act)
        second, root = collect(env, root, 10, act)
        results.append((first, second, root))
    (a1, a2, ar), (b1, b2, br) = results
    assert a1[keys.DONE].any()
    assert (a1 == b1).all() and (a2 == b2).all() and (ar == br).all()
    assert set(a1.keys(True, True)) == set(b1.keys(True, True))
