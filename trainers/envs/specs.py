"""Per-env specs of observations and actions.

A spec describes one env's tensor: ``shape`` excludes the leading batch dimension
``[num_envs]``. ``rand(batch_shape)`` draws uniformly random values (from torch's global
generator, so ``torch.manual_seed`` makes it reproducible) and ``is_in(x)`` checks a batched
value against the spec.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

ShapeLike = Sequence[int] | torch.Size | int


def _as_shape(shape: ShapeLike) -> torch.Size:
    return torch.Size([shape]) if isinstance(shape, int) else torch.Size(shape)


class TensorSpec:
    """Base of the specs: a per-env ``shape``, a ``dtype`` and a ``device``."""

    def __init__(self, shape: ShapeLike, dtype: torch.dtype, device: torch.device | str) -> None:
        self.shape = _as_shape(shape)
        self.dtype = dtype
        self.device = torch.device(device)

    def rand(self, batch_shape: ShapeLike = ()) -> torch.Tensor:
        """A uniformly random value of shape ``[*batch_shape, *shape]``."""
        raise NotImplementedError

    def zeros(self, batch_shape: ShapeLike = ()) -> torch.Tensor:
        """Zeros of shape ``[*batch_shape, *shape]``."""
        return torch.zeros(
            (*_as_shape(batch_shape), *self.shape), dtype=self.dtype, device=self.device
        )

    def is_in(self, x: torch.Tensor) -> bool:
        """Whether ``x`` (any batch shape) has this dtype, trailing shape and range."""
        return x.dtype == self.dtype and tuple(x.shape[x.dim() - len(self.shape) :]) == tuple(
            self.shape
        )

    def to(self, device: torch.device | str) -> TensorSpec:
        """A copy of the spec on ``device``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={tuple(self.shape)}, dtype={self.dtype})"


class Unbounded(TensorSpec):
    """Any real (or integer) value of a given shape.

    ``rand`` draws from a standard normal for floating dtypes (there is no uniform distribution
    over the reals) and uniform integers in ``[-100, 100)`` otherwise.

    Examples:
        >>> from trainers.envs.specs import Unbounded
        >>> spec = Unbounded(3)
        >>> spec.rand([4]).shape
        torch.Size([4, 3])
    """

    def __init__(
        self,
        shape: ShapeLike = (),
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__(shape, dtype, device)

    def rand(self, batch_shape: ShapeLike = ()) -> torch.Tensor:
        full = (*_as_shape(batch_shape), *self.shape)
        if self.dtype.is_floating_point:
            return torch.randn(full, dtype=self.dtype, device=self.device)
        return torch.randint(-100, 100, full, dtype=self.dtype, device=self.device)

    def to(self, device: torch.device | str) -> Unbounded:
        return Unbounded(self.shape, self.dtype, device)


class Bounded(TensorSpec):
    """Values in the box ``[low, high]`` (element-wise, broadcast to ``shape``).

    Examples:
        >>> from trainers.envs.specs import Bounded
        >>> spec = Bounded(-2.0, 2.0, shape=(1,))
        >>> spec.is_in(spec.rand([8]))
        True
    """

    def __init__(
        self,
        low: float | torch.Tensor,
        high: float | torch.Tensor,
        shape: ShapeLike | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        low_t = torch.as_tensor(low, dtype=dtype, device=device)
        high_t = torch.as_tensor(high, dtype=dtype, device=device)
        if shape is None:
            shape = torch.broadcast_shapes(low_t.shape, high_t.shape)
        super().__init__(shape, dtype, device)
        self.low = low_t.expand(self.shape).clone()
        self.high = high_t.expand(self.shape).clone()
        if bool((self.low > self.high).any()):
            raise ValueError(f"Bounded spec needs low <= high, got low={low!r}, high={high!r}")

    def rand(self, batch_shape: ShapeLike = ()) -> torch.Tensor:
        full = (*_as_shape(batch_shape), *self.shape)
        if self.dtype.is_floating_point:
            u = torch.rand(full, dtype=self.dtype, device=self.device)
            return self.low + u * (self.high - self.low)
        u = torch.rand(full, dtype=torch.float64, device=self.device)
        span = (self.high - self.low + 1).to(torch.float64)
        return (self.low + (u * span).floor().to(self.dtype)).clamp(self.low, self.high)

    def is_in(self, x: torch.Tensor) -> bool:
        if not super().is_in(x):
            return False
        return bool(((x >= self.low) & (x <= self.high)).all())

    def to(self, device: torch.device | str) -> Bounded:
        return Bounded(self.low, self.high, self.shape, self.dtype, device)

    def __repr__(self) -> str:
        return (
            f"Bounded(shape={tuple(self.shape)}, dtype={self.dtype}, "
            f"low={self.low.tolist()}, high={self.high.tolist()})"
        )


class Categorical(TensorSpec):
    """An integer in ``[0, n)``; one per env, so ``shape`` is ``()``.

    Examples:
        >>> from trainers.envs.specs import Categorical
        >>> spec = Categorical(2)
        >>> spec.rand([4]).dtype
        torch.int64
    """

    def __init__(
        self, n: int, dtype: torch.dtype = torch.int64, device: torch.device | str = "cpu"
    ) -> None:
        if n < 1:
            raise ValueError(f"Categorical spec needs n >= 1, got n={n}")
        super().__init__((), dtype, device)
        self.n = n

    def rand(self, batch_shape: ShapeLike = ()) -> torch.Tensor:
        return torch.randint(
            0, self.n, _as_shape(batch_shape), dtype=self.dtype, device=self.device
        )

    def is_in(self, x: torch.Tensor) -> bool:
        if x.dtype != self.dtype:
            return False
        return bool(((x >= 0) & (x < self.n)).all())

    def to(self, device: torch.device | str) -> Categorical:
        return Categorical(self.n, self.dtype, device)

    def __repr__(self) -> str:
        return f"Categorical(n={self.n}, dtype={self.dtype})"
