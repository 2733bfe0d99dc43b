"""Recording: loggers (:mod:`trainers.record.loggers`) and rollout recorders (env transforms)."""

from __future__ import annotations

from trainers.record.recorder import PixelRenderTransform, TensorDictRecorder, VideoRecorder

__all__ = ["PixelRenderTransform", "TensorDictRecorder", "VideoRecorder"]
