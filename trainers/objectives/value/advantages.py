"""Value-estimator modules that write advantages and value targets into a batch."""

from __future__ import annotations

import torch
from tensordict import TensorDictBase
from tensordict.nn import TensorDictModuleBase
from tensordict.utils import unravel_key
from torch import nn

from trainers.keys import ADVANTAGE, DONE, MASK, NEXT, REWARD, TERMINATED, VALUE_TARGET
from trainers.objectives.value.functional import generalized_advantage_estimate


class GAE(nn.Module):
    """Generalized advantage estimation on a collector batch ``[num_envs, T]``.

    Evaluates ``value_network`` (no gradient) on the root and on ``"next"`` (writing its
    ``out_keys[0]``, normally ``state_value``, in both), then writes ``ADVANTAGE`` and
    ``VALUE_TARGET`` (``[num_envs, T, 1]``) with ``generalized_advantage_estimate``: termination
    stops bootstrapping, truncation bootstraps from the true final observation, and no value
    crosses an episode boundary. The batch must keep its time dimension (last batch dimension).
    With a validity mask (``("collector", "mask")``), a step followed by padding ends its
    trajectory there (it still bootstraps from its own next value), so nothing flows back
    from padding frames.

    Args:
        gamma: discount factor in ``[0, 1]``.
        lmbda: GAE lambda in ``[0, 1]``.
        value_network: a TensorDict module writing a ``[..., 1]`` value (e.g. ``ValueOperator``).
        average_gae: standardize the advantages over the whole batch (mean 0, std 1).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from trainers.modules import ValueOperator
        >>> gae = GAE(0.99, 0.95, ValueOperator(torch.nn.Linear(3, 1)))
        >>> flags = torch.zeros(2, 5, 1, dtype=torch.bool)
        >>> td = TensorDict({"observation": torch.randn(2, 5, 3), "next": {
        ...     "observation": torch.randn(2, 5, 3), "reward": torch.randn(2, 5, 1),
        ...     "done": flags, "terminated": flags}}, batch_size=[2, 5])
        >>> gae(td)["advantage"].shape
        torch.Size([2, 5, 1])
    """

    def __init__(
        self,
        gamma: float,
        lmbda: float,
        value_network: TensorDictModuleBase,
        average_gae: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (("gamma", gamma), ("lmbda", lmbda)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"GAE: {name}={value}; allowed: a number in [0, 1].")
        self.gamma = gamma
        self.lmbda = lmbda
        self.value_network = value_network
        self.average_gae = average_gae

    @torch.no_grad()
    def forward(self, tensordict: TensorDictBase) -> TensorDictBase:
        if tensordict.batch_dims < 1:
            raise ValueError("GAE: the batch needs a time dimension, got batch_size=[].")
        value_key = self.value_network.out_keys[0]
        self.value_network(tensordict)
        self.value_network(tensordict.get(NEXT))
        advantage, value_target = generalized_advantage_estimate(
            self.gamma,
            self.lmbda,
            tensordict.get(value_key),
            tensordict.get(unravel_key((NEXT, value_key))),
            tensordict.get(REWARD),
            _trajectory_ends(tensordict),
            tensordict.get(TERMINATED),
        )
        if self.average_gae:
            advantage = (advantage - advantage.mean()) / advantage.std().clamp_min(1e-8)
        return tensordict.update({ADVANTAGE: advantage, VALUE_TARGET: value_target})


def _trajectory_ends(tensordict: TensorDictBase) -> torch.Tensor:
    """``done``, and also true at each step whose next step is padding (mask false)."""
    done = tensordict.get(DONE)
    mask = tensordict.get(MASK, None)
    if mask is None:
        return done
    before_padding = torch.zeros_like(done)
    before_padding[..., :-1, :] = ~mask[..., 1:].unsqueeze(-1)
    return done | before_padding
