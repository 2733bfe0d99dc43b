"""SyncDataCollector: batch layout, frame counts, episode bookkeeping, exploration, resume."""

from __future__ import annotations

import io
import warnings
from functools import partial

import numpy as np
import pytest
import torch

from tests.collectors._policies import ConstantPolicy, LinearGaussianPolicy
from trainers import keys
from trainers.collectors import SyncDataCollector, make_collector_offpolicy, make_collector_onpolicy
from trainers.envs import Compose, GymEnv, RewardSum, StepCounter, TransformedEnv
from trainers.modules import MLP, TanhNormalActor

ALL_KEYS = [
    keys.OBSERVATION,
    keys.ACTION,
    keys.SAMPLE_LOG_PROB,
    keys.NEXT_OBSERVATION,
    keys.REWARD,
    keys.TERMINATED,
    keys.TRUNCATED,
    keys.DONE,
    keys.EPISODE_REWARD,
    keys.STEP_COUNT,
    keys.TRAJ_IDS,
]


def pendulum(num_envs=4, max_steps=None):
    env = GymEnv("Pendulum-v1", num_envs=num_envs)
    return env if max_steps is None else TransformedEnv(env, StepCounter(max_steps))


def test_batch_shape_keys_and_frame_counts():
    torch.manual_seed(0)
    collector = SyncDataCollector(
        pendulum(), LinearGaussianPolicy(), frames_per_batch=40, total_frames=120
    )
    collector.set_seed(0)
    batches = list(collector)
    assert len(batches) == 3 and collector.frames == 120
    for batch in batches:
        assert batch.batch_size == (4, 10)
        present = set(batch.keys(include_nested=True, leaves_only=True))
        assert set(ALL_KEYS) <= present, set(ALL_KEYS) - present
        assert batch[keys.REWARD].shape == (4, 10, 1) and batch[keys.DONE].dtype == torch.bool
        assert batch[keys.SAMPLE_LOG_PROB].shape == (4, 10)
        assert batch[keys.STEP_COUNT].dtype == torch.int64
    # Episodes continue across batches: the root of batch k+1 is the next of batch k.
    assert torch.equal(batches[1][keys.OBSERVATION][:, 0], batches[0][keys.NEXT_OBSERVATION][:, -1])


def test_frames_per_batch_not_divisible_suggests_valid_values():
    with pytest.raises(ValueError, match=r"not divisible by the number of envs \(4\).*36 or 40"):
        SyncDataCollector(pendulum(), None, frames_per_batch=38)
    with pytest.raises(ValueError, match="exploration_type"):
        SyncDataCollector(pendulum(), None, frames_per_batch=40, exploration_type="greedy")
    with pytest.warns(UserWarning, match="the last batch collects 30 frames more"):
        SyncDataCollector(pendulum(), None, frames_per_batch=40, total_frames=50)
    with warnings.catch_warnings():  # 1M frames in batches of 2,048: within 1% (1,472 more)
        warnings.simplefilter("error")
        SyncDataCollector(pendulum(2), None, frames_per_batch=2048, total_frames=1_000_000)
    with pytest.warns(UserWarning, match="the last batch collects 240 frames more"):
        SyncDataCollector(pendulum(2), None, frames_per_batch=2048, total_frames=10_000)


def test_init_random_frames_batches_use_random_actions():
    collector = SyncDataCollector(
        pendulum(2),
        ConstantPolicy(0.0),
        frames_per_batch=20,
        total_frames=80,
        init_random_frames=40,
    )
    batches = list(collector)
    assert len(batches) == 4
    for batch in batches[:2]:
        assert (batch[keys.ACTION] != 0).all() and (batch[keys.ACTION].abs() <= 2).all()
    for batch in batches[2:]:
        assert (batch[keys.ACTION] == 0).all()


