"""Config schemas: every field reaches its constructor; defaults equal the libraries'."""

from __future__ import annotations

import dataclasses
import inspect

import hydra
import pytest
import torch

import configs
from configs.factories import make_ppo_trainer, make_sac_trainer
from trainers.algorithms import PPOTrainer, SACTrainer

DOCUMENTED_DEVIATIONS = {("AdamConfig", "fused"), ("AdamWConfig", "fused")}
HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_args_"}
SCHEMAS = [getattr(configs, name) for name in configs.__all__ if name.endswith("Config")]
# Filled by the trainer factories (not a constructor argument of the trainer itself).
FACTORY_ONLY = {
    "resume", "device", "training_env", "networks", "utd_ratio", "episodes_file",
    "num_threads",
}  # fmt: skip


def _fields(schema: type) -> set[str]:
    return {f.name for f in dataclasses.fields(schema)} - HYDRA_KEYS


def _parameters(target) -> tuple[set[str], bool]:
    signature = inspect.signature(target)
    names = set(signature.parameters)
    var_kw = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    return names, var_kw


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.__name__)
def test_every_field_reaches_the_constructor_it_configures(schema):
    target_field = {f.name: f for f in dataclasses.fields(schema)}.get("_target_")
    if target_field is None:
        pytest.skip(f"{schema.__name__} groups other configs")
    target = hydra.utils.get_object(target_field.default)
    names, var_kw = _parameters(target)
    missing = _fields(schema) - names
    if target in (make_ppo_trainer, make_sac_trainer):
        trainer_cls = PPOTrainer if target is make_ppo_trainer else SACTrainer
        trainer_names, _ = _parameters(trainer_cls)
        missing = _fields(schema) - names - trainer_names - FACTORY_ONLY
        # component fields are built by the factory and passed on under the trainer's names
        missing -= {"collector", "replay_buffer", "loss_module", "optimizer", "logger"}
    assert not missing or var_kw, f"{schema.__name__} fields {missing} reach no parameter"


def test_trainer_factories_pass_every_trainer_setting_on():
    for factory, trainer_cls in ((make_ppo_trainer, PPOTrainer), (make_sac_trainer, SACTrainer)):
        schema = (
            configs.PPOTrainerConfig if factory is make_ppo_trainer else configs.SACTrainerConfig
        )
        trainer_params, _ = _parameters(trainer_cls)
        for name in _fields(schema) - FACTORY_ONLY - {"target_net_updater"}:
            key = {"loss_module": "loss_module"}.get(name, name)
            assert key in trainer_params, (
                f"{schema.__name__}.{name} is not a {trainer_cls.__name__} argument"
            )


@pytest.mark.parametrize(
    ("schema", "optimizer"),
    [
        (configs.AdamConfig, torch.optim.Adam),
        (configs.AdamWConfig, torch.optim.AdamW),
        (configs.SGDConfig, torch.optim.SGD),
        (configs.RMSpropConfig, torch.optim.RMSprop),
    ],
)
def test_optimizer_defaults_equal_torch_except_documented_ones(schema, optimizer):
    defaults = {
        name: p.default
        for name, p in inspect.signature(optimizer).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    for field in dataclasses.fields(schema):
        if field.name in HYDRA_KEYS:
            continue
        ours = field.default
        theirs = defaults[field.name]
        if isinstance(theirs, torch.Tensor):
            theirs = theirs.item()
        if (schema.__name__, field.name) in DOCUMENTED_DEVIATIONS:
            assert (ours, theirs) == (True, None)  # see configs/optim.py's docstring
            continue
        assert ours == theirs, f"{schema.__name__}.{field.name}: {ours!r} != torch {theirs!r}"


def test_all_reference_config_names_exist():
    for name in (
        "GymEnvConfig", "BatchedEnvConfig", "TransformedEnvConfig", "MLPConfig",
        "TanhNormalModelConfig", "TensorDictReplayBufferConfig", "LazyTensorStorageConfig",
        "RandomSamplerConfig", "RoundRobinWriterConfig", "SyncDataCollectorConfig",
        "MultiSyncDataCollectorConfig", "MultiaSyncDataCollectorConfig", "PPOLossConfig",
        "SACLossConfig", "AdamConfig", "AdamWConfig", "CSVLoggerConfig",
        "TensorboardLoggerConfig", "WandbLoggerConfig", "PPOTrainerConfig", "SACTrainerConfig",
        "SoftUpdateConfig", "HardUpdateConfig",
    ):  # fmt: skip
        assert hasattr(configs, name), name


def test_plain_nodes_are_checked_against_the_schema_of_their_target():
    """A run's saved config.yaml (what --resume composes) carries no schemas: validation finds
    them by ``_target_``, so types, unknown keys and ranges are checked all the same."""
    from omegaconf import OmegaConf

    from configs.validation import ConfigError, validate

    def problems(node: dict) -> list[str]:
        with pytest.raises(ConfigError) as err:
            validate(OmegaConf.create(node))
        return err.value.problems

    adam = {"_target_": "torch.optim.Adam", "_partial_": True}
    assert problems({"optimizer": {**adam, "lr": -1.0}}) == [
        "optimizer.lr=-1.0: allowed is a number > 0"
    ]
    assert problems({"optimizer": {**adam, "lr": "fast"}}) == [
        "optimizer.lr: Value 'fast' of type 'str' could not be converted to Float"
    ]
    env = {
        "_target_": "trainers.envs.make_batched_env",
        "num_workers": 0,
        "create_env_fn": {
            "_target_": "trainers.envs.TransformedEnv",
            "base_env": {"_target_": "trainers.envs.GymEnv", "env_name": "Pendulum-v1", "skip": 2},
        },
    }
    assert problems({"training_env": env}) == [
        "training_env.num_workers=0: allowed is a number >= 1",
        "training_env.create_env_fn.base_env.skip: Key 'skip' not in 'GymEnvConfig'",
    ]
    validate(OmegaConf.create({"optimizer": {**adam, "lr": 0.1}, "other": {"_target_": "x.Y"}}))
