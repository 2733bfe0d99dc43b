"""``AsyncReplayCollector``: collection in a background thread that fills a replay buffer."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from tensordict import TensorDict, TensorDictBase

from trainers.collectors.sync import SyncDataCollector


class AsyncReplayCollector:
    """Runs a ``SyncDataCollector`` in a background thread, writing into a replay buffer.

    Semantics:

    * Each collected batch is written, flattened, with ``replay_buffer.extend(batch.reshape(-1))``
      (any object with ``extend`` works) as soon as it is collected, under ``buffer_lock``.
      A trainer that samples while collection runs should hold ``buffer_lock`` around
      ``sample`` unless its buffer is thread-safe.
    * Iterating yields every frame exactly once, so a trainer counting frames from the batches
      counts right: each step of the iteration returns the batches collected since the last
      one, concatenated along time (``[num_envs, k * T]``), and waits only when nothing new
      arrived. Training therefore overlaps with collection instead of alternating with it.
    * The collector runs a private copy of the policy; ``update_policy_weights_()`` snapshots
      the trained weights and the background thread loads them before its next batch, so no
      weight is ever read while an optimizer writes it.
    * ``frames`` is the number of frames collected (and written) so far. Iteration ends once
      the wrapped collector reached its ``total_frames``. An error in the thread is raised by
      the iterator. ``shutdown()`` stops the thread after the current batch and closes the env.

    Args:
        collector: the collector to run (its ``total_frames`` ends the run).
        replay_buffer: where batches go, through ``extend``.

    Examples:
        >>> from trainers.collectors import AsyncReplayCollector, SyncDataCollector
        >>> from trainers.envs import GymEnv
        >>> class Buffer:  # any object with extend; e.g. a trainers.data replay buffer
        ...     def __init__(self):
        ...         self.frames = 0
        ...     def extend(self, td):
        ...         self.frames += td.numel()
        >>> buffer = Buffer()
        >>> sync = SyncDataCollector(GymEnv("Pendulum-v1"), None, frames_per_batch=50, total_frames=500)
        >>> collector = AsyncReplayCollector(sync, buffer)
        >>> for batch in collector:  # returns as soon as new frames are in the buffer
        ...     with collector.buffer_lock:
        ...         pass  # sample from the buffer and train here
        >>> collector.shutdown()
        >>> buffer.frames, collector.frames
        (500, 500)
    """

    def __init__(self, collector: SyncDataCollector, replay_buffer: Any) -> None:
        if not callable(getattr(replay_buffer, "extend", None)):
            raise TypeError(
                f"replay_buffer needs an extend method, got {type(replay_buffer).__name__}"
            )
        collector.use_private_policy_copy()
        self.collector = collector
        self.replay_buffer = replay_buffer
        self.frames_per_batch = collector.frames_per_batch
        self.total_frames = collector.total_frames
        self.init_random_frames = collector.init_random_frames
        self.buffer_lock = threading.Lock()
        self._ready = threading.Condition()
        self._new: list[TensorDictBase] = []
        self._finished = False
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._weights: TensorDictBase | None = None
        self._thread: threading.Thread | None = None

    @property
    def frames(self) -> int:
        """Frames collected and written to the replay buffer so far."""
        return self.collector.frames

    @property
    def env(self) -> Any:
        return self.collector.env

    def start(self) -> None:
        """Starts the background thread (iteration starts it too)."""
        if self._thread is None:
            self._load_pending_weights()  # e.g. pushed at the trainer's setup, after a resume
            self._thread = threading.Thread(target=self._run, name="trainrl-collector", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        try:
            for batch in self.collector:
                with self.buffer_lock:
                    self.replay_buffer.extend(batch.reshape(-1))
                with self._ready:
                    self._new.append(batch)
                    self._ready.notify_all()
                self._load_pending_weights()
                if self._stop.is_set():
                    break
        except BaseException as err:  # re-raised by the iterator, in the trainer's thread
            self._error = err
        finally:
            with self._ready:
                self._finished = True
                self._ready.notify_all()

    def _load_pending_weights(self) -> None:
        weights, self._weights = self._weights, None
        if weights is not None:
            self.collector.update_policy_weights_(weights)

    def __iter__(self) -> Iterator[TensorDictBase]:
        self.start()
        while True:
            with self._ready:
                self._ready.wait_for(lambda: bool(self._new) or self._finished)
                new, self._new = self._new, []
            if self._error is not None:
                raise RuntimeError("the background collector failed") from self._error
            if not new:
                return
            yield new[0] if len(new) == 1 else TensorDict.cat(new, dim=1)

    def update_policy_weights_(self, weights: TensorDictBase | None = None) -> None:
        """Snapshots ``weights`` (default: the policy's) for the thread to load next batch."""
        if weights is None:
            source = self.collector._source_policy
            if source is None:
                return
            weights = TensorDict.from_module(source)  # type: ignore[arg-type]
        self._weights = weights.data.clone()

    def set_seed(self, seed: int) -> int:
        """Seeds the env; only before the thread starts."""
        if self._thread is not None:
            raise RuntimeError("set_seed must be called before the background collection starts")
        return self.collector.set_seed(seed)

    def shutdown(self) -> None:
        """Stops the thread after its current batch and closes the env."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.collector.shutdown()
