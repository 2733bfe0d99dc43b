from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from tensordict import TensorDict
from tensordict.nn import InteractionType, set_interaction_type
from torch import nn

from trainers.envs.specs import Bounded
from trainers.keys import ACTION, LOC, OBSERVATION, PRE_TANH_ACTION, SAMPLE_LOG_PROB, SCALE
from trainers.modules import (
    ACTION_VALUE,
    CHOSEN_ACTION_VALUE,
    LOGITS,
    MLP,
    CategoricalActor,
    ExplorationType,
    QValueActor,
    TanhNormalActor,
    set_exploration_type,
)


def _obs(batch: int = 64, dim: int = 3) -> TensorDict:
    return TensorDict({OBSERVATION: torch.randn(batch, dim)}, batch_size=[batch])


def _actor(**kwargs) -> TanhNormalActor:
    torch.manual_seed(0)
    spec = Bounded(torch.tensor([-2.0, 0.0]), torch.tensor([2.0, 1.0]), shape=(2,))
    out = 2 if kwargs.get("state_independent_scale") else 4
    return TanhNormalActor(MLP(3, out, [16]), spec, **kwargs)


def test_writes_keys_in_bounds_and_log_prob_matches_distribution():
    actor = _actor()
    td = actor(_obs())
    assert set(actor.out_keys) == {LOC, SCALE, PRE_TANH_ACTION, ACTION, SAMPLE_LOG_PROB}
    action = td[ACTION]
    assert action.shape == (64, 2) and td[SAMPLE_LOG_PROB].shape == (64,)
    assert bool(
        ((action >= torch.tensor([-2.0, 0.0])) & (action <= torch.tensor([2.0, 1.0]))).all()
    )
    # The action is the rescaled tanh of the stored pre-tanh sample.
    torch.testing.assert_close(
        action, torch.tensor([0.0, 0.5]) + torch.tensor([2.0, 0.5]) * td[PRE_TANH_ACTION].tanh()
    )
    # The stored log-prob is exactly what a loss recomputes: first PPO ratio == 1.
    dist = actor.get_dist(td)
    torch.testing.assert_close(
        dist.log_prob_pre_tanh(td[PRE_TANH_ACTION]), td[SAMPLE_LOG_PROB], rtol=0, atol=0
    )
    # Away from saturation, inverting the action with atanh gives the same density.
    torch.testing.assert_close(dist.log_prob(action), td[SAMPLE_LOG_PROB], rtol=1e-4, atol=1e-4)


def test_act_then_complete_batch_equals_forward_at_any_batch_shape():
    actor = _actor()
    obs = torch.randn(4, 5, 3)
    torch.manual_seed(1)
    whole = [actor(TensorDict({OBSERVATION: obs[:, t]}, batch_size=[4])) for t in range(5)]
    torch.manual_seed(1)
    steps = [actor.act(TensorDict({OBSERVATION: obs[:, t]}, batch_size=[4])) for t in range(5)]
    assert all(SAMPLE_LOG_PROB not in step.keys() for step in steps)
    stacked = torch.stack(steps, dim=1)
    actor.complete_batch(stacked)
    expected = torch.stack(whole, dim=1)
    for key in (LOC, SCALE, PRE_TANH_ACTION, ACTION):
        torch.testing.assert_close(stacked[key], expected[key], rtol=0, atol=0)
    # Elementwise math over 20 values instead of 4 at a time: vector and scalar code paths
    # may round the last bit differently.
    torch.testing.assert_close(stacked[SAMPLE_LOG_PROB], expected[SAMPLE_LOG_PROB])


def test_actor_samples_follow_its_distribution():
    torch.manual_seed(0)
    actor = TanhNormalActor(nn.Linear(3, 2), low=torch.tensor([1.0]), high=torch.tensor([3.0]))
    with torch.no_grad():
        actor.network.weight.zero_()
        actor.network.bias.copy_(torch.tensor([0.4, 0.0]))  # loc 0.4, scale 1 (biased softplus)
        td = actor(_obs(20000))
    pre_tanh = torch.atanh(td[ACTION] - 2.0)  # center 2, half range 1
    assert pre_tanh.mean().item() == pytest.approx(0.4, abs=0.03)
    assert pre_tanh.std().item() == pytest.approx(1.0, abs=0.03)


def test_random_samples_deterministic_takes_mode():
    actor = _actor()
    td = _obs(8)
    sampled_a = actor(td.clone())[ACTION]
    sampled_b = actor(td.clone())[ACTION]
    assert not torch.equal(sampled_a, sampled_b)
    for kind in (InteractionType.DETERMINISTIC, InteractionType.MODE, InteractionType.MEAN):
        with set_interaction_type(kind):
            out = actor(td.clone())
        torch.testing.assert_close(out[ACTION], actor.get_dist(out).mode)
        torch.testing.assert_close(
            out[ACTION], torch.tensor([0.0, 0.5]) + torch.tensor([2.0, 0.5]) * out[LOC].tanh()
        )
    with set_exploration_type(ExplorationType.RANDOM):
        assert not torch.equal(actor(td.clone())[ACTION], actor(td.clone())[ACTION])


