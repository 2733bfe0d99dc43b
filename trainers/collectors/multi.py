"""Collectors running one ``SyncDataCollector`` per worker process.

``MultiSyncDataCollector`` asks every worker for a batch, waits for all and concatenates them
along the env dimension. ``MultiaSyncDataCollector`` yields each worker's batch as soon as it
arrives, and that worker starts its next batch right away.

Workers are started with forkserver (spawn where the platform lacks it): the env factories and
the policy must be picklable
(``functools.partial`` of a class, a module-level function; not a lambda). The policy is copied
once into shared memory; ``update_policy_weights_()`` writes the trained weights into that copy,
which every worker reads directly. Batches come back through one shared-memory buffer per
worker, copied by the main process before the worker may overwrite it.
"""

from __future__ import annotations

import copy
import pickle
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection, wait
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase

from trainers import keys
from trainers.collectors.sync import (
    PolicyType,
    SyncDataCollector,
    check_frames_per_batch,
    check_total_frames,
    exploration_interaction_type,
)
from trainers.envs._mp import isolate_from_group_signals, worker_context
from trainers.envs.common import EnvBase


class _WorkerHandler:
    """The commands a collector worker answers."""

    def __init__(self, collector: SyncDataCollector) -> None:
        self.collector = collector
        self.buffer: TensorDictBase | None = None

    def collect(self) -> TensorDictBase | None:
        # Pull the shared weights when the worker runs a copy on another device (else no-op).
        self.collector.update_policy_weights_()
        batch = self.collector.collect_batch()
        if self.buffer is None:
            self.buffer = batch.share_memory_()
            return self.buffer  # sent once; later batches reuse this shared memory
        self.buffer.update_(batch)
        return None

    def set_seed(self, seed: int) -> int:
        torch.manual_seed(seed)  # this worker's policy sampling and random actions
        return self.collector.set_seed(seed)

    def state_dict(self) -> dict[str, Any]:
        return {"collector": self.collector.state_dict(), "torch_rng": torch.get_rng_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.collector.load_state_dict(state_dict["collector"])
        torch.set_rng_state(state_dict["torch_rng"])


def _collector_worker(
    conn: Connection,
    create_env_fn: Callable[[], EnvBase],
    policy: PolicyType | None,
    collector_kwargs: dict[str, Any],
) -> None:
    isolate_from_group_signals()
    torch.set_num_threads(1)  # one process per worker already uses the cores
    try:
        handler = _WorkerHandler(SyncDataCollector(create_env_fn, policy, **collector_kwargs))
    except Exception:
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ok", None))
    while True:
        try:
            command, args = conn.recv()
        except EOFError:
            break
        if command == "close":
            handler.collector.shutdown()
            conn.send(("ok", None))
            break
        try:
            conn.send(("ok", getattr(handler, command)(*args)))
        except Exception:
            conn.send(("error", traceback.format_exc()))
    conn.close()


def _check_picklable(obj: Any, what: str) -> None:
    try:
        pickle.dumps(obj)
    except Exception as err:
        raise TypeError(
            f"{what} must be picklable to reach a worker process (use functools.partial or a "
            f"module-level function, not a lambda or a local function): {err}"
        ) from err


class _MultiCollectorBase:
    """Worker management shared by the sync and async multi-process collectors."""

    def __init__(
        self,
        create_env_fn: Callable[[], EnvBase] | Sequence[Callable[[], EnvBase]],
        policy: PolicyType | None = None,
        *,
        num_workers: int | None = None,
        frames_per_batch: int,
        total_frames: int = -1,
        init_random_frames: int = 0,
        max_frames_per_traj: int | None = None,
        exploration_type: str = "random",
        reset_at_each_iter: bool = False,
        device: torch.device | str | None = None,
        frames_per_worker_batch: int,
    ) -> None:
        env_fns = self._env_fns(create_env_fn, num_workers)
        check_total_frames(total_frames, frames_per_batch)
        exploration_interaction_type(exploration_type)
        if not isinstance(init_random_frames, int) or init_random_frames < 0:
            raise ValueError(f"init_random_frames must be an int >= 0, got {init_random_frames!r}")
        self.num_workers = len(env_fns)
        self.frames_per_batch = frames_per_batch
        self.total_frames = total_frames
        self.init_random_frames = init_random_frames
        self.frames = 0
        self.policy = policy
        self._shared_policy: PolicyType | None = None
        self._shared_weights: TensorDictBase | None = None
        if isinstance(policy, torch.nn.Module):
            shared = copy.deepcopy(policy).cpu().share_memory()
            _check_picklable(shared, "policy")
            self._shared_policy = shared
            self._shared_weights = TensorDict.from_module(shared)
        elif policy is not None:
            _check_picklable(policy, "policy")
            self._shared_policy = policy
        for i, fn in enumerate(env_fns):
            _check_picklable(fn, f"create_env_fn[{i}]")
        worker_kwargs = {
            "frames_per_batch": frames_per_worker_batch,
            "total_frames": -1,
            "init_random_frames": -(-init_random_frames // self.num_workers),
            "max_frames_per_traj": max_frames_per_traj,
            "exploration_type": exploration_type,
            "reset_at_each_iter": reset_at_each_iter,
            "device": device,
        }
        ctx = worker_context()
        self._conns: list[Connection] = []
        self._procs: list[Any] = []
        self._busy = [False] * self.num_workers
        self._requests = 0
        self._requested_at = [0] * self.num_workers  # to serve the longest-waiting worker first
        self._pending: deque[tuple[int, TensorDictBase]] = deque()
        self._buffers: list[TensorDictBase | None] = [None] * self.num_workers
        for i, fn in enumerate(env_fns):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_collector_worker,
                args=(child, fn, self._shared_policy, worker_kwargs),
                daemon=True,
                name=f"trainrl-collector-{i}",
            )
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        for i in range(self.num_workers):
            self._receive(i)

    @staticmethod
    def _env_fns(
        create_env_fn: Callable[[], EnvBase] | Sequence[Callable[[], EnvBase]],
        num_workers: int | None,
    ) -> list[Callable[[], EnvBase]]:
        if isinstance(create_env_fn, EnvBase):
            raise TypeError(
                "multi-process collectors need env factories (callables), not an env instance"
            )
        if isinstance(create_env_fn, Sequence):
            fns = list(create_env_fn)
            if num_workers is not None and num_workers != len(fns):
                raise ValueError(
                    f"num_workers={num_workers} but {len(fns)} env factories were given; pass "
                    "one factory per worker, or one factory and num_workers"
                )
        else:
            if num_workers is None or num_workers < 1:
                raise ValueError(
                    f"num_workers must be an int >= 1 with a single env factory, got {num_workers!r}"
                )
            fns = [create_env_fn] * num_workers
        if not fns or not all(callable(fn) for fn in fns):
            raise TypeError("create_env_fn must be a callable or a non-empty list of callables")
        return fns

    # Worker communication -------------------------------------------------------------------

    def _receive(self, i: int) -> Any:
        try:
            status, payload = self._conns[i].recv()
        except EOFError as err:
            raise RuntimeError(
                f"collector worker {i} died (exit code {self._procs[i].exitcode})"
            ) from err
        if status == "error":
            raise RuntimeError(f"collector worker {i} failed:\n{payload}")
        return payload

    def _start_collect(self, i: int) -> None:
        self._conns[i].send(("collect", ()))
        self._busy[i] = True
        self._requests += 1
        self._requested_at[i] = self._requests

    def _receive_batch(self, i: int) -> TensorDictBase:
        buffer = self._receive(i)
        self._busy[i] = False
        if buffer is not None:
            self._buffers[i] = buffer
        shared = self._buffers[i]
        if shared is None:
            raise RuntimeError(f"collector worker {i} sent no batch buffer")
        batch = shared.clone()
        # Worker-local episode ids made unique collector-wide: id * num_workers + worker.
        batch.set(keys.TRAJ_IDS, batch.get(keys.TRAJ_IDS) * self.num_workers + i)
        return batch

    def _call(self, i: int, command: str, *args: Any) -> Any:
        if self._busy[i]:  # a batch is on its way: keep it for the iterator
            self._pending.append((i, self._receive_batch(i)))
        self._conns[i].send((command, args))
        return self._receive(i)

    # Public API -----------------------------------------------------------------------------

    def update_policy_weights_(self, weights: TensorDictBase | None = None) -> None:
        """Writes ``weights`` (default: the policy's current ones) into the workers' policy.

        Workers read the shared copy directly: a sync collector's workers are idle between
        batches, so they see the new weights from their next batch on; an async collector's
        busy workers switch mid-batch.
        """
        if self._shared_weights is None:
            return
        if weights is None:
            weights = TensorDict.from_module(self.policy)  # type: ignore[arg-type]
        with torch.no_grad():
            self._shared_weights.data.update_(weights.data)

    def set_seed(self, seed: int) -> int:
        """Seeds worker ``i``'s env and torch RNG with the seed left by worker ``i - 1``.

        Returns the next free seed.
        """
        for i in range(self.num_workers):
            seed = self._call(i, "set_seed", seed)
        return seed

    def shutdown(self) -> None:
        """Stops the workers and closes their envs."""
        for i, conn in enumerate(self._conns):
            try:
                if self._busy[i]:
                    conn.recv()
                conn.send(("close", ()))
                conn.recv()
            except (EOFError, BrokenPipeError, OSError):
                pass
            conn.close()
        for proc in self._procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
        self._conns, self._procs = [], []

    def _done(self) -> bool:
        return 0 <= self.total_frames <= self.frames

    def __del__(self) -> None:
        # Without shutdown(), don't leave workers running until the interpreter exits.
        for proc in getattr(self, "_procs", []):
            if proc.is_alive():
                proc.terminate()


class MultiSyncDataCollector(_MultiCollectorBase):
    """Worker processes each run a ``SyncDataCollector``; batches are concatenated.

    Each batch holds ``frames_per_batch`` frames: every worker contributes
    ``frames_per_batch // num_workers``, and the worker batches ``[num_envs_i, T]`` are
    concatenated along the env dimension (all workers need the same ``T``).
    ``("collector", "traj_ids")`` are made unique across workers (``id * num_workers + i``).

    Args:
        create_env_fn: one picklable env factory (with ``num_workers``) or one per worker.
        policy: a picklable ``TensorDictModuleBase``, or None for random actions.
        num_workers: number of worker processes when ``create_env_fn`` is a single factory.
        frames_per_batch: frames per yielded batch, over all workers.
        total_frames: stop after this many frames; -1: endless.
        init_random_frames: random-action frames before the policy is used.
        max_frames_per_traj: truncate episodes at this length.
        exploration_type: as in ``SyncDataCollector``.
        reset_at_each_iter: reset every env at the start of each batch.
        device: device the workers run the policy on (each worker keeps a copy there and
            refreshes it from the shared CPU weights before every batch); default CPU.

    Examples:
        >>> from functools import partial
        >>> from trainers.collectors import MultiSyncDataCollector
        >>> from trainers.envs import GymEnv
        >>> make = partial(GymEnv, "Pendulum-v1", num_envs=2)
        >>> collector = MultiSyncDataCollector(make, None, num_workers=2,  # doctest: +SKIP
        ...                                    frames_per_batch=400, total_frames=4000)
        >>> next(iter(collector)).batch_size  # doctest: +SKIP
        torch.Size([4, 100])
        >>> collector.shutdown()  # doctest: +SKIP
    """

    def __init__(
        self,
        create_env_fn: Callable[[], EnvBase] | Sequence[Callable[[], EnvBase]],
        policy: PolicyType | None = None,
        *,
        num_workers: int | None = None,
        frames_per_batch: int,
        total_frames: int = -1,
        init_random_frames: int = 0,
        max_frames_per_traj: int | None = None,
        exploration_type: str = "random",
        reset_at_each_iter: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        workers = len(self._env_fns(create_env_fn, num_workers))
        per_worker = check_frames_per_batch(frames_per_batch, workers)
        super().__init__(
            create_env_fn,
            policy,
            num_workers=num_workers,
            frames_per_batch=frames_per_batch,
            total_frames=total_frames,
            init_random_frames=init_random_frames,
            max_frames_per_traj=max_frames_per_traj,
            exploration_type=exploration_type,
            reset_at_each_iter=reset_at_each_iter,
            device=device,
            frames_per_worker_batch=per_worker,
        )

    def __iter__(self) -> Iterator[TensorDictBase]:
        while not self._done():
            for i in range(self.num_workers):
                self._start_collect(i)
            batches = [self._receive_batch(i) for i in range(self.num_workers)]
            try:
                batch = TensorDict.cat(batches, dim=0)
            except RuntimeError as err:
                shapes = [tuple(b.batch_size) for b in batches]
                raise RuntimeError(
                    f"worker batches of shapes {shapes} cannot be concatenated along the env "
                    "dimension: give every worker the same number of envs"
                ) from err
            self.frames += batch.numel()
            yield batch

    def state_dict(self) -> dict[str, Any]:
        """Frames counted, every worker's collector state and torch RNG (workers are idle)."""
        return {
            "frames": self.frames,
            "workers": [self._call(i, "state_dict") for i in range(self.num_workers)],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.frames = state_dict["frames"]
        for i, worker_state in enumerate(state_dict["workers"]):
            self._call(i, "load_state_dict", worker_state)


class MultiaSyncDataCollector(_MultiCollectorBase):
    """Worker processes each run a ``SyncDataCollector``; batches are yielded as they come.

    Each yielded batch is one worker's ``[num_envs_i, frames_per_batch // num_envs_i]`` batch;
    the worker starts its next batch as soon as this one is received, so collection overlaps
    with training. The order of batches depends on timing, hence a resumed run is not
    bit-for-bit identical; ``state_dict`` holds the frame count only.

    Args:
        create_env_fn: one picklable env factory (with ``num_workers``) or one per worker.
        policy: a picklable ``TensorDictModuleBase``, or None for random actions.
        num_workers: number of worker processes when ``create_env_fn`` is a single factory.
        frames_per_batch: frames per yielded (single-worker) batch.
        total_frames: stop after this many frames; -1: endless.
        init_random_frames: random-action frames before the policy is used.
        max_frames_per_traj: truncate episodes at this length.
        exploration_type: as in ``SyncDataCollector``.
        reset_at_each_iter: reset every env at the start of each batch.
        device: device the workers run the policy on (each worker keeps a copy there and
            refreshes it from the shared CPU weights before every batch); default CPU.

    Examples:
        >>> from functools import partial
        >>> from trainers.collectors import MultiaSyncDataCollector
        >>> from trainers.envs import GymEnv
        >>> make = partial(GymEnv, "Pendulum-v1", num_envs=2)
        >>> collector = MultiaSyncDataCollector(  # doctest: +SKIP
        ...     [make, make], None, frames_per_batch=200)
        >>> next(iter(collector)).batch_size  # doctest: +SKIP
        torch.Size([2, 100])
        >>> collector.shutdown()  # doctest: +SKIP
    """

    def __init__(
        self,
        create_env_fn: Callable[[], EnvBase] | Sequence[Callable[[], EnvBase]],
        policy: PolicyType | None = None,
        *,
        num_workers: int | None = None,
        frames_per_batch: int,
        total_frames: int = -1,
        init_random_frames: int = 0,
        max_frames_per_traj: int | None = None,
        exploration_type: str = "random",
        reset_at_each_iter: bool = False,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(
            create_env_fn,
            policy,
            num_workers=num_workers,
            frames_per_batch=frames_per_batch,
            total_frames=total_frames,
            init_random_frames=init_random_frames,
            max_frames_per_traj=max_frames_per_traj,
            exploration_type=exploration_type,
            reset_at_each_iter=reset_at_each_iter,
            device=device,
            frames_per_worker_batch=frames_per_batch,
        )

    def __iter__(self) -> Iterator[TensorDictBase]:
        while not self._done():
            if self._pending:
                _, batch = self._pending.popleft()
            else:
                for i in range(self.num_workers):
                    if not self._busy[i]:
                        self._start_collect(i)
                ready = wait([self._conns[i] for i in range(self.num_workers) if self._busy[i]])
                indices = [self._conns.index(conn) for conn in ready]  # type: ignore[arg-type]
                batch = self._receive_batch(min(indices, key=self._requested_at.__getitem__))
            self.frames += batch.numel()
            if not self._done():
                for i in range(self.num_workers):
                    if not self._busy[i]:
                        self._start_collect(i)
            yield batch

    def state_dict(self) -> dict[str, Any]:
        return {"frames": self.frames}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.frames = state_dict["frames"]
