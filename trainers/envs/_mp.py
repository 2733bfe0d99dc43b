"""The multiprocessing context of trainrl's worker processes.

``forkserver`` when the platform has it: one server process imports trainrl once, and every
worker is then forked from it in milliseconds, without inheriting the parent's threads. Else
``spawn``. Either way what a worker receives is pickled, never inherited.
"""

from __future__ import annotations

import multiprocessing as mp
import os
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


def isolate_from_group_signals() -> None:
    """Called first in a worker: a signal to the parent's process group (Ctrl-C in a terminal,
    ``kill -TERM -- -PGID``) then reaches only the parent, which finishes its batch, checkpoints
    and closes its workers itself. A worker dying first would lose that batch and the checkpoint.

    SIGINT is also ignored, for signals sent to every process one by one. SIGTERM keeps its
    default: the parent (and multiprocessing at exit) stops stragglers with it, so a SIGTERM
    sent to each process (a cgroup kill) still ends the run at its last periodic checkpoint.

    Its own group is a background group of the terminal: with ``stty tostop`` the kernel stops
    such a process when it writes there (SIGTTOU), and a stopped worker would hang the run at
    its first warning. Ignoring SIGTTOU lets the write through (and would let a worker change
    the terminal's settings, which none does; processes a worker starts inherit the ignore).
    """
    if hasattr(os, "setpgid"):  # POSIX
        os.setpgid(0, 0)
        signal.signal(signal.SIGTTOU, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
