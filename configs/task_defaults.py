"""PPO's defaults per kind of task: a MuJoCo task named on the command line gets CleanRL's
MuJoCo settings (``+preset=mujoco_ppo``) unless the command line picks a preset itself.

``conf/ppo.yaml`` is tuned for its task, Pendulum-v1 (8 envs, gamma 0.9, lr 1e-3, no
normalization). On MuJoCo locomotion those settings fall far short (Hopper-v5 about 0.4k at 1M
frames, docs/learning.md), while ``mujoco_ppo`` reaches the published returns. As RL Baselines3
Zoo keeps hyperparameters per env id, a PPO command line that sets a MuJoCo env id and no preset
runs with that preset, and says so on stderr; ``+preset=none`` keeps the plain defaults. The
choice is made on the command line, before Hydra composes, so the run's ``.hydra/overrides.yaml``
records it and its saved config (what ``--resume`` starts from) holds its values.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override

from configs.envs import ENV_NAME_KEY
from configs.overrides import split_flags
from trainers.envs.gym import is_mujoco_task

MUJOCO_PRESET = "mujoco_ppo"
PRESET_GROUP = "preset"
# Flags that choose another primary config (a resumed run's saved one among them).
_CONFIG_FLAGS = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd"}


def with_task_preset(argv: Sequence[str], config_name: str) -> list[str]:
    """``argv`` with ``+preset=mujoco_ppo`` added when it is a PPO command line that sets every
    env it runs (one, or each of a sweep) to a MuJoCo task and picks no preset."""
    args, flags = split_flags(argv[1:])
    if config_name != "ppo" or _CONFIG_FLAGS & set(flags):
        return list(argv)
    try:
        overrides = OverridesParser.create().parse_overrides(args)
    except Exception:  # a grammar error: Hydra reports it
        return list(argv)
    if any(o.key_or_group == PRESET_GROUP for o in overrides):
        return list(argv)
    env_names = [name for o in overrides if o.key_or_group == ENV_NAME_KEY for name in _values(o)]
    if not env_names or not all(is_mujoco_task(name) for name in env_names):
        return list(argv)
    print(
        f"note: {', '.join(dict.fromkeys(env_names))}: MuJoCo, so PPO runs with "
        f"+preset={MUJOCO_PRESET} (CleanRL's MuJoCo settings; docs/learning.md); "
        "+preset=none keeps the Pendulum-tuned defaults",
        file=sys.stderr,
    )
    # Before the first override: Hydra's parser takes the overrides only as one unbroken run.
    first = list(argv).index(args[0], 1)
    return [*argv[:first], f"+{PRESET_GROUP}={MUJOCO_PRESET}", *argv[first:]]


def _values(override: Override) -> list[str]:
    """The env ids an override sets: its value, or each value of a sweep over a list."""
    if not override.is_sweep_override():
        return [str(override.value())]
    try:
        return list(override.sweep_string_iterator())
    except Exception:  # a range or an interval: not env ids
        return [""]
