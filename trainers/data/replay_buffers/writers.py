"""Writers: decide which storage rows new data goes to."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import torch
from tensordict import TensorDictBase

from trainers.data.replay_buffers.storages import TensorStorage


class Writer(ABC):
    """Places TensorDict rows into a storage (see :class:`RoundRobinWriter`)."""

    def __init__(self) -> None:
        self._storage: TensorStorage | None = None

    def register_storage(self, storage: TensorStorage) -> None:
        """Attaches the storage this writer fills (done by the replay buffer)."""
        self._storage = storage

    @property
    def storage(self) -> TensorStorage:
        if self._storage is None:
            raise RuntimeError(f"{type(self).__name__} has no storage; use it in a ReplayBuffer")
        return self._storage

    @abstractmethod
    def extend(self, data: TensorDictBase) -> torch.Tensor:
        """Writes the rows of ``data`` (batch ``[N]``); returns their int64 indices ``[N]``."""

    @abstractmethod
    def empty(self) -> None:
        """Forgets the write position (the storage is emptied separately)."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]: ...

    @abstractmethod
    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None: ...


class RoundRobinWriter(Writer):
    """Writes rows circularly: once the storage is full, the oldest rows are overwritten first.

    ``cursor`` is the next row to write and ``written`` counts every row ever written; both are
    in the state. Extending with more rows than the storage holds keeps the last ``max_size``.

    Examples:
        >>> rb = ReplayBuffer(storage=LazyTensorStorage(3), writer=RoundRobinWriter())
        >>> rb.extend(TensorDict({"x": torch.arange(5)}, [5]))
        tensor([0, 1, 2, 0, 1])
        >>> rb.storage.get(slice(0, 3))["x"]
        tensor([3, 4, 2])
    """

    def __init__(self) -> None:
        super().__init__()
        self.cursor = 0
        self.written = 0

    def register_storage(self, storage: TensorStorage) -> None:
        """Attaches ``storage``; a storage reopened with rows resumes after its last row."""
        super().register_storage(storage)
        self.cursor = len(storage) % storage.max_size

    def extend(self, data: TensorDictBase) -> torch.Tensor:
        storage = self.storage
        n = data.shape[0]
        index = (torch.arange(n) + self.cursor) % storage.max_size
        if n > storage.max_size:
            # Only the newest max_size rows survive; writing the others first would make the
            # result depend on the order of duplicate writes.
            storage.set(index[-storage.max_size :], data[-storage.max_size :])
        else:
            storage.set(index, data)
        self.cursor = (self.cursor + n) % storage.max_size
        self.written += n
        return index

    def empty(self) -> None:
        self.cursor = 0

    def state_dict(self) -> dict[str, Any]:
        return {"cursor": self.cursor, "written": self.written}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.cursor = int(state_dict["cursor"])
        self.written = int(state_dict["written"])
