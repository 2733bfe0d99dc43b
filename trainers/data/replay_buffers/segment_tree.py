"""Sum and min segment trees over a fixed number of leaves, as batched torch operations.

The tree is one flat float64 tensor: node ``i`` has children ``2i`` and ``2i + 1``, the root
is node 1 and leaf ``j`` is node ``size + j`` (``size`` = capacity rounded up to a power of
two). Updates and prefix-sum searches touch ``log2(size)`` levels, each level as one vectorized
operation over the whole batch of indices. Parents are recomputed from their children (never
updated by deltas), so rounding errors do not accumulate.
"""

from __future__ import annotations

import torch


class _SegmentTree:
    neutral: float

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._depth = max(0, (capacity - 1).bit_length())
        self._size = 1 << self._depth
        self._tree = torch.full((2 * self._size,), self.neutral, dtype=torch.float64)

    @staticmethod
    def _combine(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @property
    def leaves(self) -> torch.Tensor:
        """The ``capacity`` leaf values (a view)."""
        return self._tree[self._size : self._size + self.capacity]

    def __getitem__(self, index: torch.Tensor) -> torch.Tensor:
        return self._tree[index + self._size]

    def __setitem__(self, index: torch.Tensor, value: torch.Tensor) -> None:
        """Sets leaves ``index`` (distinct int64 indices) to ``value`` and updates parents."""
        node = index + self._size
        self._tree[node] = value.to(torch.float64)
        for _ in range(self._depth):
            # Siblings share a parent; writing the same recomputed value twice is harmless.
            node = node // 2
            self._tree[node] = self._combine(self._tree[2 * node], self._tree[2 * node + 1])

    def reduce(self) -> torch.Tensor:
        """The reduction over all leaves (a 0-dim tensor)."""
        return self._tree[1]

    def load_leaves(self, values: torch.Tensor) -> None:
        """Replaces all ``capacity`` leaves and rebuilds the tree level by level."""
        self._tree.fill_(self.neutral)
        self.leaves.copy_(values)
        width = self._size
        while width > 1:
            children = self._tree[width : 2 * width]
            width //= 2
            self._tree[width : 2 * width] = self._combine(children[0::2], children[1::2])

    def clear(self) -> None:
        self._tree.fill_(self.neutral)


class SumTree(_SegmentTree):
    """Segment tree whose nodes hold the sum of their leaves; empty leaves are 0.

    Examples:
        >>> tree = SumTree(4)
        >>> tree[torch.arange(4)] = torch.tensor([1.0, 2.0, 3.0, 4.0])
        >>> tree.reduce(), tree.find(torch.tensor([0.5, 1.0, 5.9, 6.0]))
        (tensor(10., dtype=torch.float64), tensor([0, 1, 2, 3]))
    """

    neutral = 0.0

    @staticmethod
    def _combine(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return left + right

    def find(self, mass: torch.Tensor) -> torch.Tensor:
        """For each ``mass`` in ``[0, total)``, the leaf ``j`` with
        ``sum(leaves[:j]) <= mass < sum(leaves[:j + 1])``."""
        mass = mass.to(torch.float64)
        node = torch.ones(mass.shape, dtype=torch.int64)
        for _ in range(self._depth):
            left = 2 * node
            left_sum = self._tree[left]
            go_right = mass >= left_sum
            mass = torch.where(go_right, mass - left_sum, mass)
            node = left + go_right
        return node - self._size


class MinTree(_SegmentTree):
    """Segment tree whose nodes hold the minimum of their leaves; empty leaves are +inf."""

    neutral = float("inf")

    @staticmethod
    def _combine(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return torch.minimum(left, right)