@pytest.mark.parametrize(
    ("mapping", "raw", "expected"),
    [
        ("biased_softplus_1.0", 0.0, 1.0),
        ("biased_softplus_0.5", 0.0, 0.5),
        (
            "biased_softplus_1.0",
            2.0,
            F.softplus(torch.tensor(2.0 + math.log(math.expm1(1.0 - 1e-4)))).item() + 1e-4,
        ),
        ("exp", 0.5, math.exp(0.5)),
        ("exp", -20.0, 1e-4),
        ("softplus", 0.0, math.log(2.0) + 1e-4),
    ],
)
def test_scale_mappings(mapping, raw, expected):
    actor = TanhNormalActor(
        nn.Identity(), low=-torch.ones(1), high=torch.ones(1), scale_mapping=mapping
    )
    _, scale = actor.loc_scale(torch.tensor([[0.0, raw]]))
    assert scale.item() == pytest.approx(expected, rel=1e-5)


def test_state_independent_scale_is_a_parameter():
    actor = _actor(state_independent_scale=True)
    assert actor.raw_scale is not None and actor.raw_scale.shape == (2,)
    with torch.no_grad():
        actor.raw_scale.copy_(torch.tensor([0.0, -1.0]))
    td = actor(_obs(5))
    assert td[SCALE].shape == (5, 2)
    torch.testing.assert_close(
        td[SCALE][0],
        F.softplus(torch.tensor([0.0, -1.0]) + math.log(math.expm1(1.0 - 1e-4))) + 1e-4,
    )
    assert any(p is actor.raw_scale for p in actor.parameters())


def test_bounds_follow_state_dict():
    actor = _actor()
    other = TanhNormalActor(MLP(3, 4, [16]), low=-5 * torch.ones(2), high=5 * torch.ones(2))
    other.load_state_dict(actor.state_dict())
    td = _obs(4)
    with set_interaction_type(InteractionType.DETERMINISTIC):
        torch.testing.assert_close(other(td.clone())[ACTION], actor(td.clone())[ACTION])


def test_errors_name_the_setting():
    with pytest.raises(ValueError, match="scale_mapping='softmax'"):
        TanhNormalActor(
            nn.Identity(), low=-torch.ones(1), high=torch.ones(1), scale_mapping="softmax"
        )
    with pytest.raises(ValueError, match="bounds are missing"):
        TanhNormalActor(nn.Identity())
    with pytest.raises(ValueError, match="greater than its low"):
        TanhNormalActor(nn.Identity(), low=torch.ones(1), high=torch.ones(1))
    actor = TanhNormalActor(nn.Linear(3, 3), low=-torch.ones(2), high=torch.ones(2))
    with pytest.raises(ValueError, match="expected 4"):
        actor(_obs(2))


def test_categorical_actor():
    torch.manual_seed(0)
    actor = CategoricalActor(nn.Linear(3, 4))
    td = actor(_obs(2000))
    assert td[ACTION].dtype == torch.int64 and td[ACTION].shape == (2000,)
    # The stored log-prob is what the loss recomputes with the distribution.
    torch.testing.assert_close(td[SAMPLE_LOG_PROB], actor.get_dist(td).log_prob(td[ACTION]))
    assert not torch.equal(td[ACTION], td[LOGITS].argmax(-1))
    with set_interaction_type(InteractionType.DETERMINISTIC):
        td = actor(td)
    assert torch.equal(td[ACTION], td[LOGITS].argmax(-1))


def test_categorical_actor_samples_the_softmax():
    torch.manual_seed(0)
    probs = torch.tensor([0.1, 0.3, 0.6])
    network = nn.Linear(3, 3)
    with torch.no_grad():
        network.weight.zero_()
        network.bias.copy_(probs.log())
    td = CategoricalActor(network)(_obs(20000))
    frequencies = torch.bincount(td[ACTION], minlength=3) / 20000
    # 4 standard errors at most (sd of a frequency <= sqrt(0.25 / 20000) = 0.0035).
    torch.testing.assert_close(frequencies, probs, atol=0.014, rtol=0)


def test_qvalue_actor_greedy_and_epsilon():
    torch.manual_seed(0)
    actor = QValueActor(nn.Linear(3, 5))
    td = actor(_obs(1000))
    assert torch.equal(td[ACTION], td[ACTION_VALUE].argmax(-1))
    torch.testing.assert_close(
        td[CHOSEN_ACTION_VALUE], td[ACTION_VALUE].max(-1, keepdim=True).values
    )
    actor.epsilon = 1.0
    td = actor(td)
    greedy = td[ACTION_VALUE].argmax(-1)
    # All random: about 4/5 disagree with the greedy action; every action appears.
    assert 0.7 < (td[ACTION] != greedy).float().mean().item() < 0.9
    assert set(td[ACTION].tolist()) == set(range(5))
    torch.testing.assert_close(
        td[CHOSEN_ACTION_VALUE].squeeze(-1),
        td[ACTION_VALUE].gather(-1, td[ACTION][:, None]).squeeze(-1),
    )
    with set_interaction_type(InteractionType.DETERMINISTIC):
        assert torch.equal(actor(td)[ACTION], greedy)
    with pytest.raises(ValueError, match=r"epsilon=1\.5"):
        actor.epsilon = 1.5
