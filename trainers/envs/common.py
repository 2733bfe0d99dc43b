"""``EnvBase``: a batch of ``num_envs`` environments that reads and writes TensorDicts.

Subclasses implement two methods and the base class builds the rest of the contract of
``docs/architecture.md`` on top of them:

* ``_reset(mask)`` returns a root TensorDict of batch ``[num_envs]``; with a mask only the rows
  where it is true are new episodes and the other rows hold placeholder values.
* ``_step(td)`` reads ``td["action"]`` and returns the ``"next"`` TensorDict (observation, reward,
  terminated, truncated, done); it never resets.

``step_and_maybe_reset`` then resets exactly the envs whose ``done`` is true and splices their
new first observation into the next root, while ``td["next", "observation"]`` keeps the true
final observation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tensordict import TensorDict, TensorDictBase

from trainers import keys
from trainers.envs.specs import TensorSpec

# Keys of "next" that belong to the transition only: they are not carried to the next root.
STEP_ONLY_KEYS = frozenset({"reward", "done", "terminated", "truncated"})

Policy = Callable[[TensorDictBase], TensorDictBase | None]


def carry_to_next_root(next_td: TensorDictBase) -> TensorDictBase:
    """The root TensorDict of the next step: ``next_td`` minus reward and done flags."""
    return TensorDict._new_unsafe(
        {k: v for k, v in next_td.items() if k not in STEP_ONLY_KEYS},
        batch_size=next_td.batch_size,
    )


def splice_reset(root: TensorDictBase, reset_root: TensorDictBase, mask: torch.Tensor) -> None:
    """Writes the rows of ``reset_root`` where ``mask`` is true into ``root`` (out of place)."""
    for key, new in reset_root.items(include_nested=True, leaves_only=True):
        old = root.get(key, None)
        if not isinstance(old, torch.Tensor) or not isinstance(new, torch.Tensor):
            root.set(key, new)
            continue
        row_mask = mask.reshape(mask.shape + (1,) * (new.dim() - mask.dim()))
        root.set(key, torch.where(row_mask, new, old))


def _any(flags: torch.Tensor) -> bool:
    # numpy's any() on the shared buffer is ~2x cheaper than a torch reduction for tiny tensors.
    return bool(flags.numpy().any()) if flags.device.type == "cpu" else bool(flags.any())


class EnvBase:
    """A batch of ``num_envs`` environments with TensorDict inputs and outputs.

    Batch shape is always ``[num_envs]``; reward and the done flags are ``[num_envs, 1]``;
    observations are float32; continuous actions float32 ``[num_envs, action_dim]``, discrete
    actions int64 ``[num_envs]``.

    Args:
        num_envs: number of environments in the batch; >= 1.
        device: device of the tensors the env returns.
        observation_spec: per-env spec of ``"observation"``.
        action_spec: per-env spec of ``"action"``.

    Examples:
        >>> from trainers.envs import GymEnv
        >>> env = GymEnv("Pendulum-v1", num_envs=4)
        >>> env.set_seed(0)
        4
        >>> td = env.rand_action(env.reset())
        >>> td, root = env.step_and_maybe_reset(td)
        >>> td["next", "reward"].shape
        torch.Size([4, 1])
    """

    def __init__(
        self,
        *,
        num_envs: int,
        device: torch.device | str,
        observation_spec: TensorSpec,
        action_spec: TensorSpec,
    ) -> None:
        if not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
        self.num_envs = num_envs
        self.batch_size = torch.Size([num_envs])
        self.device = torch.device(device)
        self.observation_spec = observation_spec
        self.action_spec = action_spec

    # Subclass interface ---------------------------------------------------------------------

    def _reset(self, mask: torch.Tensor | None) -> TensorDictBase:
        """Resets all envs (``mask`` None) or those where the bool ``[num_envs]`` mask is true."""
        raise NotImplementedError

    def _step(self, td: TensorDictBase) -> TensorDictBase:
        """Steps every env with ``td["action"]`` and returns the ``"next"`` TensorDict."""
        raise NotImplementedError

    # Public API -----------------------------------------------------------------------------

    def reset(self) -> TensorDictBase:
        """Resets every env; the root holds ``observation`` (+ the keys transforms add)."""
        return self._reset(None)

    def step(self, td: TensorDictBase) -> TensorDictBase:
        """Steps with ``td["action"]`` and writes the result under ``td["next"]``; never resets."""
        # The next TensorDict is built by _step with our batch size: skip set()'s validation.
        td._set_str(keys.NEXT, self._step(td), inplace=False, validated=True)
        return td

    def step_and_maybe_reset(self, td: TensorDictBase) -> tuple[TensorDictBase, TensorDictBase]:
        """Steps, then resets the envs that are done.

        Returns:
            ``(td, next_root)``: ``td`` with ``"next"`` written (``("next", "observation")`` is
            the true final observation where an episode ended) and the root of the next step,
            which holds the first observation of the new episode where one ended.
        """
        td = self.step(td)
        next_td = td.get(keys.NEXT)
        next_root = carry_to_next_root(next_td)
        done = next_td.get("done").reshape(self.batch_size)
        if _any(done):
            splice_reset(next_root, self._reset(done), done)
        return td, next_root

    def collect_steps(
        self,
        root: TensorDictBase,
        num_steps: int,
        act: Callable[[TensorDictBase], TensorDictBase],
    ) -> tuple[TensorDictBase, TensorDictBase]:
        """Runs ``num_steps`` times ``td, root = step_and_maybe_reset(act(root))``.

        This is the collectors' inner loop; subclasses may override it with a faster loop that
        gives the same results.

        Returns:
            The steps stacked to ``[num_envs, num_steps]`` and the root of the next step.
        """
        steps = []
        for _ in range(num_steps):
            td, root = self.step_and_maybe_reset(act(root))
            steps.append(td)
        return TensorDict.stack(steps, dim=1), root

    def rand_action(self, td: TensorDictBase | None = None) -> TensorDictBase:
        """Writes a uniformly random ``action`` into ``td`` (a new TensorDict when None)."""
        if td is None:
            td = TensorDict({}, batch_size=self.batch_size)
        td.set(keys.ACTION, self.action_spec.rand(self.batch_size))
        return td

    def set_seed(self, seed: int) -> int:
        """Env ``i`` is seeded with ``seed + i`` at its next reset; returns the next free seed."""
        raise NotImplementedError(f"{type(self).__name__} cannot be seeded")

    def rollout(self, max_steps: int, policy: Policy | None = None) -> TensorDictBase:
        """Resets, then runs ``max_steps`` steps (auto-resetting) without gradients.

        Args:
            max_steps: number of steps; >= 1.
            policy: reads ``observation`` and writes ``action``; None takes random actions.

        Returns:
            A TensorDict of batch ``[num_envs, max_steps]``.
        """
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")

        def act(root: TensorDictBase) -> TensorDictBase:
            if policy is None:
                return self.rand_action(root)
            out = policy(root)
            return root if out is None else out

        with torch.no_grad():
            steps, _ = self.collect_steps(self.reset(), max_steps, act)
        return steps

    def state_dict(self) -> dict[str, Any]:
        """The env's state; plain Python and tensors (loads with ``weights_only=True``)."""
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores what ``state_dict`` returned."""
        del state_dict

    def close(self) -> None:
        """Releases simulators and worker processes."""

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_envs={self.num_envs}, device={self.device}, "
            f"observation_spec={self.observation_spec}, action_spec={self.action_spec})"
        )
