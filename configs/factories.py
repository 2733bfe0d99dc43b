"""Factories that turn a composed config into a ready PPOTrainer or SACTrainer.

``hydra.utils.instantiate(cfg.trainer)`` calls one of these with the trainer node's fields;
component fields arrive as config nodes. Everything is validated first (ranges, choices and
cross-field consistency, all reported at once), then built in dependency order.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from configs.envs import ENV_NAME_KEY
from configs.trainers import PPOTrainerConfig, SACTrainerConfig
from configs.validation import ConfigError, validate
from trainers.algorithms import PPOTrainer, SACTrainer
from trainers.collectors import AsyncReplayCollector
from trainers.envs import EnvBase
from trainers.envs.gym import is_mujoco_task
from trainers.envs.specs import Categorical
from trainers.hooks.logging import EpisodeWriter
from trainers.modules import batch_actor_critic, compile_networks
from trainers.modules.builders import make_categorical_actor
from trainers.trainer.checkpoint import CheckpointError
from trainers.trainer.seeding import seed_everything
from trainers.trainer.stages import Stage
from trainers.trainer.trainer import Trainer

RESOLVED_CONFIG_FILE = "config_resolved.yaml"
_MULTIPROCESS_COLLECTORS = ("MultiSyncDataCollector", "MultiaSyncDataCollector")
# Below this discount PPO looks too few steps ahead for locomotion (CleanRL, SB3: 0.99).
_MUJOCO_MIN_GAMMA = 0.95


def _runs_worker_processes(collector: DictConfig) -> bool:
    return collector._target_.split(".")[-1] in _MULTIPROCESS_COLLECTORS


def make_ppo_trainer(
    *,
    training_env: DictConfig,
    networks: DictConfig,
    collector: DictConfig,
    replay_buffer: DictConfig,
    loss_module: DictConfig,
    optimizer: DictConfig,
    logger: DictConfig | None,
    num_epochs: int,
    gamma: float,
    lmbda: float,
    anneal_lr: bool,
    **common: Any,
) -> PPOTrainer:
    """Builds a :class:`PPOTrainer` from the ``trainer`` node of a composed config."""
    root = _root(
        PPOTrainerConfig,
        dict(num_epochs=num_epochs, gamma=gamma, lmbda=lmbda, anneal_lr=anneal_lr, **common),
        training_env=training_env,
        networks=networks,
        collector=collector,
        replay_buffer=replay_buffer,
        loss=loss_module,
        optimizer=optimizer,
        logger=logger,
    )
    frames_per_batch = collector.frames_per_batch
    batch_size = replay_buffer.batch_size
    problems = _common_problems(root, common["total_frames"])
    if batch_size > frames_per_batch:
        problems.append(
            f"replay_buffer.batch_size={batch_size} is larger than collector.frames_per_batch="
            f"{frames_per_batch}: a PPO minibatch is a part of one collected batch"
        )
    if replay_buffer.storage.max_size < frames_per_batch:
        problems.append(
            f"replay_buffer.storage.max_size={replay_buffer.storage.max_size} must be >= "
            f"collector.frames_per_batch={frames_per_batch} (PPO stores the whole batch)"
        )
    validate(root, problems)
    build = _Builder(root, common)
    env = build.env(training_env)
    _warn_short_horizon_on_mujoco(OmegaConf.select(root, ENV_NAME_KEY), gamma)
    actor = build.policy(networks.policy_network, env)
    critic = build.component("networks.value_network", networks.value_network, env)
    critic.to(build.device)
    # A no-op for networks it cannot stack. Configs saved before the setting existed lack it:
    # their runs trained, and so resume, with separate networks.
    if networks.get("batch_actor_critic", False):
        batch_actor_critic(actor, critic)
    compiled_networks = networks.get("compile", False)
    if compiled_networks:  # after batching: it replaces the networks
        compile_networks(actor, critic)
    compile_loss = resolve_loss_compile(loss_module, build.device)
    loss = build.component(
        "loss", loss_module, actor, critic, compile=compile_loss and not compiled_networks
    )
    trainer = PPOTrainer(
        collector=build.collector(collector, env, actor),
        loss_module=loss,
        optimizer=build.component("optimizer", optimizer, loss.parameters()),
        replay_buffer=build.component("replay_buffer", replay_buffer),
        batch_size=batch_size,
        num_epochs=num_epochs,
        gamma=gamma,
        lmbda=lmbda,
        anneal_lr=anneal_lr,
        logger=build.logger(logger),
        **build.trainer_kwargs(),
    )
    return build.finish(trainer, env)


def make_sac_trainer(
    *,
    training_env: DictConfig,
    networks: DictConfig,
    collector: DictConfig,
    replay_buffer: DictConfig,
    loss_module: DictConfig,
    optimizer: DictConfig,
    logger: DictConfig | None,
    target_net_updater: DictConfig,
    utd_ratio: float,
    async_collection: bool,
    fused_update: bool = True,
    **common: Any,
) -> SACTrainer:
    """Builds a :class:`SACTrainer` from the ``trainer`` node of a composed config.

    ``fused_update``: configs saved before the setting existed lack it; either value trains to
    the same bits."""
    root = _root(
        SACTrainerConfig,
        dict(
            utd_ratio=utd_ratio,
            async_collection=async_collection,
            fused_update=fused_update,
            **common,
        ),
        training_env=training_env,
        networks=networks,
        collector=collector,
        replay_buffer=replay_buffer,
        loss=loss_module,
        optimizer=optimizer,
        logger=logger,
        target_net_updater=target_net_updater,
    )
    problems = _common_problems(root, common["total_frames"])
    if collector.init_random_frames >= common["total_frames"]:
        problems.append(
            f"collector.init_random_frames={collector.init_random_frames} must be < "
            f"trainer.total_frames={common['total_frames']}: training would never start"
        )
    optim_steps = utd_ratio * collector.frames_per_batch
    if optim_steps < 1 or not float(optim_steps).is_integer():
        problems.append(
            f"trainer.utd_ratio={utd_ratio} x collector.frames_per_batch="
            f"{collector.frames_per_batch} must be a whole number >= 1 of optimization steps"
        )
    if async_collection and networks.get("compile", False):
        problems.append(
            "networks.compile=true and trainer.async_collection=true cannot be combined: the "
            "collector thread and the trainer would compile and run the same torch.compile "
            "functions concurrently, which torch does not support; set one of them to false"
        )
    if async_collection and _runs_worker_processes(collector):
        problems.append(
            "trainer.async_collection=true needs collector=sync (one in-process collector runs "
            f"in a background thread), got {collector._target_}"
        )
    validate(root, problems)
    build = _Builder(root, common)
    if async_collection and build.device.type == "cpu":
        _warn_async_without_a_free_core()
    env = build.env(training_env)
    if isinstance(env.action_spec, Categorical):
        raise ConfigError([f"{ENV_NAME_KEY}: SAC needs continuous (Box) actions"])
    actor = build.component("networks.policy_network", networks.policy_network, env)
    actor.to(build.device)
    qvalue = build.component("networks.value_network", networks.value_network, env)
    qvalue.to(build.device)
    if networks.get("compile", False):
        compile_networks(actor, qvalue)
    loss = build.component(
        "loss",
        loss_module,
        actor,
        qvalue,
        action_spec=env.action_spec,
        compile=resolve_loss_compile(loss_module, build.device),
        **_target_entropy(loss_module.target_entropy),
    )
    buffer = build.component("replay_buffer", replay_buffer)
    sac_collector = build.collector(collector, env, actor)
    if async_collection:  # the thread fills the buffer while the trainer optimizes
        sac_collector = AsyncReplayCollector(sac_collector, buffer)
    trainer = SACTrainer(
        collector=sac_collector,
        optim_steps_per_batch=int(optim_steps),
        loss_module=loss,
        optimizer=build.component("optimizer", optimizer, loss.parameters()),
        replay_buffer=buffer,
        batch_size=replay_buffer.batch_size,
        async_collection=async_collection,
        fused_update=fused_update,
        target_net_updater=build.component("target_net_updater", target_net_updater, loss),
        logger=build.logger(logger),
        **build.trainer_kwargs(),
    )
    return build.finish(trainer, env)


class _Builder:
    """Instantiates components, naming the config key of whatever fails."""

    def __init__(self, root: DictConfig, common: dict[str, Any]) -> None:
        self.root = root
        self.common = dict(common)
        self.resume = self.common.pop("resume")
        self.episodes_file = self.common.pop("episodes_file")
        num_threads = self.common.pop("num_threads")
        if num_threads is not None:
            torch.set_num_threads(num_threads)
        self.device = torch.device(self.common.pop("device"))
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(["trainer.device=cuda but no CUDA device is available"])
        if self.common["seed"] is not None:
            seed_everything(self.common["seed"])  # networks are initialized reproducibly

    def component(self, key: str, node: DictConfig, *args: Any, **kwargs: Any) -> Any:
        try:
            built = hydra.utils.instantiate(node)
            return built(*args, **kwargs) if callable(built) and args else built
        except ConfigError:
            raise
        except Exception as err:
            raise ConfigError([f"{key}: {_root_cause(err)}"]) from err

    def env(self, node: DictConfig) -> EnvBase:
        return self.component(ENV_NAME_KEY, node)

    def policy(self, node: DictConfig, env: EnvBase) -> Any:
        if isinstance(env.action_spec, Categorical):
            settings = {k: node[k] for k in ("num_cells", "activation_class", "depth", "init")}
            policy = make_categorical_actor(env, **settings)
        else:
            policy = self.component("networks.policy_network", node, env)
        return policy.to(self.device)

    def collector(self, node: DictConfig, env: EnvBase, policy: Any) -> Any:
        source: Any = env
        if _runs_worker_processes(node):
            # Worker processes build their own envs from a picklable factory.
            source = hydra.utils.instantiate(self.root.training_env, _partial_=True)
        return self.component(
            "collector", node, source, policy, total_frames=self.common["total_frames"]
        )

    def logger(self, node: DictConfig | None) -> Any:
        if node is None:
            return None
        if node.get("_target_", "").endswith("WandbLogger") and node.get("id") is None:
            # The same run directory resumes the same W&B run.
            node = OmegaConf.merge(node, {"id": _run_id()})  # type: ignore[assignment]
        # Hyperparameters are logged by `finish`, once the run to continue is known.
        return self.component("logger", node)

    def trainer_kwargs(self) -> dict[str, Any]:
        return self.common

    def finish(self, trainer: Trainer, env: EnvBase) -> Any:
        Path(RESOLVED_CONFIG_FILE).write_text(OmegaConf.to_yaml(self.root, resolve=True))
        if self.episodes_file is not None:
            EpisodeWriter(self.episodes_file).register(trainer)
        trainer.register_op(Stage.SHUTDOWN, env.close)
        close_logger = getattr(trainer.logger, "close", None)
        if callable(close_logger):
            trainer.register_op(Stage.SHUTDOWN, close_logger)
        checkpoint = trainer.save_trainer_file
        if self.resume and checkpoint is not None and checkpoint.exists():
            _load_matching_checkpoint(trainer, checkpoint)
            print(f"resumed from {checkpoint.resolve()} at {trainer.state.frames} frames")
        if trainer.logger is not None:
            # After the checkpoint's logger state: a resumed MLflow or W&B logger writes them to
            # the run it continues instead of opening a new one.
            trainer.logger.log_hparams(OmegaConf.to_container(self.root, resolve=True))
        return trainer


def _load_matching_checkpoint(trainer: Trainer, checkpoint: Path) -> None:
    """Loads the run directory's checkpoint; one from another config is a config error."""
    try:
        trainer.load_from_file(checkpoint)
    except CheckpointError:
        raise  # truncated or foreign: its own message says so
    except (RuntimeError, ValueError, KeyError) as err:
        first_line = str(err).strip().splitlines()[0]
        raise ConfigError(
            [
                f"trainer.resume=true: {checkpoint.resolve()} was written by a run with another "
                f"configuration ({first_line}); resume that run with --resume RUN_DIR, or start "
                "this one in a new directory (hydra.run.dir=...) or with trainer.resume=false"
            ]
        ) from err


