"""Flush-to-zero for the training thread: denormal floats make CPU arithmetic ~100x slower.

Adam's second moment of a parameter whose gradient stays zero (a dead ReLU unit) decays by
``beta2`` every step and spends thousands of steps below 1.2e-38, in the denormal range. At
the start of SAC on HalfCheetah-v5 about 4% of the Adam moments are denormal, and the fused
Adam step costs 1.6 ms instead of 0.7 ms (``benchmarks/sac_ab.py --compare denormals``).
Flushing denormals to zero (FTZ/DAZ) removes that; the values lost are far below Adam's ``eps``
and below anything a network can use.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def denormals_flushed(enabled: bool = True) -> Iterator[bool]:
    """Flushes denormals to zero on this thread's CPU ops inside the block (when ``enabled``).

    Yields whether flushing is on (False when disabled or where the CPU cannot, e.g. without
    SSE3). On exit the thread is back at torch's default, denormals kept. CUDA kernels are not
    affected.
    """
    if not enabled:
        yield False
        return
    flushing = torch.set_flush_denormal(True)
    try:
        yield flushing
    finally:
        torch.set_flush_denormal(False)
