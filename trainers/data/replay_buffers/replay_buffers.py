"""Replay buffers: a storage, a writer that fills it and a sampler that reads it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
from tensordict import TensorDictBase

from trainers.data.replay_buffers.samplers import RandomSampler, Sampler
from trainers.data.replay_buffers.storages import TensorStorage
from trainers.data.replay_buffers.writers import RoundRobinWriter, Writer
from trainers.keys import INDEX, MASK, PRIORITY_WEIGHT, TD_ERROR

NestedKey = str | tuple[str, ...]


def valid_transitions(batch: TensorDictBase) -> TensorDictBase:
    """A collector batch ``[num_envs, T]`` flattened to the rows a buffer stores: the frames
    its validity mask (``MASK``) keeps, or all of them without a mask."""
    mask = batch.get(MASK, None)
    return batch.reshape(-1) if mask is None else batch[mask]


class ReplayBuffer:
    """Stores TensorDict transitions and samples batches of them.

    Data goes in flat: :meth:`extend` takes a TensorDict of batch size ``[N]`` (one row per
    transition). A collector batch ``[num_envs, T]`` must be flattened first
    (``td.reshape(-1)``; :class:`trainers.hooks.ReplayBufferTrainer` does it), because guessing
    which dimension indexes transitions would silently store the wrong rows.

    Every sampled batch holds ``INDEX`` (the storage rows, for priority updates) and the
    sampler's extra entries (``PRIORITY_WEIGHT`` for :class:`PrioritizedSampler`).

    Writing, sampling and priority updates hold a lock, so a background collector thread may
    extend the buffer while the trainer samples from it.

    Args:
        storage: where rows live (:class:`LazyTensorStorage`, :class:`LazyMemmapStorage`).
        sampler: how rows are drawn; defaults to :class:`RandomSampler`.
        writer: where new rows go; defaults to :class:`RoundRobinWriter`.
        batch_size: default number of rows per :meth:`sample`; > 0, or None to require it at
            each call.
        transform: applied to every sampled batch (TensorDict -> TensorDict).

    Examples:
        >>> rb = ReplayBuffer(storage=LazyTensorStorage(100_000), batch_size=256)
        >>> rb.extend(collector_batch.reshape(-1))
        >>> batch = rb.sample()  # batch size [256], holds "index"
    """

    priority_key: NestedKey = TD_ERROR

    def __init__(
        self,
        *,
        storage: TensorStorage,
        sampler: Sampler | None = None,
        writer: Writer | None = None,
        batch_size: int | None = None,
        transform: Callable[[TensorDictBase], TensorDictBase] | None = None,
    ) -> None:
        if batch_size is not None:
            _check_batch_size(batch_size)
        self.storage = storage
        self.sampler = sampler if sampler is not None else RandomSampler()
        self.writer = writer if writer is not None else RoundRobinWriter()
        self.batch_size = batch_size
        self.transform = transform
        self._lock = threading.RLock()
        self.writer.register_storage(storage)
        self.sampler.register_storage(storage)

    def __len__(self) -> int:
        return len(self.storage)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(storage={type(self.storage).__name__}"
            f"(max_size={self.storage.max_size}), sampler={type(self.sampler).__name__}, "
            f"writer={type(self.writer).__name__}, batch_size={self.batch_size}, len={len(self)})"
        )

    def extend(self, data: TensorDictBase) -> torch.Tensor:
        """Writes the rows of ``data`` (batch size ``[N]``) and returns their indices ``[N]``.

        ``INDEX`` and ``PRIORITY_WEIGHT`` entries (left over from a sampled batch) are not stored.
        """
        if not isinstance(data, TensorDictBase):
            raise TypeError(f"extend expects a TensorDict, got {type(data).__name__}")
        if data.batch_dims != 1:
            raise ValueError(
                f"extend expects a flat TensorDict of batch size [N], got {list(data.batch_size)}; "
                "flatten it first with data.reshape(-1) (and drop padding frames, e.g. "
                'data[data["collector", "mask"]])'
            )
        if data.shape[0] == 0:
            return torch.empty(0, dtype=torch.int64)
        with self._lock:
            index = self.writer.extend(data.exclude(INDEX, PRIORITY_WEIGHT))
            self.sampler.extend(index)
        return index

    def add(self, data: TensorDictBase) -> int:
        """Writes one transition (batch size ``[]``) and returns its index."""
        if not isinstance(data, TensorDictBase) or data.batch_dims != 0:
            shape = list(data.batch_size) if isinstance(data, TensorDictBase) else None
            raise ValueError(f"add expects one TensorDict row of batch size [], got {shape}")
        return int(self.extend(data.unsqueeze(0))[0])

    def sample(self, batch_size: int | None = None) -> TensorDictBase:
        """Draws a batch of ``batch_size`` rows (default: the buffer's ``batch_size``)."""
        if batch_size is None:
            batch_size = self.batch_size
            if batch_size is None:
                raise ValueError(
                    "no batch size: pass sample(batch_size=...) or build the buffer with "
                    "batch_size=..."
                )
        _check_batch_size(batch_size)
        with self._lock:
            storage_len = len(self.storage)
            if storage_len == 0:
                raise RuntimeError(
                    f"cannot sample from an empty {type(self).__name__}: extend it with data first"
                )
            index, extras = self.sampler.sample(storage_len, batch_size)
            batch = self.storage.get(index)
        batch.set(INDEX, index.to(batch.device))
        for key, value in extras.items():
            batch.set(key, value.to(batch.device))
        if self.transform is not None:
            batch = self.transform(batch)
        return batch

    def iterate(self, batch_size: int | None = None) -> Iterator[TensorDictBase]:
        """Yields batches until the sampler ends an epoch (forever for samplers without
        epochs, such as :class:`RandomSampler` and :class:`PrioritizedSampler`)."""
        while True:
            yield self.sample(batch_size)
            if self.sampler.ran_out:
                return

    def __iter__(self) -> Iterator[TensorDictBase]:
        return self.iterate()

    def update_priority(self, index: torch.Tensor, priority: torch.Tensor | float) -> None:
        """Sets the priority of rows ``index`` (no-op unless the sampler is prioritized)."""
        with self._lock:
            self.sampler.update_priority(index, priority)

    def update_tensordict_priority(self, data: TensorDictBase) -> None:
        """Updates priorities from a sampled batch holding ``INDEX`` and ``priority_key``."""
        missing = [k for k in (INDEX, self.priority_key) if k not in data.keys(True)]
        if missing:
            raise KeyError(
                f"update_tensordict_priority needs {missing} in the TensorDict (a sampled batch "
                f"with its {self.priority_key!r} written by the loss); it has "
                f"{sorted(map(str, data.keys(True)))}"
            )
        self.update_priority(data.get(INDEX), data.get(self.priority_key))

    def empty(self) -> None:
        """Removes every row (the storage keeps its allocation)."""
        with self._lock:
            self.storage.empty()
            self.writer.empty()
            self.sampler.empty()

    def state_dict(self) -> dict[str, Any]:
        """``{"storage": ..., "writer": ..., "sampler": ...}``: contents, cursor, sampler state.

        Only tensors, ints, dicts and None, so ``torch.load(weights_only=True)`` reads it back.
        The storage's tensors are the live table, not a copy (see
        ``TensorStorage.state_dict``): save them before the buffer is written again.
        """
        with self._lock:
            return {
                "storage": self.storage.state_dict(),
                "writer": self.writer.state_dict(),
                "sampler": self.sampler.state_dict(),
            }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        with self._lock:
            self.storage.load_state_dict(state_dict["storage"])
            self.writer.load_state_dict(state_dict["writer"])
            self.sampler.load_state_dict(state_dict["sampler"])


class TensorDictReplayBuffer(ReplayBuffer):
    """A :class:`ReplayBuffer` whose priority updates read a configurable key.

    Args:
        priority_key: the entry of a sampled batch that :meth:`update_tensordict_priority`
            reads as the new priority; defaults to ``TD_ERROR``.
        **kwargs: as :class:`ReplayBuffer`.

    Examples:
        >>> rb = TensorDictReplayBuffer(
        ...     storage=LazyMemmapStorage(1_000_000),
        ...     sampler=PrioritizedSampler(1_000_000, alpha=0.7, beta=0.5),
        ...     batch_size=256,
        ... )
        >>> batch = rb.sample()
        >>> batch["td_error"] = td_error.abs()
        >>> rb.update_tensordict_priority(batch)
    """

    def __init__(
        self,
        *,
        storage: TensorStorage,
        sampler: Sampler | None = None,
        writer: Writer | None = None,
        batch_size: int | None = None,
        transform: Callable[[TensorDictBase], TensorDictBase] | None = None,
        priority_key: NestedKey = TD_ERROR,
    ) -> None:
        super().__init__(
            storage=storage,
            sampler=sampler,
            writer=writer,
            batch_size=batch_size,
            transform=transform,
        )
        self.priority_key = priority_key


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
