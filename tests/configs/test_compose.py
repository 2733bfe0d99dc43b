"""Real Hydra composition of the shipped configs, instantiated in-process."""

from __future__ import annotations

import os
import warnings

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

import configs  # noqa: F401  (registers the schemas)
from configs.factories import resolve_loss_compile
from configs.validation import ConfigError
from tests.integration.runner import ROOT
from trainers.algorithms import PPOTrainer, SACTrainer
from trainers.data import LazyMemmapStorage, LazyTensorStorage, PrioritizedSampler, RandomSampler
from trainers.modules import MLP, EnsembleMember

CONF = str(ROOT / "conf")


def _compose(name: str, *overrides: str):
    with initialize_config_dir(CONF, version_base=None):
        return compose(name, overrides=list(overrides))


def _problems(cfg) -> list[str]:
    """The problems of the ConfigError that instantiating ``cfg`` raises (Hydra wraps it)."""
    with pytest.raises(Exception) as err:
        instantiate(cfg.trainer)
    cause = err.value
    while not isinstance(cause, ConfigError):
        cause = cause.__cause__
    return cause.problems


def test_ppo_config_instantiates_a_ready_trainer_sharing_one_policy(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _compose("ppo", "trainer.total_frames=4096", "trainer.progress_bar=false")
    trainer = instantiate(cfg.trainer)
    assert isinstance(trainer, PPOTrainer)
    assert trainer.collector.policy is trainer.loss_module.actor_network
    assert trainer.total_frames == 4096
    assert trainer.optim_steps_per_batch == 10 * 32  # ceil(2000 / 64) minibatches per epoch
    assert trainer.optimizer.defaults["lr"] == cfg.optimizer.lr
    assert (tmp_path / "config_resolved.yaml").exists()
    # The default 64x64 actor and critic are evaluated as one batched network.
    actor, critic = trainer.loss_module.actor_network, trainer.loss_module.critic_network
    assert isinstance(actor.network, EnsembleMember)
    assert actor.network.ensemble is critic.network.ensemble
    trainer.collector.shutdown()


def test_ppo_networks_stay_separate_when_asked_or_when_they_differ(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for override in (
        "networks.batch_actor_critic=false",
        "networks.value_network.num_cells=[32,32]",
    ):
        cfg = _compose("ppo", "trainer.total_frames=4096", "trainer.progress_bar=false", override)
        trainer = instantiate(cfg.trainer)
        assert isinstance(trainer.loss_module.actor_network.network, MLP), override
        assert isinstance(trainer.loss_module.critic_network.network, MLP), override
        trainer.collector.shutdown()


def test_networks_compile_switches_every_network_to_compiled_passes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in ("ppo", "sac"):
        cfg = _compose(name, "trainer.progress_bar=false")
        assert cfg.networks.compile is False  # off by default: slower on CPU
        cfg = _compose(name, "trainer.progress_bar=false", "networks.compile=true")
        trainer = instantiate(cfg.trainer)
        loss = trainer.loss_module
        critic = loss.critic_network if name == "ppo" else loss.qvalue_network
        networks = [loss.actor_network.network, critic.network]
        if name == "sac":
            networks.append(loss.target_qvalue_network.network)
        assert all(network.compiled for network in networks), name
        if name == "ppo":  # the networks compile on their own, not again inside the loss
            assert loss.compiled is None
        trainer.collector.shutdown()


def test_compiled_networks_and_async_collection_are_rejected_together(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    problems = _problems(_compose("sac", "networks.compile=true", "trainer.async_collection=true"))
    assert len(problems) == 1
    assert problems[0].startswith(
        "networks.compile=true and trainer.async_collection=true cannot be combined"
    )


def test_sac_config_instantiates_with_published_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _compose("sac", "trainer.progress_bar=false")
    trainer = instantiate(cfg.trainer)
    assert isinstance(trainer, SACTrainer)
    assert trainer.collector.policy is trainer.loss_module.actor_network
    assert trainer.optim_steps_per_batch == 1000  # one update per collected frame
    assert cfg.replay_buffer.batch_size == 256
    assert cfg.replay_buffer.storage.max_size == 1_000_000
    assert cfg.target_net_updater.tau == 0.005
    assert trainer.optimizer.defaults["lr"] == 3e-4
    assert trainer.flush_denormals  # on by default (README: denormals)
    loss = trainer.loss_module
    assert loss.fused_path is not None, loss.fused_unsupported  # the default networks fuse
    assert loss.fused_path.compile  # loss.compile=null: compiled on CPU
    hidden = [
        m.out_features
        for m in trainer.loss_module.actor_network.network
        if hasattr(m, "out_features")
    ]
    assert hidden[:2] == [256, 256]
    trainer.collector.shutdown()


def test_every_group_option_composes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for override in (
        "logger=tensorboard", "logger=wandb", "logger=mlflow", "logger=csv",
        "optimizer=adamw", "optimizer=sgd", "optimizer=rmsprop",
        "collector=multi_sync", "collector=multi_async",
    ):  # fmt: skip
        cfg = _compose("ppo", override)
        assert cfg.logger.exp_name == "ppo_Pendulum-v1"
    assert (
        _compose("sac", "target_net_updater=hard").target_net_updater.value_network_update_interval
        == 1000
    )


def test_sac_fused_losses_can_be_switched_off(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _compose("sac", "loss.fused=false", "trainer.progress_bar=false")
    trainer = instantiate(cfg.trainer)
    loss = trainer.loss_module
    assert loss.fused_path is None and loss.fused_unsupported == "fused=False"
    trainer.collector.shutdown()
    cfg = _compose(
        "sac", "networks.policy_network.activation_class=elu", "trainer.progress_bar=false"
    )
    trainer = instantiate(cfg.trainer)
    assert "ReLU or Tanh" in trainer.loss_module.fused_unsupported
    trainer.collector.shutdown()
    trainer = instantiate(
        _compose("sac", "loss.compile=false", "trainer.progress_bar=false").trainer
    )
    assert trainer.loss_module.fused_path is not None
    assert not trainer.loss_module.fused_path.compile
    trainer.collector.shutdown()
    cfg = _compose("sac", "trainer.progress_bar=false")
    with open_dict(cfg):  # saved before loss.compile existed: resumes eagerly, as it trained
        del cfg.loss.compile
    trainer = instantiate(cfg.trainer)
    assert trainer.loss_module.fused_path is not None
    assert not trainer.loss_module.fused_path.compile
    trainer.collector.shutdown()


def test_sac_fused_update_is_on_by_default_and_can_be_switched_off(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    trainer = instantiate(_compose("sac", "trainer.progress_bar=false").trainer)
    assert trainer.fused_update is not None
    trainer.collector.shutdown()
    cfg = _compose("sac", "trainer.fused_update=false", "trainer.progress_bar=false")
    trainer = instantiate(cfg.trainer)
    assert trainer.fused_update is None
    trainer.collector.shutdown()
    cfg = _compose("sac", "trainer.progress_bar=false")
    with open_dict(cfg):  # saved before the setting existed: the same bits either way
        del cfg.trainer.fused_update
    trainer = instantiate(cfg.trainer)
    assert trainer.fused_update is not None
    trainer.collector.shutdown()


def test_ppo_loss_compiles_by_default_on_cpu_and_can_be_switched_off(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    trainer = instantiate(_compose("ppo", "trainer.progress_bar=false").trainer)
    assert trainer.loss_module.compiled is not None  # loss.compile=null: compiled on CPU
    trainer.collector.shutdown()
    trainer = instantiate(
        _compose("ppo", "loss.compile=false", "trainer.progress_bar=false").trainer
    )
    assert trainer.loss_module.compiled is None
    trainer.collector.shutdown()
    # A config saved before the setting existed: its run trained, and so resumes, eagerly.
    cfg = _compose("ppo", "trainer.progress_bar=false")
    with open_dict(cfg):
        del cfg.loss.compile
    trainer = instantiate(cfg.trainer)
    assert trainer.loss_module.compiled is None
    trainer.collector.shutdown()


def test_loss_compile_null_means_on_for_cpu_only():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")

    def loss(setting):
        return OmegaConf.create({"compile": setting})

    assert resolve_loss_compile(loss(None), cpu) and not resolve_loss_compile(loss(None), cuda)
    assert resolve_loss_compile(loss(True), cuda) and not resolve_loss_compile(loss(False), cpu)
    # A config saved before the setting existed: its run trained, and so resumes, eagerly.
    assert not resolve_loss_compile(OmegaConf.create({}), cpu)


def test_the_none_preset_changes_nothing():
    hopper = "training_env.create_env_fn.base_env.env_name=Hopper-v5"
    assert _compose("ppo", "+preset=none", hopper) == _compose("ppo", hopper)


def _build_warnings(name: str, containing: str, *overrides: str) -> list[str]:
    """The warnings containing ``containing`` issued while building the trainer."""
    cfg = _compose(name, "trainer.progress_bar=false", *overrides)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        instantiate(cfg.trainer).collector.shutdown()
    messages = [str(warning.message) for warning in caught]
    return [message for message in messages if containing in message]


def _mujoco_preset_warnings(name: str, *overrides: str) -> list[str]:
    """The warnings that point at the MuJoCo preset, issued while building the trainer."""
    return _build_warnings(name, "+preset=mujoco_ppo", *overrides)


def test_ppo_defaults_on_a_mujoco_task_point_at_the_mujoco_preset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    hopper = "training_env.create_env_fn.base_env.env_name=Hopper-v5"
    (message,) = _mujoco_preset_warnings("ppo", hopper)
    assert message.startswith("trainer.gamma=0.9 with Hopper-v5: a discount below 0.95 looks")
    assert "about 10 steps ahead" in message  # 1 / (1 - gamma)
    # Not with the preset, not with a long horizon set by hand, not on Pendulum, not for SAC.
    assert not _mujoco_preset_warnings("ppo", hopper, "+preset=mujoco_ppo")
    assert not _mujoco_preset_warnings("ppo", hopper, "trainer.gamma=0.99")
    assert not _mujoco_preset_warnings("ppo")
    assert not _mujoco_preset_warnings("sac", hopper)


def test_flush_denormals_can_be_switched_off(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _compose("ppo", "trainer.flush_denormals=false", "trainer.progress_bar=false")
    trainer = instantiate(cfg.trainer)
    assert trainer.flush_denormals is False
    trainer.collector.shutdown()


def test_sac_buffer_options_build_a_prioritized_or_memory_mapped_buffer(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    common = ("trainer.progress_bar=false", "replay_buffer.storage.max_size=5000")
    prioritized = instantiate(_compose("sac", "replay_buffer=prioritized", *common).trainer)
    sampler = prioritized.replay_buffer.sampler
    assert isinstance(sampler, PrioritizedSampler)
    assert sampler.max_capacity == 5000  # follows the storage's size
    assert isinstance(prioritized.replay_buffer.storage, LazyTensorStorage)
    prioritized.collector.shutdown()
    memmap = instantiate(_compose("sac", "replay_buffer=memmap", *common).trainer)
    assert isinstance(memmap.replay_buffer.storage, LazyMemmapStorage)
    assert isinstance(memmap.replay_buffer.sampler, RandomSampler)
    memmap.collector.shutdown()


def test_all_problems_are_reported_at_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _compose("ppo", "optimizer.lr=-1", "trainer.gamma=2", "collector.frames_per_batch=100")
    assert _problems(cfg) == [
        "optimizer.lr=-1.0: allowed is a number > 0",
        "trainer.gamma=2.0: allowed is a number in [0, 1]",
        "collector.frames_per_batch=100 is not a multiple of training_env.num_workers=8; "
        "use e.g. 96 or 104",
    ]


def test_the_trainer_counts_frames_with_the_envs_action_repeat(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = _compose(
        "ppo", "training_env.create_env_fn.base_env.frame_skip=3", "trainer.total_frames=12000"
    )
    trainer = instantiate(cfg.trainer)
    assert trainer.frame_skip == 3
    batch = trainer.collector.collect_batch()
    assert trainer._count_frames(batch) == 3 * batch.numel() == 3 * 2000
    trainer.collector.shutdown()


def _async_warnings(threads: int) -> list[str]:
    """The warnings about background collection issued while building SAC with ``threads``
    torch threads (the builder sets them)."""
    return _build_warnings(
        "sac",
        "trainer.async_collection=true with",
        "trainer.async_collection=true",
        f"trainer.num_threads={threads}",
    )


def test_async_collection_warns_when_torch_threads_leave_no_core_for_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cores = len(os.sched_getaffinity(0))
    threads = torch.get_num_threads()
    try:
        (message,) = _async_warnings(cores)
        assert f"with {cores} torch threads on {cores} cores" in message
        if cores > 1:
            assert message.endswith(f"set trainer.num_threads to at most {cores - 1}")
            assert not _async_warnings(cores - 1)
    finally:
        torch.set_num_threads(threads)
