"""SAC's losses with hand-derived gradients, for MLP actors and critics (``SACLoss(fused=True)``).

``SACLoss`` runs this path when its actor is a ``TanhNormalActor`` over an ``MLP`` of
``nn.Linear`` layers and its critics an ``EnsembleQValueNetwork``, each with ReLU or tanh
between the layers and no module hooks (what the SAC configs build); otherwise, and when an input
of the batch requires a gradient (an encoder upstream), it runs autograd's. Both paths compute
the same losses from the same random draws, and the same gradients to float rounding (tested
against autograd). What differs is the work:

* the actor runs once on the stacked ``[s'; s]`` and the critics once on the stacked
  ``[(s, a); (s, a~pi)]``: the actor loss reads the critics before their update, as the
  autograd path does, so each layer is one matrix product instead of two;
* the gradients come from the products the losses need and no others: critic weight gradients
  from the critic loss's rows, critic input gradients from the actor loss's rows and for the
  action columns only, nothing through the target branch;
* no autograd graph is recorded, and activations run in place.

The gradients are computed in the forward pass, for a gradient of one on each loss, whenever
grad mode is on and some parameter requires a gradient: a loss computed only for its value pays
for them unless it runs under ``torch.no_grad()``. The activations are freed there; the backward
pass scales the stored gradients by the losses' incoming gradients, which they are linear in.
The whole computation is one function of tensors, so ``SACLoss(compile=True)`` runs it through
``torch.compile`` as one graph: inductor fuses the elementwise work around the matrix products,
and on CPU its C++ wrapper calls the kernels without Python in between (``docs/benchmarks.md``).
A compiled graph cannot hold the row counts of the actor loss's backward below, which depend on
the data, so compiled it runs every critic on every row, as an accelerator does.

Limits: no second-order gradients (``create_graph``) and no ``torch.func`` transforms through
the losses (``SACLoss(fused=False)`` for those). The two losses may be backpropagated in
separate calls; backpropagating a loss after a parameter its gradients depend on was changed in
place since the forward pass (an optimizer step) is an error, as autograd's is.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDictBase
from torch import nn
from torch.autograd.function import FunctionCtx, once_differentiable

from trainers.keys import (
    ACTION,
    NEXT,
    NEXT_OBSERVATION,
    OBSERVATION,
    PRIORITY_WEIGHT,
    REWARD,
    TERMINATED,
)
from trainers.modules.actors import TanhNormalActor, map_scale, map_scale_backward
from trainers.modules.common import read_input
from trainers.modules.critics import EnsembleMLP, EnsembleQValueNetwork, ensemble_linear
from trainers.modules.distributions import tanh_normal_neg_log_prob_terms
from trainers.modules.mlp import MLP
from trainers.objectives.common import distance_loss
from trainers.objectives.compiled import CompiledOnce
from trainers.objectives.value import td0_return_estimate

_ACTIVATIONS: dict[type[nn.Module], str] = {nn.ReLU: "relu", nn.Tanh: "tanh"}


def _activate_(kind: str, hidden: torch.Tensor) -> torch.Tensor:
    return hidden.relu_() if kind == "relu" else hidden.tanh_()


def _activation_backward(kind: str, grad: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """``grad`` times the activation's derivative, read from the activation's ``output``."""
    if kind == "relu":
        return torch.ops.aten.threshold_backward(grad, output, 0)
    return torch.ops.aten.tanh_backward(grad, output)


def _layer_backward(
    kind: str, grad: torch.Tensor, weight: torch.Tensor, below: torch.Tensor
) -> torch.Tensor:
    """The gradient at the activation output ``below`` of one ensemble layer, from the gradient
    at the layer's output. A one-output layer is elementwise, as ``ensemble_linear`` computes
    it; ``weight`` is ``[members, in, out]`` or one member's ``[in, out]``."""
    weight_t = weight.transpose(-1, -2)
    below_grad = grad * weight_t if weight.shape[-1] == 1 else torch.matmul(grad, weight_t)
    return _activation_backward(kind, below_grad, below)


def _hooked(module: nn.Module) -> bool:
    """Whether a module or a submodule has hooks (the fused path never calls the modules)."""
    return any(
        m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
        for m in module.modules()
    )


