"""Samplers: choose which stored rows make up a batch.

Samplers draw from torch's global random generator, so seeding torch (and restoring its RNG
state from a checkpoint) makes the drawn batches reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from trainers.data.replay_buffers.segment_tree import MinTree, SumTree
from trainers.data.replay_buffers.storages import TensorStorage
from trainers.keys import PRIORITY_WEIGHT


class Sampler:
    """Draws row indices from a storage of ``storage_len`` rows (uniformly, with replacement,
    unless a subclass says otherwise). Subclasses override what they need."""

    @property
    def ran_out(self) -> bool:
        """True when the last batch ended an epoch (samplers without epochs: never)."""
        return False

    def register_storage(self, storage: TensorStorage) -> None:
        """Called once by the replay buffer with its storage (which may already hold rows)."""
        del storage

    def sample(self, storage_len: int, batch_size: int) -> tuple[torch.Tensor, dict[str, Any]]:
        """Returns int64 indices ``[batch_size]`` and extra entries for the sampled batch."""
        raise NotImplementedError

    def extend(self, index: torch.Tensor) -> None:
        """Called after rows ``index`` were (over)written."""
        del index

    def update_priority(self, index: torch.Tensor, priority: torch.Tensor | float) -> None:
        """Does nothing: only prioritized samplers have priorities."""
        del index, priority

    def empty(self) -> None:
        """Called when the buffer is emptied."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        del state_dict


class RandomSampler(Sampler):
    """Uniform sampling with replacement.

    Examples:
        >>> rb = ReplayBuffer(storage=LazyTensorStorage(100), sampler=RandomSampler())
    """

    def sample(self, storage_len: int, batch_size: int) -> tuple[torch.Tensor, dict[str, Any]]:
        return torch.randint(storage_len, (batch_size,)), {}


class SamplerWithoutReplacement(Sampler):
    """Visits every stored row exactly once per epoch, in a random (or fixed) order.

    An epoch is a permutation of the rows present when it started; a new epoch starts when the
    previous one is exhausted or when the number of stored rows changed. With
    ``drop_last=False`` the last batch of an epoch holds the remaining rows (it may be smaller
    than ``batch_size``); with ``drop_last=True`` those ``len % batch_size`` rows are skipped in
    that epoch. The permutation and the position in it are in the state, so a resumed run
    continues the epoch exactly.

    Args:
        drop_last: skip an epoch's incomplete last batch.
        shuffle: draw a random permutation per epoch; False visits rows in index order.

    Examples:
        >>> rb = ReplayBuffer(storage=LazyTensorStorage(64), batch_size=16,
        ...                   sampler=SamplerWithoutReplacement())
        >>> for minibatch in rb:  # one epoch: 4 batches covering the 64 rows once
        ...     ...
    """

    def __init__(self, drop_last: bool = False, shuffle: bool = True) -> None:
        self.drop_last = drop_last
        self.shuffle = shuffle
        self._perm = torch.empty(0, dtype=torch.int64)
        self._pos = 0
        self._batch_size = 1

    @property
    def ran_out(self) -> bool:
        remaining = self._perm.numel() - self._pos
        return remaining < (self._batch_size if self.drop_last else 1)

    def _new_epoch(self, storage_len: int) -> None:
        self._perm = torch.randperm(storage_len) if self.shuffle else torch.arange(storage_len)
        self._pos = 0

    def sample(self, storage_len: int, batch_size: int) -> tuple[torch.Tensor, dict[str, Any]]:
        if self.drop_last and batch_size > storage_len:
            raise ValueError(
                f"SamplerWithoutReplacement(drop_last=True) cannot draw batch_size={batch_size} "
                f"from {storage_len} stored rows; lower batch_size or use drop_last=False"
            )
        self._batch_size = batch_size
        if self._perm.numel() != storage_len or self.ran_out:
            self._new_epoch(storage_len)
        index = self._perm[self._pos : self._pos + batch_size]
        self._pos += index.numel()
        return index, {}

    def empty(self) -> None:
        self._perm = torch.empty(0, dtype=torch.int64)
        self._pos = 0

    def state_dict(self) -> dict[str, Any]:
        return {"perm": self._perm.clone(), "pos": self._pos, "batch_size": self._batch_size}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self._perm = state_dict["perm"].to(torch.int64).clone()
        self._pos = int(state_dict["pos"])
        self._batch_size = int(state_dict["batch_size"])


