"""Replay buffers and their parts: storages, writers, samplers."""

from trainers.data.replay_buffers.replay_buffers import (
    ReplayBuffer,
    TensorDictReplayBuffer,
    valid_transitions,
)
from trainers.data.replay_buffers.samplers import (
    PrioritizedSampler,
    RandomSampler,
    Sampler,
    SamplerWithoutReplacement,
)
from trainers.data.replay_buffers.segment_tree import MinTree, SumTree
from trainers.data.replay_buffers.storages import (
    LazyMemmapStorage,
    LazyTensorStorage,
    TensorStorage,
)
from trainers.data.replay_buffers.writers import RoundRobinWriter, Writer

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
    "valid_transitions",
]