def _mlp_layers(actor: TanhNormalActor) -> tuple[list[nn.Linear], str] | str:
    """The linear layers and the activation of the actor's MLP, or why it has none."""
    network = actor.network
    if type(network) is not MLP:
        return f"the actor network is a {type(network).__name__}, not an MLP"
    if network.compiled:
        return "the actor network is compiled (networks.compile)"
    modules = list(network)
    linears = [
        m
        for m in modules[0::2]
        if type(m) is nn.Linear and set(m._parameters) == {"weight", "bias"}
    ]
    if len(linears) != len(modules[0::2]) or any(m.bias is None for m in linears):
        return "the actor MLP has layers other than nn.Linear with weight and bias"
    kinds = {type(activation) for activation in modules[1::2]}
    if len(modules) != 2 * len(linears) - 1 or len(kinds) > 1 or not kinds <= set(_ACTIVATIONS):
        return "the actor MLP's activations are not one of ReLU or Tanh between its layers"
    outputs = actor.low.numel() * (1 if actor.raw_scale is not None else 2)
    if len(network.out_shape) != 1 or linears[-1].out_features != outputs:
        return f"the actor MLP does not give {outputs} flat outputs"
    if _hooked(network):
        return "the actor network has module hooks"
    # A single linear layer has no activation; any kind serves.
    return linears, _ACTIVATIONS[next(iter(kinds), nn.ReLU)]


