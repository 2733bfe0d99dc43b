"""Atomic checkpoint files: one ``.pt`` file (``torch``) or a memory-mapped directory.

The backend is chosen by the ``CKPT_BACKEND`` environment variable, as in the reference:
``torch`` (default) writes one file with ``torch.save``; ``torchsnapshot`` writes a directory
whose tensors are memory-mapped files (tensordict's memmap format), so a replay buffer larger
than RAM is streamed to disk and read back lazily. The torchsnapshot package itself is not used:
it is unmaintained and does not support current torch; the directory format below gives the same
property (tensors larger than memory) with one dependency fewer.

Both backends write to a temporary path first and rename it into place, so a crash during a save
leaves the previous checkpoint intact; each save first removes the temporaries that failed or
killed saves of the same checkpoint left behind (one writer per checkpoint path). Both load with
``torch.load(weights_only=True)``: a checkpoint cannot execute code. A directory records the size
of each tensor file, so a truncated one is rejected instead of read back padded with zeros.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase

BACKENDS = ("torch", "torchsnapshot")
FORMAT = "trainrl-checkpoint"
_META_FILE = "meta.pt"
_TENSORS_DIR = "tensors"
_TENSOR_REF = "__tensor_ref__"
_TENSORDICT = "__tensordict__"
_TENSOR_BYTES = "tensor_bytes"  # in meta.pt: the byte size of each tensor file
# Tensors at least this large are returned memory-mapped by the directory backend; smaller ones
# (parameters, optimizer moments) are read into ordinary tensors so training never writes through
# to the checkpoint's files.
MEMMAP_MIN_BYTES = 16 * 2**20


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, or was not written by trainrl."""


def backend_from_env() -> str:
    """Returns the checkpoint backend named by ``CKPT_BACKEND`` (default ``torch``)."""
    backend = os.environ.get("CKPT_BACKEND", "torch")
    if backend not in BACKENDS:
        raise ValueError(f"CKPT_BACKEND={backend!r} is not supported; use one of {BACKENDS}")
    return backend


def save_checkpoint(state: dict[str, Any], path: str | Path, backend: str) -> None:
    """Writes ``state`` atomically to ``path`` (a file for ``torch``, a directory otherwise)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "state": _encode(state)}
    _remove_temporaries(path)
    tmp = path.with_name(f"{_tmp_prefix(path)}{os.getpid()}")
    if backend == "torch":
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return
    _write_directory(payload, tmp)
    _swap_directory(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Reads a checkpoint written by :func:`save_checkpoint`, whichever backend wrote it."""
    path = Path(path)
    if not path.exists() and _previous_dir(path).is_dir():
        path = _previous_dir(path)  # a crash happened between the two renames of a save
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    payload = _read_directory(path) if path.is_dir() else _load_marked(path, path)
    return _decode(payload["state"])


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}.tmp-"


def _remove_temporaries(path: Path) -> None:
    """Removes what earlier saves of ``path`` that raised or were killed left behind."""
    prefix = _tmp_prefix(path)
    for stale in path.parent.iterdir():
        if not stale.name.startswith(prefix):
            continue
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def _load_marked(file: Path, path: Path) -> dict[str, Any]:
    """``torch.load``s ``file`` (part of checkpoint ``path``) and checks trainrl's marker."""
    try:
        payload = torch.load(file, weights_only=True)
    except Exception as err:  # truncated files raise a zoo of pickle/zip errors
        what = "file" if file == path else file.name
        raise CheckpointError(
            f"{path} is not a readable trainrl checkpoint (truncated or foreign {what}): {err}"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} was not written by trainrl (no {FORMAT!r} marker)")
    return payload


