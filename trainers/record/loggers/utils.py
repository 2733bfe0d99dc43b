"""Helpers shared by the logger backends: names, hyperparameters, video frames and GIFs."""

from __future__ import annotations

import io
import math
import re
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
VIDEO_CHANNELS = (1, 3)


def safe_name(text: str) -> str:
    """Returns ``text`` with every run of characters outside ``[A-Za-z0-9._-]`` replaced by ``_``.

    A result made only of dots (``.``, ``..``) or empty becomes underscores, so the name can never
    point outside the folder it is joined to.
    """
    name = _UNSAFE.sub("_", text)
    if set(name) <= {"."}:
        name = "_" * max(len(name), 1)
    return name


def safe_relpath(name: str) -> Path:
    """Maps a metric name to a relative path: each ``/``-separated part becomes a folder.

    Examples:
        >>> safe_relpath("train/loss actor").as_posix()
        'train/loss_actor'
        >>> safe_relpath("../x").as_posix()
        '__/x'
    """
    return Path(*(safe_name(part) for part in name.split("/")))


def generate_exp_name(model_name: str, experiment_name: str) -> str:
    """Returns a unique, filesystem-safe run name ``<model>_<experiment>_<YYYYmmdd-HHMMSS>_<uuid8>``.

    Both parts are passed through :func:`safe_name`; an empty part is left out. The timestamp sorts
    runs chronologically and the 8 hex digits of a random UUID keep two runs started in the same
    second apart.

    Examples:
        >>> name = generate_exp_name("PPO", "pendulum run")
        >>> name.startswith("PPO_pendulum_run_")
        True
    """
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    parts = [safe_name(part) for part in (model_name, experiment_name) if part]
    return "_".join([*parts, stamp, uuid.uuid4().hex[:8]])


def flatten_hparams(cfg: Mapping, prefix: str = "") -> dict[str, bool | int | float | str]:
    """Flattens nested mappings to dotted keys; leaves that are not scalars are stringified.

    Scalars are ``bool``, ``int``, ``float`` and ``str``; 0-d tensors and numpy scalars are turned
    into Python numbers; anything else (``None``, lists, paths, enums, ...) becomes ``str(value)``.
    An empty nested mapping is kept as the leaf ``"{}"``.

    Examples:
        >>> flatten_hparams({"optim": {"lr": 3e-4, "betas": [0.9, 0.999]}, "seed": None})
        {'optim.lr': 0.0003, 'optim.betas': '[0.9, 0.999]', 'seed': 'None'}
    """
    flat: dict[str, bool | int | float | str] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and len(value) > 0:
            flat.update(flatten_hparams(value, prefix=f"{name}."))
            continue
        if isinstance(value, (torch.Tensor, np.generic)) and value.ndim == 0:
            value = value.item()
        # Exact types: a str or int subclass (an enum) would not load from a weights-only checkpoint.
        flat[name] = value if type(value) in (bool, int, float, str) else str(value)
    return flat


def check_video(video: torch.Tensor) -> None:
    """Raises unless ``video`` is a uint8 tensor ``[T, C, H, W]`` or ``[B, T, C, H, W]``.

    ``T`` must be at least 1 and ``C`` (channels) 1 or 3.
    """
    if not isinstance(video, torch.Tensor) or video.dtype != torch.uint8:
        kind = video.dtype if isinstance(video, torch.Tensor) else type(video).__name__
        raise TypeError(f"video must be a uint8 torch.Tensor, got {kind}")
    shape = list(video.shape)
    if len(shape) not in (4, 5) or shape[-3] not in VIDEO_CHANNELS or shape[-4] == 0:
        raise ValueError(
            "video must have shape [T, C, H, W] or [B, T, C, H, W] with T >= 1 and C in "
            f"{VIDEO_CHANNELS}, got {shape}"
        )


def video_frames(video: torch.Tensor) -> np.ndarray:
    """Checks a video and returns its frames as a numpy array ``[T, H, W, C]`` (uint8).

    Args:
        video: uint8 tensor ``[T, C, H, W]``, or ``[B, T, C, H, W]`` whose ``B`` videos are tiled
            into a grid of ``ceil(sqrt(B))`` columns (empty cells are black). ``C`` is 1 or 3.
    """
    check_video(video)
    if video.ndim == 4:
        video = video.unsqueeze(0)
    b, t, c, h, w = video.shape
    cols = math.ceil(math.sqrt(b))
    rows = math.ceil(b / cols)
    grid = video.new_zeros(rows * cols, t, c, h, w)
    grid[:b] = video
    # [rows, cols, T, C, H, W] -> [T, rows, H, cols, W, C] -> [T, rows * H, cols * W, C]
    grid = grid.view(rows, cols, t, c, h, w).permute(2, 0, 4, 1, 5, 3)
    return grid.reshape(t, rows * h, cols * w, c).cpu().numpy()


def encode_gif(frames: np.ndarray, fps: int) -> bytes:
    """Encodes frames ``[T, H, W, C]`` (uint8, from :func:`video_frames`) as a looping GIF.

    GIF stores frame durations in hundredths of a second and 256 colours per frame, so the frame
    rate is rounded and frames with many colours are quantized. Pillow merges consecutive
    identical frames into one longer frame.
    """
    from PIL import Image  # Pillow comes with tensorboard, a core dependency

    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if frames.shape[-1] == 1:  # Pillow reads [H, W] uint8 as greyscale and [H, W, 3] as RGB
        frames = frames[..., 0]
    images = [Image.fromarray(frame) for frame in frames]
    buffer = io.BytesIO()
    images[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=1000 / fps,
        loop=0,
    )
    return buffer.getvalue()
