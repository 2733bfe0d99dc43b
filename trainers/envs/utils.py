"""Env helpers of the reference API: observation statistics and frame-skip corrections."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch

from trainers import keys
from trainers.envs.common import EnvBase

# Settings counted in env frames that correct_for_frame_skip divides by frame_skip.
FRAME_COUNT_FIELDS = (
    "max_frames_per_traj",
    "total_frames",
    "frames_per_batch",
    "record_frames",
    "annealing_frames",
    "init_random_frames",
    "init_env_steps",
    "noops",
)


def get_stats_random_rollout(
    env: EnvBase, num_iter: int = 1000, key: str = keys.OBSERVATION
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of ``key`` over a random-action rollout of ``num_iter`` steps of ``env``.

    The env is reset and stepped (with auto-reset); all ``num_envs * num_iter`` root values are
    pooled. Features that never vary get ``loc = 0`` and ``scale = 1`` so that normalizing with
    them is the identity rather than a division by zero.

    Returns:
        ``(loc, scale)``, each of the per-env shape of ``key``.

    Examples:
        >>> from trainers.envs import GymEnv, get_stats_random_rollout
        >>> loc, scale = get_stats_random_rollout(GymEnv("Pendulum-v1", num_envs=4), 250)
        >>> loc.shape, scale.shape
        (torch.Size([3]), torch.Size([3]))
    """
    if num_iter < 2:
        raise ValueError(f"num_iter must be >= 2 to estimate a std, got {num_iter}")
    data = env.rollout(num_iter).get(key)
    flat = data.reshape(-1, *data.shape[2:]).to(torch.float32)
    loc, scale = flat.mean(0), flat.std(0)
    constant = scale == 0
    return loc.masked_fill(constant, 0.0), scale.masked_fill(constant, 1.0)


def correct_for_frame_skip(cfg: Any, frame_skip: int | None = None) -> Any:
    """Divides every frame count of ``cfg`` by the frame skip (integer division).

    A run asked for ``total_frames=1_000_000`` with ``frame_skip=4`` would otherwise simulate
    4M env steps. The fields corrected are ``FRAME_COUNT_FIELDS`` that ``cfg`` has.

    Args:
        cfg: a mapping, dataclass or any object with those attributes; it is not modified.
        frame_skip: the frame skip; None reads ``cfg.frame_skip`` (or ``cfg["frame_skip"]``).

    Returns:
        A corrected copy (a dict for a mapping, a shallow copy otherwise).

    Examples:
        >>> from trainers.envs import correct_for_frame_skip
        >>> correct_for_frame_skip({"frame_skip": 4, "total_frames": 1000})["total_frames"]
        250
    """
    is_mapping = isinstance(cfg, Mapping)
    if frame_skip is None:
        frame_skip = cfg.get("frame_skip", 1) if is_mapping else getattr(cfg, "frame_skip", 1)
    if not isinstance(frame_skip, int) or frame_skip < 1:
        raise ValueError(f"frame_skip must be an int >= 1, got {frame_skip!r}")
    if is_mapping:
        out = dict(cfg)
        for name in FRAME_COUNT_FIELDS:
            if out.get(name) is not None:
                out[name] = out[name] // frame_skip
        return out
    out = copy.copy(cfg)
    for name in FRAME_COUNT_FIELDS:
        value = getattr(out, name, None)
        if value is not None:
            setattr(out, name, value // frame_skip)
    return out