def _write_directory(payload: dict[str, Any], tmp: Path) -> None:
    tmp.mkdir(parents=True)
    tensors: dict[str, Any] = {}
    meta = _extract_tensors(payload, tensors)
    meta[_TENSOR_BYTES] = {key: t.numel() * t.element_size() for key, t in tensors.items()}
    # memmap() streams each tensor to its own file; memory-mapped sources are copied page-wise.
    TensorDict(tensors, batch_size=[]).memmap(tmp / _TENSORS_DIR)
    with open(tmp / _META_FILE, "wb") as f:
        torch.save(meta, f)
        f.flush()
        os.fsync(f.fileno())


def _read_directory(path: Path) -> dict[str, Any]:
    meta_file = path / _META_FILE
    if not meta_file.is_file():
        raise CheckpointError(
            f"{path} is a directory without {_META_FILE}, so not a trainrl checkpoint "
            f"(CKPT_BACKEND=torchsnapshot writes {_META_FILE} and {_TENSORS_DIR}/)"
        )
    meta = _load_marked(meta_file, path)
    # Checked before reading: a memory-mapped read pads a short file with zeros, silently.
    # Directories written before the sizes were recorded have none to check.
    for key, expected in meta.get(_TENSOR_BYTES, {}).items():
        file = path / _TENSORS_DIR / f"{key}.memmap"  # tensordict's name for entry ``key``
        size = file.stat().st_size if file.is_file() else 0  # empty tensors have no file
        if size != expected:
            raise CheckpointError(
                f"{path} is truncated: its tensor file {file} has {size} bytes, {expected} expected"
            )
    try:
        tensors = TensorDict.load_memmap(path / _TENSORS_DIR)
        return _insert_tensors(meta, tensors)
    except Exception as err:
        raise CheckpointError(
            f"{path} is not a readable trainrl checkpoint (truncated or foreign "
            f"{_TENSORS_DIR}/ directory): {err}"
        ) from err


def _previous_dir(path: Path) -> Path:
    return path.with_name(f".{path.name}.previous")


def _swap_directory(tmp: Path, path: Path) -> None:
    previous = _previous_dir(path)
    if previous.exists():
        shutil.rmtree(previous)
    if path.exists():
        os.replace(path, previous)
    os.replace(tmp, path)
    # Unlinking keeps any memory-mapped tensor loaded from the old checkpoint readable.
    shutil.rmtree(previous, ignore_errors=True)


def _extract_tensors(obj: Any, out: dict[str, Any]) -> Any:
    """Replaces every tensor in ``obj`` by a reference into ``out``."""
    if isinstance(obj, torch.Tensor):
        key = f"t{len(out)}"
        out[key] = obj.detach()
        return {_TENSOR_REF: key}
    if isinstance(obj, dict):
        return {k: _extract_tensors(v, out) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_extract_tensors(v, out) for v in obj)
    return obj


def _insert_tensors(obj: Any, tensors: TensorDictBase) -> Any:
    if isinstance(obj, dict) and _TENSOR_REF in obj:
        tensor = tensors.get(obj[_TENSOR_REF])
        if tensor.numel() * tensor.element_size() >= MEMMAP_MIN_BYTES:
            return tensor  # stays on disk; consumers copy what they need
        return tensor.as_subclass(torch.Tensor).clone()
    if isinstance(obj, dict):
        return {k: _insert_tensors(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_insert_tensors(v, tensors) for v in obj)
    return obj


def _encode(obj: Any) -> Any:
    """Turns TensorDicts into tagged plain dicts so ``weights_only`` loading accepts them."""
    if isinstance(obj, TensorDictBase):
        return {
            _TENSORDICT: {k: _encode(v) for k, v in obj.items()},
            "batch_size": list(obj.batch_size),
        }
    if isinstance(obj, dict):
        return {k: _encode(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_encode(v) for v in obj)
    return obj


def _decode(obj: Any) -> Any:
    if isinstance(obj, dict) and _TENSORDICT in obj:
        items = {k: _decode(v) for k, v in obj[_TENSORDICT].items()}
        return TensorDict(items, batch_size=obj["batch_size"])
    if isinstance(obj, dict):
        return {k: _decode(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_decode(v) for v in obj)
    return obj
