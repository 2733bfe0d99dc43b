"""Dataclass config schemas for trainrl, registered in Hydra's ConfigStore on import.

This is the only Hydra-aware package; ``trainers`` never imports Hydra.
"""

from configs.collectors import (
    MultiaSyncDataCollectorConfig,
    MultiSyncDataCollectorConfig,
    SyncDataCollectorConfig,
)
from configs.data import (
    LazyMemmapStorageConfig,
    LazyTensorStorageConfig,
    PrioritizedSamplerConfig,
    RandomSamplerConfig,
    RoundRobinWriterConfig,
    SamplerWithoutReplacementConfig,
    TensorDictReplayBufferConfig,
)
from configs.envs import (
    BatchedEnvConfig,
    ComposeConfig,
    DoubleToFloatConfig,
    GymEnvConfig,
    RewardNormConfig,
    RewardScalingConfig,
    RewardSumConfig,
    StepCounterConfig,
    TransformedEnvConfig,
    VecNormConfig,
)
from configs.logging import (
    CSVLoggerConfig,
    MLFlowLoggerConfig,
    TensorboardLoggerConfig,
    WandbLoggerConfig,
)
from configs.modules import (
    MLPConfig,
    PPONetworksConfig,
    QValueModelConfig,
    SACNetworksConfig,
    TanhNormalModelConfig,
    ValueModelConfig,
)
from configs.objectives import HardUpdateConfig, PPOLossConfig, SACLossConfig, SoftUpdateConfig
from configs.optim import AdamConfig, AdamWConfig, RMSpropConfig, SGDConfig
from configs.store import register_configs
from configs.trainers import PPOTrainerConfig, SACTrainerConfig
from configs.validation import ConfigError

register_configs()

__all__ = [
    "AdamConfig",
    "AdamWConfig",
    "BatchedEnvConfig",
    "CSVLoggerConfig",
    "ComposeConfig",
    "ConfigError",
    "DoubleToFloatConfig",
    "GymEnvConfig",
    "HardUpdateConfig",
    "LazyMemmapStorageConfig",
    "LazyTensorStorageConfig",
    "MLFlowLoggerConfig",
    "MLPConfig",
    "MultiSyncDataCollectorConfig",
    "MultiaSyncDataCollectorConfig",
    "PPOLossConfig",
    "PPONetworksConfig",
    "PPOTrainerConfig",
    "PrioritizedSamplerConfig",
    "QValueModelConfig",
    "RMSpropConfig",
    "RandomSamplerConfig",
    "RewardNormConfig",
    "RewardScalingConfig",
    "RewardSumConfig",
    "RoundRobinWriterConfig",
    "SACLossConfig",
    "SACNetworksConfig",
    "SACTrainerConfig",
    "SGDConfig",
    "SamplerWithoutReplacementConfig",
    "SoftUpdateConfig",
    "StepCounterConfig",
    "SyncDataCollectorConfig",
    "TanhNormalModelConfig",
    "TensorDictReplayBufferConfig",
    "TensorboardLoggerConfig",
    "TransformedEnvConfig",
    "ValueModelConfig",
    "VecNormConfig",
    "WandbLoggerConfig",
    "register_configs",
]
