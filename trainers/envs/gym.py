"""``GymEnv``: ``num_envs`` Gymnasium envs as one batched TensorDict env."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase

from trainers import keys
from trainers.envs._gym_backend import ParallelSubEnvs, SubEnvs, check_env_id, make_gym_env
from trainers.envs.common import EnvBase
from trainers.envs.specs import Bounded, Categorical, TensorSpec, Unbounded

VECTORIZATIONS = ("serial", "parallel")


def _obs_spec(space: gym.Space, env_name: str) -> TensorSpec:
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(
            f"GymEnv({env_name!r}): observation space {space} is not supported; only Box "
            "observation spaces are"
        )
    low, high = np.asarray(space.low), np.asarray(space.high)
    if np.isfinite(low).all() and np.isfinite(high).all():
        return Bounded(
            torch.as_tensor(low, dtype=torch.float32), torch.as_tensor(high, dtype=torch.float32)
        )
    return Unbounded(space.shape, torch.float32)


def _action_spec(space: gym.Space, env_name: str) -> TensorSpec:
    if isinstance(space, gym.spaces.Discrete):
        return Categorical(int(space.n))
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        return Bounded(
            torch.as_tensor(space.low, dtype=torch.float32),
            torch.as_tensor(space.high, dtype=torch.float32),
        )
    raise ValueError(
        f"GymEnv({env_name!r}): action space {space} is not supported; allowed are Discrete and "
        "1-D Box action spaces"
    )


class GymEnv(EnvBase):
    """``num_envs`` Gymnasium envs (classic control, MuJoCo v4/v5, ...) batched as one env.

    The sub-envs are stepped in this process by one Python loop writing into numpy arrays
    (``vectorization="serial"``, the fast default on few cores) or in one worker process each
    (``"parallel"``, worth it when a step is expensive and cores are free; workers come from a
    fork server, or are spawned where the platform has none). Gymnasium's own
    auto-reset is not used: ``step_and_maybe_reset`` resets exactly the sub-envs that are done,
    including those truncated by a transform, and keeps their true final observation.

    Args:
        env_name: a Gymnasium env id, e.g. ``"Pendulum-v1"`` or ``"HalfCheetah-v5"``; an unknown id
            raises a ValueError listing close matches.
        num_envs: number of sub-envs; >= 1.
        vectorization: ``"serial"`` (in-process) or ``"parallel"`` (worker processes; as with
            any multiprocessing start method but fork, scripts need an
            ``if __name__ == "__main__":`` guard).
        frame_skip: each action is repeated this many times and the rewards summed, stopping at
            an episode end; >= 1.
        device: device of the returned tensors.
        max_episode_steps: TimeLimit in (inner) env steps; None keeps the registered limit.
        env_kwargs: extra keyword arguments of ``gym.make``.

    Examples:
        >>> from trainers.envs import GymEnv
        >>> env = GymEnv("HalfCheetah-v5", num_envs=8)
        >>> env.set_seed(0)
        8
        >>> root = env.reset()
        >>> td, root = env.step_and_maybe_reset(env.rand_action(root))
        >>> td["next", "observation"].shape
        torch.Size([8, 17])
    """

    def __init__(
        self,
        env_name: str,
        *,
        num_envs: int = 1,
        vectorization: str = "serial",
        frame_skip: int = 1,
        device: torch.device | str = "cpu",
        max_episode_steps: int | None = None,
        env_kwargs: dict[str, Any] | None = None,
    ) -> None:
        check_env_id(env_name)
        if vectorization not in VECTORIZATIONS:
            raise ValueError(
                f"vectorization must be one of {VECTORIZATIONS}, got {vectorization!r}"
            )
        if not isinstance(frame_skip, int) or frame_skip < 1:
            raise ValueError(f"frame_skip must be an int >= 1, got {frame_skip!r}")
        if max_episode_steps is not None and max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1 or None, got {max_episode_steps!r}")
        if not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
        self.env_name = env_name
        self.vectorization = vectorization
        self.frame_skip = frame_skip
        self.max_episode_steps = max_episode_steps
        self.env_kwargs = dict(env_kwargs or {})

        probe = make_gym_env(env_name, max_episode_steps, self.env_kwargs)
        obs_space, act_space = probe.observation_space, probe.action_space
        probe.close()
        super().__init__(
            num_envs=num_envs,
            device=device,
            observation_spec=_obs_spec(obs_space, env_name),
            action_spec=_action_spec(act_space, env_name),
        )
        self._discrete = isinstance(act_space, gym.spaces.Discrete)
        offset = int(getattr(act_space, "start", 0))
        self._obs_shape = tuple(self.observation_spec.shape)
        self._obs_size = int(np.prod(self._obs_shape))
        self._action_shape = torch.Size([num_envs, *self.action_spec.shape])
        self._on_cpu = self.device.type == "cpu"
        make_args = (env_name, num_envs, frame_skip, max_episode_steps, self.env_kwargs, offset)
        self._backend: SubEnvs | ParallelSubEnvs
        if vectorization == "serial":
            self._backend = SubEnvs(*make_args)
        else:
            self._backend = ParallelSubEnvs(
                *make_args,
                obs_shape=self._obs_shape,
                action_shape=tuple(self.action_spec.shape),
                action_dtype=np.dtype(np.int64 if self._discrete else np.float32),
            )
        self._pending_seeds: list[int | None] = [None] * num_envs
        self._closed = False

    # EnvBase interface ----------------------------------------------------------------------

    def _to_device(self, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(array)
        return tensor if self._on_cpu else tensor.to(self.device, non_blocking=True)

    def _reset_rows(self, indices: list[int]) -> np.ndarray:
        """Resets the sub-envs ``indices`` (seeding those with a pending seed); float32 rows."""
        seeds = [self._pending_seeds[i] for i in indices]
        for i in indices:
            self._pending_seeds[i] = None
        rows = np.asarray(self._backend.reset(indices, seeds), dtype=np.float32)
        self._check_finite(rows, keys.OBSERVATION, indices)
        return rows

    def _reset(self, mask: torch.Tensor | None) -> TensorDictBase:
        if mask is None:
            obs = self._reset_rows(list(range(self.num_envs)))
        else:
            indices = np.flatnonzero(mask.detach().cpu().numpy()).tolist()
            obs = np.zeros((self.num_envs, *self._obs_shape), np.float32)
            obs[indices] = self._reset_rows(indices)
        return TensorDict._new_unsafe(
            {keys.OBSERVATION: self._to_device(obs)}, batch_size=self.batch_size
        )

    def _action_array(self, td: TensorDictBase) -> np.ndarray:
        action = td.get(keys.ACTION)
        if action.shape != self._action_shape:
            raise ValueError(
                f"GymEnv({self.env_name!r}): key 'action' has shape {tuple(action.shape)}, "
                f"expected {tuple(self._action_shape)} ([num_envs, *action_shape])"
            )
        if self._discrete and action.is_floating_point():
            raise ValueError(
                f"GymEnv({self.env_name!r}): key 'action' must be an integer tensor for a "
                f"Discrete action space, got {action.dtype}"
            )
        if action.requires_grad:
            action = action.detach()
        return (action if action.device.type == "cpu" else action.cpu()).numpy()

    def _step_into(self, actions: np.ndarray, values: np.ndarray, flags: np.ndarray) -> None:
        """Steps every sub-env, writing ``values`` ``[n, obs_size + 1]`` (flat observation, then
        reward) and ``flags`` ``[3, n]`` (terminated, truncated, done). Values are not checked."""
        obs = values[:, : self._obs_size].reshape(self.num_envs, *self._obs_shape)
        self._backend.step(actions, obs, values[:, self._obs_size], flags[0], flags[1])
        np.logical_or(flags[0], flags[1], out=flags[2])

    def _check_values(self, values: np.ndarray) -> None:
        """Raises naming the key if ``values`` (``[..., n, obs_size + 1]``) is not all finite."""
        if np.isfinite(values).all():  # one pass checks observation and reward
            return
        flat = values.reshape(-1, self.num_envs, self._obs_size + 1)
        for step in flat:
            self._check_finite(step[:, : self._obs_size], keys.OBSERVATION)
            self._check_finite(step[:, self._obs_size :], "reward")

    def _step(self, td: TensorDictBase) -> TensorDictBase:
        n, size = self.num_envs, self._obs_size
        values = np.empty((n, size + 1), np.float32)
        flags = np.empty((3, n), bool)
        self._step_into(self._action_array(td), values, flags)
        self._check_values(values)
        to_device = self._to_device
        return TensorDict._new_unsafe(
            {
                keys.OBSERVATION: to_device(values[:, :size].reshape(n, *self._obs_shape)),
                "reward": to_device(values[:, size:]),
                "terminated": to_device(flags[0, :, None]),
                "truncated": to_device(flags[1, :, None]),
                "done": to_device(flags[2, :, None]),
            },
            batch_size=self.batch_size,
        )

    def collect_steps(
        self,
        root: TensorDictBase,
        num_steps: int,
        act: Callable[[TensorDictBase], TensorDictBase],
    ) -> tuple[TensorDictBase, TensorDictBase]:
        """``EnvBase.collect_steps`` with the same results, writing straight into batch arrays.

        Step results go into time-major numpy buffers allocated once per call instead of one
        TensorDict per step; only the policy's input and output TensorDicts are per step. The
        finiteness check runs once on the whole buffer (its error names the sub-env and key).
        """
        n, size, shape = self.num_envs, self._obs_size, self._obs_shape
        obs = np.empty((num_steps + 1, n, size), np.float32)  # root observations
        obs[0] = root.get(keys.OBSERVATION).detach().cpu().numpy().reshape(n, size)
        values = np.empty((num_steps, n, size + 1), np.float32)  # next observation | reward
        flags = np.empty((3, num_steps, n), bool)
        roots = []
        for t in range(num_steps):
            td = TensorDict._new_unsafe(
                {keys.OBSERVATION: self._to_device(obs[t].reshape(n, *shape))},
                batch_size=self.batch_size,
            )
            td = act(td)
            self._step_into(self._action_array(td), values[t], flags[:, t])
            obs[t + 1] = values[t, :, :size]
            done = flags[2, t]
            if done.any():
                indices = np.flatnonzero(done).tolist()
                obs[t + 1, indices] = self._reset_rows(indices).reshape(len(indices), size)
            roots.append(td)
        self._check_values(values)
        batch = TensorDict.stack(roots, dim=1)

        def env_major(array: np.ndarray) -> torch.Tensor:
            return self._to_device(np.ascontiguousarray(np.swapaxes(array, 0, 1)))

        batch_size = torch.Size([n, num_steps])
        next_td = TensorDict._new_unsafe(
            {
                keys.OBSERVATION: env_major(values[..., :size]).reshape(n, num_steps, *shape),
                "reward": env_major(values[..., size:]),
                "terminated": env_major(flags[0, ..., None]),
                "truncated": env_major(flags[1, ..., None]),
                "done": env_major(flags[2, ..., None]),
            },
            batch_size=batch_size,
        )
        batch._set_str(keys.NEXT, next_td, inplace=False, validated=True)
        next_root = TensorDict._new_unsafe(
            {keys.OBSERVATION: self._to_device(obs[num_steps].reshape(n, *shape))},
            batch_size=self.batch_size,
        )
        return batch, next_root

    def run_actions(self, indices: list[int], actions: list[torch.Tensor]) -> torch.Tensor:
        """Steps sub-env ``indices[j]`` with each row of ``actions[j]`` (used by ``NoopReset``).

        An episode that ends on the way is reset and its remaining actions dropped. Returns the
        observations reached, ``[len(indices), *obs_shape]``.
        """
        arrays = [a.detach().cpu().numpy() for a in actions]
        rows = np.asarray(self._backend.run_actions(indices, arrays), dtype=np.float32)
        self._check_finite(rows, keys.OBSERVATION, indices)
        return self._to_device(rows)

    def _check_finite(self, array: np.ndarray, key: str, indices: list[int] | None = None) -> None:
        finite = np.isfinite(array)
        if finite.all():
            return
        bad = int(np.flatnonzero(~finite.reshape(len(array), -1).all(axis=1))[0])
        env_index = bad if indices is None else indices[bad]
        raise ValueError(
            f"GymEnv({self.env_name!r}): sub-env {env_index} returned a non-finite value in key "
            f"{key!r}: {array[bad].tolist()}"
        )

    # Seeding, state, closing ----------------------------------------------------------------

    def set_seed(self, seed: int) -> int:
        """Sub-env ``i`` is seeded with ``seed + i`` at its next reset; returns ``seed + num_envs``."""
        self._pending_seeds = [seed + i for i in range(self.num_envs)]
        return seed + self.num_envs

    def state_dict(self) -> dict[str, Any]:
        """Each sub-env's RNG, wrapper counters and physical state, as tensors and plain Python.

        Loading it into a GymEnv made with the same arguments (in any process) continues every
        sub-env bit-for-bit.
        """
        return {
            "env_name": self.env_name,
            "num_envs": self.num_envs,
            "pending_seeds": list(self._pending_seeds),
            "sub_envs": [_arrays_to_tensors(s) for s in self._backend.get_state()],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict["env_name"] != self.env_name or state_dict["num_envs"] != self.num_envs:
            raise ValueError(
                f"cannot load the state of GymEnv({state_dict['env_name']!r}, "
                f"num_envs={state_dict['num_envs']}) into GymEnv({self.env_name!r}, "
                f"num_envs={self.num_envs})"
            )
        self._pending_seeds = list(state_dict["pending_seeds"])
        self._backend.set_state([_tensors_to_arrays(s) for s in state_dict["sub_envs"]])

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._backend.close()

    def __repr__(self) -> str:
        return (
            f"GymEnv({self.env_name!r}, num_envs={self.num_envs}, "
            f"vectorization={self.vectorization!r}, frame_skip={self.frame_skip}, "
            f"device={self.device})"
        )


def is_mujoco_task(env_name: str) -> bool:
    """Whether ``env_name`` is one of Gymnasium's MuJoCo tasks (HalfCheetah-v5, Hopper-v4, ...);
    False for any other name, registered or not.

    Examples:
        >>> is_mujoco_task("Hopper-v5"), is_mujoco_task("Pendulum-v1"), is_mujoco_task("nope")
        (True, False, False)
    """
    try:
        entry_point = gym.spec(env_name).entry_point
    except gym.error.Error:
        return False
    return isinstance(entry_point, str) and entry_point.startswith("gymnasium.envs.mujoco")


def _arrays_to_tensors(value: Any) -> Any:
    """numpy arrays -> tensors, recursively (so the state loads with ``weights_only=True``)."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, dict):
        return {k: _arrays_to_tensors(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_arrays_to_tensors(v) for v in value)
    return value


def _tensors_to_arrays(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.numpy().copy()
    if isinstance(value, dict):
        return {k: _tensors_to_arrays(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_tensors_to_arrays(v) for v in value)
    return value
