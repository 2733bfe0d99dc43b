"""SACTrainer's whole optimization step as one compiled graph (``SACTrainer(fused_update=True)``).

A SAC step with the default hooks runs three pieces: the loss (``SACLoss``'s fused path, with
``loss.compile`` one graph that computes the losses and their gradients), the ``optimizer``
stage (``OptimizerHook``: backward, Adam's step, ``zero_grad``) and the ``post_optim`` stage
(``TargetNetUpdaterHook`` over ``SoftUpdate``). Between and around them run Python, autograd's
engine and a separate kernel per piece. :class:`FusedSACUpdate` computes all three as **one**
``torch.compile`` graph instead: the losses and gradients, Adam's update of every parameter from
the optimizer's own state (``exp_avg``, ``exp_avg_sq`` and ``step``, updated in place, so that
checkpoints, a resumed run and a later step through the hooks see them), then the Polyak update
of the target critics from the updated critics. The arithmetic is that of the pieces it
replaces, to float rounding (tested against them), and the random draws are the same.

It runs only where the result cannot differ from the pieces, checked at every step:

* grad mode is on; the trainer's loss is a ``SACLoss`` (not a subclass, which may compute more)
  without forward hooks, whose fused path serves its networks, compiled (``loss.compile``), on
  the CPU (the only device it was measured and tested on);
* the ``optimizer`` stage is the trainer's one ``OptimizerHook``, summing every loss term, with
  no clipping (``clip_norm=None``), over a ``torch.optim.Adam`` with one parameter group that
  holds exactly the loss's parameters, all requiring a gradient and none holding one; a float
  learning rate; no weight decay, ``amsgrad``, ``maximize``, ``capturable`` or
  ``differentiable``; no step hooks and nothing wrapping its ``step`` (an LR scheduler does);
* ``post_optim`` holds only the target-network hook, over a ``SoftUpdate`` of this loss, and
  ``post_loss`` at most the replay buffer's priority update (it reads the TD errors only, so it
  may run after the update).

Otherwise the step runs hook by hook, as always. Before the first step it makes Adam's state as
Adam does (zero moments, step 0). A graph that fails to compile warns once, puts the random
number generator back to before the step's draws, and leaves the steps to the hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.optim.optimizer as torch_optimizer
from tensordict import TensorDict, TensorDictBase

from trainers.keys import OBSERVATION, TD_ERROR
from trainers.objectives.compiled import CompiledOnce
from trainers.objectives.sac import SACLoss
from trainers.objectives.sac_fused import FusedSAC, _Settings, draw_noise, losses_and_gradients
from trainers.objectives.utils import SoftUpdate
from trainers.trainer.stages import Stage

if TYPE_CHECKING:
    from trainers.hooks.optim import OptimizerHook
    from trainers.hooks.weights import TargetNetUpdaterHook
    from trainers.trainer.trainer import Trainer

# Adam's options the graph implements (its defaults); any other value leaves the step to the hooks.
_ADAM_DEFAULTS = {
    "weight_decay": 0,
    "amsgrad": False,
    "maximize": False,
    "capturable": False,
    "differentiable": False,
    "decoupled_weight_decay": False,
}


# SACLoss's outputs, in its order.
_LOSS_KEYS = ("loss_actor", "loss_qvalue", "loss_alpha", "alpha", "entropy", "q_mean",
              "target_value_mean")  # fmt: skip


@dataclass(frozen=True)
class _Constants:
    """The step's float settings that the graph holds as constants (a change compiles anew,
    which ``CompiledOnce`` turns into a step through the hooks)."""

    beta1: float
    beta2: float
    eps: float
    tau: float
    target_entropy: float
    learns_alpha: bool


@dataclass
class _AdamState:
    """The optimizer's state of each updated tensor, in the order the graph updates them."""

    exp_avgs: list[torch.Tensor]
    exp_avg_sqs: list[torch.Tensor]
    steps: list[torch.Tensor]


def _adam_(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    state: _AdamState,
    lr: torch.Tensor,
    constants: _Constants,
) -> None:
    """``torch.optim.Adam``'s step (no weight decay, amsgrad or maximize) in place."""
    beta1, beta2 = constants.beta1, constants.beta2
    torch._foreach_add_(state.steps, 1.0)
    torch._foreach_lerp_(state.exp_avgs, grads, 1.0 - beta1)
    torch._foreach_mul_(state.exp_avg_sqs, beta2)
    torch._foreach_addcmul_(state.exp_avg_sqs, grads, grads, value=1.0 - beta2)
    for param, exp_avg, exp_avg_sq, step in zip(
        params, state.exp_avgs, state.exp_avg_sqs, state.steps, strict=True
    ):
        count = step.double()  # the bias corrections in double precision, as Adam's
        step_size = (lr / (1.0 - beta1**count)).to(param.dtype)
        bias_correction2_sqrt = (1.0 - beta2**count).sqrt().to(param.dtype)
        denom = exp_avg_sq.sqrt() / bias_correction2_sqrt + constants.eps
        param.sub_(exp_avg / denom * step_size)