def fused_sac_plan(
    actor: nn.Module, qvalue: nn.Module, target_qvalue: nn.Module, compile: bool = False
) -> FusedSAC | str:
    """The fused path for these networks (run through ``torch.compile`` with ``compile``), or
    the reason it does not apply."""
    if type(actor) is not TanhNormalActor:
        return f"the actor is a {type(actor).__name__}, not a TanhNormalActor"
    mlp = _mlp_layers(actor)
    if isinstance(mlp, str):
        return mlp
    if not (
        type(qvalue) is EnsembleQValueNetwork
        and type(qvalue.network) is EnsembleMLP
        and type(target_qvalue.network) is EnsembleMLP
    ):
        return "the critics are not an EnsembleQValueNetwork over an EnsembleMLP"
    critic_kind = _ACTIVATIONS.get(type(qvalue.network.activation))
    if critic_kind is None:
        return "the critics' activation is not ReLU or Tanh"
    if _hooked(qvalue):
        return "the critics have module hooks"
    return FusedSAC(actor, mlp[0], mlp[1], qvalue, target_qvalue.network, critic_kind, compile)


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

    Built by ``fused_sac_plan`` for ``SACLoss`` (``loss.fused_path``); ``SACLoss.forward`` calls
    it while it still serves the loss's networks.

    Examples:
        >>> import torch
        >>> from trainers.modules import MLP, EnsembleQValueNetwork, TanhNormalActor
        >>> from trainers.objectives import SACLoss
        >>> actor = TanhNormalActor(MLP(3, 2, [8], activation_class=torch.nn.ReLU),
        ...                         low=-torch.ones(1), high=torch.ones(1))
        >>> loss = SACLoss(actor, EnsembleQValueNetwork(3, 1, [8]))
        >>> type(loss.fused_path).__name__, loss.fused_path.actor_activation
        ('FusedSAC', 'relu')
    """

    def __init__(
        self,
        actor: TanhNormalActor,
        actor_layers: list[nn.Linear],
        actor_activation: str,
        qvalue: EnsembleQValueNetwork,
        target_critic: EnsembleMLP,
        critic_activation: str,
        compile: bool = False,
    ) -> None:
        self.actor = actor
        self.actor_network: nn.Module = actor.network
        self.actor_layers = actor_layers
        self.actor_activation = actor_activation
        self.qvalue = qvalue
        self.critic: EnsembleMLP = qvalue.network
        self.target_critic = target_critic
        self.critic_activation = critic_activation
        self.compiled: CompiledOnce | None = None
        self.compile = compile

    @property
    def compile(self) -> bool:
        """Whether the computation runs through ``torch.compile`` (False after a failed
        compile)."""
        return self.compiled is not None and not self.compiled.failed

    @compile.setter
    def compile(self, value: bool) -> None:
        if value != self.compile:  # switching it on again keeps a compiled graph
            setting = "SACLoss(compile=True) (loss.compile)"
            self.compiled = CompiledOnce(losses_and_gradients, setting) if value else None

    def serves(self, actor: nn.Module, qvalue: nn.Module, target_qvalue: nn.Module) -> bool:
        """Whether these are still the networks it was built for, uncompiled
        (``networks.compile`` may have switched them to compiled passes since)."""
        return (
            actor is self.actor
            and qvalue is self.qvalue
            and self.actor.network is self.actor_network
            and qvalue.network is self.critic
            and target_qvalue.network is self.target_critic
            and not (self.actor_network.compiled or self.critic.compiled)
        )

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

    def compute(
        self, settings: _Settings, noise: torch.Tensor, params: tuple[torch.Tensor, ...]
    ) -> _Computed:
        """``losses_and_gradients``, through ``torch.compile`` when ``compile`` is set.

        One graph per loss (``trainers.objectives.compiled``): it is compiled for the first
        call that computes gradients; calls without gradients (a ``no_grad`` evaluation) and
        with another signature (a smaller last batch, a frozen network) run eagerly.
        """
        if self.compiled is not None and settings.gradients:
            computed = self.compiled(_signature(settings, noise), noise.device, settings, noise,
                                     params, False)  # fmt: skip
            if computed is not None:
                return computed
        row_split = noise.device.type in ROW_SPLIT_DEVICES
        return losses_and_gradients(settings, noise, params, row_split)

    def prepare(
        self,
        tensordict: TensorDictBase,
        alpha: torch.Tensor,
        gamma: torch.Tensor,
        loss_function: str,
    ) -> tuple[_Settings, tuple[torch.Tensor, ...]] | None:
        """The settings and parameters of one computation on ``tensordict``; ``None`` when an
        input of the batch requires a gradient (autograd then carries it to whatever produced
        the input)."""
        next_td = tensordict.get(NEXT)
        observation = tensordict.get(OBSERVATION)

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
        inputs = (
            batch.actor_input,
            batch.next_actor_input,
            batch.observation,
            batch.next_observation,
            batch.action,
        )
        if any(tensor.requires_grad for tensor in inputs):
            return None
        params = tuple(self.parameters())
        actor, target = self.actor, self.target_critic
        settings = _Settings(
            batch,
            alpha,
            gamma,
            loss_function,
            actor_gradients=False,
            critic_gradients=False,
            actor_layers=len(self.actor_layers),
            actor_activation=self.actor_activation,
            shared_scale=actor.raw_scale is not None,
            scale_mapping=actor.scale_mapping_args,
            squash=actor.squash_constants,
            critic_activation=self.critic_activation,
            target_weights=tuple(target.weights),
            target_biases=tuple(target.biases),
        )
        count, grad_mode = settings.actor_param_count, torch.is_grad_enabled()
        settings.actor_gradients = grad_mode and any(p.requires_grad for p in params[:count])
        settings.critic_gradients = grad_mode and any(p.requires_grad for p in params[count:])
        return settings, params

    def __call__(
        self,
        tensordict: TensorDictBase,
        alpha: torch.Tensor,
        gamma: torch.Tensor,
        loss_function: str,
    ) -> tuple[torch.Tensor, ...] | None:
        """``(loss_actor, loss_qvalue, log_prob_mean, q_mean, target_mean, td_error)``, the
        losses with their gradients to the networks and the rest detached; ``None`` where
        :meth:`prepare` is."""
        prepared = self.prepare(tensordict, alpha, gamma, loss_function)
        if prepared is None:
            return None
        settings, params = prepared
        outputs = _SACLosses.apply(self, settings, *params)
        return batch_shaped(outputs, tensordict.get(OBSERVATION).shape[:-1])

    def forward_pass(self, settings: _Settings, params: tuple[torch.Tensor, ...]) -> _Computed:
        """Draws the actor's noise and computes the losses and their gradients: the forward
        pass of ``SACLoss``'s fused path (run it under ``torch.no_grad()``)."""
        noise = draw_noise(settings.batch, self.actor.low.numel(), params[0])
        return self.compute(settings, noise, params)


