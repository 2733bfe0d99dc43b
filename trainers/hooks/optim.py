"""Hooks that step optimizers and learning-rate schedulers, and free CUDA memory."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from tensordict import TensorDictBase

from trainers.hooks.adam_step import fused_adam_step
from trainers.hooks.base import TrainerHookBase
from trainers.trainer.stages import Stage

if TYPE_CHECKING:
    from trainers.trainer.trainer import Trainer


class OptimizerHook(TrainerHookBase):
    """Backward of the summed loss terms, gradient clipping, ``step`` and ``zero_grad``.

    Registered at the ``optimizer`` stage. Several hooks may each own an optimizer and a subset
    of the loss terms (``loss_components``). The hooks registered on one trainer form a group:
    each backpropagates its terms into its own optimizer's parameters only (a loss never leaks
    gradient into another optimizer's parameters, even through a shared part of the graph), and
    the last one of the group then clips, steps and zeroes every optimizer in registration order.
    All backward passes thus see the parameters of the forward pass, also where a graph saved a
    detached view of another optimizer's parameters (SAC's actor loss through the critic). The
    group's optimizers must own disjoint parameters. A lone hook runs a plain ``backward()``.

    Clipping follows the trainer's ``clip_grad_norm``/``clip_norm``, per optimizer; the gradient
    norm before clipping is logged as ``grad_norm`` (``grad_norm_<name>`` for a named hook).

    Args:
        optimizer: the optimizer to step.
        loss_components: names of the loss entries to sum; None sums every ``loss*`` entry.

    Examples:
        >>> OptimizerHook(critic_optim, ["loss_qvalue"]).register(trainer, "critic_optimizer")
        >>> OptimizerHook(actor_optim, ["loss_actor"]).register(trainer, "actor_optimizer")
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, loss_components: Sequence[str] | None = None
    ) -> None:
        self.optimizer = optimizer
        self.loss_components = list(loss_components) if loss_components is not None else None
        self._params = [p for group in optimizer.param_groups for p in group["params"]]
        self._trainer: Trainer | None = None
        self._name = "optimizer"
        self._norm_key = "grad_norm"
        self._group: list[OptimizerHook] = [self]  # the hooks of one trainer, shared by all

    def register(self, trainer: Trainer, name: str | None = "optimizer") -> None:
        name = name or "optimizer"
        previous = [op for op in trainer.ops(Stage.OPTIMIZER) if isinstance(op, OptimizerHook)]
        own = {id(p) for p in self._params}
        for other in previous:
            shared = sum(id(p) in own for p in other._params)
            if shared:
                raise ValueError(
                    f"OptimizerHook {name!r} and {other._name!r} share {shared} parameter(s); "
                    "the optimizers of one trainer must own disjoint parameters"
                )
        self._trainer = trainer
        self._name = name
        self._norm_key = "grad_norm" if name == "optimizer" else f"grad_norm_{name}"
        trainer.register_module(name, self)
        trainer.register_op(Stage.OPTIMIZER, self)
        if previous:
            group = previous[0]._group
            group.append(self)
            self._group = group

    def __call__(self, losses: TensorDictBase) -> None:
        names = self._loss_names(losses)
        total = sum(losses.get(name) for name in names)
        group = self._group
        if len(group) == 1:
            total.backward()
            self.step_optimizer(losses)
            return
        last = group[-1] is self
        # Later hooks of the group may backpropagate through the same graph.
        torch.autograd.backward(
            total, inputs=[p for p in self._params if p.requires_grad], retain_graph=not last
        )
        if last:
            for hook in group:
                hook.step_optimizer(losses)

    def step_optimizer(self, losses: TensorDictBase) -> None:
        """What follows the backward pass: clipping (the norm logged into ``losses``), the
        optimizer's ``step`` and ``zero_grad``."""
        grad_norm = self._clip()
        if grad_norm is not None:
            losses.set(self._norm_key, grad_norm.detach())
        if not fused_adam_step(self.optimizer):  # the same step without Adam's Python
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def _loss_names(self, losses: TensorDictBase) -> list[str]:
        if self.loss_components is None:
            return [k for k in losses.keys() if isinstance(k, str) and k.startswith("loss")]
        missing = [name for name in self.loss_components if name not in losses.keys()]
        if missing:
            raise KeyError(
                f"OptimizerHook loss_components {missing} are not in the loss output; "
                f"available entries: {sorted(map(str, losses.keys()))}"
            )
        return self.loss_components

    def _clip(self) -> torch.Tensor | None:
        trainer = self._trainer
        if trainer is None or trainer.clip_norm is None:
            return None
        if trainer.clip_grad_norm:
            grads = [p.grad for p in self._params if p.grad is not None]
            return clip_grad_norm(grads, trainer.clip_norm)
        torch.nn.utils.clip_grad_value_(self._params, trainer.clip_norm, foreach=True)
        return None

    def state_dict(self) -> dict[str, Any]:
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state_dict)