def _root(schema: type, trainer_values: dict[str, Any], **components: Any) -> DictConfig:
    """The composed config again (Hydra hands the factory detached nodes), for validation,
    error messages with full keys, and the resolved copy saved in the run directory."""
    trainer = OmegaConf.merge(OmegaConf.structured(schema), trainer_values)
    return OmegaConf.create({**components, "trainer": trainer})


def _common_problems(root: DictConfig, total_frames: int) -> list[str]:
    problems = []
    env_skip = root.training_env.create_env_fn.base_env.frame_skip
    if root.trainer.frame_skip != env_skip:
        problems.append(
            f"trainer.frame_skip={root.trainer.frame_skip} differs from "
            f"training_env.create_env_fn.base_env.frame_skip={env_skip}, the env's action "
            "repeat that it counts; set the env's (the trainer follows it)"
        )
    for part in ("storage", "sampler", "writer"):
        value = root.replay_buffer.get(part)
        if value is not None and not isinstance(value, DictConfig):
            problems.append(
                f"replay_buffer.{part}={value!r}: allowed is a config node with a _target_; "
                "pick a buffer with replay_buffer=off_policy|prioritized|memmap (SAC) or set "
                f"its fields, e.g. replay_buffer.{part}.<field>=..."
            )
    frames_per_batch = root.collector.frames_per_batch
    num_envs = root.training_env.num_workers
    if num_envs >= 1 and frames_per_batch % num_envs:
        low = frames_per_batch // num_envs * num_envs
        problems.append(
            f"collector.frames_per_batch={frames_per_batch} is not a multiple of "
            f"training_env.num_workers={num_envs}; use e.g. {low or num_envs} or {low + num_envs}"
        )
    if frames_per_batch > total_frames:
        problems.append(
            f"collector.frames_per_batch={frames_per_batch} is larger than "
            f"trainer.total_frames={total_frames}"
        )
    return problems


