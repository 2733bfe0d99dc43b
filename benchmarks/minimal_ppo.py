"""Minimal PPO for continuous actions in one file: plain torch + gymnasium, no framework.

The no-framework baseline of ``benchmarks/speed.py``: the same algorithm and hyperparameters as
trainrl's ``PPOTrainer`` + ``ClipPPOLoss`` (tanh-squashed normal policy with a learned
state-independent log-std, separate 64x64 Tanh actor and critic, GAE that bootstraps on
truncation and not on termination, per-minibatch advantage normalization, clipped surrogate,
``0.5 * MSE`` critic loss, global grad-norm clipping, one Adam over both networks), written the
way a careful person would write it by hand.

Run alone: ``python benchmarks/minimal_ppo.py --env Pendulum-v1 --total-frames 200000``.
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from collections.abc import Callable, Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    """Linear layers with Tanh between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def normal_log_prob(x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Log-density of a diagonal normal, summed over the last dimension."""
    z = (x - mean) * torch.exp(-log_std)
    return (-0.5 * z * z - log_std - HALF_LOG_2PI).sum(-1)


class Agent(nn.Module):
    """Actor ``obs -> mean`` with a learned log-std, critic ``obs -> V``.

    Actions are ``center + half_range * tanh(u)`` with ``u ~ N(mean, std)``. The buffer keeps
    the pre-tanh ``u``: the tanh Jacobian does not depend on the parameters, so it cancels in
    the PPO ratio and log-probabilities of ``u`` suffice.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        num_cells: Sequence[int],
        low: np.ndarray,
        high: np.ndarray,
    ) -> None:
        super().__init__()
        self.actor = mlp([obs_dim, *num_cells, act_dim])
        self.critic = mlp([obs_dim, *num_cells, 1])
        self.log_std = nn.Parameter(torch.zeros(act_dim))
        self.register_buffer("center", torch.as_tensor((high + low) / 2, dtype=torch.float32))
        self.register_buffer("half_range", torch.as_tensor((high - low) / 2, dtype=torch.float32))