def batch_shaped(outputs: tuple[torch.Tensor, ...], batch_shape: torch.Size) -> tuple:
    """``(loss_actor, loss_qvalue, log_prob_mean, q_mean, target_mean, td_error)`` with the TD
    errors of the flattened batch in the batch's shape, as ``SACLoss`` reads them."""
    return (*outputs[:5], outputs[5].reshape(batch_shape))


@dataclass
class _Settings:
    """What one computation reads besides the noise and the parameters: tensors and Python
    values, no module. A compiled graph guards on every attribute it reads from its arguments
    at every call; a module's would be dozens."""

    batch: _Batch
    alpha: torch.Tensor
    gamma: torch.Tensor  # 0-d, so that a new value does not recompile
    loss_function: str
    actor_gradients: bool  # compute the actor's gradients (grad mode on, parameters need them)
    critic_gradients: bool  # and the critics'
    actor_layers: int
    actor_activation: str
    shared_scale: bool  # the actor's scale is raw_scale, its last parameter
    scale_mapping: tuple[str, torch.Tensor, torch.Tensor]  # map_scale's (kind, bias, lb)
    squash: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # (center, half_range, log_const)
    critic_activation: str
    target_weights: tuple[torch.Tensor, ...]  # the target critics' layers
    target_biases: tuple[torch.Tensor, ...]

    @property
    def gradients(self) -> bool:
        return self.actor_gradients or self.critic_gradients

    @property
    def actor_param_count(self) -> int:
        """How many of the parameters are the actor's (they come first in
        ``FusedSAC.parameters``)."""
        return 2 * self.actor_layers + self.shared_scale


def _signature(settings: _Settings, noise: torch.Tensor) -> tuple:
    """What a compiled graph is specialized to, besides the device and thread count: calls
    that differ in it would recompile."""
    return (
        noise.shape,
        noise.dtype,
        settings.batch.weight is None,
        settings.loss_function,
        settings.actor_gradients,
        settings.critic_gradients,
    )


@dataclass
class _ActorPass:
    """The actor on ``[s'; s]``: activations, sampled actions and their log-probabilities."""

    inputs: torch.Tensor
    hidden: list[torch.Tensor]
    raw: torch.Tensor  # raw scale: network outputs [2B, d], or the parameter [d]
    scale: torch.Tensor
    noise: torch.Tensor
    squashed: torch.Tensor  # tanh(pre-tanh sample)
    action: torch.Tensor
    log_prob: torch.Tensor


@dataclass
class _Saved:
    """What the gradients read from the forward pass."""

    settings: _Settings
    actor: _ActorPass
    critic_input: torch.Tensor  # [(s, a); (s, a~pi)]
    critic_hidden: list[torch.Tensor]
    error: torch.Tensor  # Q_i(s, a) - target, [members, B, 1]
    q_pi_index: torch.Tensor  # the smaller critic at (s, a~pi), [B, 1]

    @property
    def size(self) -> int:
        return self.critic_input.shape[0] // 2


