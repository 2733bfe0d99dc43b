"""Network builders that configs target: sizes come from an env's specs at runtime.

``env`` is anything with per-env ``observation_spec`` (flat: ``shape == (obs_dim,)``) and
``action_spec`` (``Bounded`` with ``low``/``high``/``shape`` for box actions, ``Categorical``
with ``n`` for discrete ones): a ``trainers.envs.EnvBase`` or a plain namespace of specs.
``activation_class`` accepts a module class or one of the names in ``ACTIVATIONS``.

Initialization: ``init="torch"`` keeps PyTorch's defaults; ``init="orthogonal"`` is the
CleanRL/SB3 PPO recipe (orthogonal weights, zero biases, gain ``sqrt(2)`` for hidden layers,
0.01 for a policy's output layer, 1.0 for a value output layer).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from torch import nn

from trainers.modules.actors import CategoricalActor, QValueActor, TanhNormalActor
from trainers.modules.critics import EnsembleQValueNetwork, ValueOperator
from trainers.modules.mlp import MLP

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "leaky_relu": nn.LeakyReLU,
}
POLICY_OUTPUT_GAIN = 0.01


def resolve_activation(activation_class: str | type[nn.Module]) -> type[nn.Module]:
    """A module class from a class or a name in ``ACTIVATIONS`` (case-insensitive)."""
    if isinstance(activation_class, str):
        try:
            return ACTIVATIONS[activation_class.lower()]
        except KeyError:
            raise ValueError(
                f"activation_class={activation_class!r}; allowed: {', '.join(ACTIVATIONS)} "
                "or an nn.Module class."
            ) from None
    return activation_class


def observation_dim(env: Any) -> int:
    """The size of ``env``'s flat observation."""
    shape = tuple(env.observation_spec.shape)
    if len(shape) != 1:
        raise ValueError(
            f"observation_spec.shape={shape}; these MLP builders need a flat observation "
            "(shape (obs_dim,)); flatten it with a transform or build the network yourself."
        )
    return shape[0]


def _box_action_spec(env: Any, builder: str) -> Any:
    spec = env.action_spec
    if not (hasattr(spec, "low") and hasattr(spec, "high")):
        raise ValueError(
            f"{builder}: needs box actions (an action_spec with low and high), got "
            f"{type(spec).__name__}; use make_categorical_actor or make_qvalue_actor for "
            "discrete actions."
        )
    if len(tuple(spec.shape)) != 1:
        raise ValueError(
            f"{builder}: action_spec.shape={tuple(spec.shape)}; allowed: (action_dim,)."
        )
    return spec


def _num_actions(env: Any, builder: str) -> int:
    n = getattr(env.action_spec, "n", None)
    if n is None:
        raise ValueError(
            f"{builder}: needs discrete actions (an action_spec with n), got "
            f"{type(env.action_spec).__name__}."
        )
    return int(n)


def make_tanh_normal_actor(
    env: Any,
    *,
    num_cells: Sequence[int] | int = (256, 256),
    activation_class: str | type[nn.Module] = "tanh",
    depth: int | None = None,
    scale_mapping: str = "biased_softplus_1.0",
    scale_lb: float = 1e-4,
    state_independent_scale: bool = False,
    init: str = "torch",
) -> TanhNormalActor:
    """A ``TanhNormalActor`` on an MLP, sized and bounded by ``env``'s specs.

    Examples:
        >>> from types import SimpleNamespace
        >>> from trainers.envs.specs import Bounded, Unbounded
        >>> env = SimpleNamespace(observation_spec=Unbounded(3), action_spec=Bounded(-2.0, 2.0, (1,)))
        >>> make_tanh_normal_actor(env, num_cells=[64, 64]).action_shape
        torch.Size([1])
    """
    spec = _box_action_spec(env, "make_tanh_normal_actor")
    action_dim = math.prod(spec.shape)
    network = MLP(
        observation_dim(env),
        action_dim if state_independent_scale else 2 * action_dim,
        num_cells,
        activation_class=resolve_activation(activation_class),
        depth=depth,
        init=init,
        last_layer_gain=POLICY_OUTPUT_GAIN,
    )
    return TanhNormalActor(
        network,
        spec,
        scale_mapping=scale_mapping,
        scale_lb=scale_lb,
        state_independent_scale=state_independent_scale,
    )


