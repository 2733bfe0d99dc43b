"""An actor and a critic whose MLPs run as one batched network in PPO's optimization steps.

A PPO step evaluates the policy and the value network on the same minibatch of observations. At
RL sizes (64x64 MLPs, minibatch 64) each layer costs its dispatch, not its arithmetic, so
stacking the two MLPs into one :class:`EnsembleMLP` (one ``baddbmm`` per layer, forward and
backward) saves about an eighth of a step on CPU (``benchmarks/speed.py``). The networks stay
two networks: each keeps its own weights (one slice of the stacked parameters) and its own
initialization; only their evaluation is shared. Alone (the collector's policy calls, GAE's
value calls) each member runs its own slice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import torch
from tensordict import TensorDictBase
from torch import nn

from trainers.modules.common import read_input
from trainers.modules.compiled import Compilable
from trainers.modules.critics import EnsembleMLP
from trainers.modules.mlp import MLP


class EnsembleMember(Compilable):
    """Member ``index`` of an :class:`EnsembleMLP`, run alone: ``[*batch, in] -> [*batch, out]``.

    Its weights are a slice of the ensemble's stacked parameters; ``out_features`` may be fewer
    than the ensemble's (members with fewer outputs are zero-padded there). Without gradients
    (the collector's and GAE's calls) it reuses its slices of the parameters as long as they
    live in the same memory: taking new slices at every call made a policy call at batch 8
    about 15 us slower than the same ``MLP`` of ``nn.Linear`` modules; with the cache it is as
    fast.

    Args:
        ensemble: the stacked network (shared with the other members).
        index: which member.
        out_features: how many of the ensemble's outputs are this member's.
    """

    def __init__(self, ensemble: EnsembleMLP, index: int, out_features: int) -> None:
        super().__init__()
        if not 0 <= index < ensemble.num_nets:
            raise ValueError(f"EnsembleMember: index={index}; the ensemble has {ensemble.num_nets}")
        if not 0 < out_features <= ensemble.out_features:
            raise ValueError(
                f"EnsembleMember: out_features={out_features}; allowed: 1 to the ensemble's "
                f"{ensemble.out_features}."
            )
        self.ensemble = ensemble
        self.index = index
        self.out_features = out_features
        self._slices: tuple[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] | None = None

    def _layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """This member's ``(weight, bias)`` per layer: new slices when gradients are recorded
        or the member is compiled, else the cached ones, rebuilt when a parameter moved (``to``,
        a new tensor)."""
        ensemble, index = self.ensemble, self.index
        if self.compiled or torch.is_grad_enabled():
            pairs = zip(ensemble.weights, ensemble.biases, strict=True)
            return [(weight[index], bias[index]) for weight, bias in pairs]
        # The lists' own dicts: iterating a ParameterList or parameters() costs more than the
        # layers themselves at policy batch sizes (this runs at every env step).
        weights = list(ensemble.weights._parameters.values())
        biases = list(ensemble.biases._parameters.values())
        where = tuple(p.data_ptr() for p in (*weights, *biases) if p is not None)
        if self._slices is None or self._slices[0] != where:
            pairs = zip(weights, biases, strict=True)
            self._slices = (where, [(w[index], b[index]) for w, b in pairs])
        return self._slices[1]

    def _forward(self, input: torch.Tensor) -> torch.Tensor:
        hidden = input if input.dim() == 2 else input.reshape(-1, input.shape[-1])
        layers = self._layers()
        activation = self.ensemble.activation
        for weight, bias in layers[:-1]:
            hidden = activation(torch.addmm(bias, hidden, weight))
        weight, bias = layers[-1]
        out = torch.addmm(bias, hidden, weight)
        if self.out_features < out.shape[-1]:
            out = out[:, : self.out_features]
        return out if input.dim() == 2 else out.reshape(*input.shape[:-1], self.out_features)

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_slices"] = None  # views of the parameters: rebuilt, never copied or pickled
        return state


@dataclass(frozen=True)
class _Layout:
    """A plain MLP's linear layers and its one activation type."""

    linears: list[nn.Linear]
    activation: type[nn.Module]

    @property
    def hidden(self) -> tuple[type[nn.Module], list[tuple[int, int]]]:
        """What two MLPs must share to be stacked: everything but the output size."""
        return self.activation, [(x.in_features, x.out_features) for x in self.linears[:-1]]