def resolve_loss_compile(loss: DictConfig, device: torch.device) -> bool:
    """``loss.compile``: ``None`` compiles on the CPU, where it measured faster, and not on
    accelerators, where it has not been measured; a bool is taken as given. Configs saved
    before the setting existed lack it: their runs trained, and so resume, eagerly (a compiled
    loss rounds differently)."""
    setting = loss.get("compile", False)
    return device.type == "cpu" if setting is None else setting


def _warn_short_horizon_on_mujoco(env_name: str | None, gamma: float) -> None:
    """A discount that looks only a few steps ahead learns little on MuJoCo locomotion: the
    run is pointed at the preset with CleanRL's settings before it spends its budget. (A PPO
    command line that names a MuJoCo env id gets that preset unless it picks another one,
    ``configs/task_defaults.py``; this catches the rest, e.g. ``+preset=none``.)"""
    if gamma >= _MUJOCO_MIN_GAMMA or env_name is None or not is_mujoco_task(env_name):
        return
    warnings.warn(
        f"trainer.gamma={gamma} with {env_name}: a discount below {_MUJOCO_MIN_GAMMA} looks "
        f"about {round(1 / (1 - gamma))} steps ahead, too few for MuJoCo locomotion (Hopper-v5 "
        "at 1M frames: about 0.4k with PPO's Pendulum defaults, gamma 0.9; 2.7k with "
        "+preset=mujoco_ppo, CleanRL's settings with gamma 0.99; docs/learning.md)",
        stacklevel=2,
    )