def _update(
    settings: _Settings,
    noise: torch.Tensor,
    params: tuple[torch.Tensor, ...],
    log_alpha: torch.Tensor,
    state: _AdamState,
    lr: torch.Tensor,
    constants: _Constants,
) -> tuple[torch.Tensor, ...]:
    """One SAC step: the losses, Adam's update, the target update. Returns ``SACLoss``'s
    scalars ``(loss_actor, loss_qvalue, loss_alpha, entropy, q_mean, target_value_mean)`` and
    ``td_error``, all of the networks before the update."""
    outputs, grads = losses_and_gradients(settings, noise, params, row_split=False)
    loss_actor, loss_qvalue, log_prob, q, target, td_error = outputs
    entropy_gap = log_prob + constants.target_entropy
    loss_alpha = -(log_alpha * entropy_gap).mean()
    tensors, gradients = list(params), [grad for grad in grads if grad is not None]
    if constants.learns_alpha:
        tensors.append(log_alpha)
        gradients.append(-entropy_gap.mean())
    _adam_(tensors, gradients, state, lr, constants)
    fused = settings.fused
    critic = params[fused.actor_param_count :]
    target_critic = fused.target_critic
    targets = [*target_critic.weights, *target_critic.biases]
    torch._foreach_lerp_(targets, list(critic), constants.tau)
    scalars = (loss_actor, loss_qvalue, loss_alpha, -log_prob.mean(), q.mean(), target.mean())
    return (*scalars, td_error)


def _has_forward_hooks(module: torch.nn.Module) -> bool:
    """Whether calling ``module`` runs hooks (its own or global ones) besides ``forward``."""
    hooks = torch.nn.modules.module
    return bool(
        module._forward_hooks
        or module._forward_pre_hooks
        or hooks._global_forward_hooks
        or hooks._global_forward_pre_hooks
    )


