"""Proximal policy optimization losses: plain ratio, clipped ratio, adaptive KL penalty.

One call scores a minibatch of on-policy data holding ``observation``, ``action`` (for a
tanh-normal policy, ``pre_tanh_action`` when present is scored instead),
``sample_log_prob`` (from the collecting policy), ``advantage`` and ``value_target`` (from
``GAE``; a loss built with ``gamma`` and ``lmbda`` runs its own GAE when ``advantage`` is
missing) and returns ``loss_objective``, ``loss_critic``, ``loss_entropy`` (when
``entropy_bonus`` and ``entropy_coeff > 0``; otherwise the entropy is computed without a
graph, as a diagnostic only) plus the detached diagnostics ``entropy``, ``kl_approx``
(``mean((r - 1) - log r)``, an unbiased estimate of KL(old || new)) and ``ESS`` (effective
sample size of the importance ratios divided by the number of samples).

Conventions, chosen once for all three losses:
    * ``loss_critic = critic_coeff * mean((V - value_target)^2)``: no extra 0.5 inside. With the
      default ``critic_coeff=0.5`` this is TorchRL's convention; CleanRL's
      ``vf_coef * 0.5 * mse`` equals ``critic_coeff=0.25``.
    * ``entropy_coeff`` defaults to 0.0, CleanRL's and SB3's value for continuous control;
      discrete tasks usually want 0.01.
    * A tanh-normal's entropy has no closed form. With an entropy bonus it is estimated as
      ``-log_prob`` of one reparameterized sample per state (unbiased, and differentiable
      through the sample); as a diagnostic only, as ``-mean(r * log pi(a|s))`` over the
      batch's own actions (importance-weighted, so also unbiased, and free: no sampling).
      Distributions with a closed form (categorical) use it.
"""

from __future__ import annotations

from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase
from tensordict.nn import TensorDictModuleBase
from torch import distributions as D

from trainers.keys import (
    ACTION,
    ADVANTAGE,
    MASK,
    PRE_TANH_ACTION,
    SAMPLE_LOG_PROB,
    VALUE_TARGET,
)
from trainers.modules.actor_critic import batched_outputs
from trainers.modules.distributions import TanhNormal
from trainers.objectives.common import (
    GraphScalar,
    LossModule,
    check_loss_function,
    distance_loss,
    module_home,
)
from trainers.objectives.compiled import CompiledOnce
from trainers.objectives.value import GAE


def _stored_action_log_prob(dist: D.Distribution, tensordict: TensorDictBase) -> torch.Tensor:
    """``log pi(a|s)`` of the batch's actions; a tanh-normal scores the stored pre-tanh sample
    when the policy wrote one (exact even where tanh saturates)."""
    pre_tanh = tensordict.get(PRE_TANH_ACTION, None)
    if pre_tanh is not None and isinstance(dist, TanhNormal):
        return dist.log_prob_pre_tanh(pre_tanh)
    return dist.log_prob(tensordict.get(ACTION))


def _entropy(dist: D.Distribution) -> torch.Tensor:
    """Per-state entropy, differentiable (a one-sample estimate for a tanh-normal)."""
    if isinstance(dist, TanhNormal):
        return -dist.rsample_and_log_prob()[1]
    return dist.entropy()


@torch.no_grad()
def _entropy_diagnostic(
    dist: D.Distribution, ratio: torch.Tensor, log_prob: torch.Tensor
) -> torch.Tensor:
    """Mean entropy without a graph; for a tanh-normal, importance-weighted from the batch's
    actions: ``E_old[r * -log pi(a)] = E_new[-log pi(a)]``."""
    if isinstance(dist, TanhNormal):
        return -(ratio * log_prob).mean()
    return dist.entropy().mean()


