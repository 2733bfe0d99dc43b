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
``torch.set_flush_denormal`` once on every thread of an OpenMP parallel region.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import re
from collections.abc import Iterator

import torch

# The OpenMP runtimes that export GNU's GOMP_parallel: GNU's own, Intel's and LLVM's.
_OPENMP_LIBRARY = re.compile(r"/lib(gomp|iomp5|omp)[-.\w]*\.so[.\d]*$")


@contextlib.contextmanager
def denormals_flushed(enabled: bool = True) -> Iterator[bool]:
    """Flushes denormals to zero on this thread's CPU ops, and on the OpenMP worker threads
    they use, inside the block (when ``enabled``).

    Yields whether flushing is on (False when disabled or where the CPU cannot, e.g. without
    SSE3). On exit the threads are back at torch's default, denormals kept. CUDA kernels are
    not affected.
    """
    if not enabled:
        yield False
        return
    flushing = _set_flush_denormal(True)
    try:
        yield flushing
    finally:
        _set_flush_denormal(False)


def _set_flush_denormal(enabled: bool) -> bool:
    """``torch.set_flush_denormal(enabled)`` on this thread and its OpenMP workers."""
    flushing = torch.set_flush_denormal(enabled)
    runtime = _openmp_runtime()
    if runtime is not None and torch.get_num_threads() > 1:
        on_each_thread = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(
            lambda _: torch.set_flush_denormal(enabled)
        )
        runtime.GOMP_parallel(on_each_thread, None, ctypes.c_uint(torch.get_num_threads()), 0)
    return flushing


@functools.cache
def _openmp_runtime() -> ctypes.CDLL | None:
    """The OpenMP runtime loaded in this process, which torch's CPU ops run on; None where torch
    does not use OpenMP or the runtime cannot be told (not Linux, or two runtimes loaded)."""
    if not torch._C.has_openmp:
        return None
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if _OPENMP_LIBRARY.search(line.rstrip())}
    except OSError:
        return None
    if len(paths) != 1:
        return None
    runtime = ctypes.CDLL(paths.pop())  # the loaded library itself: dlopen finds it by path
    return runtime if hasattr(runtime, "GOMP_parallel") else None
