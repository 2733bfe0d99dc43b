"""Soft actor-critic loss (SAC v2: twin Q, target critics, learned temperature)."""

from __future__ import annotations

import math
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from torch import nn

from trainers.keys import (
    ACTION,
    NEXT,
    NEXT_OBSERVATION,
    OBSERVATION,
    REWARD,
    TD_ERROR,
    TERMINATED,
)
from trainers.objectives.common import (
    GraphScalar,
    LossModule,
    check_loss_function,
    distance_loss,
    weighted_mean,
)
from trainers.objectives.sac_fused import FusedSAC, batch_shaped, fused_sac_plan
from trainers.objectives.value import td0_return_estimate


def _action_dim(actor_network: nn.Module, action_spec: Any) -> int:
    if action_spec is not None:
        return math.prod(action_spec.shape)
    shape = getattr(actor_network, "action_shape", None)
    if shape is None:
        raise ValueError(
            "SACLoss: target_entropy='auto' needs the action size; pass action_spec or an actor "
            "with an action_shape (TanhNormalActor), or give target_entropy as a number."
        )
    return math.prod(shape)


def _has_tensor_hooks(tensor: torch.Tensor) -> bool:
    """Whether autograd's backward would run hooks registered on ``tensor``."""
    return bool(tensor._backward_hooks or getattr(tensor, "_post_accumulate_grad_hooks", None))


