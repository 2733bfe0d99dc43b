"""A tanh-squashed normal distribution rescaled to box action bounds.

The math lives in three functions over precomputed bound constants (``center``,
``half_range``, ``log_const``) so that a policy can sample and score actions at every env step
without building a ``Distribution`` object; ``TanhNormal`` wraps the same functions for losses.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import distributions as D

_LOG_2 = math.log(2.0)
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def tanh_bounds_constants(
    low: torch.Tensor, high: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(center, half_range, log_const)`` of the affine map from ``[-1, 1]`` to ``[low, high]``.

    ``log_const = log(half_range) + log(2 pi) / 2 + 2 log 2`` gathers the per-dimension constants
    of the log-density.
    """
    center = (high + low) / 2
    half_range = (high - low) / 2
    return center, half_range, half_range.log() + (_HALF_LOG_2PI + 2.0 * _LOG_2)


def tanh_normal_squash(
    x: torch.Tensor, center: torch.Tensor, half_range: torch.Tensor
) -> torch.Tensor:
    """``center + half_range * tanh(x)``: a pre-tanh value to an action."""
    return torch.addcmul(center, half_range, torch.tanh(x))


def tanh_normal_log_prob_pre_tanh(
    x: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor, log_const: torch.Tensor
) -> torch.Tensor:
    """Log-density of the action ``squash(x)``, summed over the last dimension.

    Per dimension: ``log N(x; loc, scale) - log(1 - tanh(x)^2) - log(half_range)``, where
    ``log(1 - tanh(x)^2) = 2 (log 2 - x - softplus(-2x))`` avoids the cancellation of
    ``1 - tanh(x)^2`` for large ``|x|``.
    """
    return tanh_normal_neg_log_prob_terms(x, loc, scale, log_const).sum(-1).neg_()


def tanh_normal_neg_log_prob_terms(
    x: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor, log_const: torch.Tensor
) -> torch.Tensor:
    """The negated terms of :func:`tanh_normal_log_prob_pre_tanh`, one per dimension, before
    the sum."""
    z = (x - loc) / scale
    # Written as tensor-tensor ops with scalar kernel arguments: a Python number as an operand
    # costs about twice as much per call at policy batch sizes (called at every env step).
    # softplus with beta=-2 is -softplus(-2x) / 2, so half = x + softplus(-2x) - z^2 / 4.
    half = torch.add(x, F.softplus(x, beta=-2.0), alpha=-2.0).addcmul_(z, z, value=-0.25)
    # per dimension: log(scale) + log_const - 2 * half, the negated log-density
    return torch.add(scale.log().add_(log_const), half, alpha=-2.0)


def tanh_normal_log_prob(
    action: torch.Tensor,
    loc: torch.Tensor,
    scale: torch.Tensor,
    center: torch.Tensor,
    half_range: torch.Tensor,
    log_const: torch.Tensor,
) -> torch.Tensor:
    """Log-density of stored actions; actions on a bound are moved one float step inside."""
    y = (action - center) / half_range
    bound = 1.0 - torch.finfo(y.dtype).eps
    x = torch.atanh(y.clamp_(-bound, bound))
    return tanh_normal_log_prob_pre_tanh(x, loc, scale, log_const)


class TanhNormal(D.Distribution):
    """``low + (high - low) * (tanh(x) + 1) / 2`` with ``x ~ Normal(loc, scale)``.

    The last dimension is the event dimension: ``log_prob`` sums over it and returns one value
    per action. ``log_prob`` of an action applies the exact change of variables
    ``log N(x) - sum(log(1 - tanh(x)^2) + log((high - low) / 2))``. Stored actions may sit
    exactly on a bound (``tanh`` rounds to ``+-1`` in float32 for ``|x| > 9``), where ``atanh``
    is infinite: ``log_prob`` clamps them one float step inside the bounds first.
    ``rsample_and_log_prob`` returns a sample together with its log-probability computed from
    the pre-tanh value, which is exact and differentiable even when the sample saturates.

    The mode (``mode``, ``deterministic_sample``) is the rescaled ``tanh(loc)``: the image of the
    normal's mode, used as the deterministic action. The mean and the entropy have no closed
    form and are not provided; estimate the entropy as ``-log_prob`` of a sample.

    Args:
        loc: mean of the pre-tanh normal, ``[..., action_dim]``.
        scale: standard deviation of the pre-tanh normal, same shape, positive.
        low: lower action bound (broadcastable to ``loc``).
        high: upper action bound (broadcastable to ``loc``), ``> low``.
        constants: ``tanh_bounds_constants(low, high)`` when the caller holds them already
            (an actor computes them once), so they are not recomputed per distribution.

    Examples:
        >>> import torch
        >>> dist = TanhNormal(torch.zeros(4, 2), torch.ones(4, 2), low=-2.0, high=2.0)
        >>> action = dist.sample()
        >>> bool(((action >= -2) & (action <= 2)).all()), dist.log_prob(action).shape
        (True, torch.Size([4]))
        >>> dist.mode
        tensor([[0., 0.],
                [0., 0.],
                [0., 0.],
                [0., 0.]])
    """

    arg_constraints = {"loc": D.constraints.real, "scale": D.constraints.positive}
    has_rsample = True

    def __init__(
        self,
        loc: torch.Tensor,
        scale: torch.Tensor,
        low: torch.Tensor | float = -1.0,
        high: torch.Tensor | float = 1.0,
        *,
        constants: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        self.loc = loc
        self.scale = scale
        self.low = torch.as_tensor(low, dtype=loc.dtype, device=loc.device)
        self.high = torch.as_tensor(high, dtype=loc.dtype, device=loc.device)
        if constants is None:
            constants = tanh_bounds_constants(self.low, self.high)
        self._center, self._half_range, self._log_const = constants
        # Argument validation syncs with the device and costs as much as the sampling itself.
        super().__init__(loc.shape[:-1], loc.shape[-1:], validate_args=False)

    @property
    def support(self) -> D.constraints.Constraint:
        return D.constraints.independent(D.constraints.interval(self.low, self.high), 1)

    def _pre_tanh_sample(
        self, sample_shape: torch.Size | list[int] | tuple[int, ...]
    ) -> torch.Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        noise = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        return torch.addcmul(self.loc, self.scale, noise)

    def rsample(self, sample_shape: torch.Size | list[int] | tuple[int, ...] = ()) -> torch.Tensor:
        return tanh_normal_squash(
            self._pre_tanh_sample(sample_shape), self._center, self._half_range
        )

    def rsample_and_log_prob(
        self, sample_shape: torch.Size | list[int] | tuple[int, ...] = ()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterized sample and its exact log-probability (from the pre-tanh value)."""
        x = self._pre_tanh_sample(sample_shape)
        log_prob = tanh_normal_log_prob_pre_tanh(x, self.loc, self.scale, self._log_const)
        return tanh_normal_squash(x, self._center, self._half_range), log_prob

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        return tanh_normal_log_prob(
            value, self.loc, self.scale, self._center, self._half_range, self._log_const
        )

    def log_prob_pre_tanh(self, pre_tanh: torch.Tensor) -> torch.Tensor:
        """Log-probability of the action ``squash(pre_tanh)``, exact even where tanh saturates."""
        return tanh_normal_log_prob_pre_tanh(pre_tanh, self.loc, self.scale, self._log_const)

    @property
    def mode(self) -> torch.Tensor:
        return tanh_normal_squash(self.loc, self._center, self._half_range)

    @property
    def deterministic_sample(self) -> torch.Tensor:
        """The mode: the action a deterministic policy takes."""
        return self.mode
