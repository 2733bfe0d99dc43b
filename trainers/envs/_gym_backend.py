"""Gymnasium sub-envs stepped in this process or in worker processes, on numpy arrays.

This module knows nothing of torch or TensorDicts: ``GymEnv`` hands it numpy action arrays and
preallocated output arrays, and it fills them with one Python loop over the sub-envs (no vector
wrapper, no auto-reset: resets are explicit and per sub-env).

The state of a sub-env, for an exact resume, is: its ``np_random`` bit generator, the simple
attributes (numbers, strings, numpy arrays) of every wrapper layer and of the unwrapped env
(TimeLimit's elapsed steps, classic-control ``state``, ...), and for MuJoCo envs the integration
state of ``mjData`` (``mj_getState(mjSTATE_INTEGRATION)``: time, qpos, qvel, act, warm start,
controls, applied forces, ...) plus its model-sized derived arrays (body positions, ...), which
some envs read before stepping. Everything is stored as plain Python and numpy arrays here;
``GymEnv`` turns the arrays into tensors.
"""

from __future__ import annotations

import difflib
import traceback
from multiprocessing.connection import Connection
from typing import Any

import gymnasium as gym
import numpy as np

from trainers.envs._mp import isolate_from_group_signals, worker_context

_SIMPLE_TYPES = (bool, int, float, str, type(None))
# mjData arrays that are sized by the current contacts/constraints (recomputed by the next step)
# or hold raw pointers: never restored.
_MJ_SKIP_PREFIXES = ("efc_", "iefc_", "efm_", "map_efc", "map_iefc", "island_", "plugin")


def check_env_id(env_name: str) -> None:
    """Raises a ValueError naming close matches when ``env_name`` is not a registered id."""
    if not isinstance(env_name, str) or not env_name:
        raise ValueError(f"env_name must be a non-empty Gymnasium env id, got {env_name!r}")
    if ":" in env_name or env_name in gym.envs.registry:
        return  # "module:Env-v0" ids register themselves on import, inside gym.make
    matches = difflib.get_close_matches(env_name, list(gym.envs.registry), n=3, cutoff=0.6)
    hint = f"; did you mean: {', '.join(matches)}?" if matches else ""
    raise ValueError(f"unknown Gymnasium env id {env_name!r}{hint}")


def make_gym_env(
    env_name: str, max_episode_steps: int | None, env_kwargs: dict[str, Any] | None
) -> gym.Env:
    """``gym.make`` with our arguments (``max_episode_steps`` None keeps the registered limit)."""
    kwargs = dict(env_kwargs or {})
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = max_episode_steps
    return gym.make(env_name, **kwargs)


