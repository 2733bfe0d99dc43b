"""Helpers shared by the network modules (exploration mode, reading inputs, key lists)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from tensordict import TensorDictBase
from tensordict.nn import InteractionType, interaction_type
from tensordict.utils import NestedKey

_RANDOM = (None, InteractionType.RANDOM)


def is_random_exploration() -> bool:
    """Whether policies should sample (interaction type unset or ``RANDOM``) rather than act
    deterministically (``DETERMINISTIC``, ``MODE``, ``MEAN``, ``MEDIAN``)."""
    return interaction_type() in _RANDOM


def key_list(keys: Sequence[NestedKey]) -> list[Any]:
    """``keys`` as the list that ``TensorDictModuleBase.in_keys``/``out_keys`` take."""
    return list(keys)


def read_input(tensordict: TensorDictBase, in_keys: Sequence[NestedKey]) -> torch.Tensor:
    """The network input: the single ``in_keys`` entry, or all of them concatenated on the
    last dimension."""
    if len(in_keys) == 1:
        return tensordict.get(in_keys[0])
    return torch.cat([tensordict.get(key) for key in in_keys], dim=-1)
