"""SAC's losses with hand-derived gradients, for MLP actors and critics (``SACLoss(fused=True)``).

``SACLoss`` runs this path when its actor is a ``TanhNormalActor`` over an ``MLP`` of
``nn.Linear`` layers and its critics an ``EnsembleQValueNetwork``, each with ReLU or tanh
between the layers (what the SAC configs build); otherwise it runs autograd's. Both paths compute
the same losses from the same random draws, and the same gradients to float rounding (tested
against autograd). What differs is the work:

* the actor runs once on the stacked ``[s'; s]`` and the critics once on the stacked
  ``[(s, a); (s, a~pi)]``: the actor loss reads the critics before their update, as the
  autograd path does, so each layer is one matrix product instead of two;
* the backward pass computes only the products the losses need: critic weight gradients from the
  critic loss's rows, critic input gradients from the actor loss's rows and for the action
  columns only, nothing through the target branch;
* no autograd graph is recorded, activations run in place, and the saved activations are the
  forward pass's own tensors.

On one CPU thread at the published sizes (256x256 networks, batch 256, HalfCheetah) this takes
a forward plus backward pass from 9.5 to about 6.5 ms, most of the rest being the matrix
products themselves (``docs/benchmarks.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from tensordict import TensorDictBase
from torch import nn
from torch.autograd.function import once_differentiable

from trainers.keys import (
    ACTION,
    NEXT,
    NEXT_OBSERVATION,
    OBSERVATION,
    PRIORITY_WEIGHT,
    REWARD,
    TERMINATED,
)
from trainers.modules.actors import TanhNormalActor
from trainers.modules.common import read_input
from trainers.modules.critics import EnsembleMLP, EnsembleQValueNetwork, ensemble_linear
from trainers.modules.distributions import tanh_normal_log_prob_pre_tanh
from trainers.modules.mlp import MLP
from trainers.objectives.value import td0_return_estimate

_ACTIVATIONS: dict[type[nn.Module], str] = {nn.ReLU: "relu", nn.Tanh: "tanh"}


def _activate_(kind: str, hidden: torch.Tensor) -> torch.Tensor:
    return hidden.relu_() if kind == "relu" else hidden.tanh_()


def _activation_backward(kind: str, grad: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """``grad`` times the activation's derivative, read from the activation's ``output``."""
    if kind == "relu":
        return torch.ops.aten.threshold_backward(grad, output, 0)
    return torch.ops.aten.tanh_backward(grad, output)


def _mlp_activation(network: nn.Module) -> tuple[list[nn.Linear], str] | str:
    """The linear layers and the activation of a plain ``MLP``, or why it is not one."""
    if type(network) is not MLP or getattr(network, "compiled", False):
        return f"the actor network is a {type(network).__name__}, not an uncompiled MLP"
    modules = list(network)
    activations = modules[1::2]
    linears = [m for m in modules[0::2] if type(m) is nn.Linear and m.bias is not None]
    if len(linears) != len(modules[0::2]):
        return "the actor MLP has layers other than nn.Linear with a bias"
    kinds = {type(activation) for activation in activations}
    if len(activations) != len(linears) - 1 or len(kinds) > 1 or not kinds <= set(_ACTIVATIONS):
        return "the actor MLP's activations are not one of ReLU or Tanh between its layers"
    if len(network.out_shape) != 1:
        return "the actor MLP's output is not flat"
    return linears, _ACTIVATIONS[next(iter(kinds), nn.ReLU)]


def fused_sac_plan(actor: Any, qvalue: Any, target_qvalue: Any) -> FusedSAC | str:
    """The fused path for these networks, or the reason it does not apply."""
    if type(actor) is not TanhNormalActor:
        return f"the actor is a {type(actor).__name__}, not a TanhNormalActor"
    mlp = _mlp_activation(actor.network)
    if isinstance(mlp, str):
        return mlp
    if type(qvalue) is not EnsembleQValueNetwork or type(qvalue.network) is not EnsembleMLP:
        return f"the critics are a {type(qvalue).__name__}, not an EnsembleQValueNetwork"
    critic_kind = _ACTIVATIONS.get(type(qvalue.network.activation))
    if critic_kind is None:
        return "the critics' activation is not ReLU or Tanh"
    return FusedSAC(actor, mlp[0], mlp[1], qvalue.network, target_qvalue.network, critic_kind)


@dataclass
class _Batch:
    """The flattened transition tensors one update reads."""

    actor_input: torch.Tensor
    next_actor_input: torch.Tensor
    observation: torch.Tensor
    next_observation: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor
    weight: torch.Tensor | None


class FusedSAC:
    """Computes ``SACLoss``'s actor and critic losses with a hand-written backward pass.

    Called by ``SACLoss.forward``; returns ``(loss_actor, loss_qvalue, log_prob, q, target,
    td_error)`` where the two losses carry gradients to the actor's and the critics' parameters
    (one ``torch.autograd.Function``) and the rest is detached.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from trainers.modules import MLP, EnsembleQValueNetwork, TanhNormalActor
        >>> from trainers.objectives import SACLoss
        >>> actor = TanhNormalActor(MLP(3, 2, [8], activation_class=torch.nn.ReLU),
        ...                         low=-torch.ones(1), high=torch.ones(1))
        >>> loss = SACLoss(actor, EnsembleQValueNetwork(3, 1, [8]))
        >>> type(loss.fused_path).__name__
        'FusedSAC'
    """

    def __init__(
        self,
        actor: TanhNormalActor,
        actor_layers: list[nn.Linear],
        actor_activation: str,
        critic: EnsembleMLP,
        target_critic: EnsembleMLP,
        critic_activation: str,
    ) -> None:
        self.actor = actor
        self.actor_layers = actor_layers
        self.actor_activation = actor_activation
        self.critic = critic
        self.target_critic = target_critic
        self.critic_activation = critic_activation

    @property
    def active(self) -> bool:
        """False once ``networks.compile`` switched a network to compiled passes."""
        return not (getattr(self.actor.network, "compiled", False) or self.critic.compiled)

    def parameters(self) -> list[torch.Tensor]:
        """The tensors that get gradients, in the order the autograd function takes them:
        actor weights and biases layer by layer, the state-independent scale if any, then the
        critics' weights and biases."""
        params: list[torch.Tensor] = []
        for layer in self.actor_layers:
            params += [layer.weight, layer.bias]
        if self.actor.raw_scale is not None:
            params.append(self.actor.raw_scale)
        return [*params, *self.critic.weights, *self.critic.biases]

    def __call__(
        self, tensordict: TensorDictBase, alpha: torch.Tensor, gamma: float, loss_function: str
    ) -> tuple[torch.Tensor, ...]:
        next_td = tensordict.get(NEXT)
        observation = tensordict.get(OBSERVATION)
        batch_shape = observation.shape[:-1]

        def flat(value: torch.Tensor) -> torch.Tensor:
            return value.reshape(-1, value.shape[-1])

        weight = tensordict.get(PRIORITY_WEIGHT, None)
        batch = _Batch(
            actor_input=flat(read_input(tensordict, self.actor.in_keys)),
            next_actor_input=flat(read_input(next_td, self.actor.in_keys)),
            observation=flat(observation),
            next_observation=flat(tensordict.get(NEXT_OBSERVATION)),
            action=flat(tensordict.get(ACTION)),
            reward=flat(tensordict.get(REWARD)),
            terminated=flat(tensordict.get(TERMINATED)),
            weight=None if weight is None else weight.reshape(-1, 1),
        )
        settings = (self, batch, alpha, gamma, loss_function)
        loss_actor, loss_qvalue, log_prob, q, target, td_error = _SACLosses.apply(
            settings, *self.parameters()
        )
        return (
            loss_actor,
            loss_qvalue,
            log_prob.reshape(batch_shape),
            q.reshape(q.shape[0], *batch_shape, 1),
            target.reshape(*batch_shape, 1),
            td_error.reshape(batch_shape),
        )

    # Pieces of the forward and backward passes ----------------------------------------------

    def loc_scale(
        self, output: torch.Tensor, raw_scale: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(loc, scale, raw)`` from the actor MLP's output, as ``TanhNormalActor`` maps them."""
        if raw_scale is None:
            loc, raw = output.chunk(2, dim=-1)
        else:
            loc, raw = output, raw_scale
        scale = self.actor._map_scale(raw)
        return loc, scale.expand_as(loc), raw

    def scale_derivative(self, raw: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """``d scale / d raw`` of the actor's scale mapping (``scale`` given where it is known)."""
        actor = self.actor
        if actor._scale_kind == "exp":
            # clamp_min's gradient flows where exp(raw) >= scale_lb; there scale == exp(raw)
            return scale * (raw.exp() >= actor._scale_lb)
        return torch.sigmoid(raw + actor._scale_bias)


def _mlp_forward(
    inputs: torch.Tensor, layers: list[nn.Linear], kind: str
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The hidden activations and the output of an MLP given as its linear layers."""
    hidden: list[torch.Tensor] = []
    h = inputs
    for layer in layers[:-1]:
        h = _activate_(kind, torch.addmm(layer.bias, h, layer.weight.t()))
        hidden.append(h)
    return hidden, torch.addmm(layers[-1].bias, h, layers[-1].weight.t())


def _ensemble_forward(
    inputs: torch.Tensor, weights: Any, biases: Any, kind: str
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """``EnsembleMLP``'s forward pass from its stacked weights, keeping the hidden activations."""
    hidden: list[torch.Tensor] = []
    h = inputs.expand(len(weights[0]), *inputs.shape)
    last = len(weights) - 1
    for i in range(last):
        h = _activate_(kind, ensemble_linear(h, weights[i], biases[i]))
        hidden.append(h)
    return hidden, ensemble_linear(h, weights[last], biases[last])


class _SACLosses(torch.autograd.Function):
    """Forward: the SAC losses. Backward: their gradients, derived by hand (module docstring)."""

    @staticmethod
    def forward(ctx: Any, settings: tuple[Any, ...], *params: torch.Tensor) -> Any:
        fused, batch, alpha, gamma, loss_function = settings
        ctx.set_materialize_grads(False)
        size = batch.observation.shape[0]
        actor_params = len(fused.actor_layers) * 2
        raw_scale = params[actor_params] if fused.actor.raw_scale is not None else None

        # The actor on [s'; s]: s' for the target, s for the actor loss.
        actor_input = torch.cat((batch.next_actor_input, batch.actor_input))
        actor_hidden, output = _mlp_forward(actor_input, fused.actor_layers, fused.actor_activation)
        loc, scale, raw = fused.loc_scale(output, raw_scale)
        noise = torch.empty(loc.shape, dtype=loc.dtype, device=loc.device)
        noise[:size].normal_()  # the autograd path's draws: s' first, then s
        noise[size:].normal_()
        pre_tanh = torch.addcmul(loc, scale, noise)
        squashed = torch.tanh(pre_tanh)
        actor = fused.actor
        action = torch.addcmul(actor._center, actor._half_range, squashed)
        log_prob = tanh_normal_log_prob_pre_tanh(pre_tanh, loc, scale, actor._log_const)

        # The target critics on (s', a'), the critics on [(s, a); (s, a~pi)].
        target_input = torch.cat((batch.next_observation, action[:size]), dim=-1)
        target_critic = fused.target_critic
        _, next_q = _ensemble_forward(
            target_input, target_critic.weights, target_critic.biases, fused.critic_activation
        )
        next_value = next_q.min(0).values - alpha * log_prob[:size].unsqueeze(-1)
        target = td0_return_estimate(gamma, next_value, batch.reward, batch.terminated)
        critic_input = torch.cat(
            (batch.observation.repeat(2, 1), torch.cat((batch.action, action[size:]))), dim=-1
        )
        critic = fused.critic
        critic_hidden, q_all = _ensemble_forward(
            critic_input, critic.weights, critic.biases, fused.critic_activation
        )
        q, q_pi = q_all[:, :size], q_all[:, size:]

        error = q - target
        per_sample = (
            error.square()
            if loss_function == "l2"
            else F.smooth_l1_loss(q, target.expand_as(q), reduction="none")
        ).sum(0)
        weight = batch.weight
        loss_qvalue = per_sample.mean() if weight is None else (per_sample * weight).mean()
        td_error = error.abs().max(0).values.squeeze(-1)
        q_pi_min, q_pi_index = q_pi.min(0)
        log_prob_pi = log_prob[size:]
        loss_actor = (alpha * log_prob_pi - q_pi_min.squeeze(-1)).mean()

        ctx.save_for_backward(*params)
        ctx.fused, ctx.size, ctx.alpha, ctx.weight = fused, size, alpha, weight
        ctx.loss_function, ctx.error, ctx.q_pi_index = loss_function, error, q_pi_index
        ctx.actor_input, ctx.actor_hidden, ctx.raw = actor_input, actor_hidden, raw
        ctx.scale, ctx.noise, ctx.squashed = scale, noise, squashed
        ctx.critic_input, ctx.critic_hidden = critic_input, critic_hidden
        outputs = (log_prob_pi, q.detach(), target, td_error)
        ctx.mark_non_differentiable(*outputs)
        return loss_actor, loss_qvalue, *outputs

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_actor: Any, grad_qvalue: Any, *_: Any) -> Any:
        params = ctx.saved_tensors
        fused = ctx.fused
        actor_count = len(fused.actor_layers) * 2 + (fused.actor.raw_scale is not None)
        needs = ctx.needs_input_grad[1:]
        actor_needed = grad_actor is not None and any(needs[:actor_count])
        critic_needed = grad_qvalue is not None and any(needs[actor_count:])
        grads: list[torch.Tensor | None] = [None] * len(params)
        if not (critic_needed or actor_needed):
            return None, *grads
        critic_grads, action_grad = _critic_backward(
            ctx,
            params[actor_count:],
            grad_actor if actor_needed else None,
            grad_qvalue if critic_needed else None,
        )
        if critic_needed:
            grads[actor_count:] = critic_grads
        if action_grad is not None:
            grads[:actor_count] = _actor_backward(
                ctx, params[:actor_count], action_grad, grad_actor
            )
        return None, *grads


def _critic_backward(
    ctx: Any,
    params: tuple[torch.Tensor, ...],
    grad_actor: torch.Tensor | None,
    grad_qvalue: torch.Tensor | None,
) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """The critics' weight gradients (from the critic loss) and the actor loss's gradient with
    respect to the policy's actions (through the critics, weights held fixed)."""
    size, fused = ctx.size, ctx.fused
    layers = len(params) // 2
    weights = params[:layers]
    output_grads = []
    if grad_qvalue is not None:  # d loss_qvalue / d Q_i(s, a)
        error = ctx.error
        grad = 2.0 * error if ctx.loss_function == "l2" else error.clamp(-1.0, 1.0)
        scaled = grad_qvalue / size
        output_grads.append(grad * (scaled if ctx.weight is None else ctx.weight * scaled))
    if grad_actor is not None:  # d loss_actor / d Q_i(s, a~pi): -1/B on the smaller critic
        index = ctx.q_pi_index.unsqueeze(0)
        members = torch.arange(len(weights[0]), device=index.device).view(-1, 1, 1)
        output_grads.append((members == index) * (grad_actor / -size))
    # Rows of the stacked critic pass that this backward reads: [(s, a); (s, a~pi)] or one half.
    rows = (
        slice(None)
        if len(output_grads) == 2
        else (slice(None, size) if grad_qvalue is not None else slice(size, None))
    )
    weight_rows = size if grad_qvalue is not None else 0
    hidden = [h[:, rows] for h in ctx.critic_hidden]
    inputs = ctx.critic_input[rows]
    grad = output_grads[0] if len(output_grads) == 1 else torch.cat(output_grads, dim=1)
    weight_grads: list[torch.Tensor] = [torch.empty(0)] * layers
    bias_grads: list[torch.Tensor] = [torch.empty(0)] * layers
    for i in reversed(range(layers)):
        one_output = weights[i].shape[-1] == 1  # elementwise, as ensemble_linear computes it
        if weight_rows:
            below = hidden[i - 1] if i > 0 else inputs.expand(len(weights[0]), *inputs.shape)
            below, rows_grad = below[:, :weight_rows], grad[:, :weight_rows]
            weight_grads[i] = (
                (below * rows_grad).sum(1).unsqueeze(-1)
                if one_output
                else torch.bmm(below.transpose(1, 2), rows_grad)
            )
            bias_grads[i] = rows_grad.sum(1, keepdim=True)
        if i > 0:
            weight_t = weights[i].transpose(1, 2)
            below_grad = grad * weight_t if one_output else torch.bmm(grad, weight_t)
            grad = _activation_backward(fused.critic_activation, below_grad, hidden[i - 1])
    action_grad = None
    if grad_actor is not None:
        observation_dim = inputs.shape[-1] - ctx.noise.shape[-1]
        action_weights = weights[0][:, observation_dim:]  # [members, action_dim, hidden]
        action_grad = torch.bmm(grad[:, -size:], action_weights.transpose(1, 2)).sum(0)
    return [*weight_grads, *bias_grads], action_grad


def _actor_backward(
    ctx: Any,
    params: tuple[torch.Tensor, ...],
    action_grad: torch.Tensor,
    grad_actor: torch.Tensor,
) -> list[torch.Tensor]:
    """The actor's gradients of ``loss_actor = mean(alpha * log_prob - min_i Q_i(s, a~pi))``."""
    size, fused = ctx.size, ctx.fused
    actor = fused.actor
    squashed = ctx.squashed[size:]
    # d log_prob / d pre_tanh = 2 tanh(pre_tanh) (the tanh correction; the normal's term moves
    # with the sample), d action / d pre_tanh = half_range * (1 - tanh^2).
    log_prob_grad = ctx.alpha * (grad_actor / size)
    pre_tanh_grad = torch.addcmul(
        squashed * (2.0 * log_prob_grad),
        action_grad * actor._half_range,
        torch.addcmul(torch.ones_like(squashed), squashed, squashed, value=-1.0),
    )
    scale = ctx.scale[size:]
    scale_grad = pre_tanh_grad * ctx.noise[size:] - log_prob_grad / scale
    grads: list[torch.Tensor] = []
    if actor.raw_scale is not None:
        raw = ctx.raw
        raw_grad = scale_grad.sum(0) * fused.scale_derivative(raw, actor._map_scale(raw))
        output_grad = pre_tanh_grad
    else:
        raw = ctx.raw[size:]
        raw_grad = scale_grad * fused.scale_derivative(raw, scale)
        output_grad = torch.cat((pre_tanh_grad, raw_grad), dim=-1)
    hidden = [h[size:] for h in ctx.actor_hidden]
    inputs = ctx.actor_input[size:]
    layers = len(fused.actor_layers)
    grad = output_grad
    for i in reversed(range(layers)):
        below = hidden[i - 1] if i > 0 else inputs
        grads[:0] = [torch.mm(grad.t(), below), grad.sum(0)]
        if i > 0:
            grad = _activation_backward(
                fused.actor_activation, torch.mm(grad, params[2 * i]), hidden[i - 1]
            )
    if actor.raw_scale is not None:
        grads.append(raw_grad)
    return grads