def _simple_attrs(obj: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in vars(obj).items():
        if isinstance(value, _SIMPLE_TYPES):
            out[name] = value
        elif isinstance(value, np.ndarray) and value.dtype != object:
            out[name] = ("ndarray", value.copy())
        elif isinstance(value, np.generic):
            out[name] = ("scalar", np.asarray(value).copy())
    return out


def _restore_attrs(obj: Any, attrs: dict[str, Any]) -> None:
    for name, value in attrs.items():
        if not isinstance(value, tuple):
            setattr(obj, name, value)
            continue
        kind, array = value
        if kind == "scalar":
            setattr(obj, name, array[()])
            continue
        current = getattr(obj, name, None)
        if isinstance(current, np.ndarray) and current.shape == array.shape:
            current[...] = array  # in place: other objects may hold a view of it
        else:
            setattr(obj, name, array.copy())


def _layers(env: gym.Env) -> list[Any]:
    layers = [env]
    while isinstance(layers[-1], gym.Wrapper):
        layers.append(layers[-1].env)
    return layers


def _mujoco_state(env: Any) -> dict[str, Any] | None:
    data = getattr(env, "data", None)
    if data is None or not type(data).__module__.startswith("mujoco"):
        return None
    import mujoco

    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    integration = np.empty(mujoco.mj_stateSize(env.model, spec))
    mujoco.mj_getState(env.model, data, integration, spec)
    derived = {}
    for name in dir(data):
        if name.startswith("_") or name.startswith(_MJ_SKIP_PREFIXES):
            continue
        value = getattr(data, name, None)
        if isinstance(value, np.ndarray) and value.size:
            derived[name] = value.copy()
    return {"integration": integration, "derived": derived}


def _set_mujoco_state(env: Any, state: dict[str, Any]) -> None:
    import mujoco

    data = env.data
    for name, value in state["derived"].items():
        current = getattr(data, name, None)
        if isinstance(current, np.ndarray) and current.shape == value.shape:
            current[...] = value
    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    mujoco.mj_setState(env.model, data, np.asarray(state["integration"], np.float64), spec)


def get_sub_env_state(env: gym.Env) -> dict[str, Any]:
    """Everything needed to continue ``env`` bit-for-bit (plain Python + numpy arrays)."""
    unwrapped = env.unwrapped
    return {
        "np_random": unwrapped.np_random.bit_generator.state,
        "layers": [_simple_attrs(layer) for layer in _layers(env)],
        "mujoco": _mujoco_state(unwrapped),
    }


def set_sub_env_state(env: gym.Env, state: dict[str, Any]) -> None:
    """Restores what ``get_sub_env_state`` returned into an env made with the same arguments."""
    layers = _layers(env)
    if len(layers) != len(state["layers"]):
        raise ValueError(
            f"the saved env has {len(state['layers'])} wrapper layers, this one {len(layers)}; "
            "load the state into an env made with the same env_name and env_kwargs"
        )
    for layer, attrs in zip(layers, state["layers"], strict=True):
        _restore_attrs(layer, attrs)
    unwrapped = env.unwrapped
    unwrapped.np_random.bit_generator.state = state["np_random"]
    if state["mujoco"] is not None:
        _set_mujoco_state(unwrapped, state["mujoco"])


class SubEnvs:
    """``len(envs)`` Gymnasium envs stepped one after the other in this process.

    Args:
        env_name: a registered Gymnasium id.
        num_envs: number of sub-envs.
        frame_skip: each action is repeated this many times (rewards summed), stopping early at
            an episode end.
        max_episode_steps: TimeLimit override; None keeps the registered limit.
        env_kwargs: extra ``gym.make`` keyword arguments.
        action_offset: added to discrete actions (``Discrete(n, start)``).
    """

    def __init__(
        self,
        env_name: str,
        num_envs: int,
        frame_skip: int,
        max_episode_steps: int | None,
        env_kwargs: dict[str, Any] | None,
        action_offset: int = 0,
    ) -> None:
        self.envs = [make_gym_env(env_name, max_episode_steps, env_kwargs) for _ in range(num_envs)]
        self.frame_skip = frame_skip
        self.action_offset = action_offset

    def step(
        self,
        actions: np.ndarray,
        obs: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> None:
        """Steps every sub-env with ``actions[i]`` and writes row ``i`` of the 1-D/2-D outputs."""
        if self.action_offset:
            actions = actions + self.action_offset
        frame_skip = self.frame_skip
        for i, env in enumerate(self.envs):
            action = actions[i]
            if frame_skip == 1:
                o, r, te, tr, _ = env.step(action)
            else:
                r = 0.0
                for _ in range(frame_skip):
                    o, r_k, te, tr, _ = env.step(action)
                    r += float(r_k)
                    if te or tr:
                        break
            obs[i] = o
            reward[i] = r
            terminated[i] = te
            truncated[i] = tr

    def reset(self, indices: list[int], seeds: list[int | None]) -> np.ndarray:
        """Resets ``envs[i]`` for ``i`` in ``indices`` (with the matching seed); returns obs rows."""
        rows = [
            np.asarray(self.envs[i].reset(seed=s)[0]) for i, s in zip(indices, seeds, strict=True)
        ]
        return np.stack(rows) if rows else np.empty((0,))

    def run_actions(self, indices: list[int], actions: list[np.ndarray]) -> np.ndarray:
        """Steps ``envs[i]`` with each row of ``actions[j]`` (``i = indices[j]``); returns obs rows.

        An episode that ends on the way is reset (unseeded) and the remaining actions dropped.
        """
        rows = []
        for i, sequence in zip(indices, actions, strict=True):
            env = self.envs[i]
            if self.action_offset:
                sequence = sequence + self.action_offset
            for action in sequence:
                o, _, te, tr, _ = env.step(action)
                if te or tr:
                    o, _ = env.reset()
                    break
            rows.append(np.asarray(o))
        return np.stack(rows)

    def get_state(self) -> list[dict[str, Any]]:
        return [get_sub_env_state(env) for env in self.envs]

    def set_state(self, states: list[dict[str, Any]]) -> None:
        for env, state in zip(self.envs, states, strict=True):
            set_sub_env_state(env, state)

    def close(self) -> None:
        for env in self.envs:
            env.close()


def _shared_array(ctx: Any, shape: tuple[int, ...], dtype: np.dtype) -> Any:
    return ctx.RawArray("b", max(1, int(np.prod(shape)) * np.dtype(dtype).itemsize))


def _view(raw: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    return np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape))).reshape(shape)