def clip_grad_norm(grads: list[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Scales ``grads`` in place so that their global L2 norm is at most ``max_norm``; returns
    the norm before clipping.

    The arithmetic of ``torch.nn.utils.clip_grad_norm_`` (same results to the bit) in four
    tensor ops, without its per-call grouping of tensors by device and dtype: this runs at every
    optimization step, where that bookkeeping cost as much as the clipping.
    """
    if not grads:
        return torch.zeros(())
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, (max_norm / (total + 1e-6)).clamp_(max=1.0))
    return total


class LRSchedulerHook(TrainerHookBase):
    """Steps a ``torch.optim.lr_scheduler`` after every optimization step or every batch.

    The current learning rate of the first parameter group is logged as ``lr``.

    Args:
        scheduler: the scheduler.
        every: ``"optim_step"`` (``post_optim``) or ``"batch"`` (``post_steps``).

    Examples:
        >>> sched = torch.optim.lr_scheduler.LinearLR(optim, 1.0, 0.0, total_iters=1000)
        >>> LRSchedulerHook(sched, every="batch").register(trainer)
    """

    _STAGES = {"optim_step": Stage.POST_OPTIM, "batch": Stage.POST_STEPS}

    def __init__(self, scheduler: Any, every: str = "optim_step") -> None:
        if every not in self._STAGES:
            raise ValueError(f"every must be one of {sorted(self._STAGES)}, got {every!r}")
        self.scheduler = scheduler
        self.every = every

    def register(self, trainer: Trainer, name: str | None = "lr_scheduler") -> None:
        trainer.register_module(name or "lr_scheduler", self)
        trainer.register_op(self._STAGES[self.every], self.step)
        trainer.register_op(Stage.POST_STEPS_LOG, self.log)

    def step(self) -> None:
        self.scheduler.step()

    def log(self, batch: TensorDictBase) -> dict[str, float]:
        del batch
        return {"lr": float(self.scheduler.optimizer.param_groups[0]["lr"])}

    def state_dict(self) -> dict[str, Any]:
        return self.scheduler.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state_dict)


class ClearCudaCache(TrainerHookBase):
    """Calls ``torch.cuda.empty_cache()`` every ``interval`` optimization steps.

    Examples:
        >>> ClearCudaCache(100).register(trainer)
    """

    def __init__(self, interval: int) -> None:
        if interval < 1:
            raise ValueError(f"ClearCudaCache interval must be >= 1, got {interval}")
        self.interval = interval
        self.count = 0

    def register(self, trainer: Trainer, name: str | None = None) -> None:
        del name
        trainer.register_op(Stage.POST_OPTIM, self)

    def __call__(self) -> None:
        self.count += 1
        if self.count % self.interval == 0 and torch.cuda.is_available():
            torch.cuda.empty_cache()
