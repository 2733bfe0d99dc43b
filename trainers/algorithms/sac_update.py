"""SACTrainer's optimization step without autograd's backward pass (``fused_update=True``).

``SACLoss``'s fused path computes the gradients of its losses in its forward pass; through the
hooks, the trainer still runs autograd's backward pass to move them into ``.grad`` (an autograd
function that scales them by the losses' incoming gradients of one, then accumulates them), with
the ``optimizer`` hook around it. :class:`FusedSACUpdate` puts them into ``.grad`` directly
(``SACLoss.forward_with_gradients``) and calls the ``OptimizerHook``'s step (clipping, the
optimizer's ``step`` with its hooks and schedulers, ``zero_grad``). The results are the hooks'
to the bit (tested with ``torch.equal``): the same graph computes the losses and gradients, the
same kernels step the optimizer, and the random draws come in the same order. The ``post_loss``
and ``post_optim`` stages run as always, after the step.

It runs where nothing the hooks would do is skipped, checked at every step: the trainer's loss is
a ``SACLoss`` (not a subclass, which may compute more) without forward hooks, whose fused path
serves its networks (``SACLoss.forward_with_gradients`` adds its own conditions: no tensor hooks
on the parameters, no anomaly detection, ...); the ``optimizer`` stage is the trainer's one
``OptimizerHook``, summing every loss term; ``post_loss`` holds at most the replay buffer's
priority update (it reads the TD errors only, so it may run after the step). Otherwise the step
runs hook by hook.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from tensordict import TensorDictBase

from trainers.objectives.sac import SACLoss
from trainers.trainer.stages import Stage

if TYPE_CHECKING:
    from trainers.hooks.optim import OptimizerHook
    from trainers.trainer.trainer import Trainer


def _has_forward_hooks(module: torch.nn.Module) -> bool:
    """Whether calling ``module`` runs hooks (its own or global ones) besides ``forward``."""
    hooks = torch.nn.modules.module
    return bool(
        module._forward_hooks
        or module._forward_pre_hooks
        or hooks._global_forward_hooks
        or hooks._global_forward_pre_hooks
    )


class FusedSACUpdate:
    """Runs a ``SACTrainer``'s optimization step without autograd's backward pass where it
    applies (module docstring); built by ``SACTrainer(fused_update=True)``.

    Args:
        loss: the trainer's loss.
        optimizer_hook: the trainer's ``OptimizerHook``.
        priority_op: the replay buffer's priority update (``post_loss``).

    Examples:
        >>> trainer = SACTrainer(..., loss_module=SACLoss(actor, critics))
        >>> trainer.train()
        >>> trainer.fused_update.steps == trainer.state.optim_steps  # every step of this process
        True
    """

    def __init__(
        self,
        loss: SACLoss,
        optimizer_hook: OptimizerHook,
        priority_op: Callable[[TensorDictBase], None],
    ) -> None:
        self.loss = loss
        self.optimizer_hook = optimizer_hook
        self.priority_op = priority_op
        self.steps = 0  # steps it ran (the others ran hook by hook)

    def _applies(self, trainer: Trainer) -> bool:
        """Whether the hooks would compute the loss and the ``optimizer`` stage as this step
        does, and ``post_loss`` holds at most the priority update."""
        loss, hook = self.loss, self.optimizer_hook
        return (
            trainer.loss_module is loss
            and type(loss) is SACLoss  # a subclass may compute more in its forward
            and not _has_forward_hooks(loss)
            and trainer.ops(Stage.OPTIMIZER) == [hook]
            and hook.loss_components is None
            and all(op == self.priority_op for op in trainer.ops(Stage.POST_LOSS))
        )

    def __call__(self, trainer: Trainer, batch: TensorDictBase) -> TensorDictBase | None:
        """The step's losses (``SACLoss``'s output) after the optimizer's step on ``batch``;
        None, having changed nothing, where it does not apply."""
        if not self._applies(trainer):
            return None
        losses = self.loss.forward_with_gradients(batch)
        if losses is None:
            return None
        self.optimizer_hook.step_optimizer(losses)
        self.steps += 1
        return losses