class _WorkerHandler:
    """The commands a worker answers; each runs on the worker's own ``SubEnvs``."""

    def __init__(self, envs: SubEnvs, buffers: dict[str, np.ndarray]) -> None:
        self.envs = envs
        self.buffers = buffers

    def step(self) -> None:
        b = self.buffers
        self.envs.step(b["action"], b["obs"], b["reward"], b["terminated"], b["truncated"])

    def reset(self, indices: list[int], seeds: list[int | None]) -> np.ndarray:
        return self.envs.reset(indices, seeds)

    def run_actions(self, indices: list[int], actions: list[np.ndarray]) -> np.ndarray:
        return self.envs.run_actions(indices, actions)

    def get_state(self) -> list[dict[str, Any]]:
        return self.envs.get_state()

    def set_state(self, states: list[dict[str, Any]]) -> None:
        self.envs.set_state(states)


def _worker_main(
    conn: Connection,
    make_args: tuple[Any, ...],
    raw: dict[str, Any],
    layout: dict[str, tuple[tuple[int, ...], str]],
    rows: slice,
) -> None:
    isolate_from_group_signals()
    try:
        envs = SubEnvs(*make_args)
        buffers = {
            name: _view(raw[name], shape, np.dtype(dtype))[rows]
            for name, (shape, dtype) in layout.items()
        }
        handler = _WorkerHandler(envs, buffers)
    except Exception:
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ok", None))
    while True:
        try:
            command, args = conn.recv()
        except EOFError:  # the parent died
            break
        if command == "close":
            envs.close()
            conn.send(("ok", None))
            break
        try:
            conn.send(("ok", getattr(handler, command)(*args)))
        except Exception:
            conn.send(("error", traceback.format_exc()))
    conn.close()