class PPOLoss(LossModule):
    """The unclipped importance-ratio objective ``-mean(r * A)``; base of the PPO losses.

    See the module docstring for the inputs, outputs and conventions.

    Args:
        actor_network: the policy; must provide ``get_dist(tensordict)`` (e.g.
            ``TanhNormalActor``, ``CategoricalActor``).
        critic_network: a TensorDict module writing ``[..., 1]`` values (e.g.
            ``ValueOperator``).
        entropy_bonus: add ``loss_entropy = -entropy_coeff * mean(entropy)`` (when
            ``entropy_coeff > 0``).
        entropy_coeff: weight of the entropy bonus.
        critic_coeff: weight of the critic loss.
        loss_critic_type: ``"l2"`` or ``"smooth_l1"``.
        normalize_advantage: standardize the advantage over each minibatch (mean 0, std 1).
        clip_value: if set, also compute the critic loss with the value clipped to
            ``old_value +- clip_value`` (the batch's ``state_value`` from GAE) and take the
            larger of the two, as in CleanRL/OpenAI baselines.
        gamma: with ``lmbda``, the loss owns a ``GAE`` (``loss.value_estimator``) that it runs
            on batches without ``advantage``.
        lmbda: GAE lambda; give both or neither of ``gamma`` and ``lmbda``.
        compile: compute each minibatch's losses (forward, and so backward) as one
            ``torch.compile`` graph (``trainers.objectives.compiled``): about 1.5x faster per
            gradient step on CPU at CleanRL's sizes, after a compile of about 15 s (2-3 s from
            inductor's cache). Calls under ``no_grad``, or with another batch size than the
            first, run eagerly. With an entropy bonus, a tanh-normal's one-sample entropy
            estimate draws its noise inside the graph (seeded from torch's generator, so a
            resumed run repeats it), not as an eager call would.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from trainers.modules import MLP, TanhNormalActor, ValueOperator
        >>> actor = TanhNormalActor(MLP(3, 2, [16]), low=-torch.ones(1), high=torch.ones(1))
        >>> loss = PPOLoss(actor, ValueOperator(MLP(3, 1, [16])), entropy_coeff=0.01)
        >>> td = actor(TensorDict(observation=torch.randn(6, 3), batch_size=[6]))
        >>> td["advantage"], td["value_target"] = torch.randn(6, 1), torch.randn(6, 1)
        >>> sorted(k for k in loss(td).keys() if k.startswith("loss_"))
        ['loss_critic', 'loss_entropy', 'loss_objective']
    """

    # Duck-typed: any actor with get_dist(td), any TensorDict critic.
    actor_network: Any
    critic_network: Any
    # Read by the computation as 0-d buffers: a schedule changing them does not recompile.
    entropy_coeff = GraphScalar("a number >= 0", lambda value: value > 0, off=0.0)
    critic_coeff = GraphScalar("a number >= 0", lambda value: value >= 0)
    clip_value = GraphScalar("None or a number > 0", lambda value: value > 0, off=None)
    _entropy_coeff: torch.Tensor | None
    _critic_coeff: torch.Tensor
    _clip_value: torch.Tensor | None

    def __init__(
        self,
        actor_network: TensorDictModuleBase,
        critic_network: TensorDictModuleBase,
        *,
        entropy_bonus: bool = True,
        entropy_coeff: float = 0.0,
        critic_coeff: float = 0.5,
        loss_critic_type: str = "l2",
        normalize_advantage: bool = True,
        clip_value: float | None = None,
        gamma: float | None = None,
        lmbda: float | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__()
        name = type(self).__name__
        check_loss_function(name, "loss_critic_type", loss_critic_type)
        if (gamma is None) != (lmbda is None):
            raise ValueError(
                f"{name}: gamma={gamma}, lmbda={lmbda}; give both (the loss then owns a GAE) "
                "or neither."
            )
        if not callable(getattr(actor_network, "get_dist", None)):
            raise TypeError(
                f"{name}: actor_network {type(actor_network).__name__} has no get_dist(td); "
                "use an actor from trainers.modules (TanhNormalActor, CategoricalActor)."
            )
        self.actor_network = actor_network
        self.critic_network = critic_network
        self.entropy_bonus = entropy_bonus
        self.entropy_coeff = entropy_coeff
        self.critic_coeff = critic_coeff
        self.loss_critic_type = loss_critic_type
        self.normalize_advantage = normalize_advantage
        self.clip_value = clip_value
        self.value_estimator = (
            GAE(gamma, lmbda, critic_network) if gamma is not None and lmbda is not None else None
        )
        setting = f"{name}(compile=True) (loss.compile)"
        self.compiled = CompiledOnce(_ppo_losses, setting) if compile else None

    def _objective(
        self, log_ratio: torch.Tensor, ratio: torch.Tensor, advantage: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(loss_objective, extra diagnostics)`` from per-sample ratios and advantages."""
        del log_ratio
        return -(ratio * advantage).mean(), {}

    def _critic_loss(self, tensordict: TensorDictBase, value: torch.Tensor | None) -> torch.Tensor:
        """The critic term; ``value`` is V(s) when already computed (with the policy's output)."""
        value_key = self.critic_network.out_keys[0]
        old_value = tensordict.get(value_key, None)
        if value is None:
            critic_in = tensordict.select(*self.critic_network.in_keys)
            value = self.critic_network(critic_in).get(value_key)
        target = tensordict.get(VALUE_TARGET)
        loss = distance_loss(value, target, self.loss_critic_type)
        if self._clip_value is not None:
            if old_value is None:
                raise KeyError(
                    f"{type(self).__name__}: clip_value={self.clip_value} needs the batch's "
                    f"{value_key!r} (written by GAE) to clip around."
                )
            clipped = old_value + (value - old_value).clamp(-self._clip_value, self._clip_value)
            loss = torch.maximum(loss, distance_loss(clipped, target, self.loss_critic_type))
        return self._critic_coeff * loss.mean()

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        if tensordict.get(ADVANTAGE, None) is None:
            if self.value_estimator is None:
                raise KeyError(
                    f"{type(self).__name__}: the batch has no {ADVANTAGE!r}; run a GAE on it "
                    "first, or build the loss with gamma and lmbda."
                )
            self.value_estimator(tensordict)
        mask = tensordict.get(MASK, None)
        if mask is not None:
            tensordict = tensordict[mask]
        if self.compiled is not None and torch.is_grad_enabled():
            advantage = tensordict.get(ADVANTAGE)
            signature = (tensordict.batch_size, advantage.dtype)
            losses = self.compiled(signature, advantage.device, self, tensordict)
            if losses is not None:
                return losses
        return self._losses(tensordict)

    def _losses(self, tensordict: TensorDictBase) -> TensorDict:
        """The losses and diagnostics of a minibatch that has its advantages (and no mask)."""
        advantage = tensordict.get(ADVANTAGE).squeeze(-1)
        if self.normalize_advantage and advantage.numel() > 1:
            advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-8)

        joint = batched_outputs(self.actor_network, self.critic_network, tensordict)
        if joint is None:
            dist, value = self.actor_network.get_dist(tensordict), None
        else:  # one batched network call for both (see trainers.modules.actor_critic)
            dist, value = self.actor_network.get_dist_from_output(joint[0]), joint[1]
        log_prob = _stored_action_log_prob(dist, tensordict)
        log_ratio = log_prob - tensordict.get(SAMPLE_LOG_PROB)
        ratio = log_ratio.exp()
        loss_objective, extra = self._objective(log_ratio, ratio, advantage)
        out = {"loss_objective": loss_objective}
        if self.entropy_bonus and self._entropy_coeff is not None:
            entropy = _entropy(dist).mean()
            out["loss_entropy"] = -self._entropy_coeff * entropy
        else:  # only a diagnostic: no graph, no backward through it
            entropy = _entropy_diagnostic(dist, ratio, log_prob)
        out["loss_critic"] = self._critic_loss(tensordict, value)

        with torch.no_grad():
            ratio_sum = ratio.sum()
            out["entropy"] = entropy.detach()
            out["kl_approx"] = ((ratio - 1) - log_ratio).mean()
            out["ESS"] = ratio_sum * ratio_sum / (ratio * ratio).sum() / ratio.numel()
        out.update(extra)
        return TensorDict(out, batch_size=[])


def _ppo_losses(loss: PPOLoss, tensordict: TensorDictBase) -> TensorDict:
    """``loss._losses(tensordict)``: what ``compile=True`` compiles."""
    return loss._losses(tensordict)


class ClipPPOLoss(PPOLoss):
    """PPO with the clipped surrogate ``-mean(min(r A, clip(r, 1 - eps, 1 + eps) A))``.

    The gradient of a sample's objective is zero exactly when its ratio left
    ``[1 - eps, 1 + eps]`` in the direction its advantage favours (``r > 1 + eps`` with
    ``A > 0``, ``r < 1 - eps`` with ``A < 0``). Adds the diagnostic ``clip_fraction``
    (share of samples with ``|r - 1| > eps``). See ``PPOLoss`` for the other arguments.

    Args:
        actor_network: the policy (with ``get_dist``).
        critic_network: the value network.
        clip_epsilon: the clipping range ``eps``, in ``(0, 1)``.
        entropy_bonus, entropy_coeff, critic_coeff, loss_critic_type, normalize_advantage,
            clip_value, gamma, lmbda, compile: as in ``PPOLoss``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from trainers.modules import MLP, TanhNormalActor, ValueOperator
        >>> actor = TanhNormalActor(MLP(3, 2, [16]), low=-torch.ones(1), high=torch.ones(1))
        >>> loss = ClipPPOLoss(actor, ValueOperator(MLP(3, 1, [16])), clip_epsilon=0.2)
        >>> td = actor(TensorDict(observation=torch.randn(6, 3), batch_size=[6]))
        >>> td["advantage"], td["value_target"] = torch.randn(6, 1), torch.randn(6, 1)
        >>> float(loss(td)["clip_fraction"])
        0.0
    """

    clip_epsilon = GraphScalar("a number in (0, 1)", lambda value: 0.0 < value < 1.0)
    _clip_epsilon: torch.Tensor

    def __init__(
        self,
        actor_network: TensorDictModuleBase,
        critic_network: TensorDictModuleBase,
        *,
        clip_epsilon: float = 0.2,
        entropy_bonus: bool = True,
        entropy_coeff: float = 0.0,
        critic_coeff: float = 0.5,
        loss_critic_type: str = "l2",
        normalize_advantage: bool = True,
        clip_value: float | None = None,
        gamma: float | None = None,
        lmbda: float | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__(
            actor_network,
            critic_network,
            entropy_bonus=entropy_bonus,
            entropy_coeff=entropy_coeff,
            critic_coeff=critic_coeff,
            loss_critic_type=loss_critic_type,
            normalize_advantage=normalize_advantage,
            clip_value=clip_value,
            gamma=gamma,
            lmbda=lmbda,
            compile=compile,
        )
        self.clip_epsilon = clip_epsilon

    def _objective(
        self, log_ratio: torch.Tensor, ratio: torch.Tensor, advantage: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        eps = self._clip_epsilon
        gain = torch.minimum(ratio * advantage, ratio.clamp(1.0 - eps, 1.0 + eps) * advantage)
        with torch.no_grad():
            clip_fraction = ((ratio - 1.0).abs() > eps).to(ratio.dtype).mean()
        return -gain.mean(), {"clip_fraction": clip_fraction}


class KLPENPPOLoss(PPOLoss):
    """PPO with an adaptive KL penalty: ``-mean(r A) + beta * KL(old || new)``.

    The KL is estimated on the batch's own actions as ``mean((r - 1) - log r)`` (unbiased,
    never negative, no extra sampling; exact KLs of tanh-normals would need the old loc and
    scale). After each call, ``beta`` is multiplied by ``increment`` when the estimate exceeds
    ``1.5 * dtarg`` and by ``decrement`` when it is below ``dtarg / 1.5`` (Schulman et al.,
    2017). ``beta`` is a buffer, saved in ``state_dict``, and updated without a device sync.
    Adds the diagnostic ``beta``. See ``PPOLoss`` for the other arguments.

    Args:
        actor_network: the policy (with ``get_dist``).
        critic_network: the value network.
        dtarg: the target KL.
        beta: the initial penalty coefficient.
        increment: factor applied to ``beta`` when the KL is too large (> 1).
        decrement: factor applied to ``beta`` when the KL is too small (in (0, 1)).
        entropy_bonus, entropy_coeff, critic_coeff, loss_critic_type, normalize_advantage,
            clip_value, gamma, lmbda, compile: as in ``PPOLoss``.

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from trainers.modules import MLP, TanhNormalActor, ValueOperator
        >>> actor = TanhNormalActor(MLP(3, 2, [16]), low=-torch.ones(1), high=torch.ones(1))
        >>> loss = KLPENPPOLoss(actor, ValueOperator(MLP(3, 1, [16])), beta=1.0)
        >>> td = actor(TensorDict(observation=torch.randn(6, 3), batch_size=[6]))
        >>> td["advantage"], td["value_target"] = torch.randn(6, 1), torch.randn(6, 1)
        >>> _ = loss(td)  # KL is 0 < dtarg / 1.5 on fresh data: beta halves
        >>> float(loss.beta)
        0.5
    """

    dtarg = GraphScalar("a number > 0", lambda value: value > 0)
    increment = GraphScalar("a number > 1", lambda value: value > 1)
    decrement = GraphScalar("a number in (0, 1)", lambda value: 0 < value < 1)
    _dtarg: torch.Tensor
    _increment: torch.Tensor
    _decrement: torch.Tensor
    beta: torch.Tensor

    def __init__(
        self,
        actor_network: TensorDictModuleBase,
        critic_network: TensorDictModuleBase,
        *,
        dtarg: float = 0.01,
        beta: float = 1.0,
        increment: float = 2.0,
        decrement: float = 0.5,
        entropy_bonus: bool = True,
        entropy_coeff: float = 0.0,
        critic_coeff: float = 0.5,
        loss_critic_type: str = "l2",
        normalize_advantage: bool = True,
        clip_value: float | None = None,
        gamma: float | None = None,
        lmbda: float | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__(
            actor_network,
            critic_network,
            entropy_bonus=entropy_bonus,
            entropy_coeff=entropy_coeff,
            critic_coeff=critic_coeff,
            loss_critic_type=loss_critic_type,
            normalize_advantage=normalize_advantage,
            clip_value=clip_value,
            gamma=gamma,
            lmbda=lmbda,
            compile=compile,
        )
        if beta < 0:
            raise ValueError(f"KLPENPPOLoss: beta={beta}; allowed: a number >= 0.")
        self.dtarg = dtarg
        self.increment = increment
        self.decrement = decrement
        device, dtype = module_home(self)
        self.register_buffer("beta", torch.tensor(float(beta), device=device, dtype=dtype))

    def _objective(
        self, log_ratio: torch.Tensor, ratio: torch.Tensor, advantage: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        kl = ((ratio - 1.0) - log_ratio).mean()
        beta_used = self.beta.clone()  # beta is updated in place below, after its use here
        loss = -(ratio * advantage).mean() + beta_used * kl
        with torch.no_grad():
            kl_value = kl.detach()
            factor = torch.where(
                kl_value > 1.5 * self._dtarg,
                self._increment,
                torch.where(kl_value < self._dtarg / 1.5, self._decrement, 1.0),
            )
            self.beta.mul_(factor)
        return loss, {"beta": beta_used}
