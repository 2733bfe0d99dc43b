"""Transforms applied to a whole batch of envs at once, and ``TransformedEnv``.

A transform has two hooks, both acting on full ``[num_envs]`` batches with tensor operations:

* ``on_reset(root, mask)``: the root TensorDict after a reset; ``mask`` (bool ``[num_envs]``)
  marks the rows that are new episodes (None: all rows). Other rows hold placeholders and are
  discarded by the env, so a transform may compute on them but must not learn from them.
* ``on_step(td, next_td)``: ``next_td`` is what the env returned for the step whose root (holding
  the action and the keys carried from the previous step, e.g. ``step_count``) is ``td``.

Keys a transform writes into ``next_td`` other than reward and the done flags are carried to the
next root, so running quantities (``step_count``, ``episode_reward``) need no extra state.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from tensordict import TensorDictBase

from trainers import keys
from trainers.envs.common import EnvBase
from trainers.envs.specs import TensorSpec, Unbounded

STEP_COUNT = keys.STEP_COUNT[1]
EPISODE_REWARD = keys.EPISODE_REWARD[1]
REWARD = keys.REWARD[1]
DONE = keys.DONE[1]
TRUNCATED = keys.TRUNCATED[1]


class Transform:
    """Base class: both hooks pass data through unchanged; no state.

    ``parent`` is the untransformed base env, set by ``TransformedEnv``.

    Examples:
        >>> from trainers.envs import Transform
        >>> class Clip(Transform):
        ...     def on_step(self, td, next_td):
        ...         next_td.set("reward", next_td.get("reward").clamp(-1, 1))
        ...         return next_td
    """

    def __init__(self) -> None:
        self.parent: EnvBase | None = None

    def set_parent(self, parent: EnvBase) -> None:
        self.parent = parent

    def transform_observation_spec(self, spec: TensorSpec) -> TensorSpec:
        """The observation spec after this transform."""
        return spec

    def on_reset(self, root: TensorDictBase, mask: torch.Tensor | None) -> TensorDictBase:
        return root

    def on_step(self, td: TensorDictBase, next_td: TensorDictBase) -> TensorDictBase:
        return next_td

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        del state_dict

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def _zeros(root: TensorDictBase, dtype: torch.dtype) -> torch.Tensor:
    device = root.get(keys.OBSERVATION).device
    return torch.zeros((*root.batch_size, 1), dtype=dtype, device=device)


def _require(td: TensorDictBase, key: str, transform: Transform) -> torch.Tensor:
    value = td.get(key, None)
    if value is None:
        raise KeyError(
            f"{type(transform).__name__} needs key {key!r} in the root TensorDict; step with the "
            "root returned by reset() or step_and_maybe_reset()"
        )
    return value


class StepCounter(Transform):
    """Counts the steps of each episode into ``("next", "step_count")`` (int64 ``[..., 1]``).

    With ``max_steps``, an episode reaching that many steps is truncated (``truncated`` and
    ``done`` set), so ``step_and_maybe_reset`` resets it.

    Args:
        max_steps: truncate episodes at this length; None never truncates. >= 1.

    Examples:
        >>> from trainers.envs import GymEnv, StepCounter, TransformedEnv
        >>> env = TransformedEnv(GymEnv("CartPole-v1"), StepCounter(max_steps=5))
        >>> env.rollout(10)["next", "step_count"].max().item()
        5
    """

    def __init__(self, max_steps: int | None = None) -> None:
        super().__init__()
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"StepCounter max_steps must be >= 1 or None, got {max_steps!r}")
        self.max_steps = max_steps

    def on_reset(self, root: TensorDictBase, mask: torch.Tensor | None) -> TensorDictBase:
        root.set(STEP_COUNT, _zeros(root, torch.int64))
        return root

    def on_step(self, td: TensorDictBase, next_td: TensorDictBase) -> TensorDictBase:
        count = _require(td, STEP_COUNT, self) + 1
        next_td.set(STEP_COUNT, count)
        if self.max_steps is not None:
            cut = count >= self.max_steps
            next_td.set(TRUNCATED, next_td.get(TRUNCATED) | cut)
            next_td.set(DONE, next_td.get(DONE) | cut)
        return next_td

    def __repr__(self) -> str:
        return f"StepCounter(max_steps={self.max_steps})"


class RewardSum(Transform):
    """Writes the running return, this step's reward included, to ``("next", "episode_reward")``.

    Where ``done`` is true it is the finished episode's return; it restarts at 0 with each
    episode.

    Examples:
        >>> from trainers.envs import GymEnv, RewardSum, TransformedEnv
        >>> env = TransformedEnv(GymEnv("Pendulum-v1"), RewardSum())
        >>> td = env.rollout(3)
        >>> bool((td["next", "episode_reward"][0, -1] == td["next", "reward"][0].sum()).all())
        True
    """

    def on_reset(self, root: TensorDictBase, mask: torch.Tensor | None) -> TensorDictBase:
        root.set(EPISODE_REWARD, _zeros(root, torch.float32))
        return root

    def on_step(self, td: TensorDictBase, next_td: TensorDictBase) -> TensorDictBase:
        next_td.set(EPISODE_REWARD, _require(td, EPISODE_REWARD, self) + next_td.get(REWARD))
        return next_td


class _ObservationTransform(Transform):
    """Applies ``_apply`` to the root observation at reset and to the next one at each step."""

    def _apply(self, obs: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def transform_observation_spec(self, spec: TensorSpec) -> TensorSpec:
        return Unbounded(spec.shape, spec.dtype, spec.device)

    def on_reset(self, root: TensorDictBase, mask: torch.Tensor | None) -> TensorDictBase:
        root.set(keys.OBSERVATION, self._apply(root.get(keys.OBSERVATION), mask))
        return root

    def on_step(self, td: TensorDictBase, next_td: TensorDictBase) -> TensorDictBase:
        next_td.set(keys.OBSERVATION, self._apply(next_td.get(keys.OBSERVATION), None))
        return next_td


class ObservationNorm(_ObservationTransform):
    """Fixed affine normalization of the observation.

    ``standard_normal=False`` (TorchRL's default) computes ``obs * scale + loc``; ``True``
    computes ``(obs - loc) / scale``. Without ``loc``/``scale`` the transform is the identity until
    ``init_stats`` sets them from a random rollout so the output has zero mean and unit std.

    Args:
        loc: shift (broadcast to the observation shape), or None.
        scale: scale, or None.
        standard_normal: which of the two formulas above.

    Examples:
        >>> from trainers.envs import GymEnv, ObservationNorm, TransformedEnv
        >>> norm = ObservationNorm(standard_normal=True)
        >>> env = TransformedEnv(GymEnv("Pendulum-v1"), norm)
        >>> norm.init_stats(env, num_iter=100)
    """

    def __init__(
        self,
        loc: float | torch.Tensor | None = None,
        scale: float | torch.Tensor | None = None,
        *,
        standard_normal: bool = False,
    ) -> None:
        super().__init__()
        if (loc is None) != (scale is None):
            raise ValueError("ObservationNorm needs both loc and scale, or neither (init_stats)")
        self.standard_normal = standard_normal
        self.loc = None if loc is None else torch.as_tensor(loc, dtype=torch.float32)
        self.scale = None if scale is None else torch.as_tensor(scale, dtype=torch.float32)

    def init_stats(self, env: EnvBase, num_iter: int = 1000) -> None:
        """Sets ``loc``/``scale`` from ``num_iter`` random steps of ``env`` (which it resets).

        When ``env`` holds this transform, leave it uninitialized before (it is the identity).
        """
        from trainers.envs.utils import get_stats_random_rollout

        mean, std = get_stats_random_rollout(env, num_iter)
        if self.standard_normal:
            self.loc, self.scale = mean, std
        else:
            self.loc, self.scale = -mean / std, 1.0 / std

    def _apply(self, obs: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if self.loc is None or self.scale is None:
            return obs
        if self.loc.device != obs.device:
            self.loc, self.scale = self.loc.to(obs.device), self.scale.to(obs.device)
        if self.standard_normal:
            return (obs - self.loc) / self.scale
        return obs * self.scale + self.loc

    def state_dict(self) -> dict[str, Any]:
        return {"loc": self.loc, "scale": self.scale}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.loc, self.scale = state_dict["loc"], state_dict["scale"]

    def __repr__(self) -> str:
        return f"ObservationNorm(standard_normal={self.standard_normal}, initialized={self.loc is not None})"


@dataclass
class _RunningStats:
    """Decayed sums of a VecNorm, shared by its frozen copies (None until the first batch)."""

    sum: torch.Tensor | None = None
    ssq: torch.Tensor | None = None
    count: torch.Tensor | None = None


class VecNorm(_ObservationTransform):
    """Normalizes observations with running (exponentially decayed) statistics.

    Every new observation ``x`` (reset rows that are new episodes and every step's next
    observation) first updates ``sum = decay * sum + x.sum(0)``, ``ssq = decay * ssq +
    (x**2).sum(0)``, ``count = decay * count + len(x)`` (float64), then is normalized as
    ``(x - mean) / max(std, eps)`` with ``mean = sum / count``, ``std = sqrt(max(ssq / count -
    mean**2, eps))``.

    Args:
        decay: weight of the past statistics in (0, 1].
        eps: lower bound of the variance and of the std.

    Examples:
        >>> from trainers.envs import GymEnv, TransformedEnv, VecNorm
        >>> vecnorm = VecNorm()
        >>> train_env = TransformedEnv(GymEnv("Pendulum-v1", num_envs=4), vecnorm)
        >>> eval_env = TransformedEnv(GymEnv("Pendulum-v1"), vecnorm.frozen_copy())
    """

    def __init__(self, decay: float = 0.9999, eps: float = 1e-4) -> None:
        super().__init__()
        if not 0.0 < decay <= 1.0:
            raise ValueError(f"VecNorm decay must be in (0, 1], got {decay!r}")
        if not eps > 0.0:
            raise ValueError(f"VecNorm eps must be > 0, got {eps!r}")
        self.decay = decay
        self.eps = eps
        self.frozen = False
        self._stats = _RunningStats()

    def frozen_copy(self) -> VecNorm:
        """A VecNorm that reads the same statistics tensors but never updates them."""
        frozen = copy.copy(self)
        frozen.parent = None
        frozen.frozen = True
        return frozen

    @property
    def loc(self) -> torch.Tensor | None:
        """The current mean (None before any observation)."""
        stats = self._stats
        return None if stats.sum is None or stats.count is None else stats.sum / stats.count

    @property
    def scale(self) -> torch.Tensor | None:
        """The current std, as used to divide (None before any observation)."""
        stats = self._stats
        if stats.sum is None or stats.ssq is None or stats.count is None:
            return None
        mean = stats.sum / stats.count
        var = (stats.ssq / stats.count - mean.pow(2)).clamp_min(self.eps)
        return var.sqrt().clamp_min(self.eps)

    def _update(self, obs: torch.Tensor) -> None:
        x = obs.to(torch.float64)
        stats = self._stats
        if stats.sum is None or stats.ssq is None or stats.count is None:
            stats.sum = torch.zeros(obs.shape[1:], dtype=torch.float64, device=obs.device)
            stats.ssq = torch.zeros_like(stats.sum)
            stats.count = torch.zeros((), dtype=torch.float64, device=obs.device)
        stats.sum.mul_(self.decay).add_(x.sum(0))
        stats.ssq.mul_(self.decay).add_(x.pow(2).sum(0))
        stats.count.mul_(self.decay).add_(x.shape[0])

    def _apply(self, obs: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if not self.frozen:
            self._update(obs if mask is None else obs[mask])
        loc, scale = self.loc, self.scale
        if loc is None or scale is None:
            return obs  # a frozen copy used before any statistics exist
        return ((obs - loc) / scale).to(obs.dtype)

    def state_dict(self) -> dict[str, Any]:
        stats = self._stats
        return {"sum": stats.sum, "ssq": stats.ssq, "count": stats.count}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        stats = self._stats
        for name in ("sum", "ssq", "count"):
            value, current = state_dict[name], getattr(stats, name)
            if value is None or current is None or current.shape != value.shape:
                setattr(stats, name, None if value is None else value.clone())
            else:
                current.copy_(value)  # in place: frozen copies share these tensors

    def __repr__(self) -> str:
        return f"VecNorm(decay={self.decay}, eps={self.eps}, frozen={self.frozen})"


class RewardNorm(Transform):
    """Divides rewards by a running std of the discounted return, then clips them.

    The reward normalization of OpenAI baselines' ``VecNormalize`` (used by CleanRL's and SB3's
    MuJoCo PPO): each env keeps ``G = gamma * G + r`` (reset when its episode starts), the
    variance of ``G`` over all envs and steps is tracked exactly (parallel mean/variance
    updates, float64), and the reward becomes ``clip(r / sqrt(var + eps), -clip, clip)``.
    Rewards are not shifted, so the sign of the return is kept. Put ``RewardSum`` before it
    in a ``Compose`` so logged episode returns stay in the env's own units.

    Args:
        gamma: the discount of the tracked return (use the algorithm's).
        eps: added to the variance.
        clip: bound of the normalized reward; None disables clipping.

    Examples:
        >>> from functools import partial
        >>> from trainers.envs import Compose, GymEnv, RewardNorm, RewardSum, TransformedEnv
        >>> env = TransformedEnv(partial(GymEnv, "Pendulum-v1"), Compose(RewardSum(), RewardNorm()),
        ...                      num_envs=2)
        >>> td = env.step(env.rand_action(env.reset()))
        >>> td["next", "reward"].shape
        torch.Size([2, 1])
    """

    def __init__(self, gamma: float = 0.99, eps: float = 1e-8, clip: float | None = 10.0) -> None:
        super().__init__()
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"RewardNorm gamma must be in [0, 1], got {gamma!r}")
        if clip is not None and not clip > 0:
            raise ValueError(f"RewardNorm clip must be > 0 or None, got {clip!r}")
        self.gamma = gamma
        self.eps = eps
        self.clip = clip
        self.frozen = False
        self._returns: torch.Tensor | None = None  # per env, float64
        self._stats = {
            "count": torch.zeros((), dtype=torch.float64),
            "mean": torch.zeros((), dtype=torch.float64),
            "var": torch.ones((), dtype=torch.float64),
        }

    def frozen_copy(self) -> RewardNorm:
        """A RewardNorm that reads the same statistics but never updates them."""
        frozen = copy.copy(self)
        frozen.parent = None
        frozen.frozen = True
        frozen._returns = None
        return frozen

    def on_reset(self, root: TensorDictBase, mask: torch.Tensor | None) -> TensorDictBase:
        if self._returns is None:
            self._returns = torch.zeros(root.batch_size.numel(), dtype=torch.float64)
        if mask is None:
            self._returns.zero_()
        else:
            self._returns[mask.reshape(-1).cpu()] = 0.0
        return root

    def on_step(self, td: TensorDictBase, next_td: TensorDictBase) -> TensorDictBase:
        reward = next_td.get("reward")
        if self._returns is None:
            self._returns = torch.zeros(reward.shape[0], dtype=torch.float64)
        if not self.frozen:
            self._returns.mul_(self.gamma).add_(reward.reshape(-1).to("cpu", torch.float64))
            self._update(self._returns)
        std = (self._stats["var"] + self.eps).sqrt().to(reward.device, reward.dtype)
        scaled = reward / std
        if self.clip is not None:
            scaled = scaled.clamp(-self.clip, self.clip)
        next_td.set("reward", scaled)
        return next_td

    def _update(self, values: torch.Tensor) -> None:
        stats, n = self._stats, values.numel()
        batch_mean = values.mean()
        batch_var = values.var(unbiased=False)
        total = stats["count"] + n
        delta = batch_mean - stats["mean"]
        m2 = (
            stats["var"] * stats["count"]
            + batch_var * n
            + delta.pow(2) * stats["count"] * n / total
        )
        stats["mean"].add_(delta * n / total)
        stats["var"].copy_(m2 / total)
        stats["count"].copy_(total)

    def state_dict(self) -> dict[str, Any]:
        return {**self._stats, "returns": self._returns}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for name, tensor in self._stats.items():
            tensor.copy_(state_dict[name])  # in place: frozen copies share these tensors
        returns = state_dict["returns"]
        self._returns = None if returns is None else returns.clone()

    def __repr__(self) -> str:
        return f"RewardNorm(gamma={self.gamma}, clip={self.clip}, frozen={self.frozen})"


class RewardScaling(Transform):
    """Affine reward transform: ``reward * scale + loc`` (or ``(reward - loc) / scale``).

    Args:
        loc: shift.
        scale: scale; non-zero.
        standard_normal: use ``(reward - loc) / scale`` instead.

    Examples:
        >>> from trainers.envs import GymEnv, RewardScaling, TransformedEnv
        >>> env = TransformedEnv(GymEnv("Pendulum-v1"), RewardScaling(loc=0.0, scale=0.1))
    """

    def __init__(self, loc: float = 0.0, scale: float = 1.0, *, standard_normal: bool = False):
        super().__init__()
        if scale == 0:
            raise ValueError("RewardScaling scale must be non-zero")
        self.loc = loc
        self.scale = scale
        self.standard_normal = standard_normal

    def on_step(self, td: TensorDictBase, next_td: TensorDictBase) -> TensorDictBase:
        reward = next_td.get(REWARD)
        if self.standard_normal:
            next_td.set(REWARD, (reward - self.loc) / self.scale)
        else:
            next_td.set(REWARD, reward * self.scale + self.loc)
        return next_td

    def __repr__(self) -> str:
        return f"RewardScaling(loc={self.loc}, scale={self.scale})"


class DoubleToFloat(Transform):
    """Casts every float64 entry to float32 (``GymEnv`` already returns float32 observations)."""

    @staticmethod
    def _cast(td: TensorDictBase) -> TensorDictBase:
        for key, value in td.items(include_nested=True, leaves_only=True):
            if value.dtype == torch.float64:
                td.set(key, value.to(torch.float32))
        return td

    def transform_observation_spec(self, spec: TensorSpec) -> TensorSpec:
        if spec.dtype == torch.float64:
            spec = copy.copy(spec)
            spec.dtype = torch.float32
        return spec

    def on_reset(self, root: TensorDictBase, mask: torch.Tensor | None) -> TensorDictBase:
        return self._cast(root)

    def on_step(self, td: TensorDictBase, next_td: TensorDictBase) -> TensorDictBase:
        return self._cast(next_td)


class NoopReset(Transform):
    """After each reset, takes a random number (1..``noops``) of random actions.

    The actions go straight to the base env (transforms are not applied to them), so put it
    first. An episode that ends during these steps is reset once more and starts there.

    Args:
        noops: the most steps taken; >= 1.
        random: draw the number of steps uniformly in ``[1, noops]``; False always takes
            ``noops``.

    Examples:
        >>> from trainers.envs import Compose, GymEnv, NoopReset, StepCounter, TransformedEnv
        >>> env = TransformedEnv(GymEnv("CartPole-v1"), Compose(NoopReset(30), StepCounter()))
    """

    def __init__(self, noops: int = 30, random: bool = True) -> None:
        super().__init__()
        if noops < 1:
            raise ValueError(f"NoopReset noops must be >= 1, got {noops!r}")
        self.noops = noops
        self.random = random

    def set_parent(self, parent: EnvBase) -> None:
        if not callable(getattr(parent, "run_actions", None)):
            raise TypeError(
                f"NoopReset needs a base env with run_actions (e.g. GymEnv), got {type(parent).__name__}"
            )
        super().set_parent(parent)

    def on_reset(self, root: TensorDictBase, mask: torch.Tensor | None) -> TensorDictBase:
        parent = self.parent
        if parent is None:
            raise RuntimeError("NoopReset is not attached to an env (use TransformedEnv)")
        rows = list(range(parent.num_envs)) if mask is None else mask.nonzero().flatten().tolist()
        if not rows:
            return root
        if self.random:
            counts = torch.randint(1, self.noops + 1, (len(rows),)).tolist()
        else:
            counts = [self.noops] * len(rows)
        actions = [parent.action_spec.rand((n,)) for n in counts]
        obs = root.get(keys.OBSERVATION).clone()
        obs[rows] = parent.run_actions(rows, actions).to(obs.device)  # type: ignore[attr-defined]
        root.set(keys.OBSERVATION, obs)
        return root

    def __repr__(self) -> str:
        return f"NoopReset(noops={self.noops}, random={self.random})"


class Compose(Transform):
    """Applies transforms in order (on reset and on step alike).

    Examples:
        >>> from trainers.envs import Compose, RewardSum, StepCounter, VecNorm
        >>> t = Compose(StepCounter(max_steps=200), RewardSum(), VecNorm())
        >>> len(t)
        3
    """

    def __init__(self, *transforms: Transform) -> None:
        super().__init__()
        for t in transforms:
            if not isinstance(t, Transform):
                raise TypeError(f"Compose takes Transform objects, got {type(t).__name__}")
        self.transforms: list[Transform] = list(transforms)

    def set_parent(self, parent: EnvBase) -> None:
        super().set_parent(parent)
        for t in self.transforms:
            t.set_parent(parent)

    def append(self, transform: Transform) -> None:
        if self.parent is not None:
            transform.set_parent(self.parent)
        self.transforms.append(transform)

    def transform_observation_spec(self, spec: TensorSpec) -> TensorSpec:
        for t in self.transforms:
            spec = t.transform_observation_spec(spec)
        return spec

    def on_reset(self, root: TensorDictBase, mask: torch.Tensor | None) -> TensorDictBase:
        for t in self.transforms:
            root = t.on_reset(root, mask)
        return root

    def on_step(self, td: TensorDictBase, next_td: TensorDictBase) -> TensorDictBase:
        for t in self.transforms:
            next_td = t.on_step(td, next_td)
        return next_td

    def state_dict(self) -> dict[str, Any]:
        return {str(i): t.state_dict() for i, t in enumerate(self.transforms)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if len(state_dict) != len(self.transforms):
            raise ValueError(
                f"the saved Compose has {len(state_dict)} transforms, this one {len(self.transforms)}"
            )
        for i, t in enumerate(self.transforms):
            t.load_state_dict(state_dict[str(i)])

    def __getitem__(self, index: int) -> Transform:
        return self.transforms[index]

    def __len__(self) -> int:
        return len(self.transforms)

    def __iter__(self) -> Iterator[Transform]:
        return iter(self.transforms)

    def __repr__(self) -> str:
        return f"Compose({', '.join(map(repr, self.transforms))})"


def _innermost(env: EnvBase) -> EnvBase:
    while isinstance(env, TransformedEnv):
        env = env.base_env
    return env


class TransformedEnv(EnvBase):
    """An env whose outputs go through a transform, applied to the whole batch at once.

    ``base_env`` may be an env or a callable that makes one (e.g.
    ``functools.partial(GymEnv, "Pendulum-v1")``); the callable receives ``num_envs`` and
    ``vectorization`` when they are given. So ``make_batched_env(partial(TransformedEnv,
    base_env=partial(GymEnv, "Pendulum-v1"), transform=...), num_workers=4)`` builds one
    TransformedEnv over one GymEnv of 4 sub-envs, with no per-env wrappers.

    Args:
        base_env: the env to transform, or a callable returning it.
        transform: a transform (several: ``Compose``); None starts with an empty ``Compose``.
        num_envs: passed to a callable ``base_env``.
        vectorization: passed to a callable ``base_env``.

    Examples:
        >>> from functools import partial
        >>> from trainers.envs import Compose, GymEnv, RewardSum, StepCounter, TransformedEnv
        >>> env = TransformedEnv(
        ...     partial(GymEnv, "Pendulum-v1"), Compose(StepCounter(), RewardSum()), num_envs=4
        ... )
        >>> env.reset()["step_count"].shape
        torch.Size([4, 1])
    """

    def __init__(
        self,
        base_env: EnvBase | Callable[..., EnvBase],
        transform: Transform | None = None,
        *,
        num_envs: int | None = None,
        vectorization: str | None = None,
    ) -> None:
        if not isinstance(base_env, EnvBase):
            if not callable(base_env):
                raise TypeError(
                    f"base_env must be an EnvBase or a callable returning one, got {base_env!r}"
                )
            kwargs: dict[str, Any] = {}
            if num_envs is not None:
                kwargs["num_envs"] = num_envs
            if vectorization is not None:
                kwargs["vectorization"] = vectorization
            base_env = base_env(**kwargs)
            if not isinstance(base_env, EnvBase):
                raise TypeError(f"base_env() must return an EnvBase, got {type(base_env).__name__}")
        elif num_envs is not None or vectorization is not None:
            raise ValueError(
                "num_envs and vectorization apply only when base_env is a callable; "
                f"got an env instance {base_env!r}"
            )
        if transform is None:
            transform = Compose()
        elif not isinstance(transform, Transform):
            raise TypeError(f"transform must be a Transform, got {type(transform).__name__}")
        self.base_env = base_env
        self.transform = transform
        transform.set_parent(_innermost(base_env))
        super().__init__(
            num_envs=base_env.num_envs,
            device=base_env.device,
            observation_spec=transform.transform_observation_spec(base_env.observation_spec),
            action_spec=base_env.action_spec,
        )

    def append_transform(self, transform: Transform) -> None:
        """Adds ``transform`` after the existing ones."""
        if not isinstance(self.transform, Compose):
            self.transform = Compose(self.transform)
            self.transform.set_parent(_innermost(self.base_env))
        self.transform.append(transform)
        self.observation_spec = transform.transform_observation_spec(self.observation_spec)

    def _reset(self, mask: torch.Tensor | None) -> TensorDictBase:
        return self.transform.on_reset(self.base_env._reset(mask), mask)

    def _step(self, td: TensorDictBase) -> TensorDictBase:
        return self.transform.on_step(td, self.base_env._step(td))

    def set_seed(self, seed: int) -> int:
        return self.base_env.set_seed(seed)

    def state_dict(self) -> dict[str, Any]:
        return {"base_env": self.base_env.state_dict(), "transform": self.transform.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base_env.load_state_dict(state_dict["base_env"])
        self.transform.load_state_dict(state_dict["transform"])

    def close(self) -> None:
        self.base_env.close()

    def __getattr__(self, name: str) -> Any:
        # Attributes of the base env (env_name, frame_skip, ...) read through; only called when
        # normal lookup fails, and never for base_env itself during __init__.
        if name == "base_env":
            raise AttributeError(name)
        return getattr(self.base_env, name)

    def __repr__(self) -> str:
        return f"TransformedEnv({self.base_env!r}, {self.transform!r})"
