"""Tiny policies for collector tests (no dependency on trainers.modules)."""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.nn import InteractionType, TensorDictModuleBase, interaction_type
from torch import nn


class LinearGaussianPolicy(TensorDictModuleBase):
    """action = clamp(W obs + b [+ noise when exploring]); writes sample_log_prob."""

    in_keys = ["observation"]
    out_keys = ["action", "sample_log_prob"]

    def __init__(self, obs_dim: int = 3, action_dim: int = 1) -> None:
        super().__init__()
        self.linear = nn.Linear(obs_dim, action_dim)

    def forward(self, td: TensorDictBase) -> TensorDictBase:
        loc = self.linear(td.get("observation"))
        if interaction_type() in (None, InteractionType.RANDOM):
            noise = torch.randn_like(loc)
        else:
            noise = torch.zeros_like(loc)
        td.set("action", (loc + noise).clamp(-2.0, 2.0))
        td.set("sample_log_prob", -0.5 * noise.pow(2).sum(-1))
        return td


class ConstantPolicy(TensorDictModuleBase):
    """action = the ``value`` parameter for every env (to see which weights a worker uses)."""

    in_keys = ["observation"]
    out_keys = ["action"]

    def __init__(self, value: float = 0.0, action_dim: int = 1) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.full((action_dim,), value))

    def forward(self, td: TensorDictBase) -> TensorDictBase:
        obs = td.get("observation")
        td.set("action", self.value.expand(obs.shape[0], -1).clone())
        return td