def _warn_async_without_a_free_core() -> None:
    """Background collection pays only with a core left for the collector thread: where
    torch's threads take every core the update runs on, the thread and the update's parallel
    regions keep preempting each other (README). Cores as the OS counts them (logical)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = torch.get_num_threads()
    if cores is None or threads < cores:
        return
    advice = (
        f"set trainer.num_threads to at most {cores - 1}"
        if cores > 1
        else "set trainer.async_collection=false"
    )
    warnings.warn(
        f"trainer.async_collection=true with {threads} torch threads on {cores} cores: the "
        "collector thread has no core of its own and slows the updates down (SAC on "
        "HalfCheetah-v5, 2 cores, 2 threads: 9.5 s per 1,000 frames against 6.5 s without "
        f"it; at 1 thread 8.4 s against 9.2 s); {advice}",
        stacklevel=2,
    )


def _target_entropy(value: str) -> dict[str, Any]:
    if value == "auto":
        return {}
    try:
        return {"target_entropy": float(value)}
    except ValueError:
        raise ConfigError(
            [f"loss.target_entropy={value!r}: allowed is 'auto' or a number"]
        ) from None


def _root_cause(err: BaseException) -> str:
    while err.__cause__ is not None:
        err = err.__cause__
    return str(err)


def _run_id() -> str:
    return hashlib.sha1(str(Path.cwd().resolve()).encode()).hexdigest()[:16]
