"""``Adam(fused=True).step()`` without its Python: the fused kernel called directly.

An SAC update at the published sizes calls ``Adam.step()`` once per frame, right after the
loss's graph has evicted the caches; its Python (grouping the tensors, lazy state, hooks,
profiler markers) then takes about 0.2-0.3 ms, against 0.06 ms for the kernel it ends in
(``docs/benchmarks.md``). :func:`fused_adam_step` makes the kernel call that ``Adam.step()``
makes (``torch._fused_adam_`` after ``step += 1``), so the results are equal to the bit (tested),
and only where that is all ``step()`` would do: a plain ``torch.optim.Adam`` with ``fused=True``,
without step hooks or anything wrapping ``step`` (an LR scheduler counts calls that way), float
learning rates and betas, no ``amsgrad``, ``capturable``, ``differentiable`` or decoupled weight
decay, no ``GradScaler`` scale or inf flag, dense real gradients, and state already made by a
first ``step()`` for every parameter that has a gradient. Anywhere else it returns False and the
caller calls ``step()``.
"""

from __future__ import annotations

import torch
import torch.optim.optimizer as torch_optimizer

# The group options under which Adam's step is the one fused kernel call below.
_PLAIN = {"fused": True, "amsgrad": False, "capturable": False, "differentiable": False,
          "decoupled_weight_decay": False}  # fmt: skip


def _has_step_hooks(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step()`` does more than the step: step hooks (its own or global
    ones), or a wrapper set on the instance (an LR scheduler tracks calls that way)."""
    return bool(
        optimizer._optimizer_step_pre_hooks
        or optimizer._optimizer_step_post_hooks
        or torch_optimizer._global_optimizer_pre_hooks
        or torch_optimizer._global_optimizer_post_hooks
        or "step" in vars(optimizer)
    )


def fused_adam_step(optimizer: torch.optim.Optimizer) -> bool:
    """Steps ``optimizer`` as ``optimizer.step()`` would and returns True, where that step is one
    fused Adam kernel call per group (module docstring); otherwise changes nothing and returns
    False."""
    if type(optimizer) is not torch.optim.Adam or _has_step_hooks(optimizer):
        return False
    # GradScaler hands its scale and inf flag to the kernel through these attributes.
    if getattr(optimizer, "grad_scale", None) is not None:
        return False
    if getattr(optimizer, "found_inf", None) is not None:
        return False
    calls = []
    for group in optimizer.param_groups:
        if any(group.get(name) != value for name, value in _PLAIN.items()):
            return False
        lr, (beta1, beta2) = group["lr"], group["betas"]
        if not all(isinstance(value, float) for value in (lr, beta1, beta2)):
            return False
        params = [p for p in group["params"] if p.grad is not None]
        states = [optimizer.state.get(p) or {} for p in params]
        if not all(states) or any(p.is_complex() or _grad(p).is_sparse for p in params):
            return False
        places = {(p.device, p.dtype) for p in params}
        steps_apart = any(s["step"].device != p.device for p, s in zip(params, states, strict=True))
        if len(places) > 1 or steps_apart:  # Adam would group them, or move the step counts
            return False
        if params:
            calls.append((group, params, states))
    for group, params, states in calls:
        _step_group(group, params, states)
    return True


def _grad(param: torch.Tensor) -> torch.Tensor:
    assert param.grad is not None  # only parameters with gradients are stepped
    return param.grad


@torch.no_grad()
def _step_group(group: dict, params: list[torch.Tensor], states: list[dict]) -> None:
    """``Adam``'s fused step of one group's parameters that have gradients."""
    steps = [state["step"] for state in states]
    torch._foreach_add_(steps, 1)
    torch._fused_adam_(
        params,
        [_grad(p) for p in params],
        [state["exp_avg"] for state in states],
        [state["exp_avg_sq"] for state in states],
        [],
        steps,
        amsgrad=False,
        lr=group["lr"],
        beta1=group["betas"][0],
        beta2=group["betas"][1],
        weight_decay=group["weight_decay"],
        eps=group["eps"],
        maximize=group["maximize"],
        grad_scale=None,
        found_inf=None,
    )
