"""A tiny deterministic collector and loss for testing the Trainer without environments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDict
from torch import nn

from trainers import BatchSubSampler, Trainer

W_TRUE = torch.tensor([[1.0], [-2.0], [0.5]])


class ToyCollector:
    """Yields regression batches ``[num_envs, T]`` drawn from its own generator."""

    def __init__(self, frames_per_batch: int = 8, total_frames: int = 64, num_envs: int = 2):
        self.frames_per_batch = frames_per_batch
        self.total_frames = total_frames
        self.num_envs = num_envs
        self.frames = 0
        self.generator = torch.Generator().manual_seed(0)
        self.shutdown_calls = 0

    def set_seed(self, seed: int) -> int:
        self.generator.manual_seed(seed)
        return seed + 1

    def __iter__(self):
        steps = self.frames_per_batch // self.num_envs
        while self.total_frames < 0 or self.frames < self.total_frames:
            x = torch.randn(self.num_envs, steps, 3, generator=self.generator)
            noise = 0.1 * torch.randn(self.num_envs, steps, 1, generator=self.generator)
            y = x @ W_TRUE + noise
            self.frames += self.frames_per_batch
            yield TensorDict(
                {"observation": x, "target": y, "next": {"reward": y}},
                batch_size=[self.num_envs, steps],
            )

    def shutdown(self) -> None:
        self.shutdown_calls += 1

    def state_dict(self) -> dict[str, Any]:
        return {"frames": self.frames, "generator": self.generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.frames = state_dict["frames"]
        self.generator.set_state(state_dict["generator"])


class LinearLoss(nn.Module):
    """Mean squared error of a linear model; also reports a detached diagnostic."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 1)

    def forward(self, td: TensorDict) -> TensorDict:
        pred = self.linear(td["observation"])
        return TensorDict(
            {"loss_mse": (pred - td["target"]).pow(2).mean(), "pred_mean": pred.mean().detach()},
            batch_size=[],
        )


def make_toy_trainer(
    total_frames: int = 64,
    save_file: str | Path | None = None,
    save_interval: int = 16,
    seed: int | None = 1,
    **kwargs: Any,
) -> Trainer:
    """A trainer over ToyCollector + LinearLoss + Adam, with random sub-batches."""
    torch.manual_seed(0)
    loss = LinearLoss()
    trainer = Trainer(
        collector=ToyCollector(total_frames=total_frames),
        total_frames=total_frames,
        frame_skip=1,
        optim_steps_per_batch=3,
        loss_module=loss,
        optimizer=torch.optim.Adam(loss.parameters(), lr=0.05),
        progress_bar=False,
        seed=seed,
        save_trainer_file=save_file,
        save_trainer_interval=save_interval,
        log_interval=8,
        **kwargs,
    )
    BatchSubSampler(batch_size=4).register(trainer)
    return trainer
