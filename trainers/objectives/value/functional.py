"""Return and advantage estimates as tensor functions over a time dimension.

Shapes: ``[*batch, T, 1]`` (a collector batch ``[num_envs, T]`` with the trailing feature
dimension of rewards and flags); time is the second-to-last dimension. The rule: a value target
bootstraps from ``next_state_value`` unless ``terminated``; a trajectory ends at ``done``
(terminated or truncated), so nothing flows back across an episode boundary, while a truncated
step still bootstraps from the value of its true final observation.
"""

from __future__ import annotations

import torch


def _check_shapes(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    first = next(iter(shapes.values()))
    if any(shape != first for shape in shapes.values()) or len(first) < 2:
        raise ValueError(f"value estimates need tensors of one shape [*batch, T, 1], got {shapes}.")


def td0_return_estimate(
    gamma: float | torch.Tensor,
    next_state_value: torch.Tensor,
    reward: torch.Tensor,
    terminated: torch.Tensor,
) -> torch.Tensor:
    """One-step target ``reward + gamma * (1 - terminated) * next_state_value``.

    A truncated step bootstraps (it is not terminated). Any matching shapes work.

    Examples:
        >>> import torch
        >>> td0_return_estimate(0.9, torch.tensor([[2.0], [2.0]]), torch.ones(2, 1),
        ...                     torch.tensor([[False], [True]]))
        tensor([[2.8000],
                [1.0000]])
    """
    return torch.where(terminated, reward, reward + gamma * next_state_value)


@torch.no_grad()
def generalized_advantage_estimate(
    gamma: float,
    lmbda: float,
    state_value: torch.Tensor,
    next_state_value: torch.Tensor,
    reward: torch.Tensor,
    done: torch.Tensor,
    terminated: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE(gamma, lambda) over the time dimension; returns ``(advantage, value_target)``.

    ``delta_t = r_t + gamma * (1 - terminated_t) * V(s'_t) - V(s_t)`` and
    ``A_t = delta_t + gamma * lmbda * (1 - done_t) * A_{t+1}``, with ``A = 0`` after the last
    step of the batch (its ``delta`` already bootstraps from ``V(s'_T)``).
    ``value_target = A + V(s)``. All inputs are ``[*batch, T, 1]``; the loop runs over ``T``
    with whole-batch tensor operations.

    Examples:
        >>> import torch
        >>> adv, target = generalized_advantage_estimate(
        ...     0.5, 1.0, torch.zeros(1, 2, 1), torch.ones(1, 2, 1), torch.zeros(1, 2, 1),
        ...     torch.zeros(1, 2, 1, dtype=torch.bool), torch.zeros(1, 2, 1, dtype=torch.bool))
        >>> adv.flatten().tolist()
        [0.75, 0.5]
    """
    _check_shapes(
        state_value=state_value,
        next_state_value=next_state_value,
        reward=reward,
        done=done,
        terminated=terminated,
    )
    not_terminated = (~terminated).to(reward.dtype)
    delta = torch.addcmul(reward, not_terminated, next_state_value, value=gamma) - state_value
    decay = (~done).to(reward.dtype) * (gamma * lmbda)
    deltas = delta.unbind(-2)
    decays = decay.unbind(-2)
    advantages = [deltas[-1]]
    for t in range(len(deltas) - 2, -1, -1):
        advantages.append(torch.addcmul(deltas[t], decays[t], advantages[-1]))
    advantage = torch.stack(advantages[::-1], dim=-2)
    return advantage, advantage + state_value