def hand_episode_stats(batches):
    """Running return, length and trajectory id per step, carried across batches."""
    n = batches[0].batch_size[0]
    running, count = np.zeros(n), np.zeros(n, int)
    ids, next_id = np.arange(n), n
    out = []
    for batch in batches:
        reward = batch[keys.REWARD].squeeze(-1).double().numpy()
        done = batch[keys.DONE].squeeze(-1).numpy()
        ret, length, traj = (
            np.zeros_like(reward),
            np.zeros(reward.shape, int),
            np.zeros(reward.shape, int),
        )
        for t in range(reward.shape[1]):
            running += reward[:, t]
            count += 1
            ret[:, t], length[:, t], traj[:, t] = running, count, ids
            for i in range(n):  # new ids in (time, env) order
                if done[i, t]:
                    running[i], count[i], ids[i] = 0.0, 0, next_id
                    next_id += 1
        out.append((ret, length, traj))
    return out


def test_episode_reward_step_count_and_traj_ids_match_hand_computation():
    collector = SyncDataCollector(
        pendulum(3, max_steps=7), None, frames_per_batch=30, total_frames=90
    )
    collector.set_seed(1)
    batches = list(collector)
    assert sum(int(b[keys.DONE].sum()) for b in batches) >= 9
    for batch, (ret, length, traj) in zip(batches, hand_episode_stats(batches), strict=True):
        np.testing.assert_allclose(batch[keys.EPISODE_REWARD].squeeze(-1).numpy(), ret, rtol=1e-5)
        np.testing.assert_array_equal(batch[keys.STEP_COUNT].squeeze(-1).numpy(), length)
        np.testing.assert_array_equal(batch[keys.TRAJ_IDS].numpy(), traj)


def test_collector_bookkeeping_equals_the_transforms_own():
    """Without RewardSum/StepCounter the collector computes the same values itself."""
    plain = SyncDataCollector(
        pendulum(2), None, frames_per_batch=24, total_frames=72, max_frames_per_traj=5
    )
    with_transforms = SyncDataCollector(
        TransformedEnv(GymEnv("Pendulum-v1", num_envs=2), Compose(StepCounter(5), RewardSum())),
        None,
        frames_per_batch=24,
        total_frames=72,
    )
    for c in (plain, with_transforms):
        c.set_seed(3)
    torch.manual_seed(0)
    a = list(plain)
    torch.manual_seed(0)
    b = list(with_transforms)
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x[keys.REWARD], y[keys.REWARD])
        assert torch.equal(x[keys.STEP_COUNT], y[keys.STEP_COUNT])
        torch.testing.assert_close(
            x[keys.EPISODE_REWARD], y[keys.EPISODE_REWARD], rtol=1e-5, atol=1e-4
        )
        assert x[keys.STEP_COUNT].max() == 5


def collect(exploration_type, torch_seed, batches=1):
    torch.manual_seed(123)
    policy = LinearGaussianPolicy()
    collector = SyncDataCollector(
        pendulum(2), policy, frames_per_batch=20, exploration_type=exploration_type
    )
    collector.set_seed(0)
    torch.manual_seed(torch_seed)
    return collector.collect_batch()


def test_deterministic_vs_random_exploration():
    d1, d2 = collect("deterministic", 1), collect("deterministic", 2)
    assert torch.equal(d1[keys.ACTION], d2[keys.ACTION])
    assert (d1[keys.SAMPLE_LOG_PROB] == 0).all()
    assert torch.equal(collect("mode", 3)[keys.ACTION], d1[keys.ACTION])
    r1, r1b, r2 = collect("random", 1), collect("random", 1), collect("random", 2)
    assert torch.equal(r1[keys.ACTION], r1b[keys.ACTION])
    assert not torch.equal(r1[keys.ACTION], r2[keys.ACTION])


class _Unsplit(torch.nn.Module):
    """The same actor called whole at every step (no ``act``/``complete_batch``)."""

    def __init__(self, actor: torch.nn.Module) -> None:
        super().__init__()
        self.actor = actor

    def forward(self, td):
        return self.actor(td)


