"""Registers every schema in Hydra's ConfigStore under its group and option name."""

from __future__ import annotations

import dataclasses
import functools

from hydra.core.config_store import ConfigStore

from configs import collectors, data, envs, logging, modules, objectives, optim, trainers
from configs.collectors import (
    MultiaSyncDataCollectorConfig,
    MultiSyncDataCollectorConfig,
    SyncDataCollectorConfig,
)
from configs.data import (
    LazyMemmapStorageConfig,
    LazyTensorStorageConfig,
    PrioritizedSamplerConfig,
    SamplerWithoutReplacementConfig,
    TensorDictReplayBufferConfig,
)
from configs.envs import BatchedEnvConfig
from configs.logging import (
    CSVLoggerConfig,
    MLFlowLoggerConfig,
    TensorboardLoggerConfig,
    WandbLoggerConfig,
)
from configs.modules import PPONetworksConfig, SACNetworksConfig
from configs.objectives import HardUpdateConfig, PPOLossConfig, SACLossConfig, SoftUpdateConfig
from configs.optim import AdamConfig, AdamWConfig, RMSpropConfig, SGDConfig
from configs.trainers import PPOTrainerConfig, SACTrainerConfig

GROUPS: dict[str, dict[str, object]] = {
    "training_env": {"batched": BatchedEnvConfig},
    "networks": {"ppo": PPONetworksConfig, "sac": SACNetworksConfig},
    "collector": {
        "sync": SyncDataCollectorConfig,
        "multi_sync": MultiSyncDataCollectorConfig,
        "multi_async": MultiaSyncDataCollectorConfig,
    },
    "replay_buffer": {
        # PPO: the collected batch, read in shuffled minibatches (each frame once per epoch).
        "on_policy": TensorDictReplayBufferConfig(
            storage=LazyTensorStorageConfig(max_size=2048),
            sampler=SamplerWithoutReplacementConfig(),
            batch_size=64,
        ),
        # Off-policy: uniform sampling from the last max_size transitions.
        "off_policy": TensorDictReplayBufferConfig,
        # Off-policy, sampled in proportion to priority^alpha (the loss's TD error).
        "prioritized": TensorDictReplayBufferConfig(
            # An interpolation (resolved to an int by OmegaConf): the storage's size.
            sampler=PrioritizedSamplerConfig(max_capacity="${..storage.max_size}")  # type: ignore[arg-type]
        ),
        # Off-policy, stored in memory-mapped files: buffers larger than RAM.
        "memmap": TensorDictReplayBufferConfig(storage=LazyMemmapStorageConfig()),
    },
    "loss": {"ppo": PPOLossConfig, "sac": SACLossConfig},
    "optimizer": {
        "adam": AdamConfig,
        "adamw": AdamWConfig,
        "sgd": SGDConfig,
        "rmsprop": RMSpropConfig,
    },
    "logger": {
        "csv": CSVLoggerConfig,
        "tensorboard": TensorboardLoggerConfig,
        "wandb": WandbLoggerConfig,
        "mlflow": MLFlowLoggerConfig,
    },
    "target_net_updater": {"soft": SoftUpdateConfig, "hard": HardUpdateConfig},
    "trainer": {"ppo": PPOTrainerConfig, "sac": SACTrainerConfig},
}


def register_configs() -> None:
    """Stores every group option; safe to call more than once."""
    store = ConfigStore.instance()
    for group, options in GROUPS.items():
        for name, node in options.items():
            store.store(group=group, name=name, node=node)


@functools.cache
def schemas_by_target() -> dict[str, type]:
    """Every schema that builds something, keyed by its ``_target_``.

    Validation uses it for config nodes that carry no schema, such as the run's saved
    ``config.yaml`` that ``--resume`` composes again.
    """
    found: dict[str, type] = {}
    for module in (collectors, data, envs, logging, modules, objectives, optim, trainers):
        for schema in vars(module).values():
            if not (isinstance(schema, type) and dataclasses.is_dataclass(schema)):
                continue
            target = next(
                (f.default for f in dataclasses.fields(schema) if f.name == "_target_"), None
            )
            if isinstance(target, str):
                found[target] = schema
    return found
