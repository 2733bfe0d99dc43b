"""Accumulation of logged values between two logger writes, without host syncs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import torch

Scalar = torch.Tensor | float


class WindowValue(NamedTuple):
    """A logged value that its log window combines by ``how`` (``max``, ``min`` or ``sum``)
    instead of averaging: a batch's largest reward, over several batches, is their largest."""

    value: Scalar
    how: str


WINDOW_REDUCTIONS = ("max", "min", "sum")
Value = Scalar | tuple[Scalar, Scalar] | WindowValue


class MetricAccumulator:
    """Sums values per name on their device; :meth:`flush` syncs once and returns the means.

    A value is a Python number or scalar tensor (each counts once), a ``(sum, count)`` pair
    (e.g. the summed returns of the episodes that ended in a batch, and how many ended) so that
    the mean is over items, not over calls, or a :class:`WindowValue`, combined by its own
    reduction (the window's max, min or sum). Tensors stay on their device until the flush, which
    stacks them and moves them to the host in one transfer; names whose count is 0 are dropped.

    Examples:
        >>> acc = MetricAccumulator()
        >>> acc.add({"loss": torch.tensor(1.0)}); acc.add({"loss": torch.tensor(3.0)})
        >>> acc.add({"r_max": WindowValue(torch.tensor(5.0), "max")})
        >>> acc.add({"r_max": WindowValue(torch.tensor(4.0), "max")})
        >>> acc.flush()
        {'loss': 2.0, 'r_max': 5.0}
    """

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor | float] = {}
        self._counts: dict[str, torch.Tensor | float] = {}
        self._reductions: dict[str, str] = {}  # names combined by max/min/sum, not averaged

    def add(self, values: Mapping[str, Value]) -> None:
        for name, value in values.items():
            if isinstance(value, WindowValue):
                self._combine(name, value)
                continue
            total, count = value if isinstance(value, tuple) else (value, 1.0)
            if isinstance(total, torch.Tensor):
                total = total.detach().float().reshape(())
            if isinstance(count, torch.Tensor):
                count = count.detach().float().reshape(())
            self._sums[name] = total + self._sums.get(name, 0.0)
            self._counts[name] = count + self._counts.get(name, 0.0)

    def _combine(self, name: str, value: WindowValue) -> None:
        """Keeps the running max/min/sum as the name's sum, with a count of 1."""
        if value.how not in WINDOW_REDUCTIONS:
            raise ValueError(
                f"WindowValue.how must be one of {WINDOW_REDUCTIONS}, got {value.how!r}"
            )
        if self._reductions.setdefault(name, value.how) != value.how:
            raise ValueError(
                f"{name!r} is logged with reductions {self._reductions[name]!r} and {value.how!r}"
            )
        new = value.value
        if isinstance(new, torch.Tensor):
            new = new.detach().float().reshape(())
        previous = self._sums.get(name)
        if previous is not None:
            if value.how == "sum":
                new = previous + new
            else:
                device = new.device if isinstance(new, torch.Tensor) else None
                pair = torch.as_tensor(previous, device=device), torch.as_tensor(new, device=device)
                new = torch.maximum(*pair) if value.how == "max" else torch.minimum(*pair)
        self._sums[name] = new
        self._counts[name] = 1.0

    @torch.no_grad()
    def add_tensors(self, values: Mapping[str, torch.Tensor]) -> None:
        """Adds one-element tensors, each counting once: the per-optimization-step path.

        Sums of names seen before grow in place, all with one ``_foreach_add_`` (``add`` builds
        a new sum tensor per value, and one ``add_`` per value costs a dispatch each).
        """
        totals, increments = [], []
        for name, value in values.items():
            total = self._sums.get(name)
            if isinstance(total, torch.Tensor):
                totals.append(total)
                increments.append(value if value.dim() == 0 else value.reshape(()))
            else:  # a new tensor: the sums own their storage, so in-place adds are safe
                self._sums[name] = value.float().reshape(()) + (total or 0.0)
            self._counts[name] = self._counts.get(name, 0.0) + 1.0
        if totals:
            torch._foreach_add_(totals, increments)

    def __bool__(self) -> bool:
        return bool(self._sums)

    def flush(self) -> dict[str, float]:
        """Returns the mean of each name since the last flush, and starts over."""
        names = list(self._sums)
        if not names:
            return {}
        values = [*self._sums.values(), *self._counts.values()]
        tensors = [v for v in values if isinstance(v, torch.Tensor)]
        device = tensors[0].device if tensors else torch.device("cpu")
        as_tensor = [torch.as_tensor(self._sums[n], device=device) for n in names]
        as_tensor += [torch.as_tensor(self._counts[n], device=device) for n in names]
        host = torch.stack(as_tensor).tolist()
        sums, counts = host[: len(names)], host[len(names) :]
        self._sums.clear()
        self._counts.clear()
        return {n: s / c for n, s, c in zip(names, sums, counts, strict=True) if c > 0}

    def state_dict(self) -> dict[str, dict[str, float] | dict[str, str]]:
        return {
            "sums": {n: float(v) for n, v in self._sums.items()},
            "counts": {n: float(c) for n, c in self._counts.items()},
            "reductions": dict(self._reductions),
        }

    def load_state_dict(self, state_dict: Mapping[str, Mapping[str, float | str]]) -> None:
        self._sums = {n: float(v) for n, v in state_dict["sums"].items()}
        self._counts = {n: float(c) for n, c in state_dict["counts"].items()}
        self._reductions = {n: str(how) for n, how in state_dict.get("reductions", {}).items()}
