"""Replay buffers (storages, writers, samplers) and the ``make_replay_buffer`` builder."""

from trainers.data.builders import make_replay_buffer
from trainers.data.replay_buffers import (
    LazyMemmapStorage,
    LazyTensorStorage,
    MinTree,
    PrioritizedSampler,
    RandomSampler,
    ReplayBuffer,
    RoundRobinWriter,
    Sampler,
    SamplerWithoutReplacement,
    SumTree,
    TensorDictReplayBuffer,
    TensorStorage,
    Writer,
    valid_transitions,
)

__all__ = [
    "LazyMemmapStorage",
    "LazyTensorStorage",
    "MinTree",
    "PrioritizedSampler",
    "RandomSampler",
    "ReplayBuffer",
    "RoundRobinWriter",
    "Sampler",
    "SamplerWithoutReplacement",
    "SumTree",
    "TensorDictReplayBuffer",
    "TensorStorage",
    "Writer",
    "make_replay_buffer",
    "valid_transitions",
]
