"""The hook that feeds collected batches into a replay buffer and trains on samples of it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from tensordict import TensorDictBase

from trainers.data import LazyMemmapStorage, PrioritizedSampler, ReplayBuffer, valid_transitions
from trainers.hooks.base import TrainerHookBase
from trainers.keys import INDEX
from trainers.trainer.stages import Stage

if TYPE_CHECKING:
    from trainers.trainer.trainer import Trainer


class ReplayBufferTrainer(TrainerHookBase):
    """Extends a replay buffer with each collected batch and samples the optimization batches.

    Registered stages: ``batch_process`` → :meth:`extend`, ``process_optim_batch`` →
    :meth:`sample`, ``post_loss`` → :meth:`update_priority`; the buffer (contents included) is
    checkpointed under ``name``.

    Args:
        replay_buffer: the buffer to fill and sample.
        batch_size: rows per sample; None uses the buffer's ``batch_size``.
        memmap: require the buffer to store its rows memory-mapped on disk
            (:class:`~trainers.data.LazyMemmapStorage`); raises otherwise, so that a config
            asking for an on-disk buffer never silently gets an in-memory one.
        device: where sampled batches are moved; None leaves them on the storage's device.
        flatten_tensordicts: flatten each ``[num_envs, T]`` batch to ``[N]`` transitions,
            dropping the padding frames whose ``("collector", "mask")`` is False. If False,
            batches must already be flat.
        max_dims: must be None. The reference pads unflattened batches of trajectories to these
            dims; trainrl's buffers store flat transitions only, so padding would store fake
            transitions.
        iterate: draw batches by iterating over the buffer (restarting the iteration when the
            sampler ends an epoch) instead of calling ``sample``. trainrl's samplers start a
            new epoch by themselves, so both give the same batches.

    Examples:
        >>> rb = make_replay_buffer("cpu", buffer_size=1_000_000, batch_size=256)
        >>> ReplayBufferTrainer(rb, device="cpu").register(trainer)
    """

    def __init__(
        self,
        replay_buffer: ReplayBuffer,
        batch_size: int | None = None,
        memmap: bool = False,
        device: torch.device | str | None = "cpu",
        flatten_tensordicts: bool = True,
        max_dims: Sequence[int] | None = None,
        iterate: bool = False,
    ) -> None:
        if memmap and not isinstance(replay_buffer.storage, LazyMemmapStorage):
            raise ValueError(
                "ReplayBufferTrainer(memmap=True) needs a replay buffer whose storage is a "
                f"LazyMemmapStorage, got {type(replay_buffer.storage).__name__}; build it with "
                "make_replay_buffer(..., memmap=True) or pass memmap=False"
            )
        if max_dims is not None:
            raise ValueError(
                f"max_dims={list(max_dims)} is not supported: trainrl's replay buffers store "
                "flat transitions, so batches are flattened (flatten_tensordicts=True) instead "
                "of padded; pass max_dims=None"
            )
        self.replay_buffer = replay_buffer
        self.batch_size = batch_size
        self.memmap = memmap
        self.device = None if device is None else torch.device(device)
        self.flatten_tensordicts = flatten_tensordicts
        self.iterate = iterate
        self._iterator: Iterator[TensorDictBase] | None = None
        self._last_sample: TensorDictBase | None = None

    def register(self, trainer: Trainer, name: str | None = "replay_buffer") -> None:
        trainer.register_module(name or "replay_buffer", self)
        trainer.register_op(Stage.BATCH_PROCESS, self.extend)
        trainer.register_op(Stage.PROCESS_OPTIM_BATCH, self.sample)
        trainer.register_op(Stage.POST_LOSS, self.update_priority)

    def extend(self, batch: TensorDictBase) -> TensorDictBase:
        """Adds the batch's transitions to the buffer; returns ``batch`` unchanged."""
        self.replay_buffer.extend(valid_transitions(batch) if self.flatten_tensordicts else batch)
        return batch

    def sample(self, batch: TensorDictBase | None = None) -> TensorDictBase:
        """Returns a batch sampled from the buffer on ``device`` (``batch`` is ignored)."""
        del batch
        if self.iterate:
            sample = self._next_from_iterator()
        else:
            sample = self.replay_buffer.sample(self.batch_size)
        if self.device is not None:
            sample = sample.to(self.device)
        self._last_sample = sample
        return sample

    def _next_from_iterator(self) -> TensorDictBase:
        if self._iterator is None:
            self._iterator = self.replay_buffer.iterate(self.batch_size)
        try:
            return next(self._iterator)
        except StopIteration:
            self._iterator = self.replay_buffer.iterate(self.batch_size)
            return next(self._iterator)

    def update_priority(self, batch: TensorDictBase) -> None:
        """Updates priorities from the loss's TD error; does nothing for non-prioritized buffers.

        Accepts a TensorDict that holds ``INDEX`` and the buffer's ``priority_key``
        (``TD_ERROR``): the sampled batch after the loss wrote its TD error into it. A loss
        output that holds only the TD error is matched with the indices of the last sample; if
        ``batch`` has no TD error, the last sample itself is read (a loss that wrote the error
        into the batch it was given).
        """
        if not isinstance(self.replay_buffer.sampler, PrioritizedSampler):
            return
        key = self.replay_buffer.priority_key
        last = self._last_sample
        if key in batch.keys(True):
            index = batch.get(INDEX, None)
            if index is None and last is not None:
                index = last.get(INDEX)
            if index is not None:
                self.replay_buffer.update_priority(index, batch.get(key))
                return
        elif last is not None and key in last.keys(True):
            self.replay_buffer.update_tensordict_priority(last)
            return
        raise KeyError(
            f"ReplayBufferTrainer.update_priority: the buffer samples by priority but neither "
            f"the TensorDict given to post_loss nor the last sampled batch holds {key!r} with "
            f"{INDEX!r}; the loss must write the TD error (e.g. td_error) into the sampled "
            f"batch or its output. Got keys {sorted(map(str, batch.keys(True)))}"
        )

    def state_dict(self) -> dict[str, Any]:
        """The buffer's state: contents, writer cursor, sampler state."""
        return self.replay_buffer.state_dict()

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.replay_buffer.load_state_dict(state_dict)
        self._iterator = None
        self._last_sample = None
