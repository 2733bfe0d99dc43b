from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from trainers.modules import MLP


def test_layer_sizes_and_activations():
    net = MLP(3, 2, [8, 5], activation_class=nn.ReLU)
    linears = [m for m in net if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(3, 8), (8, 5), (5, 2)]
    assert [type(m) for m in net].count(nn.ReLU) == 2
    assert not isinstance(net[-1], nn.ReLU)
    assert net(torch.zeros(4, 7, 3)).shape == (4, 7, 2)


def test_int_num_cells_needs_depth():
    net = MLP(3, 1, num_cells=16, depth=3)
    assert sum(isinstance(m, nn.Linear) for m in net) == 4
    with pytest.raises(ValueError, match="depth"):
        MLP(3, 1, num_cells=16)
    with pytest.raises(ValueError, match="depth=1 does not match"):
        MLP(3, 1, num_cells=[4, 4], depth=1)


def test_depth_zero_is_linear_and_last_layer_options():
    net = MLP(3, 2, num_cells=[], activate_last_layer=True, bias_last_layer=False)
    assert isinstance(net[0], nn.Linear) and net[0].bias is None
    assert isinstance(net[1], nn.Tanh)
    assert net(torch.full((1, 3), 100.0)).abs().max() <= 1.0


def test_sequence_out_features_reshapes():
    net = MLP(3, (2, 4), [8])
    assert net[-1].out_features == 8
    assert net(torch.zeros(5, 3)).shape == (5, 2, 4)


def test_lazy_input_size():
    net = MLP(None, 2, [8])
    out = net(torch.zeros(4, 6))
    assert out.shape == (4, 2)
    assert net[0].in_features == 6 and type(net[0]) is nn.Linear


@pytest.mark.parametrize("in_features", [5, None])
def test_orthogonal_init(in_features):
    torch.manual_seed(0)
    net = MLP(in_features, 3, [16, 16], init="orthogonal", last_layer_gain=0.01)
    net(torch.zeros(1, 5))
    linears = [m for m in net if isinstance(m, nn.Linear)]
    for layer, gain in zip(linears, [math.sqrt(2), math.sqrt(2), 0.01], strict=True):
        w = layer.weight.detach()
        # Semi-orthogonal with gain g: the smaller Gram matrix is g^2 * I.
        gram = w @ w.T if w.shape[0] <= w.shape[1] else w.T @ w
        torch.testing.assert_close(gram, gain**2 * torch.eye(gram.shape[0]), atol=1e-5, rtol=0)
        assert torch.count_nonzero(layer.bias) == 0


def test_default_init_is_torch_linear_default():
    torch.manual_seed(0)
    net = MLP(4, 2, [3])
    torch.manual_seed(0)
    ref = nn.Linear(4, 3)
    torch.testing.assert_close(net[0].weight, ref.weight)


def test_bad_init_rejected():
    with pytest.raises(ValueError, match="init='xavier'"):
        MLP(3, 1, [4], init="xavier")
