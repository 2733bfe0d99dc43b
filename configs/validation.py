"""Range checks attached to config fields, run on the composed config before any work.

OmegaConf already rejects unknown keys and values of the wrong type; these checks add the
ranges and choices. A field declares its check with ``checked(default, rule)``; :func:`validate`
walks a composed config and raises one :class:`ConfigError` listing every bad value with its
full key, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

Rule = Callable[[Any], str | None]  # returns what is allowed, or None when the value is fine


class ConfigError(ValueError):
    """A composed configuration that cannot train; the message lists every problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid configuration:\n{lines}")


def checked(default: Any, rule: Rule) -> Any:
    """A dataclass field with ``default`` whose value must satisfy ``rule``."""
    if isinstance(default, list | dict):
        return dataclasses.field(default_factory=lambda: default.copy(), metadata={"rule": rule})
    return dataclasses.field(default=default, metadata={"rule": rule})


def gt(bound: float) -> Rule:
    return lambda v: None if v > bound else f"a number > {bound}"


def ge(bound: float) -> Rule:
    return lambda v: None if v >= bound else f"a number >= {bound}"


def between(low: float, high: float) -> Rule:
    return lambda v: None if low <= v <= high else f"a number in [{low}, {high}]"


def one_of(*options: Any) -> Rule:
    return lambda v: None if v in options else f"one of {', '.join(map(repr, options))}"


def positive_ints() -> Rule:
    def rule(v: Any) -> str | None:
        ok = len(v) > 0 and all(isinstance(x, int) and x > 0 for x in v)
        return None if ok else "a non-empty list of integers > 0, e.g. [64, 64]"

    return rule


def adam_betas() -> Rule:
    def rule(v: Any) -> str | None:
        ok = len(v) == 2 and all(isinstance(b, int | float) and 0 <= b < 1 for b in v)
        return None if ok else "two numbers in [0, 1), e.g. [0.9, 0.999]"

    return rule


def torch_device() -> Rule:
    def rule(v: Any) -> str | None:
        try:
            torch.device(v)
        except (RuntimeError, TypeError):
            return "a torch device: cpu, cuda or cuda:N, mps, ..."
        return None

    return rule


def gt_or_minus_one(bound: float) -> Rule:
    return lambda v: None if v == -1 or v > bound else f"-1 (endless) or a number > {bound}"


def validate(cfg: DictConfig, extra: Sequence[str] = ()) -> None:
    """Raises :class:`ConfigError` if any checked field of ``cfg`` (recursively) is out of range.

    ``extra`` adds problems found by cross-field checks so that all are reported together.
    """
    problems = [*_problems(cfg, seen=set()), *extra]
    if problems:
        raise ConfigError(problems)


def _problems(node: Any, seen: set[int]) -> list[str]:
    if id(node) in seen:
        return []
    seen.add(id(node))
    out: list[str] = []
    if isinstance(node, ListConfig):
        for item in node:
            if isinstance(item, DictConfig | ListConfig):
                out += _problems(item, seen)
        return out
    if not isinstance(node, DictConfig):
        return out
    schema = OmegaConf.get_type(node)
    if not dataclasses.is_dataclass(schema):
        # A plain node (e.g. from a run's saved config.yaml, composed again by --resume) is
        # checked against the schema of what it builds: types, unknown keys, then ranges.
        schema = _schema_of_target(node.get("_target_"))
    bad_types: set[str] = set()
    if schema is not None and not dataclasses.is_dataclass(OmegaConf.get_type(node)):
        type_problems, bad_types = _type_problems(node, schema)
        out += type_problems
    rules = (
        {
            f.name: f.metadata["rule"]
            for f in dataclasses.fields(schema)
            if "rule" in f.metadata and f.name not in bad_types
        }
        if dataclasses.is_dataclass(schema)
        else {}
    )
    for key in node:
        value = node[key]
        if isinstance(value, DictConfig | ListConfig):
            out += _problems(value, seen)
            if key in rules and isinstance(value, ListConfig):
                out += _check(node, str(key), list(value), rules[str(key)])
        elif key in rules and value is not None:
            out += _check(node, str(key), value, rules[str(key)])
    return out


def _schema_of_target(target: Any) -> type | None:
    from configs.store import schemas_by_target  # the schema modules import this one

    return schemas_by_target().get(target) if isinstance(target, str) else None


def _type_problems(node: DictConfig, schema: type) -> tuple[list[str], set[str]]:
    """Unknown keys and values of the wrong type among ``node``'s own fields, and their keys.

    Nested nodes are left to their own check (they have a ``_target_`` of their own).
    """
    own = {
        key: value
        for key, value in OmegaConf.to_container(node, resolve=False).items()  # type: ignore[union-attr]
        if not isinstance(value, dict)
    }
    names = {f.name for f in dataclasses.fields(schema)}
    bad = {str(key) for key in node if key not in names}
    problems = [f"{node._get_full_key(key)}: Key '{key}' not in '{schema.__name__}'" for key in bad]
    own = {k: v for k, v in own.items() if k not in bad}
    while True:  # a merge stops at its first bad value: drop it and merge the rest again
        try:
            OmegaConf.merge(OmegaConf.structured(schema), own)
            return problems, bad
        except (ValidationError, ConfigKeyError) as err:
            key = str(err.key)
            problems.append(f"{node._get_full_key(key)}: {str(err.msg).splitlines()[0]}")
            bad.add(key)
            own.pop(key, None)


def _check(node: DictConfig, key: str, value: Any, rule: Rule) -> list[str]:
    try:
        allowed = rule(value)
    except TypeError:
        allowed = "a value of another type"
    if allowed is None:
        return []
    full_key = node._get_full_key(key)
    return [f"{full_key}={value!r}: allowed is {allowed}"]
