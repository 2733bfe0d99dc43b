from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torch import nn

from trainers.keys import ACTION, NEXT_OBSERVATION, OBSERVATION, REWARD, TD_ERROR, TERMINATED
from trainers.modules import QValueActor
from trainers.objectives import DQNLoss, HardUpdate, SoftUpdate, make_dqn_loss

GAMMA = 0.5


def _set(linear: nn.Linear, weight):
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(weight))
        linear.bias.zero_()


def _example(**kwargs):
    """Target Q'(s') = [2, 1, 0] (argmax 0); online Q(s') = [0, 0, 3] (argmax 2)."""
    actor = QValueActor(nn.Linear(2, 3))
    _set(actor.network, [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    loss = DQNLoss(actor, gamma=GAMMA, **kwargs)
    _set(actor.network, [[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]])  # online moves on, target stays
    td = TensorDict(
        {
            OBSERVATION: torch.tensor([[1.0, 0.0], [0.0, 1.0]]),
            ACTION: torch.tensor([2, 0]),
            NEXT_OBSERVATION: torch.tensor([[2.0, 1.0], [2.0, 1.0]]),
            REWARD: torch.tensor([[1.0], [-1.0]]),
            TERMINATED: torch.tensor([[False], [True]]),
        },
        batch_size=[2],
    )
    return loss, td


@pytest.mark.parametrize(
    ("kwargs", "target_0"),
    [
        ({}, 1.0 + GAMMA * 2.0),  # max of the target network
        ({"double_dqn": True}, 1.0 + GAMMA * 0.0),  # target network at the online argmax
        ({"delay_value": False}, 1.0 + GAMMA * 3.0),  # online network, no target
    ],
)
def test_dqn_target(kwargs, target_0):
    loss, td = _example(**kwargs)
    out = loss(td)
    # Q(s, a): sample 0 -> 1.0, sample 1 -> 0.0; sample 1 terminated: target = r = -1.
    expected = ((1.0 - target_0) ** 2 + (0.0 + 1.0) ** 2) / 2
    assert out["loss_qvalue"].item() == pytest.approx(expected)
    torch.testing.assert_close(td[TD_ERROR], torch.tensor([abs(1.0 - target_0), 1.0]))
    assert out["target_value_mean"].item() == pytest.approx((target_0 - 1.0) / 2)


def test_gradients_reach_online_network_only():
    loss, td = _example()
    loss(td)["loss_qvalue"].backward()
    assert loss.value_network.network.weight.grad is not None
    assert [n for n, _ in loss.named_parameters()] == [
        "value_network.network.weight",
        "value_network.network.bias",
    ]
    assert "target_value_network.network.weight" in loss.state_dict()


def test_smooth_l1():
    loss, td = _example(loss_function="smooth_l1")
    # residuals 1 and 1: Huber(1) = 0.5 each.
    assert loss(td)["loss_qvalue"].item() == pytest.approx(0.5)


def test_make_dqn_loss():
    loss, updater = make_dqn_loss(QValueActor(nn.Linear(2, 3)), value_network_update_interval=7)
    assert isinstance(loss, DQNLoss) and isinstance(updater, HardUpdate)
    assert updater.value_network_update_interval == 7
    _, soft = make_dqn_loss(QValueActor(nn.Linear(2, 3)), hard_update=False, tau=0.1)
    assert isinstance(soft, SoftUpdate) and soft.tau == 0.1
    loss, none = make_dqn_loss(QValueActor(nn.Linear(2, 3)), delay_value=False, double_dqn=True)
    assert none is None and loss.double_dqn
    with pytest.raises(TypeError, match="QValueActor"):
        DQNLoss(nn.Linear(2, 3), gamma=0.9)
