"""Hooks that reshape or rescale batches before the loss sees them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from tensordict import TensorDictBase

from trainers import keys
from trainers.hooks.base import TrainerHookBase
from trainers.trainer.stages import Stage

if TYPE_CHECKING:
    from trainers.trainer.trainer import Trainer

NestedKey = str | tuple[str, ...]


class SelectKeys(TrainerHookBase):
    """Keeps only ``keys`` of each collected batch (``batch_process``).

    Examples:
        >>> SelectKeys(["observation", "action", ("next", "reward")]).register(trainer)
    """

    def __init__(self, keys: Sequence[NestedKey]) -> None:
        if isinstance(keys, str):
            raise TypeError(f"SelectKeys expects a list of keys, got the string {keys!r}")
        self.keys = list(keys)

    def register(self, trainer: Trainer, name: str | None = None) -> None:
        del name
        trainer.register_op(Stage.BATCH_PROCESS, self)

    def __call__(self, batch: TensorDictBase) -> TensorDictBase:
        return batch.select(*self.keys)


class BatchSubSampler(TrainerHookBase):
    """Draws a random sub-batch for each optimization step (``process_optim_batch``).

    With ``sub_traj_len == 0`` it draws ``batch_size`` frames uniformly from the flattened
    batch; otherwise ``batch_size // sub_traj_len`` windows of ``sub_traj_len`` consecutive
    frames of one env, returned with shape ``[n_windows, sub_traj_len]``.

    Args:
        batch_size: frames per sub-batch.
        sub_traj_len: window length; 0 for independent frames.

    Examples:
        >>> BatchSubSampler(batch_size=64).register(trainer)
    """

    def __init__(self, batch_size: int, sub_traj_len: int = 0) -> None:
        if batch_size < 1:
            raise ValueError(f"BatchSubSampler batch_size must be >= 1, got {batch_size}")
        if sub_traj_len < 0 or (sub_traj_len and batch_size % sub_traj_len):
            raise ValueError(
                f"sub_traj_len must be 0 or divide batch_size={batch_size}, got {sub_traj_len}"
            )
        self.batch_size = batch_size
        self.sub_traj_len = sub_traj_len

    def register(self, trainer: Trainer, name: str | None = None) -> None:
        del name
        trainer.register_op(Stage.PROCESS_OPTIM_BATCH, self)

    def __call__(self, batch: TensorDictBase) -> TensorDictBase:
        if self.sub_traj_len == 0:
            flat = batch.reshape(-1)
            index = torch.randint(flat.shape[0], (self.batch_size,), device=flat.device)
            return flat[index]
        if batch.ndim != 2 or batch.shape[1] < self.sub_traj_len:
            raise ValueError(
                f"BatchSubSampler(sub_traj_len={self.sub_traj_len}) needs a [num_envs, time] "
                f"batch with time >= sub_traj_len, got batch size {list(batch.shape)}"
            )
        n_windows = self.batch_size // self.sub_traj_len
        envs = torch.randint(batch.shape[0], (n_windows, 1), device=batch.device)
        starts = torch.randint(batch.shape[1] - self.sub_traj_len + 1, (n_windows, 1))
        steps = starts.to(batch.device) + torch.arange(self.sub_traj_len, device=batch.device)
        return batch[envs, steps]


class RewardNormalizer(TrainerHookBase):
    """Standardizes rewards with running statistics of the collected rewards.

    ``update_reward_stats`` (``batch_process``) updates an exponentially decayed mean and
    variance; ``normalize_reward`` (``process_optim_batch``) rewrites the sub-batch's reward as
    ``scale * (r - mean) / std``. The statistics are checkpointed.

    Args:
        decay: weight of the old statistics at each update.
        scale: multiplier after standardization.
        eps: floor of the standard deviation.
        reward_key: the entry to normalize.

    Examples:
        >>> RewardNormalizer(decay=0.999).register(trainer)
    """

    def __init__(
        self,
        decay: float = 0.999,
        scale: float = 1.0,
        eps: float = 1e-4,
        reward_key: NestedKey = keys.REWARD,
    ) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"RewardNormalizer decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.scale = scale
        self.eps = eps
        self.reward_key = reward_key
        self._sum = torch.zeros(())
        self._sum_sq = torch.zeros(())
        self._weight = torch.zeros(())

    def register(self, trainer: Trainer, name: str | None = "reward_normalizer") -> None:
        trainer.register_module(name or "reward_normalizer", self)
        trainer.register_op(Stage.BATCH_PROCESS, self.update_reward_stats)
        trainer.register_op(Stage.PROCESS_OPTIM_BATCH, self.normalize_reward)

    @torch.no_grad()
    def update_reward_stats(self, batch: TensorDictBase) -> None:
        reward = batch.get(self.reward_key).float()
        mask = batch.get(keys.MASK, None)
        if mask is not None:
            reward = reward[mask]
        device = reward.device
        self._sum = self.decay * self._sum.to(device) + reward.sum()
        self._sum_sq = self.decay * self._sum_sq.to(device) + reward.pow(2).sum()
        self._weight = self.decay * self._weight.to(device) + reward.numel()

    def normalize_reward(self, batch: TensorDictBase) -> TensorDictBase:
        batch = batch.clone(recurse=False)
        batch.set(self.reward_key, self.normalize(batch.get(self.reward_key)))
        return batch

    def normalize(self, reward: torch.Tensor) -> torch.Tensor:
        mean = self._sum / self._weight.clamp_min(1)
        var = (self._sum_sq / self._weight.clamp_min(1) - mean.pow(2)).clamp_min(0)
        std = var.sqrt().clamp_min(self.eps)
        return self.scale * (reward - mean.to(reward.device)) / std.to(reward.device)

    def state_dict(self) -> dict[str, Any]:
        return {"sum": self._sum, "sum_sq": self._sum_sq, "weight": self._weight}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._sum = state_dict["sum"].clone()
        self._sum_sq = state_dict["sum_sq"].clone()
        self._weight = state_dict["weight"].clone()
