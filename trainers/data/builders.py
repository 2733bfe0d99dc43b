"""``make_replay_buffer``: the reference helper that builds a buffer from a few settings."""

from __future__ import annotations

from pathlib import Path

import torch

from trainers.data.replay_buffers import (
    LazyMemmapStorage,
    LazyTensorStorage,
    PrioritizedSampler,
    RandomSampler,
    Sampler,
    TensorDictReplayBuffer,
    TensorStorage,
)


def make_replay_buffer(
    device: torch.device | str,
    *,
    buffer_size: int,
    batch_size: int,
    prioritized: bool = False,
    alpha: float = 0.7,
    beta: float = 0.5,
    memmap: bool = False,
    scratch_dir: str | Path | None = None,
) -> TensorDictReplayBuffer:
    """Builds a round-robin :class:`TensorDictReplayBuffer` of ``buffer_size`` transitions.

    Args:
        device: where sampled batches are returned (and where an in-memory storage lives).
        buffer_size: number of transitions kept; > 0.
        batch_size: transitions per sample; > 0.
        prioritized: sample with :class:`PrioritizedSampler` instead of uniformly.
        alpha: priority exponent (prioritized only).
        beta: importance-weight exponent (prioritized only).
        memmap: keep transitions in memory-mapped files (:class:`LazyMemmapStorage`).
        scratch_dir: directory of those files (memmap only); None uses a temporary directory.

    Examples:
        >>> rb = make_replay_buffer("cpu", buffer_size=1_000_000, batch_size=256, memmap=True)
    """
    if scratch_dir is not None and not memmap:
        raise ValueError(
            f"scratch_dir={str(scratch_dir)!r} is only used by a memory-mapped buffer; "
            "set memmap=True or leave scratch_dir=None"
        )
    storage: TensorStorage
    if memmap:
        storage = LazyMemmapStorage(buffer_size, scratch_dir=scratch_dir, device=device)
    else:
        storage = LazyTensorStorage(buffer_size, device=device)
    sampler: Sampler
    if prioritized:
        sampler = PrioritizedSampler(max_capacity=buffer_size, alpha=alpha, beta=beta)
    else:
        sampler = RandomSampler()
    return TensorDictReplayBuffer(storage=storage, sampler=sampler, batch_size=batch_size)
