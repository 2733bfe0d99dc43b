from __future__ import annotations

import math

import pytest
import torch
from tensordict import TensorDict

from trainers.keys import (
    ACTION,
    NEXT_OBSERVATION,
    OBSERVATION,
    PRIORITY_WEIGHT,
    REWARD,
    TD_ERROR,
    TERMINATED,
)
from trainers.modules import MLP, EnsembleQValueNetwork, TanhNormalActor
from trainers.objectives import SACLoss

GAMMA, ALPHA = 0.9, 0.5
# Linear critics Q_i(s, a) = w_s s + w_a a + b.
Q_WEIGHTS = [(1.0, 2.0, 0.0), (0.5, -1.0, 1.0)]


def _hand_example(fused: bool = True):
    """One linear actor layer and linear critics; ``fused`` picks SACLoss's path."""
    actor = TanhNormalActor(MLP(1, 2, num_cells=[]), low=-torch.ones(1), high=torch.ones(1))
    with torch.no_grad():
        actor.network[0].weight.copy_(torch.tensor([[0.5], [0.0]]))  # loc = s / 2, scale = 1
        actor.network[0].bias.zero_()
    qvalue = EnsembleQValueNetwork(1, 1, num_cells=[])
    with torch.no_grad():
        for i, (ws, wa, b) in enumerate(Q_WEIGHTS):
            qvalue.network.weights[0][i] = torch.tensor([[ws], [wa]])
            qvalue.network.biases[0][i] = b
    td = TensorDict(
        {
            OBSERVATION: torch.tensor([[1.0], [-1.0]]),
            ACTION: torch.tensor([[0.2], [-0.4]]),
            NEXT_OBSERVATION: torch.tensor([[0.4], [2.0]]),
            REWARD: torch.tensor([[1.0], [-0.5]]),
            TERMINATED: torch.tensor([[False], [True]]),
        },
        batch_size=[2],
    )
    loss = SACLoss(actor, qvalue, gamma=GAMMA, alpha_init=ALPHA, fixed_alpha=True, fused=fused)
    assert (loss.fused_path is not None) == fused
    return loss, td


def _q(i, s, a):
    ws, wa, b = Q_WEIGHTS[i]
    return ws * s + wa * a + b


@pytest.mark.parametrize("fused", [True, False])
def test_target_value_and_qvalue_loss_on_a_hand_example(fused):
    loss, td = _hand_example(fused)
    torch.manual_seed(123)
    noise = torch.randn(2, 1)[:, 0].tolist()  # the loss's first draw: a' ~ pi(.|s')
    torch.manual_seed(123)
    out = loss(td)

    obs, act = [1.0, -1.0], [0.2, -0.4]
    next_obs, rew, term = [0.4, 2.0], [1.0, -0.5], [False, True]
    targets = []
    for j in range(2):
        loc = next_obs[j] / 2
        x = loc + noise[j]
        a_next = math.tanh(x)
        log_pi = -0.5 * noise[j] ** 2 - 0.5 * math.log(2 * math.pi) - math.log(1 - a_next**2)
        soft_value = min(_q(0, next_obs[j], a_next), _q(1, next_obs[j], a_next)) - ALPHA * log_pi
        targets.append(rew[j] + (0.0 if term[j] else GAMMA * soft_value))
    assert targets[1] == -0.5  # terminated: no bootstrap
    q_pred = [[_q(i, obs[j], act[j]) for j in range(2)] for i in range(2)]
    expected_loss = sum((q_pred[i][j] - targets[j]) ** 2 for i in range(2) for j in range(2)) / 2
    assert out["loss_qvalue"].item() == pytest.approx(expected_loss, rel=1e-4)
    assert out["target_value_mean"].item() == pytest.approx(sum(targets) / 2, rel=1e-4)
    td_error = [max(abs(q_pred[i][j] - targets[j]) for i in range(2)) for j in range(2)]
    torch.testing.assert_close(td[TD_ERROR], torch.tensor(td_error), rtol=1e-4, atol=1e-5)
    assert out["alpha"].item() == pytest.approx(ALPHA)
    assert out["loss_alpha"].item() == 0.0
    assert "log_alpha" not in dict(loss.named_parameters())


@pytest.mark.parametrize("fused", [True, False])
def test_truncation_bootstraps(fused):
    loss, td = _hand_example(fused)
    td[TERMINATED] = torch.tensor([[False], [False]])
    torch.manual_seed(0)
    bootstrapped = loss(td)["target_value_mean"]
    td[TERMINATED] = torch.tensor([[False], [True]])
    torch.manual_seed(0)
    assert loss(td)["target_value_mean"] != bootstrapped


