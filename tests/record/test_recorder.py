"""Recorders as env transforms on real Gymnasium envs; videos read back from a CSVLogger."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image
from tensordict import TensorDict

from trainers.envs import (
    Compose,
    EnvBase,
    GymEnv,
    StepCounter,
    Transform,
    TransformedEnv,
    Unbounded,
)
from trainers.record import PixelRenderTransform, TensorDictRecorder, VideoRecorder
from trainers.record.loggers import CSVLogger

if hasattr(GymEnv, "render"):
    RenderingGymEnv = GymEnv
else:

    class RenderingGymEnv(GymEnv):  # type: ignore[no-redef]
        """GymEnv plus the ``render() -> [num_envs, H, W, C]`` PixelRenderTransform needs
        (serial sub-envs only); GymEnv itself has no render() yet."""

        def render(self) -> np.ndarray | None:
            frames = [env.render() for env in self._backend.envs]
            return None if frames[0] is None else np.stack(frames)


class StepCountPixels(Transform):
    """Synthetic frames: every pixel of env i holds its step count (10 * i added), 2x3 RGB."""

    def _pixels(self, count: torch.Tensor) -> torch.Tensor:
        offset = 10 * torch.arange(count.shape[0]).reshape(-1, 1)
        return (count + offset).to(torch.uint8).reshape(-1, 1, 1, 1).expand(-1, 2, 3, 3)

    def on_reset(self, root, mask):
        root.set("pixels", self._pixels(root.get("step_count")))
        return root

    def on_step(self, td, next_td):
        next_td.set("pixels", self._pixels(next_td.get("step_count")))
        return next_td


def pendulum(num_envs: int, *transforms: Transform) -> TransformedEnv:
    return TransformedEnv(GymEnv("Pendulum-v1", num_envs=num_envs), Compose(*transforms))


# --- TensorDictRecorder --------------------------------------------------------------------


def test_tensordict_recorder_saves_every_skip_th_transition(tmp_path):
    torch.manual_seed(0)
    recorder = TensorDictRecorder(tmp_path / "rollouts" / "eval", skip=2)
    env = pendulum(2, StepCounter(), recorder)
    env.set_seed(0)
    rollout = env.rollout(10)
    path = recorder.dump()
    assert path == tmp_path / "rollouts" / "eval_0.pt"
    saved = torch.load(path)
    assert saved.batch_size == torch.Size([2, 5])
    kept = rollout[:, 1::2]  # steps 2, 4, ..., 10
    for key in ["observation", "action", ("next", "observation"), ("next", "reward")]:
        assert torch.equal(saved[key], kept[key]), key
    assert saved["next", "step_count"][0, :, 0].tolist() == [2, 4, 6, 8, 10]
    assert recorder.dump() is None  # nothing new since the last dump


def test_tensordict_recorder_keeps_only_the_given_keys(tmp_path):
    recorder = TensorDictRecorder(tmp_path / "td", skip=1, keys=["action", ("next", "reward")])
    env = pendulum(1, recorder)
    env.rollout(3)
    saved = torch.load(recorder.dump(suffix="final"))
    assert (tmp_path / "td_final.pt").exists()
    assert set(saved.keys(include_nested=True, leaves_only=True)) == {"action", ("next", "reward")}
    assert saved.batch_size == torch.Size([1, 3])


def test_recorders_reject_bad_skip(tmp_path):
    with pytest.raises(ValueError, match="TensorDictRecorder skip must be an int >= 1, got 0"):
        TensorDictRecorder(tmp_path / "td", skip=0)
    with pytest.raises(ValueError, match="VideoRecorder skip must be an int >= 1, got -1"):
        VideoRecorder(CSVLogger("run", log_dir=tmp_path), "eval", skip=-1)


# --- VideoRecorder -------------------------------------------------------------------------


def test_video_recorder_logs_one_video_per_dump(tmp_path):
    logger = CSVLogger("run", log_dir=tmp_path)
    recorder = VideoRecorder(logger, "eval/video", skip=2)
    env = pendulum(1, StepCounter(max_steps=3), StepCountPixels(), recorder)
    env.rollout(7)  # steps 1..7 have step counts 1 2 3 | 1 2 3 | 1, with resets after 3 and 6
    recorder.dump(step=700)
    video = torch.load(tmp_path / "run" / "videos" / "eval" / "video_700.pt")
    assert video.shape == (6, 3, 2, 3) and video.dtype == torch.uint8  # [T, C, H, W]
    # every reset's frame (count 0) and the frames of steps 2, 4 and 6 (skip=2)
    assert video[:, 0, 0, 0].tolist() == [0, 2, 0, 1, 3, 0]
    assert recorder.frames == []
    recorder.dump(step=800)  # nothing collected: no file
    assert not (tmp_path / "run" / "videos" / "eval" / "video_800.pt").exists()


def test_video_recorder_batches_envs_and_pads_partial_resets(tmp_path):
    logger = CSVLogger("run", log_dir=tmp_path, video_format="pt")
    recorder = VideoRecorder(logger, "eval")
    pixels = StepCountPixels()
    count = torch.tensor([[0], [0]])
    recorder.on_reset(TensorDict({"pixels": pixels._pixels(count)}, [2]), None)
    count = torch.tensor([[1], [1]])
    recorder.on_step(TensorDict({}, [2]), TensorDict({"pixels": pixels._pixels(count)}, [2]))
    # Env 1 starts a new episode; env 0 is not reset and repeats its last frame.
    count = torch.tensor([[7], [0]])  # row 0 is a placeholder the env discards
    recorder.on_reset(
        TensorDict({"pixels": pixels._pixels(count)}, [2]), torch.tensor([False, True])
    )
    recorder.dump(step=5)
    video = torch.load(tmp_path / "run" / "videos" / "eval_5.pt")
    assert video.shape == (2, 3, 3, 2, 3)  # [N, T, C, H, W]
    assert video[0, :, 0, 0, 0].tolist() == [0, 1, 1]
    assert video[1, :, 0, 0, 0].tolist() == [10, 11, 10]


def test_video_recorder_needs_pixels(tmp_path):
    recorder = VideoRecorder(CSVLogger("run", log_dir=tmp_path), "eval")
    env = pendulum(1, recorder)
    with pytest.raises(KeyError, match="put a PixelRenderTransform before it"):
        env.reset()


# --- PixelRenderTransform ------------------------------------------------------------------


def test_pixel_render_transform_needs_a_render_method():
    spec = Unbounded((3,))
    env = EnvBase(num_envs=1, device="cpu", observation_spec=spec, action_spec=spec)
    with pytest.raises(TypeError, match="needs a base env with a render\\(\\) method"):
        TransformedEnv(env, PixelRenderTransform())


def test_pixel_render_transform_asks_for_render_mode():
    env = TransformedEnv(RenderingGymEnv("Pendulum-v1"), PixelRenderTransform())
    with pytest.warns(UserWarning), pytest.raises(RuntimeError, match="render_mode='rgb_array'"):
        env.reset()


def test_mujoco_frames_rendered_and_recorded_as_gif(tmp_path, monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", os.environ.get("MUJOCO_GL", "egl"))
    render = {"render_mode": "rgb_array", "width": 32, "height": 24}
    try:  # mujoco picks its OpenGL backend when first imported, by the env below
        base = RenderingGymEnv("HalfCheetah-v5", num_envs=2, env_kwargs=render)
        base.reset()
        base.render()
    except Exception as error:  # no usable OpenGL backend on this machine
        backend = os.environ["MUJOCO_GL"]
        pytest.skip(f"MuJoCo cannot render off screen here (MUJOCO_GL={backend}): {error!r}")
    logger = CSVLogger("run", log_dir=tmp_path, video_format="gif")
    recorder = VideoRecorder(logger, "eval", fps=10)
    env = TransformedEnv(base, Compose(PixelRenderTransform(), recorder))
    torch.manual_seed(0)
    env.set_seed(0)
    rollout = env.rollout(5)
    env.close()
    pixels = rollout["next", "pixels"]
    assert pixels.shape == (2, 5, 24, 32, 3) and pixels.dtype == torch.uint8
    assert not torch.equal(pixels[:, 0], pixels[:, -1])  # the cheetahs moved
    assert pixels.float().std() > 0
    recorder.dump(step=1)
    gif = Image.open(tmp_path / "run" / "videos" / "eval_1.gif")
    assert gif.size == (64, 24)  # 2 envs side by side (grid of 2 columns)
    assert gif.n_frames == 6  # reset + 5 steps
