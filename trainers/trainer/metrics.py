"""Accumulation of logged values between two logger writes, without host syncs."""

from __future__ import annotations

from collections.abc import Mapping

import torch

Value = torch.Tensor | float | tuple[torch.Tensor | float, torch.Tensor | float]


class MetricAccumulator:
    """Sums values per name on their device; :meth:`flush` syncs once and returns the means.

    A value is a Python number or scalar tensor (each counts once), or a ``(sum, count)`` pair
    (e.g. the summed returns of the episodes that ended in a batch, and how many ended) so that
    the mean is over items, not over calls. Tensors stay on their device until the flush, which
    stacks them and moves them to the host in one transfer; names whose count is 0 are dropped.

    Examples:
        >>> acc = MetricAccumulator()
        >>> acc.add({"loss": torch.tensor(1.0)}); acc.add({"loss": torch.tensor(3.0)})
        >>> acc.flush()
        {'loss': 2.0}
    """

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor | float] = {}
        self._counts: dict[str, torch.Tensor | float] = {}

    def add(self, values: Mapping[str, Value]) -> None:
        for name, value in values.items():
            total, count = value if isinstance(value, tuple) else (value, 1.0)
            if isinstance(total, torch.Tensor):
                total = total.detach().float().reshape(())
            if isinstance(count, torch.Tensor):
                count = count.detach().float().reshape(())
            self._sums[name] = total + self._sums.get(name, 0.0)
            self._counts[name] = count + self._counts.get(name, 0.0)

    @torch.no_grad()
    def add_tensors(self, values: Mapping[str, torch.Tensor]) -> None:
        """Adds one-element tensors, each counting once: the per-optimization-step path.

        Sums of names seen before grow in place, one tensor op per value (``add`` builds a new
        sum tensor per value, a few times slower at loss-term sizes).
        """
        for name, value in values.items():
            total = self._sums.get(name)
            if isinstance(total, torch.Tensor):
                total.add_(value.reshape(()))
            else:  # a new tensor: the sums own their storage, so in-place adds are safe
                self._sums[name] = value.float().reshape(()) + (total or 0.0)
            self._counts[name] = self._counts.get(name, 0.0) + 1.0

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

    def state_dict(self) -> dict[str, dict[str, float]]:
        return {
            "sums": {n: float(v) for n, v in self._sums.items()},
            "counts": {n: float(c) for n, c in self._counts.items()},
        }

    def load_state_dict(self, state_dict: Mapping[str, Mapping[str, float]]) -> None:
        self._sums = {n: float(v) for n, v in state_dict["sums"].items()}
        self._counts = {n: float(c) for n, c in state_dict["counts"].items()}
