"""PPO's defaults per kind of task: a MuJoCo task named on the command line gets CleanRL's
MuJoCo settings (``+preset=mujoco_ppo``) unless the command line picks a preset itself.

``conf/ppo.yaml`` is tuned for its task, Pendulum-v1 (8 envs, gamma 0.9, lr 1e-3, no
normalization). On MuJoCo locomotion those settings fall far short (Hopper-v5 about 0.4k at 1M
frames, docs/learning.md), while ``mujoco_ppo`` reaches the published returns. As RL Baselines3
Zoo keeps hyperparameters per env id, a PPO command line whose env id (the last one it sets, or
every value of a sweep over it) is a MuJoCo task, and that picks no preset, runs with that preset
and says so on stderr; ``+preset=none`` keeps the plain defaults. The choice is made on the
command line, before Hydra composes, so the run's ``.hydra/overrides.yaml`` records it and its
saved config (what ``--resume`` starts from, through ``--config-path``) holds its values.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException, OverrideParseException

from configs.envs import ENV_NAME_KEY
from configs.overrides import scan_args
from trainers.envs.gym import is_mujoco_task

_CONFIG = "ppo"
_PRESET = "mujoco_ppo"
_PRESET_GROUP = "preset"


def with_task_preset(argv: Sequence[str], config_name: str) -> list[str]:
    """``argv`` with ``+preset=mujoco_ppo`` added before its overrides when it runs PPO's own
    config on MuJoCo tasks only and picks no preset (see the module docstring)."""
    args = list(argv[1:])
    positions, flags = scan_args(args)
    name = flags.get("--config-name", flags.get("-cn", config_name))
    if config_name != _CONFIG or name != _CONFIG or {"--config-path", "-cp"} & set(flags):
        return list(argv)  # another primary config, e.g. a resumed run's saved one
    try:
        overrides = OverridesParser.create().parse_overrides([args[i] for i in positions])
    except OverrideParseException:  # Hydra reports it
        return list(argv)
    env_overrides = [o for o in overrides if o.key_or_group == ENV_NAME_KEY]
    if not env_overrides or any(o.key_or_group == _PRESET_GROUP for o in overrides):
        return list(argv)
    env_names = _env_names(env_overrides[-1])  # Hydra applies the last one
    tasks = ", ".join(dict.fromkeys(env_names or []))
    if env_names and all(is_mujoco_task(env) for env in env_names):
        print(
            f"note: {tasks}: MuJoCo, so PPO runs with +{_PRESET_GROUP}={_PRESET} (CleanRL's "
            "MuJoCo settings; docs/learning.md); +preset=none keeps the Pendulum-tuned defaults",
            file=sys.stderr,
        )
        first = positions[0] + 1  # Hydra takes the overrides only as one unbroken run
        return [*argv[:first], f"+{_PRESET_GROUP}={_PRESET}", *argv[first:]]
    if env_names and any(is_mujoco_task(env) for env in env_names):
        print(
            f"note: the sweep over {tasks} mixes MuJoCo and other tasks, so PPO adds no preset; "
            f"sweep the MuJoCo tasks on their own to run them with +{_PRESET_GROUP}={_PRESET}",
            file=sys.stderr,
        )
    return list(argv)


def _env_names(override: Override) -> list[str] | None:
    """The env ids an override sets: its value, each value of a sweep over a list or range, or
    None for a sweep it cannot list (a glob)."""
    if not override.is_sweep_override():
        return [str(override.value())]
    try:
        return list(override.sweep_string_iterator())
    except HydraException:  # a sweep it cannot list (a glob)
        return None
