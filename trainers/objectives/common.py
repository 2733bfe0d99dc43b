"""The loss-module base: target networks held as buffers, and shared helpers."""

from __future__ import annotations

import copy
import numbers
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from tensordict import TensorDictBase
from torch import nn

from trainers.keys import PRIORITY_WEIGHT

LOSS_FUNCTIONS = ("l2", "smooth_l1")


def _params_to_buffers(module: nn.Module) -> None:
    """Turns every parameter of ``module`` (recursively) into a buffer holding a detached copy."""
    for submodule in module.modules():
        for name, param in list(submodule._parameters.items()):
            del submodule._parameters[name]
            if param is not None:
                submodule.register_buffer(name, param.detach().clone())


def distance_loss(
    prediction: torch.Tensor, target: torch.Tensor, loss_function: str
) -> torch.Tensor:
    """Element-wise ``(prediction - target)^2`` (``"l2"``) or Huber with delta 1
    (``"smooth_l1"``), not reduced."""
    if loss_function == "l2":
        return (prediction - target).square()
    return F.smooth_l1_loss(prediction, target, reduction="none")


def check_loss_function(owner: str, setting: str, loss_function: str) -> None:
    if loss_function not in LOSS_FUNCTIONS:
        raise ValueError(
            f"{owner}: {setting}={loss_function!r}; allowed: "
            f"{', '.join(map(repr, LOSS_FUNCTIONS))}."
        )


def weighted_mean(per_sample: torch.Tensor, tensordict: TensorDictBase) -> torch.Tensor:
    """Mean over samples, weighted by the replay buffer's importance weights when present.

    ``per_sample`` has the batch shape of ``tensordict`` (trailing singleton dims allowed).
    """
    weight = tensordict.get(PRIORITY_WEIGHT, None)
    if weight is None:
        return per_sample.mean()
    return (per_sample.reshape(weight.shape) * weight).mean()


def module_home(module: nn.Module) -> tuple[torch.device, torch.dtype]:
    """The device and dtype of ``module``'s first floating-point parameter or buffer (the CPU
    and torch's default dtype if it has none)."""
    for tensor in (*module.parameters(), *module.buffers()):
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.get_default_dtype()


_NO_OFF_VALUE = object()


class GraphScalar:
    """A float setting of a loss (``clip_epsilon``) that its computation reads as a 0-d buffer.

    ``loss.clip_epsilon`` reads and writes the float; a write checks it and puts a new 0-d
    tensor in the buffer ``loss._clip_epsilon``, with the device and dtype of the loss's
    networks (so the losses keep their dtype, and the value its networks' precision). A compiled
    loss (``loss.compile``) thus takes the value as an input of its graph, not as a constant: a
    hook that changes it during a run (a schedule) neither recompiles the graph nor syncs a
    device. A new tensor rather than an in-place fill, because autograd may hold the old one for
    a backward pass still to come (a ``post_loss`` hook runs between the loss and its backward).
    Where the setting has an ``off`` value (``clip_value=None``, ``entropy_coeff=0``), the
    buffer is ``None`` while the setting holds it and the computation leaves the term out:
    switching a term on or off changes the graph, and recompiles it once. Not persistent: like
    the other settings, these are not in ``state_dict``.

    Args:
        allowed: the allowed values, in words, for the error.
        valid: whether a value other than ``off`` is allowed.
        off: the value that leaves the setting's term out, if any.

    Examples:
        >>> import torch
        >>> class Scaled(torch.nn.Module):
        ...     scale = GraphScalar("a number > 0", lambda value: value > 0)
        ...     def __init__(self) -> None:
        ...         super().__init__()
        ...         self.scale = 2.0
        >>> module = Scaled()
        >>> module.scale = 3.0
        >>> module.scale, module._scale, list(module.state_dict())
        (3.0, tensor(3.), [])
    """

    def __init__(
        self, allowed: str, valid: Callable[[float], bool], off: Any = _NO_OFF_VALUE
    ) -> None:
        self.allowed = allowed
        self.valid = valid
        self.off = off

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, loss: nn.Module | None, owner: type | None = None) -> Any:
        if loss is None:
            return self
        try:
            return loss.__dict__[self.name]
        except KeyError:
            raise AttributeError(
                f"{type(loss).__name__}.{self.name} is read before it was set"
            ) from None

    def __set__(self, loss: nn.Module, value: float | None) -> None:
        buffer_name = f"_{self.name}"
        buffer: torch.Tensor | None = None
        if self.off is _NO_OFF_VALUE or value != self.off:
            if not isinstance(value, numbers.Real | torch.Tensor) or not self.valid(value):
                raise ValueError(
                    f"{type(loss).__name__}: {self.name}={value}; allowed: {self.allowed}."
                )
            current = loss._buffers.get(buffer_name)
            device, dtype = (
                (current.device, current.dtype) if current is not None else module_home(loss)
            )
            buffer = torch.full((), value, dtype=dtype, device=device)
        loss.__dict__[self.name] = value
        loss.register_buffer(buffer_name, buffer, persistent=False)


class LossModule(nn.Module):
    """Base of the losses: ``forward(tensordict) -> TensorDict`` of ``loss_*`` scalars plus
    detached diagnostics.

    Target networks are deep copies whose parameters are turned into buffers: they follow the
    loss module in ``state_dict()`` and ``.to(device)``, but not in ``parameters()``, so an
    optimizer built on ``loss.parameters()`` never sees them. ``target_parameter_pairs()``
    lists each target tensor with its source parameter, for ``SoftUpdate``/``HardUpdate``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._target_of: dict[str, str] = {}

    def _make_target(self, source_name: str) -> None:
        """Registers ``target_<source_name>``: a frozen copy of the submodule ``source_name``."""
        target = copy.deepcopy(getattr(self, source_name))
        _params_to_buffers(target)
        target_name = f"target_{source_name}"
        self.add_module(target_name, target)
        self._target_of[target_name] = source_name

    def target_parameter_pairs(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``(targets, sources)``: each target buffer and the parameter it tracks, in order."""
        targets: list[torch.Tensor] = []
        sources: list[torch.Tensor] = []
        for target_name, source_name in self._target_of.items():
            buffers = dict(getattr(self, target_name).named_buffers())
            for name, param in getattr(self, source_name).named_parameters():
                targets.append(buffers[name])
                sources.append(param.detach())
        return targets, sources

    def frozen(self, module: nn.Module) -> Callable[..., torch.Tensor]:
        """``module`` called with detached parameters: gradients reach its inputs, not its
        weights (the SAC actor loss differentiates Q with respect to the action only)."""
        params = {name: p.detach() for name, p in module.named_parameters()}

        def call(*args: torch.Tensor) -> torch.Tensor:
            return torch.func.functional_call(module, params, args)

        return call
