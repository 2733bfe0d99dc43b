"""A check of command-line ``key=value`` keys before Hydra runs, with the keys that exist.

Hydra rejects an unknown key with ``Key 'gamma' not in 'PPOLossConfig'``: the key, but not what
is allowed. This check composes the config the command line selects (its group choices and
``+`` additions) and reports every key it lacks together with the keys of its parent node and
close matches anywhere in the config (``loss.gamma``: did you mean ``trainer.gamma``?). It only
reports what it can decide; anything it cannot compose is left to Hydra's own error.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from omegaconf import DictConfig, OmegaConf

from configs.store import schemas_by_target
from configs.validation import ConfigError

# Hydra's flags that take a value, and the ones after which no training run follows.
_FLAGS_WITH_VALUE = {
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--experimental-rerun",
}
_NO_RUN_FLAGS = {
    "--help",
    "-h",
    "--hydra-help",
    "--info",
    "-i",
    "--cfg",
    "-c",
    "--shell-completion",
}
_INFO_FLAGS = {"--info", "-i"}
_INFO_CHOICES = {"all", "config", "defaults", "defaults-tree", "plugins", "searchpath"}
_ABSENT = object()


def exit_on_unknown_keys(argv: Sequence[str], config_dir: Path, config_name: str) -> None:
    """Exits with code 2 and one message if a ``key=value`` of ``argv`` names no config key."""
    try:
        problems = unknown_key_problems(argv, config_dir, config_name)
    except Exception:  # not decidable here (a bad group name, a grammar error): Hydra reports it
        return
    if problems:
        print(f"error: {ConfigError(problems)}", file=sys.stderr)
        sys.exit(2)


def unknown_key_problems(argv: Sequence[str], config_dir: Path, config_name: str) -> list[str]:
    """One message per override whose key the config selected by ``argv`` does not have."""
    args, flags = split_flags(argv[1:])
    if _NO_RUN_FLAGS & set(flags):
        return []
    config_dir = Path(flags.get("--config-path", flags.get("-cp", config_dir))).resolve()
    config_name = flags.get("--config-name", flags.get("-cn", config_name))
    overrides = OverridesParser.create().parse_overrides(args)
    groups = _groups(config_dir)
    structural = [o for o in overrides if _is_structural(o, groups)]
    if any(o.is_sweep_override() for o in structural):
        return []  # one composition per job; each is checked by Hydra
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        cfg = compose(config_name, overrides=[o.input_line for o in structural if o.input_line])
    return [
        _message(cfg, override)
        for override in overrides
        if override not in structural and _lacks(cfg, override)
    ]


def split_flags(args: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """``(overrides, {flag: value})``; flags without a value map to ``""``."""
    positions, flags = scan_args(args)
    return [args[i] for i in positions], flags


def scan_args(args: Sequence[str]) -> tuple[list[int], dict[str, str]]:
    """``(positions of the overrides in args, {flag: value})``, as Hydra's parser reads them."""
    positions: list[int] = []
    flags: dict[str, str] = {}
    index = 0
    while index < len(args):
        arg = args[index]
        if arg.startswith("-"):
            name, _, value = arg.partition("=")
            following = args[index + 1] if index + 1 < len(args) else None
            if not value and following is not None and _takes(name, following):
                value, index = following, index + 1
            flags[name] = value
        else:
            positions.append(index)
        index += 1
    return positions, flags


def _takes(flag: str, following: str) -> bool:
    """Whether ``flag`` takes ``following`` as its value (``--info`` takes one optionally)."""
    return flag in _FLAGS_WITH_VALUE or (flag in _INFO_FLAGS and following in _INFO_CHOICES)


def _groups(config_dir: Path) -> set[str]:
    """Config group names: the ConfigStore's and the config directory's subdirectories."""
    stored = {name for name in ConfigStore.instance().list("") if not name.endswith(".yaml")}
    return stored | {path.name for path in config_dir.iterdir() if path.is_dir()}


def _is_structural(override: Override, groups: set[str]) -> bool:
    """A group choice (``logger=tensorboard``, ``+preset=...``) or a ``+``/``++``/``~`` edit."""
    if override.type is not OverrideType.CHANGE or override.package is not None:
        return True
    key = override.key_or_group
    return "." not in key and key.split("/")[0] in groups


def _lacks(cfg: DictConfig, override: Override) -> bool:
    key = override.key_or_group
    if key.startswith("hydra."):
        return False
    return OmegaConf.select(cfg, key, default=_ABSENT, throw_on_resolution_failure=False) is _ABSENT


def _is_free_form(node: DictConfig) -> bool:
    """No schema: neither a dataclass node nor (in a run's saved config) a known ``_target_``."""
    if OmegaConf.get_type(node) not in (dict, None):
        return False
    return node.get("_target_") not in schemas_by_target()


def _message(cfg: DictConfig, override: Override) -> str:
    key = override.key_or_group
    parent_key, _, name = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key, default=_ABSENT) if parent_key else cfg
    value = override.input_line.partition("=")[2] if override.input_line else ""
    message = f"{key}={value}: unknown key"
    if parent_key and isinstance(parent, DictConfig) and _is_free_form(parent):
        # A mapping without a schema (e.g. env_kwargs): Hydra adds keys to it with a leading +.
        return f"{message}; {parent_key} takes new keys with a leading +: +{key}={value}"
    if isinstance(parent, DictConfig):
        names = [str(k) for k in parent if not str(k).startswith("_")]
        message += f"; {parent_key or 'the config'} has: {', '.join(names)}"
    elif parent is _ABSENT and parent_key:
        message += f" ({parent_key} does not exist)"
    paths = list(_paths(cfg))
    same_name = [p for p in paths if p.rpartition(".")[2] == name and p != key]
    close = difflib.get_close_matches(key, paths, n=3, cutoff=0.75)
    suggestions = list(dict.fromkeys([*same_name, *close]))[:3]
    if suggestions:
        message += f"; did you mean {' or '.join(suggestions)}?"
    return message


def _paths(node: Any, prefix: str = "") -> Iterator[str]:
    """Every key path of ``node``: its nodes and its values."""
    if isinstance(node, DictConfig):
        for key in node:
            name = str(key)
            if name.startswith("_") or (not prefix and name == "hydra"):
                continue
            yield f"{prefix}{name}"
            yield from _paths(node._get_node(key), f"{prefix}{name}.")