def _has_step_hooks(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step()`` does more than Adam's step: step hooks (its own or global
    ones), or a wrapper set on the instance (an LR scheduler tracks calls that way)."""
    return bool(
        optimizer._optimizer_step_pre_hooks
        or optimizer._optimizer_step_post_hooks
        or torch_optimizer._global_optimizer_pre_hooks
        or torch_optimizer._global_optimizer_post_hooks
        or "step" in vars(optimizer)
    )


def _initial_adam_state(param: torch.Tensor, fused: bool | None) -> dict[str, torch.Tensor]:
    """What ``torch.optim.Adam`` keeps for ``param`` before its first step (its lazy
    initialization, without ``amsgrad`` and ``capturable``; checked against Adam's by a test):
    a zero step count, on the parameter's device with ``fused``, and zero moments."""
    double = not fused and torch.get_default_dtype() == torch.float64
    scalar_dtype = torch.float64 if double else torch.float32
    step = torch.zeros((), dtype=scalar_dtype, device=param.device if fused else "cpu")
    return {
        "step": step,
        "exp_avg": torch.zeros_like(param, memory_format=torch.preserve_format),
        "exp_avg_sq": torch.zeros_like(param, memory_format=torch.preserve_format),
    }


class FusedSACUpdate:
    """Runs a ``SACTrainer``'s optimization step as one graph where it applies (module
    docstring); built by ``SACTrainer(fused_update=True)``.

    Args:
        loss: the trainer's loss.
        optimizer_hook: the trainer's ``OptimizerHook``.
        target_hook: the trainer's ``TargetNetUpdaterHook``.
        priority_op: the replay buffer's priority update (``post_loss``).

    Examples:
        >>> trainer = SACTrainer(..., loss_module=SACLoss(actor, critics, compile=True))
        >>> trainer.train()
        >>> trainer.fused_update.steps == trainer.state.optim_steps  # every step fused
        True
    """

    def __init__(
        self,
        loss: SACLoss,
        optimizer_hook: OptimizerHook,
        target_hook: TargetNetUpdaterHook,
        priority_op: Callable[[TensorDictBase], None],
    ) -> None:
        self.loss = loss
        self.optimizer_hook = optimizer_hook
        self.target_hook = target_hook
        self.priority_op = priority_op
        self.compiled = CompiledOnce(
            _update,
            "SACTrainer(fused_update=True) (trainer.fused_update)",
            "the steps run hook by hook",
        )
        self.steps = 0  # steps it computed (the others ran hook by hook)

    def _hooks_are_defaults(self, trainer: Trainer) -> bool:
        """Whether the loss and the ``optimizer`` and ``post_optim`` stages are exactly what
        the graph computes, and ``post_loss`` at most the priority update."""
        loss, hook = self.loss, self.optimizer_hook
        updater = self.target_hook.target_params_updater
        return (
            trainer.loss_module is loss
            and type(loss) is SACLoss  # a subclass may compute more in its forward
            and not _has_forward_hooks(loss)
            and trainer.ops(Stage.OPTIMIZER) == [hook]
            and hook.loss_components is None
            and trainer.clip_norm is None
            and trainer.ops(Stage.POST_OPTIM) == [self.target_hook]
            and type(updater) is SoftUpdate
            and updater.loss_module is loss
            and all(op == self.priority_op for op in trainer.ops(Stage.POST_LOSS))
        )

    def _fused_path(self) -> FusedSAC | None:
        loss = self.loss
        fused = loss.fused_path
        if (
            fused is None
            or not fused.compile
            or not fused.serves(loss.actor_network, loss.qvalue_network, loss.target_qvalue_network)
            or loss.log_alpha.device.type != "cpu"
        ):
            return None
        return fused

    def _adam_state(self, tensors: list[torch.Tensor]) -> tuple[_AdamState, dict] | None:
        """The optimizer's state of ``tensors`` (made as Adam makes it, before the first step)
        and their group; None where Adam's step is not the graph's."""
        optimizer = self.optimizer_hook.optimizer
        if (
            type(optimizer) is not torch.optim.Adam
            or len(optimizer.param_groups) != 1
            or _has_step_hooks(optimizer)
        ):
            return None
        group = optimizer.param_groups[0]
        if any(group.get(name, default) != default for name, default in _ADAM_DEFAULTS.items()):
            return None
        if isinstance(group["lr"], torch.Tensor):  # Adam accepts it only with some options
            return None
        owned = group["params"]
        if len(owned) != len(tensors) or {id(p) for p in owned} != {id(p) for p in tensors}:
            return None
        if any(tensor.grad is not None or not tensor.requires_grad for tensor in tensors):
            return None
        states = optimizer.state
        if not any(tensor in states for tensor in tensors):
            for tensor in tensors:
                states[tensor] = _initial_adam_state(tensor, group["fused"])
        exp_avgs, exp_avg_sqs, steps = [], [], []
        for tensor in tensors:
            state = states.get(tensor)
            if not state:
                return None
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        return _AdamState(exp_avgs, exp_avg_sqs, steps), group

    def __call__(self, trainer: Trainer, batch: TensorDictBase) -> TensorDictBase | None:
        """The step's losses (``SACLoss``'s output) after computing the whole step on
        ``batch``; None, having changed nothing, where it does not apply."""
        if not torch.is_grad_enabled() or not self._hooks_are_defaults(trainer):
            return None
        fused = self._fused_path()
        if fused is None:
            return None
        loss = self.loss
        alpha = loss._alpha()
        prepared = fused.prepare(batch, alpha, loss._gamma, loss.loss_function)
        if prepared is None:
            return None
        settings, params = prepared
        learns_alpha = not loss.fixed_alpha
        adam = self._adam_state([*params, loss.log_alpha] if learns_alpha else list(params))
        if adam is None:
            return None
        state, group = adam
        beta1, beta2 = group["betas"]
        constants = _Constants(
            float(beta1),
            float(beta2),
            float(group["eps"]),
            float(self.target_hook.target_params_updater.tau),
            loss.target_entropy,
            learns_alpha,
        )
        device, action_dim = params[0].device, fused.actor.low.numel()
        shape = torch.Size((2 * settings.batch.observation.shape[0], action_dim))
        signature = (shape, params[0].dtype, settings.batch.weight is None,
                     loss.loss_function, constants)  # fmt: skip
        if not self.compiled.accepts(signature, device):  # before drawing: nothing changed
            return None
        rng = torch.get_rng_state()  # a failed compile leaves the draws to the hooks' step
        noise = draw_noise(settings.batch, action_dim, params[0])
        lr = torch.tensor(group["lr"], dtype=torch.float64)
        with torch.no_grad():
            outputs = self.compiled(signature, device, settings, noise, params,
                                    loss.log_alpha, state, lr, constants)  # fmt: skip
        if outputs is None:
            torch.set_rng_state(rng)
            return None
        self.steps += 1
        *scalars, td_error = outputs
        batch.set(TD_ERROR, td_error.reshape(batch.get(OBSERVATION).shape[:-1]))
        if not learns_alpha:
            scalars[2] = torch.zeros(())
        values = [*scalars[:3], alpha, *scalars[3:]]
        return TensorDict(dict(zip(_LOSS_KEYS, values, strict=True)), [])
