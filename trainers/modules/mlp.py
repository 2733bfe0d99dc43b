"""A multi-layer perceptron with optional lazy input size and orthogonal initialization."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from trainers.modules.compiled import Compilable

INITS = ("torch", "orthogonal")


def init_orthogonal_(layer: nn.Module, gain: float) -> None:
    """Orthogonal weights scaled by ``gain`` and zero biases (the PPO recipe of CleanRL/SB3)."""
    weight = getattr(layer, "weight", None)
    if isinstance(weight, torch.Tensor) and weight.dim() >= 2:
        nn.init.orthogonal_(weight, gain=gain)
    bias = getattr(layer, "bias", None)
    if isinstance(bias, torch.Tensor):
        nn.init.zeros_(bias)


class _OrthogonalLazyLinear(nn.LazyLinear):
    """A ``LazyLinear`` whose weights are orthogonal once its input size is known."""

    def __init__(self, out_features: int, bias: bool, gain: float) -> None:
        self.gain = gain
        super().__init__(out_features, bias=bias)

    def reset_parameters(self) -> None:
        # LazyLinear calls this right after materializing the weights at the first forward.
        super().reset_parameters()
        if not self.has_uninitialized_params() and self.in_features != 0:
            init_orthogonal_(self, self.gain)


def hidden_sizes(num_cells: Sequence[int] | int, depth: int | None) -> list[int]:
    """The hidden widths from ``num_cells`` (a sequence, or one width) and ``depth``."""
    if isinstance(num_cells, int):
        if depth is None:
            raise ValueError(
                f"num_cells={num_cells} is an int, so depth (the number of hidden layers) "
                "must be given; or pass num_cells as a sequence such as [256, 256]."
            )
        if depth < 0:
            raise ValueError(f"depth={depth}; allowed: an int >= 0.")
        return [num_cells] * depth
    cells = list(num_cells)
    if depth is not None and depth != len(cells):
        raise ValueError(
            f"depth={depth} does not match num_cells={cells} ({len(cells)} hidden layers); "
            "leave depth unset when num_cells is a sequence."
        )
    if any(c < 1 for c in cells):
        raise ValueError(f"num_cells={cells}; every hidden width must be >= 1.")
    return cells


class MLP(Compilable, nn.Sequential):
    """A stack of ``layer_class`` layers with ``activation_class`` between them.

    Layer sizes: ``in_features -> num_cells[0] -> ... -> num_cells[-1] -> prod(out_features)``.
    A sequence ``out_features`` reshapes the last dimension of the output to that shape.

    Initialization: ``init="torch"`` keeps PyTorch's default (Kaiming-uniform weights, uniform
    biases, as ``nn.Linear`` does); ``init="orthogonal"`` draws orthogonal weights with gain
    ``sqrt(2)`` for hidden layers and ``last_layer_gain`` for the output layer, and zero biases.
    This is the CleanRL/SB3 PPO recipe (policy head gain 0.01, value head gain 1.0). With a lazy
    first layer the orthogonal init of that layer runs once, at its first forward call.

    Args:
        in_features: input size; ``None`` makes the first layer an ``nn.LazyLinear`` that infers
            it at the first call (only with ``layer_class=nn.Linear``).
        out_features: output size, or output shape.
        num_cells: hidden layer widths, or one width repeated ``depth`` times.
        activation_class: activation module class placed after each hidden layer.
        activate_last_layer: also apply the activation after the output layer.
        depth: number of hidden layers; required when ``num_cells`` is an int.
        layer_class: callable ``(in_features, out_features, bias=...) -> nn.Module``.
        bias_last_layer: whether the output layer has a bias.
        init: ``"torch"`` or ``"orthogonal"`` (see above).
        last_layer_gain: gain of the output layer under ``init="orthogonal"``.

    Examples:
        >>> import torch
        >>> net = MLP(in_features=3, out_features=2, num_cells=[64, 64])
        >>> net(torch.zeros(5, 3)).shape
        torch.Size([5, 2])
        >>> MLP(out_features=(2, 4), num_cells=32, depth=1)(torch.zeros(7)).shape
        torch.Size([2, 4])
    """

    def __init__(
        self,
        in_features: int | None = None,
        out_features: int | Sequence[int] = 1,
        num_cells: Sequence[int] | int = (256, 256),
        activation_class: type[nn.Module] = nn.Tanh,
        activate_last_layer: bool = False,
        depth: int | None = None,
        layer_class: Callable[..., nn.Module] = nn.Linear,
        bias_last_layer: bool = True,
        init: str = "torch",
        last_layer_gain: float = 1.0,
    ) -> None:
        if init not in INITS:
            raise ValueError(f"MLP: init={init!r}; allowed: {', '.join(map(repr, INITS))}.")
        if in_features is None and layer_class is not nn.Linear:
            raise ValueError(
                f"MLP: in_features=None needs layer_class=nn.Linear (lazy input size), "
                f"got layer_class={layer_class!r}; pass in_features."
            )
        out_shape = (out_features,) if isinstance(out_features, int) else tuple(out_features)
        cells = hidden_sizes(num_cells, depth)
        sizes = [*cells, math.prod(out_shape)]
        layers: list[nn.Module] = []
        previous = in_features
        for i, size in enumerate(sizes):
            last = i == len(sizes) - 1
            bias = bias_last_layer if last else True
            gain = last_layer_gain if last else math.sqrt(2.0)
            if previous is None and init == "orthogonal":
                layer: nn.Module = _OrthogonalLazyLinear(size, bias, gain)
            elif previous is None:
                layer = nn.LazyLinear(size, bias=bias)
            else:
                layer = layer_class(previous, size, bias=bias)
                if init == "orthogonal":
                    init_orthogonal_(layer, gain)
            layers.append(layer)
            if not last or activate_last_layer:
                layers.append(activation_class())
            previous = size
        super().__init__(*layers)
        self.out_shape = out_shape

    def _forward(self, input: torch.Tensor) -> torch.Tensor:
        out = nn.Sequential.forward(self, input)
        if len(self.out_shape) > 1:
            out = out.unflatten(-1, self.out_shape)
        return out