class ParallelSubEnvs:
    """Like ``SubEnvs``, each sub-env in its own worker process.

    Actions and step results travel through shared memory; commands and replies through pipes.
    Workers are started by ``worker_context()`` (forkserver or spawn): only the env's name and
    keyword arguments are pickled.
    """

    def __init__(
        self,
        env_name: str,
        num_envs: int,
        frame_skip: int,
        max_episode_steps: int | None,
        env_kwargs: dict[str, Any] | None,
        action_offset: int,
        *,
        obs_shape: tuple[int, ...],
        action_shape: tuple[int, ...],
        action_dtype: np.dtype,
    ) -> None:
        ctx = worker_context()
        self.env_name = env_name
        self.action_offset = action_offset
        self._layout: dict[str, tuple[tuple[int, ...], str]] = {
            "action": ((num_envs, *action_shape), np.dtype(action_dtype).str),
            "obs": ((num_envs, *obs_shape), np.dtype(np.float32).str),
            "reward": ((num_envs,), np.dtype(np.float32).str),
            "terminated": ((num_envs,), np.dtype(bool).str),
            "truncated": ((num_envs,), np.dtype(bool).str),
        }
        raw = {
            name: _shared_array(ctx, shape, np.dtype(dtype))
            for name, (shape, dtype) in self._layout.items()
        }
        self._buffers = {
            name: _view(raw[name], shape, np.dtype(dtype))
            for name, (shape, dtype) in self._layout.items()
        }
        self._conns: list[Connection] = []
        self._procs: list[Any] = []
        make_args = (env_name, 1, frame_skip, max_episode_steps, env_kwargs, action_offset)
        for i in range(num_envs):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_worker_main,
                args=(child, make_args, raw, self._layout, slice(i, i + 1)),
                daemon=True,
                name=f"trainrl-gym-{env_name}-{i}",
            )
            proc.start()
            child.close()
            self._conns.append(parent)
            self._procs.append(proc)
        for i in range(num_envs):
            self._receive(i)

    def _receive(self, i: int) -> Any:
        try:
            status, payload = self._conns[i].recv()
        except EOFError as err:
            raise RuntimeError(
                f"worker {i} of the parallel env {self.env_name!r} died (exit code "
                f"{self._procs[i].exitcode})"
            ) from err
        if status == "error":
            raise RuntimeError(
                f"worker {i} of the parallel env {self.env_name!r} failed:\n{payload}"
            )
        return payload

    def _call_all(self, command: str, per_worker_args: list[tuple[Any, ...]]) -> list[Any]:
        for conn, args in zip(self._conns, per_worker_args, strict=True):
            conn.send((command, args))
        return [self._receive(i) for i in range(len(self._conns))]

    def step(
        self,
        actions: np.ndarray,
        obs: np.ndarray,
        reward: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> None:
        b = self._buffers
        b["action"][...] = actions  # the offset is applied by each worker's SubEnvs
        self._call_all("step", [()] * len(self._conns))
        obs[...] = b["obs"]
        reward[...] = b["reward"]
        terminated[...] = b["terminated"]
        truncated[...] = b["truncated"]

    def reset(self, indices: list[int], seeds: list[int | None]) -> np.ndarray:
        for i, seed in zip(indices, seeds, strict=True):
            self._conns[i].send(("reset", ([0], [seed])))
        rows = [self._receive(i)[0] for i in indices]
        return np.stack(rows) if rows else np.empty((0,))

    def run_actions(self, indices: list[int], actions: list[np.ndarray]) -> np.ndarray:
        for i, sequence in zip(indices, actions, strict=True):
            self._conns[i].send(("run_actions", ([0], [sequence])))
        return np.stack([self._receive(i)[0] for i in indices])

    def get_state(self) -> list[dict[str, Any]]:
        states = self._call_all("get_state", [()] * len(self._conns))
        return [s for worker_states in states for s in worker_states]

    def set_state(self, states: list[dict[str, Any]]) -> None:
        self._call_all("set_state", [([s],) for s in states])

    def close(self) -> None:
        for i, conn in enumerate(self._conns):
            if self._procs[i].is_alive():
                try:
                    conn.send(("close", ()))
                    conn.recv()
                except (EOFError, BrokenPipeError, OSError):
                    pass
            conn.close()
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
        self._conns = []
        self._procs = []

    def __del__(self) -> None:
        # Without close(), don't leave workers running until the interpreter exits.
        for proc in getattr(self, "_procs", []):
            if proc.is_alive():
                proc.terminate()
