"""Hooks that keep collector policies and target networks in step with training."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from trainers.hooks.base import TrainerHookBase
from trainers.trainer.stages import Stage

if TYPE_CHECKING:
    from trainers.trainer.trainer import Trainer


class UpdateWeights(TrainerHookBase):
    """Pushes the trained policy weights to the collector every ``update_weights_interval`` batches.

    Also once at ``setup``, before the first batch: a collector that runs its own copy of the
    policy (worker processes, another device, background collection) made that copy when it
    was built, so after ``load_from_file`` it would otherwise collect a batch with the weights
    the run started from.

    Args:
        collector: an object with ``update_policy_weights_(weights=None)``.
        update_weights_interval: batches between two pushes.
        policy_weights_getter: returns the weights to push; None lets the collector fetch them.

    Examples:
        >>> UpdateWeights(collector, 1).register(trainer)
    """

    def __init__(
        self,
        collector: Any,
        update_weights_interval: int = 1,
        policy_weights_getter: Callable[[], Any] | None = None,
    ) -> None:
        if not callable(getattr(collector, "update_policy_weights_", None)):
            raise TypeError(f"{type(collector).__name__} has no update_policy_weights_ method")
        if update_weights_interval < 1:
            raise ValueError(f"update_weights_interval must be >= 1, got {update_weights_interval}")
        self.collector = collector
        self.update_weights_interval = update_weights_interval
        self.policy_weights_getter = policy_weights_getter
        self.counter = 0

    def register(self, trainer: Trainer, name: str | None = None) -> None:
        del name
        trainer.register_op(Stage.SETUP, self.push)
        trainer.register_op(Stage.POST_STEPS, self)

    def __call__(self) -> None:
        self.counter += 1
        if self.counter % self.update_weights_interval == 0:
            self.push()

    def push(self) -> None:
        """Sends the current weights now."""
        weights = self.policy_weights_getter() if self.policy_weights_getter else None
        self.collector.update_policy_weights_(weights)


class TargetNetUpdaterHook(TrainerHookBase):
    """Steps a target-network updater (``SoftUpdate``/``HardUpdate``) after each optimizer step.

    Examples:
        >>> TargetNetUpdaterHook(SoftUpdate(loss, tau=0.005)).register(trainer)
    """

    def __init__(self, target_params_updater: Any) -> None:
        if not callable(getattr(target_params_updater, "step", None)):
            raise TypeError(
                "TargetNetUpdaterHook needs an updater with a step() method (SoftUpdate or "
                f"HardUpdate), got {target_params_updater!r}"
            )
        self.target_params_updater = target_params_updater

    def register(self, trainer: Trainer, name: str | None = "target_net_updater") -> None:
        updater = self.target_params_updater
        if callable(getattr(updater, "state_dict", None)):
            trainer.register_module(name or "target_net_updater", updater)
        trainer.register_op(Stage.POST_OPTIM, self)

    def __call__(self) -> None:
        self.target_params_updater.step()
