"""Exploration mode: the names a TorchRL user looks for, on top of tensordict's interaction type.

Policies read ``tensordict.nn.interaction_type()``: unset or ``RANDOM`` samples; ``DETERMINISTIC``,
``MODE``, ``MEAN`` and ``MEDIAN`` act deterministically (the distribution's mode). Use
``set_exploration_type(ExplorationType.DETERMINISTIC)`` as a context manager or decorator for
evaluation rollouts.

Examples:
    >>> from trainers.modules.exploration import ExplorationType, exploration_type, set_exploration_type
    >>> with set_exploration_type(ExplorationType.DETERMINISTIC):
    ...     exploration_type()
    <InteractionType.DETERMINISTIC: 'deterministic'>
"""

from __future__ import annotations

from tensordict.nn import InteractionType as ExplorationType
from tensordict.nn import interaction_type as exploration_type
from tensordict.nn import set_interaction_type as set_exploration_type

from trainers.modules.common import is_random_exploration

__all__ = ["ExplorationType", "exploration_type", "is_random_exploration", "set_exploration_type"]
