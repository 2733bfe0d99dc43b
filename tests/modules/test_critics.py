from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict
from torch import nn

from trainers.keys import ACTION, OBSERVATION, STATE_VALUE
from trainers.modules import (
    MLP,
    STATE_ACTION_VALUE,
    EnsembleMLP,
    EnsembleQValueNetwork,
    QValueNetwork,
    ValueOperator,
)
from trainers.modules.critics import ensemble_linear


def _member_as_mlp(ensemble: EnsembleMLP, i: int, sizes: list[int]) -> MLP:
    """Member i of the ensemble as a separate MLP with the same weights."""
    net = MLP(sizes[0], sizes[-1], sizes[1:-1], activation_class=nn.ReLU)
    linears = [m for m in net if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for layer, weight, bias in zip(linears, ensemble.weights, ensemble.biases, strict=True):
            layer.weight.copy_(weight[i].T)
            layer.bias.copy_(bias[i, 0])
    return net


def test_twin_q_equals_two_separate_networks():
    torch.manual_seed(0)
    q = EnsembleQValueNetwork(5, 2, num_cells=[32, 16])
    separate = [_member_as_mlp(q.network, i, [7, 32, 16, 1]) for i in range(2)]
    obs, action = torch.randn(4, 6, 5), torch.randn(4, 6, 2)
    out = q(obs, action)
    assert out.shape == (2, 4, 6, 1)
    x = torch.cat([obs, action], -1)
    for i, net in enumerate(separate):
        torch.testing.assert_close(out[i], net(x), rtol=1e-5, atol=1e-6)
    # Gradients of member i equal those of the separate network i.
    out.sum().backward()
    sum(net(x).sum() for net in separate).backward()
    for i, net in enumerate(separate):
        torch.testing.assert_close(
            q.network.weights[0].grad[i], net[0].weight.grad.T, rtol=1e-4, atol=1e-5
        )


def test_members_are_initialized_independently_like_linear():
    torch.manual_seed(0)
    net = EnsembleMLP(64, 1, [128], num_nets=3)
    w = net.weights[0]
    assert not torch.equal(w[0], w[1])
    bound = 1 / 64**0.5
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    ortho = EnsembleMLP(8, 1, [8], num_nets=2, init="orthogonal")
    for member in ortho.weights[0]:
        torch.testing.assert_close(member.T @ member, 2.0 * torch.eye(8), atol=1e-5, rtol=0)
    assert torch.count_nonzero(ortho.biases[0]) == 0


def test_ensemble_rejects_bad_sizes():
    with pytest.raises(ValueError, match="num_nets=0"):
        EnsembleMLP(3, 1, [4], num_nets=0)


def test_value_operator_and_qvalue_network_write_their_keys():
    torch.manual_seed(0)
    td = TensorDict({OBSERVATION: torch.randn(4, 3), ACTION: torch.randn(4, 2)}, batch_size=[4])
    v_net, q_net = nn.Linear(3, 1), nn.Linear(5, 1)
    ValueOperator(v_net)(td)
    QValueNetwork(q_net)(td)
    torch.testing.assert_close(td[STATE_VALUE], v_net(td[OBSERVATION]))
    torch.testing.assert_close(
        td[STATE_ACTION_VALUE], q_net(torch.cat([td[OBSERVATION], td[ACTION]], -1))
    )
    ValueOperator(v_net, out_key="other")(td)
    assert "other" in td.keys()


@pytest.mark.parametrize("outputs", [1, 3])
def test_ensemble_linear_equals_batched_product(outputs):
    """A one-output layer is computed elementwise; values and gradients are baddbmm's."""
    torch.manual_seed(0)
    hidden = torch.randn(2, 9, 5, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(2, 5, outputs, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(2, 1, outputs, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(2, 9, outputs, dtype=torch.float64)
    results = []
    for out in (ensemble_linear(hidden, weight, bias), torch.baddbmm(bias, hidden, weight)):
        results.append((out, *torch.autograd.grad(out, (hidden, weight, bias), grad)))
    for got, expected in zip(*results, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
