"""Networks and policies: MLP, the tanh-normal distribution, actors, value and Q networks."""

from __future__ import annotations

from trainers.keys import ACTION_VALUE, CHOSEN_ACTION_VALUE, LOGITS, STATE_ACTION_VALUE
from trainers.modules.actor_critic import EnsembleMember, batch_actor_critic
from trainers.modules.actors import CategoricalActor, QValueActor, TanhNormalActor
from trainers.modules.builders import (
    make_categorical_actor,
    make_qvalue_actor,
    make_qvalue_network,
    make_tanh_normal_actor,
    make_value_network,
)
from trainers.modules.compiled import compile_networks
from trainers.modules.critics import (
    EnsembleMLP,
    EnsembleQValueNetwork,
    QValueNetwork,
    ValueOperator,
)
from trainers.modules.distributions import TanhNormal
from trainers.modules.exploration import (
    ExplorationType,
    exploration_type,
    is_random_exploration,
    set_exploration_type,
)
from trainers.modules.mlp import MLP

__all__ = [
    "ACTION_VALUE",
    "CHOSEN_ACTION_VALUE",
    "LOGITS",
    "MLP",
    "STATE_ACTION_VALUE",
    "CategoricalActor",
    "EnsembleMLP",
    "EnsembleMember",
    "EnsembleQValueNetwork",
    "ExplorationType",
    "QValueActor",
    "QValueNetwork",
    "TanhNormal",
    "TanhNormalActor",
    "ValueOperator",
    "batch_actor_critic",
    "compile_networks",
    "exploration_type",
    "is_random_exploration",
    "make_categorical_actor",
    "make_qvalue_actor",
    "make_qvalue_network",
    "make_tanh_normal_actor",
    "make_value_network",
    "set_exploration_type",
]