def make_categorical_actor(
    env: Any,
    *,
    num_cells: Sequence[int] | int = (256, 256),
    activation_class: str | type[nn.Module] = "tanh",
    depth: int | None = None,
    init: str = "torch",
) -> CategoricalActor:
    """A ``CategoricalActor`` on an MLP with one logit per discrete action of ``env``.

    Examples:
        >>> from types import SimpleNamespace
        >>> from trainers.envs.specs import Categorical, Unbounded
        >>> env = SimpleNamespace(observation_spec=Unbounded(4), action_spec=Categorical(2))
        >>> make_categorical_actor(env, num_cells=[32]).network[-1].out_features
        2
    """
    network = MLP(
        observation_dim(env),
        _num_actions(env, "make_categorical_actor"),
        num_cells,
        activation_class=resolve_activation(activation_class),
        depth=depth,
        init=init,
        last_layer_gain=POLICY_OUTPUT_GAIN,
    )
    return CategoricalActor(network)


def make_value_network(
    env: Any,
    *,
    num_cells: Sequence[int] | int = (256, 256),
    activation_class: str | type[nn.Module] = "tanh",
    depth: int | None = None,
    init: str = "torch",
) -> ValueOperator:
    """A ``ValueOperator`` (state value) on an MLP sized by ``env``'s observation.

    Examples:
        >>> from types import SimpleNamespace
        >>> from trainers.envs.specs import Bounded, Unbounded
        >>> env = SimpleNamespace(observation_spec=Unbounded(3), action_spec=Bounded(-2.0, 2.0, (1,)))
        >>> make_value_network(env, num_cells=[64, 64]).network[0].in_features
        3
    """
    network = MLP(
        observation_dim(env),
        1,
        num_cells,
        activation_class=resolve_activation(activation_class),
        depth=depth,
        init=init,
    )
    return ValueOperator(network)


def make_qvalue_network(
    env: Any,
    *,
    num_cells: Sequence[int] | int = (256, 256),
    activation_class: str | type[nn.Module] = "relu",
    depth: int | None = None,
    num_qvalue_nets: int = 2,
    init: str = "torch",
) -> EnsembleQValueNetwork:
    """``num_qvalue_nets`` Q networks over (observation, box action), run as one ensemble.

    Examples:
        >>> import torch
        >>> from types import SimpleNamespace
        >>> from trainers.envs.specs import Bounded, Unbounded
        >>> env = SimpleNamespace(observation_spec=Unbounded(3), action_spec=Bounded(-2.0, 2.0, (1,)))
        >>> make_qvalue_network(env, num_cells=[64, 64])(torch.zeros(5, 3), torch.zeros(5, 1)).shape
        torch.Size([2, 5, 1])
    """
    spec = _box_action_spec(env, "make_qvalue_network")
    return EnsembleQValueNetwork(
        observation_dim(env),
        math.prod(spec.shape),
        num_cells,
        num_qvalue_nets=num_qvalue_nets,
        activation_class=resolve_activation(activation_class),
        depth=depth,
        init=init,
    )


def make_qvalue_actor(
    env: Any,
    *,
    num_cells: Sequence[int] | int = (256, 256),
    activation_class: str | type[nn.Module] = "relu",
    depth: int | None = None,
    epsilon: float = 0.0,
    init: str = "torch",
) -> QValueActor:
    """A ``QValueActor`` (DQN policy) on an MLP with one value per discrete action of ``env``.

    Examples:
        >>> from types import SimpleNamespace
        >>> from trainers.envs.specs import Categorical, Unbounded
        >>> env = SimpleNamespace(observation_spec=Unbounded(4), action_spec=Categorical(2))
        >>> make_qvalue_actor(env, num_cells=[32], epsilon=0.1).epsilon
        0.1
    """
    network = MLP(
        observation_dim(env),
        _num_actions(env, "make_qvalue_actor"),
        num_cells,
        activation_class=resolve_activation(activation_class),
        depth=depth,
        init=init,
    )
    return QValueActor(network, epsilon=epsilon)
