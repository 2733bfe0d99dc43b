"""The multiprocessing context of trainrl's worker processes.

``forkserver`` when the platform has it: one server process imports trainrl once, and every
worker is then forked from it in milliseconds, without inheriting the parent's threads. Else
``spawn``. Either way what a worker receives is pickled, never inherited.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from multiprocessing.context import ForkServerContext, SpawnContext

# Imported once by the fork server, so that forked workers start with them loaded.
_PRELOAD = ["trainers.envs._gym_backend", "trainers.collectors.multi"]


def worker_context() -> ForkServerContext | SpawnContext:
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)  # takes effect if the server has not started yet
    return ctx


def ignore_interrupts() -> None:
    """Called first in a worker: Ctrl-C in a terminal signals the whole process group, and the
    parent then finishes its batch, checkpoints and closes its workers itself.

    SIGTERM keeps its default: the parent (and multiprocessing at exit) stops stragglers with it.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