class PrioritizedSampler(Sampler):
    """Prioritized experience replay (Schaul et al., 2016), proportional variant.

    Row ``i`` with priority ``p_i`` is drawn with probability
    ``P(i) = (p_i + eps) ** alpha / sum_k (p_k + eps) ** alpha``, and the sampled batch gets
    importance weights ``w_i = (N * P(i)) ** -beta / max_j (N * P(j)) ** -beta`` under
    ``PRIORITY_WEIGHT`` (``N`` = stored rows; the max is over stored rows, so weights are in
    ``(0, 1]``). New rows get the largest priority seen so far (initially
    ``max_priority_init``), so each is likely to be replayed at least once. A sum tree draws a
    batch and a min tree gives the largest weight, both in ``O(batch * log(max_capacity))``.

    Args:
        max_capacity: number of rows it can hold; >= the storage's ``max_size``.
        alpha: how much priorities matter; 0 is uniform sampling; >= 0.
        beta: importance-weight correction; 0 is none, 1 is full; >= 0.
        eps: added to every priority so that no row has probability 0; >= 0.
        max_priority_init: priority of rows added before any update; > 0.

    Examples:
        >>> sampler = PrioritizedSampler(max_capacity=100_000, alpha=0.7, beta=0.5)
        >>> rb = TensorDictReplayBuffer(storage=LazyTensorStorage(100_000), sampler=sampler,
        ...                             batch_size=256)
        >>> batch = rb.sample()  # holds "index" and "priority_weight"
        >>> batch["td_error"] = loss_td_error.abs()
        >>> rb.update_tensordict_priority(batch)
    """

    def __init__(
        self,
        max_capacity: int,
        alpha: float,
        beta: float,
        eps: float = 1e-8,
        max_priority_init: float = 1.0,
    ) -> None:
        if isinstance(max_capacity, bool) or not isinstance(max_capacity, int) or max_capacity < 1:
            raise ValueError(
                f"PrioritizedSampler max_capacity must be an int >= 1, got {max_capacity!r}"
            )
        _check_number("alpha", alpha, ">= 0", lambda v: v >= 0)
        _check_number("beta", beta, ">= 0", lambda v: v >= 0)
        _check_number("eps", eps, ">= 0", lambda v: v >= 0)
        _check_number("max_priority_init", max_priority_init, "> 0", lambda v: v > 0)
        self.max_capacity = max_capacity
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.eps = float(eps)
        self.max_priority_init = float(max_priority_init)
        self._sum_tree = SumTree(max_capacity)
        self._min_tree = MinTree(max_capacity)
        self._max_priority = torch.tensor(self.max_priority_init, dtype=torch.float64)

    def register_storage(self, storage: TensorStorage) -> None:
        if storage.max_size > self.max_capacity:
            raise ValueError(
                f"PrioritizedSampler(max_capacity={self.max_capacity}) cannot index a storage "
                f"of max_size={storage.max_size}; use max_capacity >= max_size"
            )
        if len(storage):
            self.extend(torch.arange(len(storage)))

    def extend(self, index: torch.Tensor) -> None:
        index = index.unique()
        self._set(index, self._max_priority.pow(self.alpha).expand(index.shape))

    def update_priority(self, index: torch.Tensor, priority: torch.Tensor | float) -> None:
        """Sets the priority of rows ``index`` (for a repeated index, the last value wins).

        ``priority`` (e.g. the absolute TD error) is non-negative and finite; a scalar applies
        to every index, otherwise it has one value per index.
        """
        index = torch.as_tensor(index).detach().to("cpu", torch.int64).reshape(-1)
        priority = torch.as_tensor(priority).detach().to("cpu", torch.float64)
        if priority.numel() == 1:
            priority = priority.reshape(1).expand(index.shape)
        elif priority.numel() == index.numel():
            priority = priority.reshape(index.shape)
        else:
            raise ValueError(
                f"update_priority got {index.numel()} indices but {priority.numel()} priorities "
                f"(shape {list(priority.shape)}); give one priority per index"
            )
        if index.numel() == 0:
            return
        if bool((index < 0).any() | (index >= self.max_capacity).any()):
            raise IndexError(
                f"priority indices must be in [0, {self.max_capacity}), got values in "
                f"[{int(index.min())}, {int(index.max())}]"
            )
        if not bool(torch.isfinite(priority).all() & (priority >= 0).all()):
            raise ValueError(
                "priorities must be finite and >= 0 (e.g. the absolute TD error), got "
                f"min={float(priority.min())}, max={float(priority.max())}"
            )
        priority = priority + self.eps
        self._max_priority = torch.maximum(self._max_priority, priority.max())
        index, priority = _last_occurrence(index, priority)
        self._set(index, priority.pow(self.alpha))

    def _set(self, index: torch.Tensor, value: torch.Tensor) -> None:
        self._sum_tree[index] = value
        self._min_tree[index] = value

    def sample(self, storage_len: int, batch_size: int) -> tuple[torch.Tensor, dict[str, Any]]:
        total = self._sum_tree.reduce()
        mass = torch.rand(batch_size, dtype=torch.float64) * total
        # Rounding can push a search past the last stored row, into empty (zero) leaves.
        index = self._sum_tree.find(mass).clamp_(max=storage_len - 1)
        prob = self._sum_tree[index] / total
        min_prob = self._min_tree.reduce() / total
        weight = (storage_len * prob).pow(-self.beta) / (storage_len * min_prob).pow(-self.beta)
        return index, {PRIORITY_WEIGHT: weight.to(torch.float32)}

    def empty(self) -> None:
        self._sum_tree.clear()
        self._min_tree.clear()
        self._max_priority = torch.tensor(self.max_priority_init, dtype=torch.float64)

    def state_dict(self) -> dict[str, Any]:
        return {
            "sum_tree": self._sum_tree.leaves.clone(),
            "min_tree": self._min_tree.leaves.clone(),
            "max_priority": self._max_priority.clone(),
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        sums, mins = state_dict["sum_tree"], state_dict["min_tree"]
        if sums.shape != (self.max_capacity,) or mins.shape != (self.max_capacity,):
            raise ValueError(
                f"cannot load priorities of shape {list(sums.shape)} into "
                f"PrioritizedSampler(max_capacity={self.max_capacity})"
            )
        self._sum_tree.load_leaves(sums)
        self._min_tree.load_leaves(mins)
        self._max_priority = state_dict["max_priority"].to(torch.float64).clone()


def _last_occurrence(index: torch.Tensor, value: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct indices, each with the value of its last occurrence."""
    unique, inverse = torch.unique(index, return_inverse=True)
    position = torch.arange(index.numel())
    last = torch.zeros(unique.numel(), dtype=torch.int64).scatter_reduce_(
        0, inverse, position, reduce="amax", include_self=False
    )
    return unique, value[last]


def _check_number(name: str, value: float, allowed: str, ok: Any) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not ok(value)
    ):
        raise ValueError(
            f"PrioritizedSampler {name} must be a finite number {allowed}, got {value!r}"
        )
