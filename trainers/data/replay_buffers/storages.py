"""Storages: fixed-size tables of TensorDict rows that a writer fills and a sampler reads.

A storage holds ``max_size`` rows. It is *lazy*: the table is allocated on the first write, with
the keys, shapes and dtypes of that first TensorDict. Rows are filled from 0 upwards (the writers
never leave holes), so ``len(storage)`` is one past the highest row written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import torch
from tensordict import MemoryMappedTensor, TensorDict, TensorDictBase

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

# Rows are copied in chunks of about this many bytes when a state is loaded, so loading a
# memory-mapped checkpoint never holds more than one chunk of it in RAM.
_COPY_CHUNK_BYTES = 64 * 2**20

Index = int | slice | torch.Tensor

# Temporary scratch directories are named ``trainrl_memmap_<random>``. Their owner holds an
# exclusive lock on the file ``_OWNER_LOCK`` inside for as long as it lives; the kernel releases
# it when the owner dies, however it dies, so a later process that can take it knows the
# directory is orphaned. A lock works across containers sharing the directory, where pids do not.
_TEMP_PREFIX = "trainrl_memmap_"
_OWNER_LOCK = ".owner.lock"


class TensorStorage(ABC):
    """A lazily allocated table of ``max_size`` TensorDict rows (see the subclasses).

    Args:
        max_size: number of rows; > 0.
        device: where :meth:`get` returns rows.
    """

    def __init__(self, max_size: int, *, device: torch.device | str = "cpu") -> None:
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
            raise ValueError(
                f"{type(self).__name__} max_size must be an int >= 1, got {max_size!r}"
            )
        self.max_size = max_size
        self.device = torch.device(device)
        self._storage: TensorDictBase | None = None
        self._keys: frozenset[Any] = frozenset()
        self._len = 0

    def __len__(self) -> int:
        return self._len

    @property
    def is_allocated(self) -> bool:
        """True once the first write (or a loaded state) has fixed the rows' structure."""
        return self._storage is not None

    @abstractmethod
    def _allocate(self, row: TensorDictBase) -> TensorDictBase:
        """Returns a ``[max_size]`` table with the structure of ``row`` (batch size ``[]``)."""

    def _set_len(self, length: int) -> None:
        self._len = length

    def _table(self) -> TensorDictBase:
        if self._storage is None:
            raise RuntimeError(
                f"{type(self).__name__} is empty: nothing was written to it yet (extend the "
                "replay buffer first)"
            )
        return self._storage

    def set(self, index: int | torch.Tensor, data: TensorDictBase) -> None:
        """Writes ``data`` at ``index``: an int and a row (batch ``[]``), or a CPU int64
        tensor ``[N]`` of distinct rows and a TensorDict of batch size ``[N]``."""
        rows = data if data.batch_dims == 0 else data[0]
        if self._storage is None:
            self._storage = self._allocate(rows)
            self._keys = frozenset(self._storage.keys(include_nested=True, leaves_only=True))
        self._check_keys(data)
        self._storage[index] = data.to(self._storage.device)
        last = index if isinstance(index, int) else int(index.max())
        if last >= self._len:
            self._set_len(last + 1)

    def get(self, index: Index) -> TensorDictBase:
        """Returns the rows at ``index`` (an int, a slice or an int64 tensor) on ``device``.

        A tensor index returns a copy; an int or slice returns a view of the table.
        """
        rows = self._table()[index]
        # ``to`` walks every entry even when nothing moves: a tenth of a PPO minibatch step.
        return rows if rows.device == self.device else rows.to(self.device)

    def empty(self) -> None:
        """Forgets every row (the table stays allocated with its structure)."""
        self._set_len(0)

    def _check_keys(self, data: TensorDictBase) -> None:
        got = frozenset(data.keys(include_nested=True, leaves_only=True))
        if got != self._keys:
            missing = sorted(map(str, self._keys - got))
            extra = sorted(map(str, got - self._keys))
            raise KeyError(
                f"{type(self).__name__} rows must have the keys of the first write; the new "
                f"data misses {missing} and has extra {extra}"
            )

    def state_dict(self) -> dict[str, Any]:
        """``{"len": int, "data": nested dict of tensors [max_size, ...] or None}``.

        ``data`` holds the whole table, not a copy: plain ``torch.Tensor`` views of the
        storage's memory (for :class:`LazyMemmapStorage`, views of its memory-mapped files),
        so a checkpoint can stream them to disk without loading them into RAM.
        """
        data = None if self._storage is None else _plain_tensors(self._storage)
        return {"len": self._len, "data": data}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restores a :meth:`state_dict`; ``data`` may be a nested dict of tensors or a
        TensorDict, memory-mapped or not. Its first ``len`` rows are copied chunk by chunk."""
        length = int(state_dict["len"])
        data = state_dict["data"]
        if data is None:
            self.empty()
            return
        source = data if isinstance(data, TensorDictBase) else _as_tensordict(data)
        if source.batch_size != torch.Size([self.max_size]) or not 0 <= length <= self.max_size:
            raise ValueError(
                f"cannot load a storage state of {list(source.batch_size)} rows (len={length}) "
                f"into {type(self).__name__}(max_size={self.max_size})"
            )
        if self._storage is None:
            self._storage = self._allocate(source[0])
            self._keys = frozenset(self._storage.keys(include_nested=True, leaves_only=True))
        self._check_keys(source)
        _copy_rows(source, self._storage, length)
        self._set_len(length)


class LazyTensorStorage(TensorStorage):
    """Rows kept in memory (RAM or a GPU), allocated on the first write.

    Args:
        max_size: number of rows; > 0.
        device: where the table lives and where :meth:`get` returns rows.

    Examples:
        >>> storage = LazyTensorStorage(1000)
        >>> storage.set(torch.arange(4), TensorDict({"x": torch.ones(4, 3)}, [4]))
        >>> len(storage), storage.get(torch.tensor([0, 3]))["x"].shape
        (4, torch.Size([2, 3]))
    """

    def _allocate(self, row: TensorDictBase) -> TensorDictBase:
        table = row.apply(
            lambda t: torch.zeros((self.max_size, *t.shape), dtype=t.dtype, device=self.device),
            batch_size=[self.max_size],
            device=self.device,
        )
        return cast(TensorDictBase, table)  # apply without out= never returns None


class LazyMemmapStorage(TensorStorage):
    """Rows kept in memory-mapped files on disk, so a buffer may be larger than RAM.

    The table is written in tensordict's memmap format under ``scratch_dir / "storage"`` and its
    length in ``scratch_dir / "length.memmap"``. Constructing a storage on a ``scratch_dir``
    that already holds one (for instance after a process restart) reopens it: its rows and
    length come back without being read into memory. A replay buffer built on a reopened
    storage resumes its round-robin writer at ``len % max_size``; load the buffer's
    ``state_dict`` to resume the exact writer cursor and sampler state.

    Args:
        max_size: number of rows; > 0.
        scratch_dir: directory of the files; None uses a temporary directory that is
            deleted when the storage is garbage-collected (and, should the process be killed
            first, by the next temporary storage: :func:`remove_orphaned_scratch_dirs`).
        device: where :meth:`get` returns rows (the table itself stays on disk).

    Examples:
        >>> storage = LazyMemmapStorage(1_000_000, scratch_dir="/data/rb")
        >>> storage.set(torch.arange(4), TensorDict({"x": torch.ones(4, 3)}, [4]))
        >>> len(LazyMemmapStorage(1_000_000, scratch_dir="/data/rb"))  # reopened
        4
    """

    def __init__(
        self,
        max_size: int,
        *,
        scratch_dir: str | Path | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__(max_size, device=device)
        self._owner_lock: int | None = None  # the open, locked _OWNER_LOCK of the scratch dir
        if scratch_dir is None:
            remove_orphaned_scratch_dirs()
            self.scratch_dir = Path(tempfile.mkdtemp(prefix=_TEMP_PREFIX))
            self._owner_lock = _lock_new_owner_file(self.scratch_dir)
            weakref.finalize(self, _release_and_remove, self._owner_lock, self.scratch_dir)
        else:
            self.scratch_dir = Path(scratch_dir)
            self.scratch_dir.mkdir(parents=True, exist_ok=True)
            # Reopening a dead process's temporary directory: own it, so no sweep removes it.
            self._owner_lock = _take_owner_lock(self.scratch_dir / _OWNER_LOCK)
            if self._owner_lock is not None:
                weakref.finalize(self, os.close, self._owner_lock)
        self._length_file: MemoryMappedTensor | None = None
        if (self._table_dir / "meta.json").exists():
            self._reopen()

    @property
    def _table_dir(self) -> Path:
        return self.scratch_dir / "storage"

    @property
    def _length_path(self) -> Path:
        return self.scratch_dir / "length.memmap"

    def _reopen(self) -> None:
        table = TensorDict.load_memmap(self._table_dir)
        if table.batch_size != torch.Size([self.max_size]):
            raise ValueError(
                f"scratch_dir={str(self.scratch_dir)!r} holds a storage of "
                f"{list(table.batch_size)} rows, but max_size={self.max_size}; use the same "
                "max_size or another scratch_dir"
            )
        self._storage = table
        self._keys = frozenset(table.keys(include_nested=True, leaves_only=True))
        if self._length_path.exists():
            self._length_file = MemoryMappedTensor.from_filename(
                self._length_path, torch.int64, (1,)
            )
            self._len = int(self._length_file[0])
        else:
            self._length_file = _new_length_file(self._length_path)

    def _allocate(self, row: TensorDictBase) -> TensorDictBase:
        # The length file exists before the table, so a reopened table always has a length.
        self._length_file = _new_length_file(self._length_path)
        # An expanded row has the table's shape without its memory; memmap_like creates
        # sparse files of the full size without writing them.
        return TensorDict.memmap_like(row.cpu().expand(self.max_size), prefix=self._table_dir)

    def _set_len(self, length: int) -> None:
        self._len = length
        if self._length_file is not None:
            self._length_file[0] = length


def remove_orphaned_scratch_dirs(root: str | Path | None = None) -> list[Path]:
    """Deletes the temporary scratch directories whose owner has ended; returns them.

    A ``LazyMemmapStorage`` without a ``scratch_dir`` deletes its temporary directory when it is
    garbage-collected or the process exits, which a SIGKILL or a power loss skips; its files
    (as large as the buffer's written rows) would stay until the next reboot. Every new temporary
    storage therefore sweeps ``root`` (the temp directory by default) for directories whose
    owner lock it can take: their owner is gone. Directories without that lock are left alone.
    """
    if fcntl is None:  # no flock (Windows): nothing can be judged orphaned
        return []
    root = Path(tempfile.gettempdir() if root is None else root)
    removed: list[Path] = []
    for path in root.glob(f"{_TEMP_PREFIX}*"):
        lock = _take_owner_lock(path / _OWNER_LOCK)
        if lock is None:
            continue  # alive, not ours to judge, or already gone
        _release_and_remove(lock, path)
        removed.append(path)
    return removed


def _lock_new_owner_file(directory: Path) -> int | None:
    """Creates ``directory``'s owner lock, locked before it appears under its name (a sweep
    never sees it unlocked)."""
    if fcntl is None:
        return None
    pending = directory / f"{_OWNER_LOCK}.pending"
    descriptor = os.open(pending, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    fcntl.flock(descriptor, fcntl.LOCK_EX)
    os.rename(pending, directory / _OWNER_LOCK)
    return descriptor


def _take_owner_lock(path: Path) -> int | None:
    """An open descriptor of ``path`` holding its exclusive lock, or None when ``path`` is
    missing, locked by a live owner, or cannot be opened."""
    if fcntl is None:
        return None
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(descriptor)
        return None
    return descriptor


def _release_and_remove(lock: int | None, directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)
    if lock is not None:
        os.close(lock)


def _new_length_file(path: Path) -> MemoryMappedTensor:
    return MemoryMappedTensor.zeros((1,), dtype=torch.int64, filename=path, existsok=True)


def _plain_tensors(table: TensorDictBase) -> dict[str, Any]:
    """The table as nested dicts of plain tensors that share its memory.

    ``torch.load(weights_only=True)`` rejects the ``MemoryMappedTensor`` subclass, while a plain
    tensor view of the same memory map loads fine and costs no copy.
    """
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, torch.Tensor):
            out[key] = value.as_subclass(torch.Tensor)
        else:
            out[key] = _plain_tensors(cast(TensorDictBase, value))
    return out


def _as_tensordict(data: Mapping[str, Any]) -> TensorDictBase:
    leading = {_leading_dim(value) for value in data.values() if not _is_empty_mapping(value)}
    if len(leading) != 1:
        raise ValueError(f"storage state tensors disagree on their number of rows: {leading}")
    return TensorDict(dict(data), batch_size=[leading.pop()])


def _leading_dim(value: Any) -> int:
    if isinstance(value, Mapping):
        nested = [v for v in value.values() if not _is_empty_mapping(v)]
        return _leading_dim(nested[0])
    return int(value.shape[0])


def _is_empty_mapping(value: Any) -> bool:
    """An empty sub-table (e.g. a nested TensorDict with no entries) has no rows to count."""
    return isinstance(value, Mapping) and all(_is_empty_mapping(v) for v in value.values())


def _copy_rows(source: TensorDictBase, target: TensorDictBase, length: int) -> None:
    for key in target.keys(include_nested=True, leaves_only=True):
        src = source.get(key)
        dst = target.get(key)
        row_bytes = max(1, dst[0].numel() * dst.element_size())
        step = max(1, _COPY_CHUNK_BYTES // row_bytes)
        for start in range(0, length, step):
            stop = min(start + step, length)
            dst[start:stop].copy_(src[start:stop])
