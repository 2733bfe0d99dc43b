"""``loss.compile``: a loss's computation as one ``torch.compile`` graph, compiled once.

The losses that take a ``compile`` switch (``ClipPPOLoss`` and the other PPO losses,
``SACLoss``'s fused path) run their per-minibatch computation through :class:`CompiledOnce`.
What pays on CPU is one graph for the whole computation, called through inductor's C++ wrapper:
the per-operation Python and dispatch that dominate RL-sized networks go away
(``docs/benchmarks.md``). The rules:

* one graph per loss, for the signature of its first call (batch shape, device, torch threads,
  and what the loss adds); a call with another signature (a smaller last minibatch, an
  evaluation under ``no_grad``) runs eagerly rather than compiling again, which costs seconds;
* a compiler that fails (no C++ compiler on the machine, dynamo's recompile limit reached, an
  operation dynamo cannot trace) warns once, naming the setting, and the loss runs eagerly
  from then on. The first call also compiles the backward graph (which AOTAutograd would
  otherwise compile at the first ``backward()``, outside this fallback);
* each loss compiles its own copy of the function: dynamo keeps its graphs, and its limit of 8
  per function, per code object, so losses in one process (a Hydra multirun, a notebook) do not
  use up each other's. Changing what the graph is specialized to (the batch's keys, a
  setting held as a Python value) makes dynamo recompile, which counts toward that loss's
  limit; the losses' float settings (PPO's coefficients, SAC's ``gamma``) are 0-d buffers
  for that reason (``objectives.common.GraphScalar``).
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Callable
from typing import Any

import torch
import torch._functorch.config
from torch._dynamo.exc import (
    BackendCompilerFailed,
    FailOnRecompileLimitHit,
    InternalTorchDynamoError,
    Unsupported,
)

# What a failing compile raises (inductor's errors are BackendCompilerFailed): the run continues
# eagerly.
COMPILE_ERRORS = (BackendCompilerFailed, Unsupported, FailOnRecompileLimitHit,
                  InternalTorchDynamoError)  # fmt: skip


def compile_graph(function: Callable[..., Any], device: torch.device) -> Callable[..., Any]:
    """``function`` through ``torch.compile`` as one static graph; on CPU with inductor's C++
    wrapper, which calls the kernels without Python between them."""
    options: dict[str, str | int | bool | Callable[..., Any]] = {
        "cpp_wrapper": device.type == "cpu"
    }
    return torch.compile(function, fullgraph=True, dynamic=False, options=options)


def _own_copy(function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` with a code object of its own, so that dynamo's cache of graphs (kept per
    code object) is its own."""
    assert isinstance(function, types.FunctionType)
    return types.FunctionType(
        function.__code__.replace(),
        function.__globals__,
        function.__name__,
        function.__defaults__,
        function.__closure__,
    )


class CompiledOnce:
    """``function`` compiled for the signature of its first call; see the module docstring.

    Args:
        function: what to compile; a module-level function, so that pickling a loss pickles a
            reference to it (the compiled graph itself is dropped and built again).
        setting: how the user switched it on, for the warning (``"ClipPPOLoss(compile=True)
            (loss.compile)"``).
        fallback: what runs instead after a failed compile, for the warning.

    Examples:
        >>> import torch
        >>> def double(x):
        ...     return 2 * x
        >>> compiled = CompiledOnce(double, "double(compile=True)")
        >>> compiled.failed
        False
    """

    def __init__(
        self,
        function: Callable[..., Any],
        setting: str,
        fallback: str = "the loss runs eagerly",
    ) -> None:
        self.function = function
        self.setting = setting
        self.fallback = fallback
        self.failed = False
        self._compiled: Callable[..., Any] | None = None
        self._signature: tuple | None = None

    def __getstate__(self) -> dict[str, Any]:
        """Pickles without the compiled graph (a copy compiles its own at its first call)."""
        return {**self.__dict__, "_compiled": None, "_signature": None}

    def accepts(self, signature: tuple, device: torch.device) -> bool:
        """Whether a call with this signature would run the graph (or compile it): not after
        a failed compile, nor for another signature than the first call's."""
        if self.failed:
            return False
        full = (device, torch.get_num_threads(), *signature)
        return self._signature is None or full == self._signature

    def __call__(self, signature: tuple, device: torch.device, *args: Any) -> Any | None:
        """``function(*args)`` through the compiled graph, or None where the caller must
        compute eagerly: another signature than the first call's, or a failed compile.
        ``signature``: what, besides ``device`` and torch's thread count, the graph is
        specialized to."""
        if not self.accepts(signature, device):
            return None
        compiled, first = self._compiled, self._compiled is None
        if compiled is None:
            compiled = self._compiled = compile_graph(_own_copy(self.function), device)
            self._signature = (device, torch.get_num_threads(), *signature)
        try:
            if first:  # compiles the backward graph too, inside this fallback
                with torch._functorch.config.patch(force_non_lazy_backward_lowering=True):
                    return compiled(*args)
            return compiled(*args)
        except COMPILE_ERRORS as error:
            warnings.warn(
                f"{self.setting}: torch.compile failed, {self.fallback} from here on: "
                f"{type(error).__name__}: {error}",
                stacklevel=2,
            )
            self.failed, self._compiled = True, None
            return None
