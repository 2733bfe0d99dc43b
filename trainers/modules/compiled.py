"""Optional ``torch.compile`` of the networks' forward passes (``networks.compile``).

A network class opts in by deriving from :class:`Compilable` (before any other ``nn.Module``
base) and writing its math in a ``_forward(self, input)`` method; ``Compilable.forward`` runs it
through :func:`run_compiled` when the instance's ``compiled`` flag is set. Each such method is
compiled once per process (``dynamic=True``: one graph serves every batch size) and the backward
pass is compiled with it. Off by default: on CPU at RL sizes the compiled networks measured
slower than eager ones (``docs/benchmarks.md``); on a GPU, where kernel launches dominate, it may
win.

Why a flag and a compiled function per class, not ``nn.Module.compile``: that compiles the
bound call of one instance, and a deep copy (SAC's target critics, a collector's private policy
copy) keeps calling the original instance, so target networks would silently evaluate the
online weights. A flag travels with deep copies and pickles (worker processes), and every copy
runs its own weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

_COMPILED: dict[Callable[..., Any], Callable[..., Any]] = {}


class Compilable(nn.Module):
    """Base of the networks that ``compile_networks`` can switch to compiled forward passes."""

    compiled: bool = False

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self.compiled:
            return run_compiled(type(self)._forward, self, input)
        return self._forward(input)

    def _forward(self, input: torch.Tensor) -> torch.Tensor:
        """The network's math, eager or compiled (every subclass writes it)."""
        raise NotImplementedError


def run_compiled(forward: Callable[..., Any], module: nn.Module, *args: Any) -> Any:
    """``forward(module, *args)`` through its ``torch.compile`` (compiled at the first call)."""
    compiled = _COMPILED.get(forward)
    if compiled is None:
        compiled = _COMPILED[forward] = torch.compile(forward, dynamic=True)
    return compiled(module, *args)


def compile_networks(*modules: nn.Module) -> int:
    """Sets ``compiled`` on every :class:`Compilable` network inside ``modules``.

    Returns how many were switched; the first call of each kind of network then compiles it
    (seconds to a minute on CPU).

    Examples:
        >>> from trainers.modules import MLP
        >>> net = MLP(3, 1, [8])
        >>> compile_networks(net), net.compiled
        (1, True)
    """
    networks = {
        id(m): m for module in modules for m in module.modules() if isinstance(m, Compilable)
    }
    for network in networks.values():
        network.compiled = True
    return len(networks)
