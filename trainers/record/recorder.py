"""Env transforms that record rollouts: rendered frames, videos for a logger, raw TensorDicts.

They are evaluation tools: put them on the env of evaluation rollouts, in this order, e.g.
``TransformedEnv(base_env, Compose(PixelRenderTransform(), VideoRecorder(logger, "eval")))``,
then call ``dump()`` after each rollout.

MuJoCo renders off screen through OpenGL: on a machine without a display set ``MUJOCO_GL=egl``
(or ``osmesa``) before the first render. Classic-control envs render with pygame.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tensordict import NestedKey, TensorDict, TensorDictBase

from trainers import keys
from trainers.envs.common import EnvBase
from trainers.envs.transforms import Transform
from trainers.record.loggers.common import Logger

PIXELS = "pixels"


def _check_skip(skip: int, owner: str) -> None:
    if not isinstance(skip, int) or skip < 1:
        raise ValueError(f"{owner} skip must be an int >= 1, got {skip!r}")


class PixelRenderTransform(Transform):
    """Writes the base env's rendered frames to ``out_key`` at every reset and step.

    The base env's ``render()`` must return the frames of its ``num_envs`` sub-envs as uint8
    ``[num_envs, H, W, C]`` (a single ``[H, W, C]`` frame is accepted when ``num_envs == 1``), as
    Gymnasium envs made with ``render_mode="rgb_array"`` do, e.g.
    ``GymEnv("HalfCheetah-v5", env_kwargs={"render_mode": "rgb_array", "width": 128,
    "height": 128})``. Frames are written as uint8 tensors ``[num_envs, H, W, C]`` on the env's
    device; they are taken after the reset or step, so a partial reset shows the new episodes'
    first frames next to the current frames of the other envs.

    Args:
        out_key: the key the frames are written to.

    Examples:
        >>> env = TransformedEnv(
        ...     GymEnv("HalfCheetah-v5", env_kwargs={"render_mode": "rgb_array"}),
        ...     PixelRenderTransform(),
        ... )
        >>> env.reset()["pixels"].shape
        torch.Size([1, 480, 480, 3])
    """

    def __init__(self, out_key: str = PIXELS) -> None:
        super().__init__()
        self.out_key = out_key

    def set_parent(self, parent: EnvBase) -> None:
        if not callable(getattr(parent, "render", None)):
            raise TypeError(
                f"PixelRenderTransform needs a base env with a render() method, got "
                f"{type(parent).__name__}"
            )
        super().set_parent(parent)

    def on_reset(self, root: TensorDictBase, mask: torch.Tensor | None) -> TensorDictBase:
        root.set(self.out_key, self._render())
        return root

    def on_step(self, td: TensorDictBase, next_td: TensorDictBase) -> TensorDictBase:
        next_td.set(self.out_key, self._render())
        return next_td

    def _render(self) -> torch.Tensor:
        parent = self.parent
        if parent is None:
            raise RuntimeError("PixelRenderTransform must be used inside a TransformedEnv")
        frames = parent.render()  # type: ignore[attr-defined]  # checked in set_parent
        if frames is None:
            raise RuntimeError(
                f"{type(parent).__name__}.render() returned None: make the env with "
                "render_mode='rgb_array' (GymEnv: env_kwargs={'render_mode': 'rgb_array'})"
            )
        # A copy: renderers may return views of a buffer they reuse (or with negative strides).
        pixels = (
            frames.clone()
            if isinstance(frames, torch.Tensor)
            else torch.from_numpy(np.array(frames))
        )
        if pixels.ndim == 3 and parent.num_envs == 1:
            pixels = pixels.unsqueeze(0)
        if pixels.dtype != torch.uint8 or pixels.ndim != 4 or pixels.shape[0] != parent.num_envs:
            raise ValueError(
                f"{type(parent).__name__}.render() must return uint8 frames [num_envs="
                f"{parent.num_envs}, H, W, C], got {pixels.dtype} {list(pixels.shape)}"
            )
        return pixels.to(parent.device)

    def __repr__(self) -> str:
        return f"PixelRenderTransform(out_key={self.out_key!r})"


class VideoRecorder(Transform):
    """Collects frames during rollouts and logs them as one video on :meth:`dump`.

    Reads uint8 frames ``[num_envs, H, W, C]`` (``C`` 1 or 3) from ``in_key`` at each full reset
    and every ``skip``-th step; the frames stay in the TensorDicts. On a partial reset the envs
    that did not reset repeat their last frame, so every env's video has the same length.
    :meth:`dump` sends the video to ``logger.log_video`` as ``[T, C, H, W]`` (one env) or
    ``[num_envs, T, C, H, W]`` (tiled in a grid by the logger) and empties the buffer.

    Frames are kept on the CPU until :meth:`dump`: a long rollout at full resolution takes
    ``T * num_envs * H * W * C`` bytes, so prefer small render sizes or ``skip > 1``.

    Args:
        logger: where :meth:`dump` logs the video.
        tag: the video's name in the logger.
        in_key: the key holding the frames (written by :class:`PixelRenderTransform`).
        skip: keep one step frame out of ``skip``; >= 1.
        fps: frame rate of the video; None: the logger's default.

    Examples:
        >>> recorder = VideoRecorder(logger, tag="eval/video")
        >>> env = TransformedEnv(base_env, Compose(PixelRenderTransform(), recorder))
        >>> env.rollout(200, policy)
        >>> recorder.dump(step=trainer.state.frames)
    """

    def __init__(
        self,
        logger: Logger,
        tag: str,
        in_key: str = PIXELS,
        skip: int = 1,
        fps: int | None = None,
    ) -> None:
        super().__init__()
        _check_skip(skip, "VideoRecorder")
        self.logger = logger
        self.tag = tag
        self.in_key = in_key
        self.skip = skip
        self.fps = fps
        self.frames: list[torch.Tensor] = []
        self._steps = 0

    def on_reset(self, root: TensorDictBase, mask: torch.Tensor | None) -> TensorDictBase:
        pixels = self._pixels(root)
        if mask is not None and self.frames:
            row_mask = mask.to(pixels.device).reshape(-1, 1, 1, 1)
            pixels = torch.where(row_mask, pixels, self.frames[-1])
        if mask is None or self.frames:
            self.frames.append(pixels)
        return root

    def on_step(self, td: TensorDictBase, next_td: TensorDictBase) -> TensorDictBase:
        self._steps += 1
        if self._steps % self.skip == 0:
            self.frames.append(self._pixels(next_td))
        return next_td

    def _pixels(self, td: TensorDictBase) -> torch.Tensor:
        pixels = td.get(self.in_key, None)
        if pixels is None:
            raise KeyError(
                f"VideoRecorder reads frames from {self.in_key!r}, which the TensorDict lacks; "
                "put a PixelRenderTransform before it"
            )
        return pixels.to("cpu", copy=True)

    def dump(self, step: int | None = None) -> None:
        """Logs the frames collected since the last dump as one video at ``step``, then clears
        them; does nothing when no frame was collected."""
        if not self.frames:
            return
        video = torch.stack(self.frames, dim=1).permute(0, 1, 4, 2, 3)  # [N, T, C, H, W]
        self.frames = []
        self._steps = 0
        self.logger.log_video(
            self.tag, video[0] if video.shape[0] == 1 else video, step=step, fps=self.fps
        )

    def __repr__(self) -> str:
        return f"VideoRecorder(tag={self.tag!r}, in_key={self.in_key!r}, skip={self.skip})"


class TensorDictRecorder(Transform):
    """Keeps every ``skip``-th transition of the rollouts and saves them with ``torch.save``.

    A transition is the step's root TensorDict (observation, action, ...) with what the env
    returned under ``"next"``, as the transforms before this one left it. :meth:`dump` stacks
    the kept transitions into a TensorDict of batch ``[num_envs, T]`` and writes it to
    ``<out_file_base>_<n>.pt`` (``n`` counts dumps, or the ``suffix`` given); load it with
    ``torch.load(path)``.

    Args:
        out_file_base: path prefix of the files; its folder is created.
        skip: keep one step out of ``skip``; >= 1.
        keys: keep only these (nested) keys, e.g. ``["observation", ("next", "reward")]``;
            None keeps everything. A missing key raises at the first kept step.

    Examples:
        >>> recorder = TensorDictRecorder("rollouts/eval", skip=1)
        >>> env = TransformedEnv(GymEnv("Pendulum-v1"), recorder)
        >>> env.rollout(100)
        >>> recorder.dump()  # rollouts/eval_0.pt
        PosixPath('rollouts/eval_0.pt')
    """

    def __init__(
        self,
        out_file_base: str | Path,
        skip: int = 4,
        keys: Sequence[NestedKey] | None = None,
    ) -> None:
        super().__init__()
        _check_skip(skip, "TensorDictRecorder")
        self.out_file_base = Path(out_file_base)
        self.skip = skip
        self.keys = None if keys is None else list(keys)
        self.transitions: list[TensorDictBase] = []
        self._steps = 0
        self._dumps = 0

    def on_step(self, td: TensorDictBase, next_td: TensorDictBase) -> TensorDictBase:
        self._steps += 1
        if self._steps % self.skip == 0:
            transition = td.exclude(keys.NEXT)
            transition.set(keys.NEXT, next_td)
            if self.keys is not None:
                transition = transition.select(*self.keys, strict=True)
            self.transitions.append(transition.to("cpu").clone())
        return next_td

    def dump(self, suffix: str | None = None) -> Path | None:
        """Saves and clears the kept transitions; returns the file, or None if there were none."""
        if not self.transitions:
            return None
        path = Path(f"{self.out_file_base}_{self._dumps if suffix is None else suffix}.pt")
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(TensorDict.stack(self.transitions, dim=1), path)
        self.transitions = []
        self._steps = 0
        self._dumps += 1
        return path

    def __repr__(self) -> str:
        return f"TensorDictRecorder({str(self.out_file_base)!r}, skip={self.skip})"
