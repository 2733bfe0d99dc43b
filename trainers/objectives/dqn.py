"""Deep Q-network loss (optionally double DQN), with a delayed target network."""

from __future__ import annotations

import torch
from tensordict import TensorDict, TensorDictBase

from trainers.keys import ACTION, NEXT, REWARD, TD_ERROR, TERMINATED
from trainers.modules.actors import QValueActor
from trainers.objectives.common import (
    LossModule,
    check_loss_function,
    distance_loss,
    weighted_mean,
)
from trainers.objectives.value import td0_return_estimate


class DQNLoss(LossModule):
    """One-step Q-learning on transitions with integer actions ``[*batch]``.

    ``loss_qvalue = mean(loss_function(Q(s, a), y))`` (weighted by ``priority_weight`` when
    present) with ``y = r + gamma * (1 - terminated) * Q'(s', argmax_b Q''(s', b))``: ``Q'`` is the
    target network with ``delay_value`` (else the online one, without gradient), and ``Q''`` is
    the online network with ``double_dqn`` (else ``Q'``). Truncated steps bootstrap. Writes
    ``td_error = |Q(s, a) - y|`` (``[*batch]``) into the batch; diagnostics ``q_mean`` and
    ``target_value_mean``.

    Args:
        value_network: a ``QValueActor`` (its ``action_value(td)`` gives ``[..., n]`` values).
        gamma: discount factor.
        loss_function: ``"l2"`` or ``"smooth_l1"`` (Huber, as in the Nature DQN).
        double_dqn: select the next action with the online network (van Hasselt et al., 2016).
        delay_value: keep a target network ``loss.target_value_network`` (update it with
            ``HardUpdate`` or ``SoftUpdate``).

    Examples:
        >>> import torch
        >>> from tensordict import TensorDict
        >>> from trainers.modules import MLP, QValueActor
        >>> loss = DQNLoss(QValueActor(MLP(4, 2, [16])), gamma=0.99)
        >>> td = TensorDict({"observation": torch.randn(3, 4), "action": torch.tensor([0, 1, 1]),
        ...     "next": {"observation": torch.randn(3, 4), "reward": torch.ones(3, 1),
        ...              "terminated": torch.zeros(3, 1, dtype=torch.bool)}}, batch_size=[3])
        >>> loss(td)["loss_qvalue"].shape
        torch.Size([])
    """

    value_network: QValueActor
    target_value_network: QValueActor

    def __init__(
        self,
        value_network: QValueActor,
        *,
        gamma: float,
        loss_function: str = "l2",
        double_dqn: bool = False,
        delay_value: bool = True,
    ) -> None:
        super().__init__()
        check_loss_function("DQNLoss", "loss_function", loss_function)
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"DQNLoss: gamma={gamma}; allowed: a number in [0, 1].")
        if not isinstance(value_network, QValueActor):
            raise TypeError(
                f"DQNLoss: value_network is a {type(value_network).__name__}; expected a "
                "trainers.modules.QValueActor."
            )
        self.value_network = value_network
        if delay_value:
            self._make_target("value_network")
        self.gamma = gamma
        self.loss_function = loss_function
        self.double_dqn = double_dqn
        self.delay_value = delay_value

    @torch.no_grad()
    def _target_value(self, tensordict: TensorDictBase) -> torch.Tensor:
        next_td = tensordict.get(NEXT)
        target_net = self.target_value_network if self.delay_value else self.value_network
        next_values = target_net.action_value(next_td)
        selector = self.value_network.action_value(next_td) if self.double_dqn else next_values
        next_value = next_values.gather(-1, selector.argmax(-1, keepdim=True))
        return td0_return_estimate(
            self.gamma, next_value, tensordict.get(REWARD), tensordict.get(TERMINATED)
        )

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        target = self._target_value(tensordict)
        values = self.value_network.action_value(tensordict)
        q = values.gather(-1, tensordict.get(ACTION).unsqueeze(-1))
        loss = weighted_mean(distance_loss(q, target, self.loss_function), tensordict)
        tensordict.set(TD_ERROR, (q.detach() - target).abs().squeeze(-1))
        return TensorDict(
            {
                "loss_qvalue": loss,
                "q_mean": q.detach().mean(),
                "target_value_mean": target.mean(),
            },
            batch_size=[],
        )
