"""Minimal SAC for continuous actions in one file: plain torch + gymnasium, no framework.

The no-framework baseline of ``benchmarks/speed.py``: the same algorithm and hyperparameters as
trainrl's ``SACTrainer`` + ``SACLoss`` (tanh-squashed normal actor with a state-dependent
std, twin Q networks with Polyak-averaged targets, learned temperature with target entropy
``-action_dim``, one update per collected frame after a random warm-up, truncated episodes
bootstrap, terminated ones do not), written the way a careful person would write it by hand.

Run alone: ``python benchmarks/minimal_sac.py --env Pendulum-v1 --total-frames 15000``.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import math
import time
from collections.abc import Callable, Sequence

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Actor(nn.Module):
    """``obs -> (mean, log_std)``; actions ``center + half_range * tanh(u)``, ``u ~ N``."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        num_cells: Sequence[int],
        low: np.ndarray,
        high: np.ndarray,
    ) -> None:
        super().__init__()
        self.net = mlp([obs_dim, *num_cells, 2 * act_dim])
        center, half_range = (high + low) / 2, (high - low) / 2
        self.register_buffer("center", torch.as_tensor(center, dtype=torch.float32))
        self.register_buffer("half_range", torch.as_tensor(half_range, dtype=torch.float32))
        self.register_buffer("log_half_range", self.half_range.log().sum())

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterized action and its log-probability (with the tanh correction)."""
        mean, log_std = self.net(obs).chunk(2, dim=-1)
        log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        noise = torch.randn_like(mean)
        u = mean + log_std.exp() * noise
        squashed = torch.tanh(u)
        # log N(u) - log|d action / d u|, with log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)).
        log_det = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))
        log_prob = (-0.5 * noise * noise - log_std - HALF_LOG_2PI - log_det).sum(-1)
        return self.center + self.half_range * squashed, log_prob - self.log_half_range


class QNetwork(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, num_cells: Sequence[int]) -> None:
        super().__init__()
        self.net = mlp([obs_dim + act_dim, *num_cells, 1])

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([obs, action], dim=-1)).squeeze(-1)


def train(
    env_id: str,
    *,
    total_frames: int,
    num_cells: Sequence[int] = (256, 256),
    batch_size: int = 256,
    lr: float = 3e-4,
    tau: float = 0.005,
    gamma: float = 0.99,
    learning_starts: int = 1000,
    buffer_size: int = 1_000_000,
    seed: int = 0,
    on_step: Callable[[int], None] | None = None,
) -> list[float]:
    """Trains for ``total_frames`` and returns the returns of the finished episodes.

    One gradient step per frame once ``learning_starts`` random frames are in the buffer;
    ``on_step(frames)`` is called after each frame and its update.
    """
    torch.manual_seed(seed)
    env = gym.make(env_id)
    env.action_space.seed(seed)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    actor = Actor(obs_dim, act_dim, num_cells, env.action_space.low, env.action_space.high)
    q1, q2 = QNetwork(obs_dim, act_dim, num_cells), QNetwork(obs_dim, act_dim, num_cells)
    q1_target, q2_target = copy.deepcopy(q1), copy.deepcopy(q2)
    q_params = [*q1.parameters(), *q2.parameters()]
    target_params = [*q1_target.parameters(), *q2_target.parameters()]
    log_alpha = torch.zeros((), requires_grad=True)
    target_entropy = -float(act_dim)
    q_optimizer = torch.optim.Adam(q_params, lr=lr)
    actor_optimizer = torch.optim.Adam(actor.parameters(), lr=lr)
    alpha_optimizer = torch.optim.Adam([log_alpha], lr=lr)

    capacity = buffer_size
    b_obs = torch.zeros(capacity, obs_dim)
    b_action = torch.zeros(capacity, act_dim)
    b_reward = torch.zeros(capacity)
    b_next_obs = torch.zeros(capacity, obs_dim)
    b_terminated = torch.zeros(capacity)

    def update(size: int) -> None:
        idx = torch.randint(size, (batch_size,))
        obs, action, next_obs = b_obs[idx], b_action[idx], b_next_obs[idx]
        alpha = log_alpha.detach().exp()
        with torch.no_grad():
            next_action, next_log_prob = actor(next_obs)
            next_q = torch.minimum(
                q1_target(next_obs, next_action), q2_target(next_obs, next_action)
            )
            target = b_reward[idx] + gamma * (1.0 - b_terminated[idx]) * (
                next_q - alpha * next_log_prob
            )
        q_loss = F.mse_loss(q1(obs, action), target) + F.mse_loss(q2(obs, action), target)
        q_optimizer.zero_grad(set_to_none=True)
        q_loss.backward()
        q_optimizer.step()

        new_action, log_prob = actor(obs)
        for param in q_params:  # the actor loss moves the actor only: no critic weight grads
            param.requires_grad_(False)
        q_pi = torch.minimum(q1(obs, new_action), q2(obs, new_action))
        for param in q_params:
            param.requires_grad_(True)
        actor_loss = (alpha * log_prob - q_pi).mean()
        actor_optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        actor_optimizer.step()

        alpha_loss = -(log_alpha * (log_prob.detach() + target_entropy)).mean()
        alpha_optimizer.zero_grad(set_to_none=True)
        alpha_loss.backward()
        alpha_optimizer.step()

        with torch.no_grad():
            for target_param, param in zip(target_params, q_params, strict=True):
                target_param.lerp_(param, tau)

    returns: list[float] = []
    episode_return = 0.0
    obs_np, _ = env.reset(seed=seed)
    for frame in range(total_frames):
        if frame < learning_starts:
            action_np = env.action_space.sample()
        else:
            with torch.no_grad():
                action_np = actor(torch.as_tensor(obs_np, dtype=torch.float32))[0].numpy()
        next_obs_np, reward, terminated, truncated, _ = env.step(action_np)
        slot = frame % capacity
        b_obs[slot] = torch.as_tensor(obs_np)
        b_action[slot] = torch.as_tensor(action_np)
        b_reward[slot] = float(reward)
        b_next_obs[slot] = torch.as_tensor(next_obs_np)
        b_terminated[slot] = float(terminated)
        episode_return += float(reward)
        if terminated or truncated:
            returns.append(episode_return)
            episode_return = 0.0
            next_obs_np, _ = env.reset()
        obs_np = next_obs_np
        if frame >= learning_starts:
            update(min(frame + 1, capacity))
        if on_step is not None:
            on_step(frame + 1)
    env.close()
    return returns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--total-frames", type=int, default=15_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    returns = train(args.env, total_frames=args.total_frames, seed=args.seed)
    seconds = time.perf_counter() - start
    print(f"{args.total_frames} frames in {seconds:.0f} s ({args.total_frames / seconds:.0f}/s)")
    print(f"last 10 episodes: mean return {np.mean(returns[-10:]):.1f}")


if __name__ == "__main__":
    main()