def _layout(network: Any) -> _Layout | None:
    """The layout of a plain ``MLP`` (Linear, activation, ..., Linear), or None for any other
    network: one with lazy or bias-free layers, an activated last layer, a reshaped output, or
    activations of several types or with parameters."""
    if type(network) is not MLP or len(network.out_shape) != 1:
        return None
    layers = list(network)
    linears, activations = layers[0::2], layers[1::2]
    if len(linears) != len(activations) + 1:
        return None
    if any(type(layer) is not nn.Linear or layer.bias is None for layer in linears):
        return None
    kinds = {type(a) for a in activations}
    if len(kinds) != 1 or any(next(a.parameters(), None) is not None for a in activations):
        return None
    return _Layout(cast(list[nn.Linear], linears), kinds.pop())


def batch_actor_critic(actor: Any, critic: Any) -> bool:
    """Makes ``actor.network`` and ``critic.network`` the two members of one ``EnsembleMLP`` that
    holds their current weights; returns whether it could.

    Both networks must be plain ``MLP``s with the same input size, hidden widths and activation,
    both modules must read the same ``in_keys``, and the actor must offer
    ``get_dist_from_output`` (``TanhNormalActor``, ``CategoricalActor``); otherwise nothing
    changes and the result is False (the PPO loss then runs them one after the other).
    Outputs, gradients and the random number stream are unchanged; call it before building the
    optimizer, since the parameters are new tensors.

    Examples:
        >>> from types import SimpleNamespace
        >>> from trainers.envs.specs import Bounded, Unbounded
        >>> from trainers.modules import make_tanh_normal_actor, make_value_network
        >>> env = SimpleNamespace(observation_spec=Unbounded(3), action_spec=Bounded(-2.0, 2.0, (1,)))
        >>> actor = make_tanh_normal_actor(env, num_cells=[64, 64])
        >>> critic = make_value_network(env, num_cells=[64, 64])
        >>> batch_actor_critic(actor, critic), type(actor.network).__name__
        (True, 'EnsembleMember')
    """
    if not callable(getattr(actor, "get_dist_from_output", None)):
        return False
    if list(getattr(actor, "in_keys", ())) != list(getattr(critic, "in_keys", ())):
        return False
    actor_layout = _layout(getattr(actor, "network", None))
    critic_layout = _layout(getattr(critic, "network", None))
    if actor_layout is None or critic_layout is None or actor_layout.hidden != critic_layout.hidden:
        return False
    layouts = (actor_layout, critic_layout)
    outputs = [layout.linears[-1].out_features for layout in layouts]
    first = actor_layout.linears[0]
    hidden = [layer.out_features for layer in actor_layout.linears[:-1]]
    with torch.random.fork_rng(devices=[]):  # its own init is overwritten below
        ensemble = EnsembleMLP(first.in_features, max(outputs), hidden, 2, actor_layout.activation)
    ensemble.to(device=first.weight.device, dtype=first.weight.dtype)
    with torch.no_grad():
        for member, layout in enumerate(layouts):
            stacked = zip(ensemble.weights, ensemble.biases, layout.linears, strict=True)
            for weight, bias, layer in stacked:
                weight[member].zero_()  # outputs past this member's own stay 0
                bias[member].zero_()
                weight[member, :, : layer.out_features].copy_(layer.weight.T)
                bias[member, 0, : layer.out_features].copy_(layer.bias)
    actor.network = EnsembleMember(ensemble, 0, outputs[0])
    critic.network = EnsembleMember(ensemble, 1, outputs[1])
    return True


def batched_outputs(
    actor: Any, critic: Any, tensordict: TensorDictBase
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(actor network output, critic network output)`` at ``tensordict``'s inputs from one
    call of their shared ensemble, or None when ``batch_actor_critic`` did not join them."""
    member_a, member_c = getattr(actor, "network", None), getattr(critic, "network", None)
    if not isinstance(member_a, EnsembleMember) or not isinstance(member_c, EnsembleMember):
        return None
    ensemble = member_a.ensemble
    if member_c.ensemble is not ensemble or actor.in_keys != critic.in_keys:
        return None
    out = ensemble(read_input(tensordict, actor.in_keys))
    return (
        out[member_a.index, ..., : member_a.out_features],
        out[member_c.index, ..., : member_c.out_features],
    )