def test_split_policy_batch_equals_calling_the_policy_per_step():
    torch.manual_seed(0)
    actor = TanhNormalActor(MLP(3, 2, [16]), low=torch.tensor([-2.0]), high=torch.tensor([2.0]))
    batches = []
    for policy in (actor, _Unsplit(actor)):
        collector = SyncDataCollector(pendulum(3), policy, frames_per_batch=30)
        collector.set_seed(0)
        torch.manual_seed(1)
        batches.append([collector.collect_batch() for _ in range(2)])
    for split, whole in zip(*batches, strict=True):
        assert set(split.keys(True, True)) == set(whole.keys(True, True))
        assert split[keys.SAMPLE_LOG_PROB].shape == (3, 10)
        for key in whole.keys(True, True):
            exact = key != keys.SAMPLE_LOG_PROB  # computed once per batch: last-bit rounding
            tolerance = {"rtol": 0, "atol": 0} if exact else {}
            torch.testing.assert_close(split[key], whole[key], **tolerance, msg=str(key))


def test_state_dict_resume_gives_identical_batches():
    torch.manual_seed(0)
    policy = LinearGaussianPolicy()
    make = partial(TransformedEnv, GymEnv("Pendulum-v1", num_envs=2), StepCounter(30))
    collector = SyncDataCollector(make(), policy, frames_per_batch=40, total_frames=-1)
    collector.set_seed(5)
    collector.collect_batch()
    collector.collect_batch()
    buffer = io.BytesIO()
    torch.save(collector.state_dict(), buffer)
    rng = torch.get_rng_state()
    expected = [collector.collect_batch() for _ in range(2)]

    buffer.seek(0)
    resumed = SyncDataCollector(
        TransformedEnv(GymEnv("Pendulum-v1", num_envs=2), StepCounter(30)),
        policy,
        frames_per_batch=40,
    )
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    torch.set_rng_state(rng)
    assert resumed.frames == 80
    for want in expected:
        got = resumed.collect_batch()
        assert (got == want).all()
    assert resumed.frames == 160


def test_update_policy_weights_copies_given_weights():
    policy = ConstantPolicy(0.5)
    collector = SyncDataCollector(pendulum(2), policy, frames_per_batch=4)
    collector.update_policy_weights_()  # same object: nothing to do
    assert collector.policy is policy
    from tensordict import TensorDict

    weights = TensorDict.from_module(ConstantPolicy(-1.5))
    collector.update_policy_weights_(weights)
    assert (collector.collect_batch()[keys.ACTION] == -1.5).all()


def test_private_policy_copy_follows_updates_only():
    policy = ConstantPolicy(0.5)
    collector = SyncDataCollector(pendulum(2), policy, frames_per_batch=4)
    collector.use_private_policy_copy()
    with torch.no_grad():
        policy.value.fill_(1.0)
    assert (collector.collect_batch()[keys.ACTION] == 0.5).all()
    collector.update_policy_weights_()
    assert (collector.collect_batch()[keys.ACTION] == 1.0).all()


def test_reset_at_each_iter_and_max_frames_per_traj():
    collector = SyncDataCollector(
        pendulum(2), None, frames_per_batch=20, total_frames=40, reset_at_each_iter=True
    )
    first, second = list(collector)
    assert (second[keys.STEP_COUNT][:, 0] == 1).all()
    assert set(second[keys.TRAJ_IDS].unique().tolist()).isdisjoint(
        first[keys.TRAJ_IDS].unique().tolist()
    )
    capped = SyncDataCollector(pendulum(2), None, frames_per_batch=20, max_frames_per_traj=4)
    batch = capped.collect_batch()
    assert batch[keys.STEP_COUNT].max() == 4
    assert torch.equal(batch[keys.TRUNCATED], batch[keys.STEP_COUNT] == 4)


def test_builders_pick_the_sync_collector():
    make = partial(GymEnv, "Pendulum-v1", num_envs=2)
    on = make_collector_onpolicy(make, LinearGaussianPolicy(), 20, 40)
    off = make_collector_offpolicy(make, LinearGaussianPolicy(), 20, 40, init_random_frames=20)
    assert isinstance(on, SyncDataCollector) and isinstance(off, SyncDataCollector)
    assert off.init_random_frames == 20 and on.total_frames == 40
    assert len(list(off)) == 2