def _mlp_forward(
    inputs: torch.Tensor, params: tuple[torch.Tensor, ...], kind: str
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The hidden activations and the output of an MLP given as its linear layers' weights and
    biases, layer by layer."""
    hidden: list[torch.Tensor] = []
    h = inputs
    last = len(params) // 2 - 1
    for i in range(last):
        h = _activate_(kind, torch.addmm(params[2 * i + 1], h, params[2 * i].t()))
        hidden.append(h)
    return hidden, torch.addmm(params[2 * last + 1], h, params[2 * last].t())


def _ensemble_forward(
    inputs: torch.Tensor,
    weights: tuple[torch.Tensor, ...],
    biases: tuple[torch.Tensor, ...],
    kind: str,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """``EnsembleMLP``'s forward pass from its layers' weights and biases, keeping the hidden
    activations."""
    hidden: list[torch.Tensor] = []
    h = inputs.expand(len(weights[0]), *inputs.shape)
    last = len(weights) - 1
    for i in range(last):
        h = _activate_(kind, ensemble_linear(h, weights[i], biases[i]))
        hidden.append(h)
    return hidden, ensemble_linear(h, weights[last], biases[last])


def draw_noise(batch: _Batch, action_dim: int, like: torch.Tensor) -> torch.Tensor:
    """The actor's standard-normal draws for ``[s'; s]``, outside any compiled graph: the
    autograd path's draws, ``s'`` first, then ``s``."""
    size = batch.observation.shape[0]
    noise = torch.empty(2 * size, action_dim, dtype=like.dtype, device=like.device)
    noise[:size].normal_()
    noise[size:].normal_()
    return noise


def _actor_pass(
    settings: _Settings, params: tuple[torch.Tensor, ...], noise: torch.Tensor
) -> _ActorPass:
    """Samples ``a' ~ pi(.|s')`` and ``a ~ pi(.|s)`` from one pass of the actor (``params``:
    its parameters)."""
    batch, layers = settings.batch, settings.actor_layers
    inputs = torch.cat((batch.next_actor_input, batch.actor_input))
    hidden, output = _mlp_forward(inputs, params[: 2 * layers], settings.actor_activation)
    if settings.shared_scale:  # the raw scale follows the layers (FusedSAC.parameters)
        loc, raw = output, params[2 * layers]
    else:
        loc, raw = output.chunk(2, dim=-1)
    scale = map_scale(raw, *settings.scale_mapping).expand_as(loc)
    pre_tanh = torch.addcmul(loc, scale, noise)
    squashed = torch.tanh(pre_tanh)
    center, half_range, log_const = settings.squash
    action = torch.addcmul(center, half_range, squashed)
    terms = tanh_normal_neg_log_prob_terms(pre_tanh, loc, scale, log_const)
    if terms.device.type == "cpu":
        # The sum over the action dimensions as a matrix product with -1s: a compiled graph
        # sums so few elements per row with scalar code on one thread (0.1 ms at batch 256, the
        # logarithms included) where the terms alone are vectorized (docs/benchmarks.md).
        log_prob = torch.mm(terms, terms.new_full((terms.shape[-1], 1), -1.0)).squeeze(-1)
    else:  # an accelerator's products may round their inputs (TF32)
        log_prob = terms.sum(-1).neg()
    return _ActorPass(inputs, hidden, raw, scale, noise, squashed, action, log_prob)


# (loss_actor, loss_qvalue, log_prob_mean, q_mean, target_mean, td_error), and the gradients
# of the losses for a gradient of one on each: the actor's parameters' from loss_actor, the
# critics' from loss_qvalue (None where not computed), in FusedSAC.parameters() order.
_Computed = tuple[tuple[torch.Tensor, ...], list[torch.Tensor | None]]


def losses_and_gradients(
    settings: _Settings, noise: torch.Tensor, params: tuple[torch.Tensor, ...], row_split: bool
) -> _Computed:
    """The losses and their gradients: one function of tensors, eager or compiled."""
    batch, alpha, kind = settings.batch, settings.alpha, settings.critic_activation
    size = batch.observation.shape[0]
    count = settings.actor_param_count
    actor = _actor_pass(settings, params[:count], noise)
    critic_params = params[count:]
    layers = len(critic_params) // 2

    # The target critics on (s', a'), the critics on [(s, a); (s, a~pi)].
    target_input = torch.cat((batch.next_observation, actor.action[:size]), dim=-1)
    _, next_q = _ensemble_forward(
        target_input, settings.target_weights, settings.target_biases, kind
    )
    next_value = next_q.min(0).values - alpha * actor.log_prob[:size].unsqueeze(-1)
    target = td0_return_estimate(settings.gamma, next_value, batch.reward, batch.terminated)
    critic_input = torch.cat(
        (batch.observation.repeat(2, 1), torch.cat((batch.action, actor.action[size:]))), dim=-1
    )
    critic_hidden, q_all = _ensemble_forward(
        critic_input, critic_params[:layers], critic_params[layers:], kind
    )
    q, q_pi = q_all[:, :size], q_all[:, size:]

    error = q - target
    per_sample = distance_loss(q, target.expand_as(q), settings.loss_function).sum(0)
    weight = batch.weight
    loss_qvalue = per_sample.mean() if weight is None else (per_sample * weight).mean()
    td_error = error.abs().max(0).values.squeeze(-1)
    q_pi_min, q_pi_index = q_pi.min(0)
    log_prob = actor.log_prob[size:]
    loss_actor = (alpha * log_prob - q_pi_min.squeeze(-1)).mean()
    # The means are what SACLoss's output reads: one reduction each inside the graph.
    outputs = (loss_actor, loss_qvalue, log_prob.mean(), q.mean(), target.mean(), td_error)

    grads: list[torch.Tensor | None] = [None] * len(params)
    if not settings.gradients:
        return outputs, grads
    saved = _Saved(settings, actor, critic_input, critic_hidden, error, q_pi_index)
    if settings.critic_gradients:
        grads[count:] = _critic_backward(saved, critic_params)
    if settings.actor_gradients:
        action_grad = _action_grad(saved, critic_params, row_split)
        grads[:count] = _actor_backward(saved, params[:count], action_grad)
    return outputs, grads


@dataclass
class _Gradients:
    """What the backward pass reads: the gradients for a gradient of one on each loss, and the
    parameters with their versions at the forward pass."""

    params: tuple[torch.Tensor, ...]
    versions: list[int]
    grads: list[torch.Tensor | None]
    actor_count: int


class _SACLosses(torch.autograd.Function):
    """Forward: the SAC losses and their gradients. Backward: those gradients, scaled by the
    losses' incoming gradients (module docstring)."""

    @staticmethod
    def forward(
        ctx: FunctionCtx, fused: FusedSAC, settings: _Settings, *params: torch.Tensor
    ) -> tuple:
        ctx.set_materialize_grads(False)
        count = settings.actor_param_count
        outputs, grads = fused.forward_pass(settings, params)
        ctx.saved = _Gradients(  # type: ignore[attr-defined]
            params, [p._version for p in params], grads, count
        )
        ctx.mark_non_differentiable(*outputs[2:])
        return outputs

    @staticmethod
    @once_differentiable
    def backward(
        ctx: FunctionCtx,
        grad_actor: torch.Tensor | None,
        grad_qvalue: torch.Tensor | None,
        *_: object,
    ) -> tuple:
        saved: _Gradients = ctx.saved  # type: ignore[attr-defined]
        count = saved.actor_count
        actor_grads, critic_grads = saved.grads[:count], saved.grads[count:]
        if actor_grads[0] is None:
            grad_actor = None
        if critic_grads[0] is None:
            grad_qvalue = None
        # Both gradients depend on the critics' weights, the actor loss's on the actor's too.
        read = 0 if grad_actor is not None else count
        if [p._version for p in saved.params[read:]] != saved.versions[read:]:
            raise RuntimeError(
                "SACLoss (fused): a network parameter these gradients depend on was modified "
                "in place after the losses' forward pass (an optimizer step?); compute the "
                "losses again after the step, or backpropagate both before stepping."
            )
        grads: list[torch.Tensor | None] = [None] * len(saved.params)
        if grad_qvalue is not None:
            grads[count:] = torch._foreach_mul(critic_grads, grad_qvalue)  # type: ignore[arg-type]
        if grad_actor is not None:
            grads[:count] = torch._foreach_mul(actor_grads, grad_actor)  # type: ignore[arg-type]
        return None, None, *grads


