"""Target-network updaters: Polyak averaging (``SoftUpdate``) and periodic copies (``HardUpdate``).

Both act on a loss module's ``target_parameter_pairs()`` (see ``LossModule``): the targets are
buffers of the loss, so ``loss.state_dict()`` already holds them; an updater's own state (the
step counter of ``HardUpdate``) is in its ``state_dict()``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class TargetNetUpdater:
    """Base of the updaters: ``init_()`` copies the online weights into the targets, ``step()``
    is called after each optimization step.

    Args:
        loss_module: a loss with target networks (``target_parameter_pairs()``).
    """

    def __init__(self, loss_module: nn.Module) -> None:
        pairs = getattr(loss_module, "target_parameter_pairs", None)
        if not callable(pairs):
            raise TypeError(
                f"{type(self).__name__}: loss_module {type(loss_module).__name__} has no target "
                "networks (no target_parameter_pairs()); use a loss from trainers.objectives "
                "that keeps targets (SACLoss, DQNLoss with delay_value=True)."
            )
        if not pairs()[0]:
            raise ValueError(
                f"{type(self).__name__}: loss_module {type(loss_module).__name__} has no target "
                "parameters to update."
            )
        self.loss_module: Any = loss_module

    @torch.no_grad()
    def init_(self) -> None:
        """Makes every target equal to its online network."""
        targets, sources = self.loss_module.target_parameter_pairs()
        torch._foreach_copy_(targets, sources)

    def step(self) -> None:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        del state_dict


class SoftUpdate(TargetNetUpdater):
    """Polyak averaging at every step: ``target <- (1 - tau) * target + tau * online``.

    Give ``tau`` or ``eps = 1 - tau`` (TorchRL's name), not both; the default is
    ``tau = 0.005`` (SAC's published value).

    Args:
        loss_module: a loss with target networks.
        eps: weight kept by the target, in ``(0, 1)``.
        tau: weight of the online network, in ``(0, 1)``.

    Examples:
        >>> import torch
        >>> from trainers.modules import MLP, EnsembleQValueNetwork, TanhNormalActor
        >>> from trainers.objectives import SACLoss
        >>> actor = TanhNormalActor(MLP(3, 2, [8]), low=-torch.ones(1), high=torch.ones(1))
        >>> loss = SACLoss(actor, EnsembleQValueNetwork(3, 1, [8]))
        >>> updater = SoftUpdate(loss, tau=0.01)
        >>> updater.step()  # after each optimizer step
    """

    def __init__(
        self, loss_module: nn.Module, *, eps: float | None = None, tau: float | None = None
    ) -> None:
        super().__init__(loss_module)
        if eps is not None and tau is not None:
            raise ValueError(
                f"SoftUpdate: got eps={eps} and tau={tau}; give one of them (eps = 1 - tau)."
            )
        if tau is None:
            tau = 0.005 if eps is None else 1.0 - eps
        if not 0.0 < tau < 1.0:
            raise ValueError(
                f"SoftUpdate: tau={tau} (eps={1.0 - tau}); allowed: tau and eps in (0, 1)."
            )
        self.tau = tau

    @property
    def eps(self) -> float:
        return 1.0 - self.tau

    @torch.no_grad()
    def step(self) -> None:
        targets, sources = self.loss_module.target_parameter_pairs()
        torch._foreach_lerp_(targets, sources, self.tau)


class HardUpdate(TargetNetUpdater):
    """Copies the online weights into the targets every ``value_network_update_interval`` steps.

    The copy happens at steps ``interval, 2 * interval, ...`` (counting ``step()`` calls); the
    count is saved in ``state_dict()``.

    Args:
        loss_module: a loss with target networks.
        value_network_update_interval: steps between copies, ``>= 1``.

    Examples:
        >>> import torch
        >>> from trainers.modules import MLP, QValueActor
        >>> from trainers.objectives import DQNLoss
        >>> loss = DQNLoss(QValueActor(MLP(4, 2, [8])), gamma=0.99)
        >>> updater = HardUpdate(loss, value_network_update_interval=2)
        >>> updater.step(); updater.step()  # the second call copies
    """

    def __init__(
        self, loss_module: nn.Module, *, value_network_update_interval: int = 1000
    ) -> None:
        super().__init__(loss_module)
        if value_network_update_interval < 1:
            raise ValueError(
                f"HardUpdate: value_network_update_interval={value_network_update_interval}; "
                "allowed: an int >= 1."
            )
        self.value_network_update_interval = value_network_update_interval
        self.steps = 0

    def step(self) -> None:
        self.steps += 1
        if self.steps % self.value_network_update_interval == 0:
            self.init_()

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.steps = int(state_dict["steps"])
