"""Builders of the reference API: ``make_dqn_loss`` and ``make_target_updater``.

Keyword arguments replace the reference's ``cfg`` object, so configs can target these functions.
"""

from __future__ import annotations

from torch import nn

from trainers.modules.actors import QValueActor
from trainers.objectives.dqn import DQNLoss
from trainers.objectives.utils import HardUpdate, SoftUpdate, TargetNetUpdater


def make_target_updater(
    loss_module: nn.Module,
    *,
    hard_update: bool = False,
    tau: float = 0.005,
    value_network_update_interval: int = 1000,
) -> TargetNetUpdater:
    """The updater of ``loss_module``'s target networks, with the targets synced now.

    Args:
        loss_module: a loss with target networks (``SACLoss``, ``DQNLoss``).
        hard_update: copy every ``value_network_update_interval`` steps instead of Polyak
            averaging with ``tau`` at every step.
        tau: Polyak weight of the online network (soft updates).
        value_network_update_interval: optimization steps between copies (hard updates).

    Examples:
        >>> import torch
        >>> from trainers.modules import MLP, QValueActor
        >>> loss = DQNLoss(QValueActor(MLP(4, 2, [8])), gamma=0.99)
        >>> type(make_target_updater(loss, hard_update=True)).__name__
        'HardUpdate'
    """
    updater: TargetNetUpdater
    if hard_update:
        updater = HardUpdate(
            loss_module, value_network_update_interval=value_network_update_interval
        )
    else:
        updater = SoftUpdate(loss_module, tau=tau)
    updater.init_()
    return updater


def make_dqn_loss(
    model: QValueActor,
    *,
    gamma: float = 0.99,
    loss_function: str = "l2",
    double_dqn: bool = False,
    delay_value: bool = True,
    hard_update: bool = True,
    tau: float = 0.005,
    value_network_update_interval: int = 1000,
) -> tuple[DQNLoss, TargetNetUpdater | None]:
    """A ``DQNLoss`` on ``model`` and its target updater (``None`` without ``delay_value``).

    Args:
        model: the Q policy (``QValueActor``).
        gamma: discount factor.
        loss_function: ``"l2"`` or ``"smooth_l1"``.
        double_dqn: select next actions with the online network.
        delay_value: keep a target network.
        hard_update: periodic copies (DQN's default) rather than Polyak averaging.
        tau: Polyak weight (soft updates).
        value_network_update_interval: optimization steps between copies (hard updates).

    Examples:
        >>> from trainers.modules import MLP, QValueActor
        >>> loss, updater = make_dqn_loss(QValueActor(MLP(4, 2, [8])), double_dqn=True)
        >>> type(loss).__name__, type(updater).__name__
        ('DQNLoss', 'HardUpdate')
    """
    loss = DQNLoss(
        model,
        gamma=gamma,
        loss_function=loss_function,
        double_dqn=double_dqn,
        delay_value=delay_value,
    )
    if not delay_value:
        return loss, None
    updater = make_target_updater(
        loss,
        hard_update=hard_update,
        tau=tau,
        value_network_update_interval=value_network_update_interval,
    )
    return loss, updater
