"""Accumulation of logged values between two logger writes, without host syncs."""

from __future__ import annotations

from collections.abc import Mapping

import torch


class MetricAccumulator:
    """Sums values per name on their device; :meth:`flush` syncs once and returns the means.

    Values may be Python numbers or scalar tensors. Tensors stay on their device until the
    flush, which stacks them and moves them to the host in one transfer.

    Examples:
        >>> acc = MetricAccumulator()
        >>> acc.add({"loss": torch.tensor(1.0)}); acc.add({"loss": torch.tensor(3.0)})
        >>> acc.flush()
        {'loss': 2.0}
    """

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor | float] = {}
        self._counts: dict[str, int] = {}

    def add(self, values: Mapping[str, torch.Tensor | float]) -> None:
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                value = value.detach().float().reshape(())
            previous = self._sums.get(name)
            self._sums[name] = value if previous is None else previous + value
            self._counts[name] = self._counts.get(name, 0) + 1

    def __bool__(self) -> bool:
        return bool(self._sums)

    def flush(self) -> dict[str, float]:
        """Returns the mean of each name since the last flush, and starts over."""
        names = list(self._sums)
        tensors = [n for n in names if isinstance(self._sums[n], torch.Tensor)]
        means: dict[str, float] = {}
        if tensors:
            device = self._sums[tensors[0]].device  # type: ignore[union-attr]
            stacked = torch.stack([self._sums[n].to(device) for n in tensors])  # type: ignore[union-attr]
            for name, total in zip(tensors, stacked.tolist(), strict=True):
                means[name] = total / self._counts[name]
        for name in names:
            if name not in means:
                means[name] = float(self._sums[name]) / self._counts[name]
        self._sums.clear()
        self._counts.clear()
        return {name: means[name] for name in names}

    def state_dict(self) -> dict[str, dict[str, float | int]]:
        sums = {n: float(v) for n, v in self._sums.items()}
        return {"sums": sums, "counts": dict(self._counts)}

    def load_state_dict(self, state_dict: Mapping[str, Mapping[str, float | int]]) -> None:
        self._sums = {n: float(v) for n, v in state_dict["sums"].items()}
        self._counts = {n: int(c) for n, c in state_dict["counts"].items()}
