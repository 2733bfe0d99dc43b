"""``AsyncReplayCollector``: collection in a background thread that fills a replay buffer."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from tensordict import NestedKey, TensorDict, TensorDictBase

from trainers.collectors.sync import SyncDataCollector
from trainers.data import valid_transitions


class AsyncReplayCollector:
    """Runs a ``SyncDataCollector`` in a background thread, writing into a replay buffer.

    Semantics:

    * Each collected batch is written, flattened, with ``replay_buffer.extend(...)`` (any
      object with ``extend`` works) as soon as it is collected, under ``buffer_lock``: only
      its ``stored_keys`` when set (random warm-up batches carry no policy outputs, so a
      buffer that takes both needs the keys they share), and only the frames its validity
      mask keeps.
      A trainer that samples while collection runs should hold ``buffer_lock`` around
      ``sample`` unless its buffer is thread-safe.
    * Iterating yields every frame exactly once, so a trainer counting frames from the batches
      counts right: each step of the iteration returns the batches collected since the last
      one, concatenated along time (``[num_envs, k * T]``), and waits only when nothing new
      arrived. Training therefore overlaps with collection instead of alternating with it.
    * Collection runs at most ``max_batches_ahead`` batches ahead of the iteration: the thread
      waits before collecting more while that many batches are collected but not yet yielded.
      With the default of one, each step of the iteration yields one batch, so a trainer that
      optimizes a fixed number of steps per batch keeps its update-to-data ratio; without the
      bound, collection faster than training lowered it.
    * The collector runs a private copy of the policy; ``update_policy_weights_()`` snapshots
      the trained weights and the background thread loads them before its next batch, so no
      weight is ever read while an optimizer writes it.
    * ``frames`` is the number of frames collected (and written) so far. Iteration ends once
      the wrapped collector reached its ``total_frames``. An error in the thread is raised by
      the iterator. ``shutdown()`` stops the thread after the current batch and closes the env.
    * ``state_dict()`` pauses the thread at its next batch boundary and keeps it paused until
      the iterator is asked for the next batch (or ``shutdown``), so that a checkpoint taken
      by the trainer between batches sees the collector and the replay buffer at the same
      point. It holds the wrapped collector's state (env, normalizer statistics, episode
      bookkeeping) and the batches collected but not yet yielded, which a restored collector
      yields first: the trainer's frame count stays exact across a resume.

    Args:
        collector: the collector to run (its ``total_frames`` ends the run).
        replay_buffer: where batches go, through ``extend``.
        stored_keys: the entries to write (default: all); ``SACTrainer`` sets them to the
            transition keys when left unset.
        max_batches_ahead: how many batches collection may run ahead of the iteration (>= 1).

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

    def __init__(
        self,
        collector: SyncDataCollector,
        replay_buffer: Any,
        stored_keys: Sequence[NestedKey] | None = None,
        max_batches_ahead: int = 1,
    ) -> None:
        if not callable(getattr(replay_buffer, "extend", None)):
            raise TypeError(
                f"replay_buffer needs an extend method, got {type(replay_buffer).__name__}"
            )
        if not isinstance(max_batches_ahead, int) or max_batches_ahead < 1:
            raise ValueError(f"max_batches_ahead must be an int >= 1, got {max_batches_ahead!r}")
        self.max_batches_ahead = max_batches_ahead
        collector.use_private_policy_copy()
        self.collector = collector
        self.replay_buffer = replay_buffer
        self.stored_keys = stored_keys
        self.frames_per_batch = collector.frames_per_batch
        self.total_frames = collector.total_frames
        self.init_random_frames = collector.init_random_frames
        self.buffer_lock = threading.Lock()
        self._ready = threading.Condition()
        self._new: list[TensorDictBase] = []
        self._finished = False
        self._pause_requested = False
        self._paused = False
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
                    self.replay_buffer.extend(self._transitions(batch))
                with self._ready:
                    self._new.append(batch)
                    self._ready.notify_all()
                    self._wait_for_room()
                self._load_pending_weights()
                if self._stop.is_set():
                    break
        except BaseException as err:  # re-raised by the iterator, in the trainer's thread
            self._error = err
        finally:
            with self._ready:
                self._finished = True
                self._ready.notify_all()

    def _transitions(self, batch: TensorDictBase) -> TensorDictBase:
        """What is written of ``batch``: its stored keys at its valid frames, flattened."""
        if self.stored_keys is not None:
            batch = batch.select(*self.stored_keys, strict=False)
        return valid_transitions(batch)

    def _wait_for_room(self) -> None:
        """In the thread, holding ``_ready``: waits while ``max_batches_ahead`` batches are not
        yet yielded, pausing whenever ``state_dict`` asks (a batch boundary). It pauses only
        with batches waiting in ``_new``, so an iterator waiting for one always wakes."""
        self._pause_if_requested()
        while len(self._new) >= self.max_batches_ahead and not self._stop.is_set():
            self._ready.wait()
            if self._new:
                self._pause_if_requested()

    def _pause_if_requested(self) -> None:
        """In the thread, holding ``_ready``: waits while ``state_dict`` wants it still."""
        if self._pause_requested:
            self._paused = True
            self._ready.notify_all()
            self._ready.wait_for(lambda: not self._pause_requested)
            self._paused = False

    def _unpause(self) -> None:
        with self._ready:
            self._pause_requested = False
            self._ready.notify_all()

    def _load_pending_weights(self) -> None:
        weights, self._weights = self._weights, None
        if weights is not None:
            self.collector.update_policy_weights_(weights)

    def __iter__(self) -> Iterator[TensorDictBase]:
        self.start()
        while True:
            with self._ready:
                self._pause_requested = False
                self._ready.notify_all()
                self._ready.wait_for(lambda: bool(self._new) or self._finished)
                new, self._new = self._new, []
                self._ready.notify_all()  # room for the thread's next batch
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

    def state_dict(self) -> dict[str, Any]:
        """The wrapped collector's state and the batches not yet yielded, at a batch boundary
        (see the class docstring: the thread stays paused until the next batch is asked for)."""
        with self._ready:
            if self._thread is not None and not self._finished:
                self._pause_requested = True
                self._ready.notify_all()  # a thread waiting for room pauses right away
                self._ready.wait_for(lambda: self._paused or self._finished)
            return {
                "collector": copy.deepcopy(self.collector.state_dict()),
                "pending": [
                    {"data": batch.clone().to_dict(), "batch_size": list(batch.batch_size)}
                    for batch in self._new
                ],
            }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores a state; only before the thread starts."""
        if self._thread is not None:
            raise RuntimeError(
                "load_state_dict must be called before the background collection starts"
            )
        self.collector.load_state_dict(state_dict["collector"])
        self._new = [
            TensorDict(batch["data"], batch_size=batch["batch_size"])
            for batch in state_dict["pending"]
        ]

    def shutdown(self) -> None:
        """Stops the thread after its current batch and closes the env."""
        self._stop.set()
        self._unpause()
        if self._thread is not None:
            self._thread.join()
        self.collector.shutdown()
