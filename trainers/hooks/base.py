"""The base class of hook objects."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainers.trainer.trainer import Trainer


class TrainerHookBase:
    """A hook: a callable with its own state that attaches itself to a trainer.

    Subclasses implement ``register`` (which stage(s) they run at, and whether their state is
    checkpointed) and, when stateful, ``state_dict``/``load_state_dict``.

    Examples:
        >>> class CountBatches(TrainerHookBase):
        ...     def __init__(self):
        ...         self.count = 0
        ...     def register(self, trainer, name="count_batches"):
        ...         trainer.register_module(name, self)
        ...         trainer.register_op("post_steps", self)
        ...     def __call__(self):
        ...         self.count += 1
        ...     def state_dict(self):
        ...         return {"count": self.count}
        ...     def load_state_dict(self, state_dict):
        ...         self.count = state_dict["count"]
    """

    def register(self, trainer: Trainer, name: str | None = None) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement register(trainer, name)")

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        del state_dict