def train(
    env_id: str,
    *,
    total_frames: int,
    num_envs: int = 8,
    steps_per_env: int = 256,
    num_epochs: int = 10,
    minibatch_size: int = 64,
    num_cells: Sequence[int] = (64, 64),
    lr: float = 3e-4,
    adam_eps: float = 1e-5,
    gamma: float = 0.99,
    lmbda: float = 0.95,
    clip_epsilon: float = 0.2,
    max_grad_norm: float = 0.5,
    critic_coeff: float = 0.5,
    entropy_coeff: float = 0.0,
    seed: int = 0,
    on_iteration: Callable[[int], None] | None = None,
) -> list[float]:
    """Trains for ``total_frames`` and returns the returns of the finished episodes.

    ``on_iteration(frames)`` is called after each collect-and-optimize iteration.
    """
    torch.manual_seed(seed)
    envs = gym.vector.SyncVectorEnv(
        [lambda: gym.make(env_id) for _ in range(num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    obs_space, act_space = envs.single_observation_space, envs.single_action_space
    obs_dim, act_dim = obs_space.shape[0], act_space.shape[0]
    agent = Agent(obs_dim, act_dim, num_cells, act_space.low, act_space.high)
    optimizer = torch.optim.Adam(agent.parameters(), lr=lr, eps=adam_eps)

    T, N = steps_per_env, num_envs
    obs_buf = torch.zeros(T + 1, N, obs_dim)  # row T: the observation after the last step
    u_buf = torch.zeros(T, N, act_dim)
    logp_buf = torch.zeros(T, N)
    reward_buf = torch.zeros(T, N)
    terminated_buf = torch.zeros(T, N)
    done_buf = torch.zeros(T, N)
    returns: list[float] = []
    episode_return = np.zeros(N)
    obs = torch.as_tensor(envs.reset(seed=seed)[0], dtype=torch.float32)
    frames = 0

    while frames < total_frames:
        # Collect T steps of N envs.
        final_obs: list[tuple[int, int, np.ndarray]] = []  # (t, env, true last obs) of episodes
        with torch.no_grad():
            for t in range(T):
                obs_buf[t] = obs
                mean = agent.actor(obs)
                u = mean + agent.log_std.exp() * torch.randn_like(mean)
                logp_buf[t] = normal_log_prob(u, mean, agent.log_std)
                u_buf[t] = u
                action = agent.center + agent.half_range * torch.tanh(u)
                next_obs, reward, terminated, truncated, info = envs.step(action.numpy())
                reward_buf[t] = torch.as_tensor(reward)
                terminated_buf[t] = torch.as_tensor(terminated)
                done = terminated | truncated
                done_buf[t] = torch.as_tensor(done)
                episode_return += reward
                for i in np.flatnonzero(done):
                    returns.append(float(episode_return[i]))
                    episode_return[i] = 0.0
                    final_obs.append((t, int(i), info["final_obs"][i]))
                obs = torch.as_tensor(next_obs, dtype=torch.float32)
            obs_buf[T] = obs
            frames += T * N

            # GAE: V(next obs) is V(obs[t + 1]) except where an episode ended, where it is
            # V(its true last obs); terminated steps do not bootstrap.
            values = agent.critic(obs_buf).squeeze(-1)
            next_values = values[1:].clone()
            if final_obs:
                last = torch.as_tensor(np.stack([o for _, _, o in final_obs]), dtype=torch.float32)
                rows, cols = zip(*((t, i) for t, i, _ in final_obs), strict=True)
                next_values[list(rows), list(cols)] = agent.critic(last).squeeze(-1)
            deltas = reward_buf + gamma * (1.0 - terminated_buf) * next_values - values[:-1]
            advantages = torch.zeros(T, N)
            running = torch.zeros(N)
            for t in reversed(range(T)):
                running = deltas[t] + gamma * lmbda * (1.0 - done_buf[t]) * running
                advantages[t] = running
            targets = advantages + values[:-1]

        # Optimize: num_epochs passes of shuffled minibatches.
        b_obs, b_u = obs_buf[:T].reshape(T * N, obs_dim), u_buf.reshape(T * N, act_dim)
        b_logp, b_adv, b_target = logp_buf.reshape(-1), advantages.reshape(-1), targets.reshape(-1)
        for _ in range(num_epochs):
            for idx in torch.randperm(T * N).split(minibatch_size):
                mb_obs, adv = b_obs[idx], b_adv[idx]
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                mean = agent.actor(mb_obs)
                log_ratio = normal_log_prob(b_u[idx], mean, agent.log_std) - b_logp[idx]
                ratio = log_ratio.exp()
                clipped = ratio.clamp(1.0 - clip_epsilon, 1.0 + clip_epsilon)
                loss = -torch.minimum(ratio * adv, clipped * adv).mean()
                value = agent.critic(mb_obs).squeeze(-1)
                loss = loss + critic_coeff * (value - b_target[idx]).pow(2).mean()
                if entropy_coeff:
                    # The normal's entropy; the tanh term's expectation has no closed form.
                    entropy = (agent.log_std + 0.5 + HALF_LOG_2PI).sum()
                    loss = loss - entropy_coeff * entropy
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), max_grad_norm)
                optimizer.step()
        if on_iteration is not None:
            on_iteration(frames)
    envs.close()
    return returns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Pendulum-v1")
    parser.add_argument("--total-frames", type=int, default=200_000)
    parser.add_argument("--gamma", type=float, default=0.99)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    returns = train(
        args.env, total_frames=args.total_frames, gamma=args.gamma, lr=args.lr, seed=args.seed
    )
    seconds = time.perf_counter() - start
    print(f"{args.total_frames} frames in {seconds:.0f} s ({args.total_frames / seconds:.0f}/s)")
    print(f"last 20 episodes: mean return {np.mean(returns[-20:]):.1f}")


if __name__ == "__main__":
    main()
