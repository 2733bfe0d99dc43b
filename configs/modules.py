"""Schemas of the ``networks`` group. Sizes come from the env at build time, never from YAML."""

from __future__ import annotations

from dataclasses import dataclass, field

from configs.validation import checked, ge, one_of, positive_ints
from trainers.modules.builders import ACTIVATIONS
from trainers.modules.mlp import INITS


@dataclass(kw_only=True)
class MLPConfig:
    """A plain MLP (for custom networks); in/out sizes are passed when it is built."""

    _target_: str = "trainers.modules.MLP"
    _partial_: bool = True
    num_cells: list[int] = checked([64, 64], positive_ints())
    activate_last_layer: bool = False
    init: str = checked("torch", one_of(*INITS))


@dataclass(kw_only=True)
class TanhNormalModelConfig:
    """The continuous policy: an MLP giving a tanh-squashed normal scaled to the action bounds.

    For an env with discrete actions the trainers build a categorical policy from the same
    ``num_cells``/``activation_class``/``depth``/``init`` (the scale settings do not apply).
    """

    _target_: str = "trainers.modules.make_tanh_normal_actor"
    _partial_: bool = True  # called with the env
    num_cells: list[int] = checked([64, 64], positive_ints())
    activation_class: str = checked("tanh", one_of(*ACTIVATIONS))
    depth: int | None = checked(None, ge(0))
    scale_mapping: str = "biased_softplus_1.0"
    scale_lb: float = checked(1e-4, ge(0))
    state_independent_scale: bool = False
    init: str = checked("torch", one_of(*INITS))


@dataclass(kw_only=True)
class ValueModelConfig:
    """The state-value network V(s) of PPO."""

    _target_: str = "trainers.modules.make_value_network"
    _partial_: bool = True
    num_cells: list[int] = checked([64, 64], positive_ints())
    activation_class: str = checked("tanh", one_of(*ACTIVATIONS))
    depth: int | None = checked(None, ge(0))
    init: str = checked("torch", one_of(*INITS))


@dataclass(kw_only=True)
class QValueModelConfig:
    """SAC's Q networks Q(s, a), ``num_qvalue_nets`` of them evaluated as one batched network."""

    _target_: str = "trainers.modules.make_qvalue_network"
    _partial_: bool = True
    num_cells: list[int] = checked([256, 256], positive_ints())
    activation_class: str = checked("relu", one_of(*ACTIVATIONS))
    depth: int | None = checked(None, ge(0))
    num_qvalue_nets: int = checked(2, ge(1))
    init: str = checked("torch", one_of(*INITS))


@dataclass(kw_only=True)
class PPONetworksConfig:
    """PPO's policy and value networks.

    ``batch_actor_critic``: when both are MLPs with the same hidden layers and activation (as by
    default), PPO's optimization steps evaluate them as one batched network
    (``trainers.modules.batch_actor_critic``): the same networks and results, fewer operations.
    ``compile``: run the networks' forward and backward passes through ``torch.compile``
    (``trainers.modules.compile_networks``); off: slower than eager on CPU at these sizes.
    """

    policy_network: TanhNormalModelConfig = field(default_factory=TanhNormalModelConfig)
    value_network: ValueModelConfig = field(default_factory=ValueModelConfig)
    batch_actor_critic: bool = True
    compile: bool = False


@dataclass(kw_only=True)
class SACNetworksConfig:
    """``value_network`` is SAC's twin Q network (same override path as PPO's critic).

    ``compile``: as PPO's (``trainers.modules.compile_networks``); off by default.
    """

    policy_network: TanhNormalModelConfig = field(
        default_factory=lambda: TanhNormalModelConfig(num_cells=[256, 256], activation_class="relu")
    )
    value_network: QValueModelConfig = field(default_factory=QValueModelConfig)
    compile: bool = False
