"""Flush-to-zero while training: denormal floats make CPU arithmetic ~100x slower.

Adam's second moment of a parameter whose gradient stays zero (a dead ReLU unit) decays by
``beta2`` every step and spends thousands of steps below 1.2e-38, in the denormal range. At
the start of SAC on HalfCheetah-v5 about 4% of the Adam moments are denormal, and the fused
Adam step costs 1.6 ms instead of 0.7 ms (``benchmarks/sac_ab.py --compare denormals``).
Flushing denormals to zero (FTZ/DAZ) removes that; the values lost are far below Adam's ``eps``
and below anything a network can use.

The flag lives in each thread's floating-point control register, and ``torch.set_flush_denormal``
sets the calling thread's only. With more than one torch thread, CPU ops also run on the worker
threads of torch's OpenMP runtime, made before ``train()`` starts: left as they were, they
computed their share of the fused Adam step on denormals, which took 0.44 ms instead of 0.12 ms
at two threads (SAC, HalfCheetah-v5). So the flag is set on those workers too, by running
``torch.set_flush_denormal`` once on every thread of an OpenMP parallel region of torch's runtime
(GNU's libgomp, or a runtime with its ``GOMP_parallel`` entry point). Like any parallel torch op,
that region hangs in a process forked after its parent ran one (libgomp is not fork-safe); such
children should train on one torch thread, as the multi-process collector's workers do.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
from collections.abc import Callable, Iterator

import torch

# void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags)
_REGION_BODY = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


@contextlib.contextmanager
def denormals_flushed(enabled: bool = True) -> Iterator[bool]:
    """Flushes denormals to zero on this thread's CPU ops, and on the OpenMP worker threads
    they use, inside the block (when ``enabled``).

    Yields whether flushing is on for this thread (False when disabled or where the CPU cannot,
    e.g. without SSE3). On exit this thread and the workers are back at torch's default,
    denormals kept (threads started inside the block keep the flag they inherited). CUDA
    kernels are not affected.
    """
    if not enabled:
        yield False
        return
    threads = torch.get_num_threads()
    flushing = _set_flush_denormal(True, threads)
    try:
        yield flushing
    finally:  # the workers flushed on entry, even if the block lowered the thread count
        _set_flush_denormal(False, max(threads, torch.get_num_threads()))


def _set_flush_denormal(enabled: bool, threads: int) -> bool:
    """``torch.set_flush_denormal(enabled)`` on this thread and on ``threads - 1`` OpenMP
    workers; returns this thread's result (an exception in a worker is printed by ctypes)."""
    flushing = torch.set_flush_denormal(enabled)
    parallel = _openmp_parallel()
    if parallel is not None and threads > 1:
        body = _REGION_BODY(lambda _: torch.set_flush_denormal(enabled))
        parallel(body, None, threads, 0)
    return flushing


@functools.cache
def _openmp_parallel() -> Callable[..., None] | None:
    """``GOMP_parallel`` of the OpenMP runtime torch's CPU ops run on, found through torch's
    own extension module (so through its dependencies); None where torch has no OpenMP or the
    runtime has no such entry point."""
    if not torch._C.has_openmp:
        return None
    # CDLL, not PyDLL: the call must release the GIL, which the workers' callbacks take.
    torch_module = ctypes.CDLL(torch._C.__file__)
    parallel = getattr(torch_module, "GOMP_parallel", None)
    if parallel is not None:
        parallel.argtypes = [_REGION_BODY, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
        parallel.restype = None
    return parallel
