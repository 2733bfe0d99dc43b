from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torch import nn

from trainers.keys import (
    ADVANTAGE,
    DONE,
    MASK,
    NEXT_OBSERVATION,
    OBSERVATION,
    REWARD,
    STATE_VALUE,
    TERMINATED,
    TRUNCATED,
    VALUE_TARGET,
)
from trainers.modules import ValueOperator
from trainers.objectives import GAE, generalized_advantage_estimate, td0_return_estimate

GAMMA, LMBDA = 0.9, 0.8


def _reference_gae(v, nv, r, done, term, gamma=GAMMA, lmbda=LMBDA):
    """Plain-Python GAE for one env's list of floats."""
    adv = [0.0] * len(r)
    running = 0.0
    for t in reversed(range(len(r))):
        bootstrap = 0.0 if term[t] else nv[t]
        delta = r[t] + gamma * bootstrap - v[t]
        running = delta + gamma * lmbda * (0.0 if done[t] else running)
        adv[t] = running
    return adv


def _batch():
    """2 envs x 6 steps. Env 0: terminates at t=1, truncated at t=4. Env 1: no episode end."""
    torch.manual_seed(0)
    v = torch.randn(2, 6, 1)
    nv = torch.randn(2, 6, 1)
    r = torch.randn(2, 6, 1)
    term = torch.zeros(2, 6, 1, dtype=torch.bool)
    trunc = torch.zeros(2, 6, 1, dtype=torch.bool)
    term[0, 1] = True
    trunc[0, 4] = True
    done = term | trunc
    # Inside an episode the next observation is the next step's observation.
    same_episode = ~done[:, :-1]
    nv[:, :-1] = torch.where(same_episode, v[:, 1:], nv[:, :-1])
    return v, nv, r, done, term


def test_matches_plain_python_reference_with_termination_and_truncation():
    v, nv, r, done, term = _batch()
    adv, target = generalized_advantage_estimate(GAMMA, LMBDA, v, nv, r, done, term)
    for env in range(2):
        expected = _reference_gae(
            v[env, :, 0].tolist(),
            nv[env, :, 0].tolist(),
            r[env, :, 0].tolist(),
            done[env, :, 0].tolist(),
            term[env, :, 0].tolist(),
        )
        torch.testing.assert_close(adv[env, :, 0], torch.tensor(expected))
    torch.testing.assert_close(target, adv + v)


def test_lambda_one_is_discounted_return_to_episode_end():
    """With lambda = 1, A_t + V_t = sum of discounted rewards to the end of the episode (or the
    batch), plus the discounted value of the last next-observation unless it terminated."""
    v, nv, r, done, term = _batch()
    _, target = generalized_advantage_estimate(GAMMA, 1.0, v, nv, r, done, term)
    rr, nvv = r[0, :, 0].tolist(), nv[0, :, 0].tolist()
    # Episode [0, 1] terminated at 1: no bootstrap.
    assert target[0, 0, 0].item() == pytest.approx(rr[0] + GAMMA * rr[1], abs=1e-5)
    # Episode [2, 4] truncated at 4: bootstraps from V(s'_4) of its true final observation.
    expected_2 = rr[2] + GAMMA * rr[3] + GAMMA**2 * rr[4] + GAMMA**3 * nvv[4]
    assert target[0, 2, 0].item() == pytest.approx(expected_2, abs=1e-5)
    # Episode [5] is cut by the batch end: bootstraps from V(s'_5).
    assert target[0, 5, 0].item() == pytest.approx(rr[5] + GAMMA * nvv[5], abs=1e-5)