class SACLoss(LossModule):
    """Soft actor-critic losses on a batch of transitions ``[*batch]``.

    Reads ``observation``, ``action``, ``("next", "observation")``, ``("next", "reward")`` and
    ``("next", "terminated")``; returns ``loss_actor``, ``loss_qvalue``, ``loss_alpha`` and the
    detached diagnostics ``alpha``, ``entropy`` (``-mean log pi(a|s)``), ``q_mean`` and
    ``target_value_mean``; writes ``td_error`` (``[*batch]``: ``|Q_i - target|`` maxed over the
    critics, detached) into the input batch for prioritized replay.

    * Critics: ``loss_qvalue = mean over samples of sum_i (Q_i(s, a) - y)^2`` (CleanRL's sum of
      per-critic MSEs), weighted by ``priority_weight`` when the batch has it, with
      ``y = r + gamma * (1 - terminated) * (min_i Q'_i(s', a') - alpha * log pi(a'|s'))``,
      ``a' ~ pi(.|s')``; ``Q'`` are the target critics. Truncated steps bootstrap.
    * Actor: ``loss_actor = mean(alpha * log pi(a|s) - min_i Q_i(s, a))`` with a
      reparameterized ``a ~ pi(.|s)``; the critics are called with detached weights, so this loss
      moves the actor only.
    * Temperature: ``loss_alpha = -log_alpha * (mean(log pi(a|s)) + target_entropy)`` moves
      ``log_alpha`` only (zero, and no parameter, with ``fixed_alpha``).

    ``loss.target_qvalue_network`` is a copy of the critics whose weights are buffers: in
    ``loss.state_dict()`` but not in ``loss.parameters()``; update it with ``SoftUpdate`` or
    ``HardUpdate``.

    With ``fused=True`` (the default) and MLP networks with ReLU or tanh activations (what the
    builders and configs make), the losses and their gradients come from
    ``trainers.objectives.sac_fused``: the same values, random draws and gradients as autograd
    (to float rounding) in fewer operations. ``loss.fused_path`` is that path, ``None`` when it
    does not apply; ``loss.fused_unsupported`` then says why. Batches whose inputs require a
    gradient, networks replaced or compiled after construction, and second-order gradients need
    the autograd path: the first two fall back to it by themselves, the last needs
    ``fused=False``.

    Args:
        actor_network: a ``TanhNormalActor`` (anything with ``get_dist(td)`` returning a
            distribution with ``rsample_and_log_prob()``).
        qvalue_network: critics called as ``qvalue_network(observation, action)`` returning
            ``[num_qvalue_nets, *batch, 1]`` (e.g. ``EnsembleQValueNetwork``).
        num_qvalue_nets: number of critics; must match ``qvalue_network``.
        gamma: discount factor.
        alpha_init: initial temperature.
        fixed_alpha: keep the temperature at ``alpha_init``.
        target_entropy: ``"auto"`` (``-action_dim``) or a number.
        min_alpha: lower clamp of the temperature, if any.
        max_alpha: upper clamp of the temperature, if any.
        action_spec: the action spec, used for ``target_entropy="auto"`` (otherwise the actor's
            ``action_shape``).
        loss_function: ``"l2"`` or ``"smooth_l1"`` for the critics.
        fused: use the hand-derived backward pass where the networks allow it.
        compile: run the fused path's losses and gradients through ``torch.compile``, as one
            graph (compiled at the first call: seconds; on CPU with inductor's C++ wrapper, which
            needs a C++ compiler). A compiler that fails leaves a warning and the eager fused
            path. No effect where the fused path does not apply.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from trainers.modules import MLP, EnsembleQValueNetwork, TanhNormalActor
        >>> actor = TanhNormalActor(MLP(3, 2, [32]), low=-torch.ones(1), high=torch.ones(1))
        >>> loss = SACLoss(actor, EnsembleQValueNetwork(3, 1, [32]))
        >>> td = TensorDict({"observation": torch.randn(5, 3), "action": torch.rand(5, 1),
        ...     "next": {"observation": torch.randn(5, 3), "reward": torch.randn(5, 1),
        ...              "terminated": torch.zeros(5, 1, dtype=torch.bool)}}, batch_size=[5])
        >>> out = loss(td)
        >>> sorted(k for k in out.keys() if k.startswith("loss_")), td["td_error"].shape
        (['loss_actor', 'loss_alpha', 'loss_qvalue'], torch.Size([5]))
    """

    # Duck-typed networks (see Args); the target is a LossModule-made copy.
    actor_network: Any
    qvalue_network: Any
    target_qvalue_network: Any
    log_alpha: torch.Tensor
    # Read as a 0-d buffer (the fused path's graph takes it as an input: no recompile).
    gamma = GraphScalar("a number in [0, 1]", lambda value: 0.0 <= value <= 1.0)
    _gamma: torch.Tensor

    def __init__(
        self,
        actor_network: nn.Module,
        qvalue_network: nn.Module,
        *,
        num_qvalue_nets: int = 2,
        gamma: float = 0.99,
        alpha_init: float = 1.0,
        fixed_alpha: bool = False,
        target_entropy: float | str = "auto",
        min_alpha: float | None = None,
        max_alpha: float | None = None,
        action_spec: Any = None,
        loss_function: str = "l2",
        fused: bool = True,
        compile: bool = False,
    ) -> None:
        super().__init__()
        check_loss_function("SACLoss", "loss_function", loss_function)
        nets = getattr(qvalue_network, "num_qvalue_nets", None)
        if nets != num_qvalue_nets:
            raise ValueError(
                f"SACLoss: num_qvalue_nets={num_qvalue_nets} but qvalue_network "
                f"({type(qvalue_network).__name__}) evaluates {nets} critics; pass an "
                "EnsembleQValueNetwork with that many Q networks (make_qvalue_network builds one)."
            )
        if alpha_init <= 0:
            raise ValueError(f"SACLoss: alpha_init={alpha_init}; allowed: a number > 0.")
        if (min_alpha is not None and min_alpha <= 0) or (
            max_alpha is not None and min_alpha is not None and max_alpha < min_alpha
        ):
            raise ValueError(
                f"SACLoss: min_alpha={min_alpha}, max_alpha={max_alpha}; allowed: "
                "0 < min_alpha <= max_alpha (either may be None)."
            )
        if target_entropy == "auto":
            target_entropy = -float(_action_dim(actor_network, action_spec))
        elif isinstance(target_entropy, str):
            raise ValueError(
                f"SACLoss: target_entropy={target_entropy!r}; allowed: 'auto' or a number."
            )
        self.actor_network = actor_network
        self.qvalue_network = qvalue_network
        self._make_target("qvalue_network")
        self.num_qvalue_nets = num_qvalue_nets
        self.gamma = gamma
        self.fixed_alpha = fixed_alpha
        self.target_entropy = float(target_entropy)
        self.loss_function = loss_function
        self.action_spec = action_spec
        self._log_alpha_min = math.log(min_alpha) if min_alpha is not None else None
        self._log_alpha_max = math.log(max_alpha) if max_alpha is not None else None
        log_alpha = torch.tensor(math.log(alpha_init))
        if fixed_alpha:
            self.register_buffer("log_alpha", log_alpha)
        else:
            self.log_alpha = nn.Parameter(log_alpha)
        plan = (
            fused_sac_plan(actor_network, qvalue_network, self.target_qvalue_network, compile)
            if fused
            else "fused=False"
        )
        self.fused_path: FusedSAC | None = None if isinstance(plan, str) else plan
        self.fused_unsupported: str | None = plan if isinstance(plan, str) else None

    def _alpha(self) -> torch.Tensor:
        if self._log_alpha_min is not None or self._log_alpha_max is not None:
            with torch.no_grad():
                self.log_alpha.clamp_(self._log_alpha_min, self._log_alpha_max)
        return self.log_alpha.detach().exp()

    @torch.no_grad()
    def _target_value(self, tensordict: TensorDictBase, alpha: torch.Tensor) -> torch.Tensor:
        next_action, next_log_prob = self.actor_network.get_dist(
            tensordict.get(NEXT)
        ).rsample_and_log_prob()
        next_q = self.target_qvalue_network(tensordict.get(NEXT_OBSERVATION), next_action)
        next_value = next_q.min(0).values - alpha * next_log_prob.unsqueeze(-1)
        return td0_return_estimate(
            self._gamma, next_value, tensordict.get(REWARD), tensordict.get(TERMINATED)
        )

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        alpha = self._alpha()
        fused = self.fused_path
        losses = None
        if fused is not None and fused.serves(
            self.actor_network, self.qvalue_network, self.target_qvalue_network
        ):
            losses = fused(tensordict, alpha, self._gamma, self.loss_function)
        if losses is None:
            losses = self._autograd_losses(tensordict, alpha)
        return self.output(tensordict, alpha, losses)

    def forward_with_gradients(self, tensordict: TensorDictBase) -> TensorDict | None:
        """The output of :meth:`forward`, with the gradients of its loss terms already added to
        the parameters' ``.grad``, as ``sum(loss terms).backward()`` adds them, to the bit.

        The fused path computes the gradients in its forward pass; this puts them in place
        directly instead of through autograd's backward pass (``SACTrainer(fused_update=True)``).
        Returns None, having drawn nothing and written no gradient, where that would differ from
        a backward pass: the fused path does not run, grad mode is off, anomaly detection is on,
        no parameter takes a gradient (backward raises), a parameter has tensor hooks (backward
        runs them), or ``log_alpha``'s dtype differs from the networks' (autograd casts).
        ``log_alpha``'s clamp (``min_alpha``/``max_alpha``) may have run, as ``forward`` runs it.
        """
        fused = self.fused_path
        if (
            not torch.is_grad_enabled()
            or torch.is_anomaly_enabled()
            or fused is None
            or not fused.serves(self.actor_network, self.qvalue_network, self.target_qvalue_network)
        ):
            return None
        alpha = self._alpha()
        prepared = fused.prepare(tensordict, alpha, self._gamma, self.loss_function)
        if prepared is None:
            return None
        settings, params = prepared
        learns_alpha = not self.fixed_alpha and self.log_alpha.requires_grad
        tensors = [*params, *([self.log_alpha] if learns_alpha else [])]
        if (
            not (settings.gradients or learns_alpha)
            or any(_has_tensor_hooks(tensor) for tensor in tensors)
            or len({tensor.dtype for tensor in tensors}) > 1
        ):
            return None
        with torch.no_grad():  # as in an autograd function's forward
            outputs, grads = fused.forward_pass(settings, params)
            batch_shape = tensordict.get(OBSERVATION).shape[:-1]
            losses = self.output(tensordict, alpha, batch_shaped(outputs, batch_shape))
            if learns_alpha:
                # d loss_alpha / d log_alpha, as autograd computes it through output's formula:
                # -(log_alpha * gap) backpropagates (-1) * gap.
                grads = [*grads, -(outputs[2] + self.target_entropy)]
                params = (*params, self.log_alpha)
            for param, grad in zip(params, grads, strict=True):
                if grad is None or not param.requires_grad:
                    continue
                if param.grad is None:
                    param.grad = grad
                else:
                    param.grad += grad  # autograd accumulates in place too
        return losses

    def output(
        self, tensordict: TensorDictBase, alpha: torch.Tensor, losses: tuple[torch.Tensor, ...]
    ) -> TensorDict:
        """The loss's output from its computed ``(loss_actor, loss_qvalue, log_prob_mean, q_mean,
        target_mean, td_error)``, with the temperature loss; writes the TD errors into
        ``tensordict``."""
        loss_actor, loss_qvalue, log_prob_mean, q_mean, target_mean, td_error = losses
        tensordict.set(TD_ERROR, td_error)
        if self.fixed_alpha:
            loss_alpha = torch.zeros((), device=alpha.device)
        else:
            loss_alpha = -(self.log_alpha * (log_prob_mean + self.target_entropy))
        return TensorDict(
            {
                "loss_actor": loss_actor,
                "loss_qvalue": loss_qvalue,
                "loss_alpha": loss_alpha,
                "alpha": alpha,
                "entropy": -log_prob_mean,
                "q_mean": q_mean,
                "target_value_mean": target_mean,
            },
            batch_size=[],
        )

    def _autograd_losses(
        self, tensordict: TensorDictBase, alpha: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """``(loss_actor, loss_qvalue, log_prob_mean, q_mean, target_mean, td_error)`` through
        autograd (the means detached)."""
        observation = tensordict.get(OBSERVATION)
        target = self._target_value(tensordict, alpha)
        q = self.qvalue_network(observation, tensordict.get(ACTION))
        per_sample = distance_loss(q, target.expand_as(q), self.loss_function).sum(0)
        loss_qvalue = weighted_mean(per_sample, tensordict)
        td_error = (q.detach() - target).abs().max(0).values.squeeze(-1)

        action, log_prob = self.actor_network.get_dist(tensordict).rsample_and_log_prob()
        q_pi = self.frozen(self.qvalue_network)(observation, action).min(0).values.squeeze(-1)
        loss_actor = (alpha * log_prob - q_pi).mean()
        log_prob_mean, q_mean = log_prob.detach().mean(), q.detach().mean()
        return loss_actor, loss_qvalue, log_prob_mean, q_mean, target.mean(), td_error