@pytest.mark.parametrize("fused", [True, False])
def test_priority_weights_scale_the_qvalue_loss(fused):
    loss, td = _hand_example(fused)
    torch.manual_seed(0)
    plain = loss(td)
    per_sample_sum = plain["loss_qvalue"].item() * 2
    td[PRIORITY_WEIGHT] = torch.tensor([1.0, 0.0])
    torch.manual_seed(0)
    weighted = loss(td)["loss_qvalue"].item()
    # Sample 1 terminated: its target is r = -0.5, so its residuals are known exactly.
    residual_1 = (_q(0, -1.0, -0.4) + 0.5) ** 2 + (_q(1, -1.0, -0.4) + 0.5) ** 2
    assert weighted == pytest.approx((per_sample_sum - residual_1) / 2, rel=1e-4)


def _random_setup(**kwargs):
    """Tanh MLPs (SACLoss's fused path unless ``fused=False`` is passed) on a random batch."""
    torch.manual_seed(0)
    actor = TanhNormalActor(MLP(4, 4, [16]), low=-torch.ones(2), high=torch.ones(2))
    loss = SACLoss(actor, EnsembleQValueNetwork(4, 2, [16]), **kwargs)
    td = TensorDict(
        {
            OBSERVATION: torch.randn(32, 4),
            ACTION: torch.rand(32, 2) * 2 - 1,
            NEXT_OBSERVATION: torch.randn(32, 4),
            REWARD: torch.randn(32, 1),
            TERMINATED: torch.rand(32, 1) < 0.2,
        },
        batch_size=[32],
    )
    return loss, td


@pytest.mark.parametrize("fused", [True, False])
def test_each_loss_reaches_only_its_own_parameters(fused):
    loss, td = _random_setup(fused=fused)
    out = loss(td)
    groups = {
        "actor": list(loss.actor_network.parameters()),
        "qvalue": list(loss.qvalue_network.parameters()),
        "alpha": [loss.log_alpha],
    }
    owner = {"loss_actor": "actor", "loss_qvalue": "qvalue", "loss_alpha": "alpha"}
    for key, own in owner.items():
        for group, params in groups.items():
            grads = torch.autograd.grad(out[key], params, retain_graph=True, allow_unused=True)
            touched = any(g is not None and g.abs().sum() > 0 for g in grads)
            assert touched == (group == own), (key, group)
    # The target critics are buffers: saved with the loss, never optimized.
    names = {name for name, _ in loss.named_parameters()}
    assert not any(name.startswith("target_") for name in names)
    assert "target_qvalue_network.network.weights.0" in loss.state_dict()
    assert len(list(loss.parameters())) == len(groups["actor"]) + len(groups["qvalue"]) + 1


@pytest.mark.parametrize("fused", [True, False])
def test_optimizer_step_moves_online_critics_only(fused):
    loss, td = _random_setup(fused=fused)
    optim = torch.optim.Adam(loss.parameters(), lr=1e-2)
    target_before = loss.target_qvalue_network.network.weights[0].clone()
    online_before = loss.qvalue_network.network.weights[0].detach().clone()
    out = loss(td)
    (out["loss_actor"] + out["loss_qvalue"] + out["loss_alpha"]).backward()
    optim.step()
    assert torch.equal(loss.target_qvalue_network.network.weights[0], target_before)
    assert not torch.equal(loss.qvalue_network.network.weights[0], online_before)


@pytest.mark.parametrize("fused", [True, False])
def test_alpha_loss_target_entropy_and_clamps(fused):
    loss, td = _random_setup(alpha_init=2.0, fused=fused)
    assert loss.target_entropy == -2.0  # auto: -action_dim
    torch.manual_seed(0)
    out = loss(td)
    (grad,) = torch.autograd.grad(out["loss_alpha"], [loss.log_alpha])
    # d/dlog_alpha of -mean(log_alpha (log pi + H)) = entropy - H.
    assert grad.item() == pytest.approx(out["entropy"].item() - (-2.0), rel=1e-4)
    assert out["alpha"].item() == pytest.approx(2.0)
    clamped, td = _random_setup(alpha_init=10.0, max_alpha=3.0, min_alpha=0.1)
    assert clamped(td)["alpha"].item() == pytest.approx(3.0)
    assert _random_setup(target_entropy=-0.5)[0].target_entropy == -0.5


def test_invalid_settings():
    actor = TanhNormalActor(MLP(4, 4, [8]), low=-torch.ones(2), high=torch.ones(2))
    with pytest.raises(ValueError, match="num_qvalue_nets=3"):
        SACLoss(actor, EnsembleQValueNetwork(4, 2, [8]), num_qvalue_nets=3)
    with pytest.raises(ValueError, match="target_entropy='high'"):
        SACLoss(actor, EnsembleQValueNetwork(4, 2, [8]), target_entropy="high")
    with pytest.raises(ValueError, match="alpha_init=0"):
        SACLoss(actor, EnsembleQValueNetwork(4, 2, [8]), alpha_init=0)