def test_values_do_not_leak_across_episode_boundaries():
    v, nv, r, done, term = _batch()
    adv, _ = generalized_advantage_estimate(GAMMA, LMBDA, v, nv, r, done, term)
    # Changing everything after t=1 (env 0 terminated there) leaves t <= 1 untouched ...
    v2, nv2, r2 = v.clone(), nv.clone(), r.clone()
    v2[0, 2:] += 10.0
    nv2[0, 2:] -= 7.0
    r2[0, 2:] *= -3.0
    adv2, _ = generalized_advantage_estimate(GAMMA, LMBDA, v2, nv2, r2, done, term)
    torch.testing.assert_close(adv2[0, :2], adv[0, :2])
    # ... as does the value of the observation that followed a termination.
    nv3 = nv.clone()
    nv3[0, 1] = 1e6
    adv3, _ = generalized_advantage_estimate(GAMMA, LMBDA, v, nv3, r, done, term)
    torch.testing.assert_close(adv3, adv)
    # Whereas the truncated step's next value matters.
    nv4 = nv.clone()
    nv4[0, 4] += 1.0
    adv4, _ = generalized_advantage_estimate(GAMMA, LMBDA, v, nv4, r, done, term)
    assert adv4[0, 4, 0] - adv[0, 4, 0] == pytest.approx(GAMMA, abs=1e-5)
    torch.testing.assert_close(adv4[0, 5:], adv[0, 5:])


def test_shape_mismatch_rejected():
    v, nv, r, done, term = _batch()
    with pytest.raises(ValueError, match="one shape"):
        generalized_advantage_estimate(GAMMA, LMBDA, v, nv[:, :5], r, done, term)


def test_td0():
    nv = torch.tensor([[2.0], [2.0], [5.0]])
    r = torch.tensor([[1.0], [1.0], [-1.0]])
    term = torch.tensor([[False], [True], [False]])
    expected = torch.tensor([[1.0 + 0.5 * 2.0], [1.0], [-1.0 + 0.5 * 5.0]])
    torch.testing.assert_close(td0_return_estimate(0.5, nv, r, term), expected)


def test_gae_module_uses_value_network_on_root_and_next():
    torch.manual_seed(0)
    _, _, r, done, term = _batch()
    obs, next_obs = torch.randn(2, 6, 3), torch.randn(2, 6, 3)
    td = TensorDict(
        {
            OBSERVATION: obs,
            NEXT_OBSERVATION: next_obs,
            REWARD: r,
            DONE: done,
            TERMINATED: term,
            TRUNCATED: done & ~term,
        },
        batch_size=[2, 6],
    )
    net = nn.Linear(3, 1)
    GAE(GAMMA, LMBDA, ValueOperator(net))(td)
    with torch.no_grad():
        expected_adv, expected_target = generalized_advantage_estimate(
            GAMMA, LMBDA, net(obs), net(next_obs), r, done, term
        )
    torch.testing.assert_close(td[ADVANTAGE], expected_adv)
    torch.testing.assert_close(td[VALUE_TARGET], expected_target)
    torch.testing.assert_close(td[STATE_VALUE], net(obs).detach())
    assert not td[ADVANTAGE].requires_grad

    GAE(GAMMA, LMBDA, ValueOperator(net), average_gae=True)(td)
    assert td[ADVANTAGE].mean().abs() < 1e-5 and td[ADVANTAGE].std() == pytest.approx(1.0, abs=1e-4)
    with pytest.raises(ValueError, match=r"lmbda=1\.5"):
        GAE(GAMMA, 1.5, ValueOperator(net))


def test_nothing_flows_back_from_padding_frames():
    """Env 1's last two steps are padding (mask false) with huge rewards: its valid steps get
    the advantages of a row that ends at step 3 and bootstraps from its next value there."""
    torch.manual_seed(0)
    _, _, r, done, term = _batch()
    r[1, 4:] = 1e6
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, 4:] = False
    obs, next_obs = torch.randn(2, 6, 3), torch.randn(2, 6, 3)
    td = TensorDict(
        {OBSERVATION: obs, NEXT_OBSERVATION: next_obs, REWARD: r, DONE: done,
         TERMINATED: term, MASK: mask},
        batch_size=[2, 6],
    )  # fmt: skip
    net = nn.Linear(3, 1)
    GAE(GAMMA, LMBDA, ValueOperator(net))(td)
    with torch.no_grad():
        v, nv = net(obs)[1, :4, 0].tolist(), net(next_obs)[1, :4, 0].tolist()
    expected = _reference_gae(v, nv, r[1, :4, 0].tolist(), [False] * 4, [False] * 4)
    assert td[ADVANTAGE][1, :4, 0].tolist() == pytest.approx(expected, rel=1e-5, abs=1e-5)
    unmasked = GAE(GAMMA, LMBDA, ValueOperator(net))(td.exclude(MASK))
    assert unmasked[ADVANTAGE][1, 3, 0] > 1e5  # without the mask the padding leaks back