def _critic_backward(saved: _Saved, params: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """The critics' weight and bias gradients of the critic loss (its rows of the stacked pass)."""
    size, settings = saved.size, saved.settings
    layers = len(params) // 2
    weights = params[:layers]
    error = saved.error
    grad = 2.0 * error if settings.loss_function == "l2" else error.clamp(-1.0, 1.0)
    weight = settings.batch.weight
    grad = grad * (1.0 / size if weight is None else weight / size)  # d loss / d Q_i(s, a)
    hidden = [h[:, :size] for h in saved.critic_hidden]
    inputs = saved.critic_input[:size].expand(len(weights[0]), -1, -1)
    weight_grads: list[torch.Tensor] = []
    bias_grads: list[torch.Tensor] = []
    for i in reversed(range(layers)):
        below = hidden[i - 1] if i > 0 else inputs
        one_output = weights[i].shape[-1] == 1  # elementwise, as ensemble_linear computes it
        weight_grads[:0] = [
            (below * grad).sum(1).unsqueeze(-1)
            if one_output
            else torch.bmm(below.transpose(1, 2), grad)
        ]
        bias_grads[:0] = [grad.sum(1, keepdim=True)]
        if i > 0:
            grad = _layer_backward(settings.critic_activation, grad, weights[i], hidden[i - 1])
    return [*weight_grads, *bias_grads]


# Devices where the actor loss's backward through the critics runs, for each critic, on the rows
# where that critic is the smaller one (the only rows min() passes a gradient to): one matrix
# product's worth of rows instead of one per critic. Row counts that depend on the data would
# cost a host sync on an accelerator, so there every critic runs on every row instead.
ROW_SPLIT_DEVICES = ("cpu",)


def _action_grad(saved: _Saved, params: tuple[torch.Tensor, ...], row_split: bool) -> torch.Tensor:
    """``d loss_actor / d a~pi`` through ``min_i Q_i(s, a~pi)``, the critics' weights fixed;
    with ``row_split``, each critic only on the rows where it is the smaller one."""
    size, kind = saved.size, saved.settings.critic_activation
    layers = len(params) // 2
    weights = params[:layers]
    hidden = [h[:, size:] for h in saved.critic_hidden]
    smaller = saved.q_pi_index.squeeze(-1)  # [B]: the critic min() picked at each row
    action_dim = saved.actor.noise.shape[-1]
    output_grad = -1.0 / size  # d loss_actor / d min_i Q_i(s, a~pi), every row
    dtype = weights[0].dtype
    if not row_split:
        members = torch.arange(len(weights[0]), device=smaller.device).view(-1, 1, 1)
        grad = (members == smaller.view(1, -1, 1)).to(dtype) * output_grad  # [members, B, 1]
        for i in reversed(range(1, layers)):
            grad = _layer_backward(kind, grad, weights[i], hidden[i - 1])
        return torch.bmm(grad, weights[0][:, -action_dim:].transpose(1, 2)).sum(0)
    action_grad = torch.empty(size, action_dim, dtype=dtype, device=smaller.device)
    for member in range(len(weights[0])):
        rows = (smaller == member).nonzero().squeeze(-1)
        grad = torch.full((len(rows), 1), output_grad, dtype=dtype, device=smaller.device)
        for i in reversed(range(1, layers)):
            grad = _layer_backward(kind, grad, weights[i][member], hidden[i - 1][member, rows])
        action_grad.index_copy_(0, rows, torch.mm(grad, weights[0][member, -action_dim:].t()))
    return action_grad


def _actor_backward(
    saved: _Saved, params: tuple[torch.Tensor, ...], action_grad: torch.Tensor
) -> list[torch.Tensor]:
    """The actor's gradients of ``loss_actor = mean(alpha * log_prob - min_i Q_i(s, a~pi))``."""
    size, settings, passed = saved.size, saved.settings, saved.actor
    squashed = passed.squashed[size:]
    # d log_prob / d pre_tanh = 2 tanh(pre_tanh) (the tanh correction; the normal's term moves
    # with the sample), d action / d pre_tanh = half_range * (1 - tanh^2).
    log_prob_grad = settings.alpha / size
    _, half_range, _ = settings.squash
    pre_tanh_grad = torch.addcmul(
        squashed * (2.0 * log_prob_grad),
        action_grad * half_range,
        torch.addcmul(torch.ones_like(squashed), squashed, squashed, value=-1.0),
    )
    scale = passed.scale[size:]
    scale_grad = pre_tanh_grad * passed.noise[size:] - log_prob_grad / scale
    mapping = settings.scale_mapping
    if settings.shared_scale:  # one raw scale per action dimension, shared by the rows
        raw_grad = map_scale_backward(scale_grad.sum(0), passed.raw, scale[0], *mapping)
        output_grad = pre_tanh_grad
    else:
        raw_grad = map_scale_backward(scale_grad, passed.raw[size:], scale, *mapping)
        output_grad = torch.cat((pre_tanh_grad, raw_grad), dim=-1)
    hidden = [h[size:] for h in passed.hidden]
    grads: list[torch.Tensor] = []
    grad = output_grad
    for i in reversed(range(settings.actor_layers)):
        below = hidden[i - 1] if i > 0 else passed.inputs[size:]
        grads[:0] = [torch.mm(grad.t(), below), grad.sum(0)]
        if i > 0:
            grad = _activation_backward(
                settings.actor_activation, torch.mm(grad, params[2 * i]), hidden[i - 1]
            )
    if settings.shared_scale:
        grads.append(raw_grad)
    return grads
