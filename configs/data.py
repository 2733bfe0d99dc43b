"""Schemas of the ``replay_buffer`` group: buffer, storages, samplers, writer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from configs.validation import between, checked, ge, gt, torch_device


@dataclass(kw_only=True)
class LazyTensorStorageConfig:
    _target_: str = "trainers.data.LazyTensorStorage"
    max_size: int = checked(1_000_000, ge(1))
    device: str = checked("cpu", torch_device())


@dataclass(kw_only=True)
class LazyMemmapStorageConfig:
    """On-disk storage: buffers larger than RAM."""

    _target_: str = "trainers.data.LazyMemmapStorage"
    max_size: int = checked(1_000_000, ge(1))
    scratch_dir: str | None = None
    device: str = checked("cpu", torch_device())


@dataclass(kw_only=True)
class RandomSamplerConfig:
    _target_: str = "trainers.data.RandomSampler"


@dataclass(kw_only=True)
class SamplerWithoutReplacementConfig:
    _target_: str = "trainers.data.SamplerWithoutReplacement"
    drop_last: bool = False
    shuffle: bool = True


@dataclass(kw_only=True)
class PrioritizedSamplerConfig:
    _target_: str = "trainers.data.PrioritizedSampler"
    max_capacity: int = checked(1_000_000, ge(1))
    alpha: float = checked(0.6, ge(0))
    beta: float = checked(0.4, between(0, 1))
    eps: float = checked(1e-8, gt(0))


@dataclass(kw_only=True)
class RoundRobinWriterConfig:
    _target_: str = "trainers.data.RoundRobinWriter"


@dataclass(kw_only=True)
class TensorDictReplayBufferConfig:
    _target_: str = "trainers.data.TensorDictReplayBuffer"
    storage: Any = field(default_factory=LazyTensorStorageConfig)
    sampler: Any = field(default_factory=RandomSamplerConfig)
    writer: Any = field(default_factory=RoundRobinWriterConfig)
    batch_size: int = checked(256, ge(1))
