"""TensorDict key names shared by envs, collectors, losses and trainers.

Every batch that flows env -> collector -> (replay buffer) -> loss uses these keys.
A collector batch has batch size ``[num_envs, frames_per_env]``; a step's data sits at the root
and what the env returned after that step sits under ``"next"``:

* ``OBSERVATION`` (root): what the policy saw.
* ``ACTION`` (root): what it did. Continuous: float ``[..., action_dim]``; discrete: int64 ``[...]``.
* ``SAMPLE_LOG_PROB`` (root): log-probability of ``ACTION`` under the collecting policy, ``[...]``.
* ``PRE_TANH_ACTION`` (root, tanh-squashed policies): the normal sample before ``tanh`` and the
  rescaling to the bounds. Losses score it instead of inverting ``ACTION`` with ``atanh``, which
  loses precision (and is infinite on a bound) where ``tanh`` saturates.
* ``NEXT_OBSERVATION``: the observation after the step. On an episode end this is the *true* final
  observation, never the first observation of the next episode.
* ``REWARD``: float ``[..., 1]``.
* ``TERMINATED``: bool ``[..., 1]``; the episode ended in an absorbing state: value targets do
  **not** bootstrap from ``NEXT_OBSERVATION``.
* ``TRUNCATED``: bool ``[..., 1]``; the episode was cut (time limit): targets **do** bootstrap from
  ``NEXT_OBSERVATION``.
* ``DONE``: bool ``[..., 1]`` = ``TERMINATED | TRUNCATED``; the next root step starts a new episode.
* ``EPISODE_REWARD``: float ``[..., 1]``, the running return of the episode including this step
  (written by ``RewardSum``); where ``DONE`` is true it is the finished episode's return.
* ``STEP_COUNT``: int64 ``[..., 1]``, steps taken in the episode including this one
  (written by ``StepCounter``); where ``DONE`` is true it is the finished episode's length.
* ``TRAJ_IDS``: int64 ``[...]``, a collector-wide id of the episode each step belongs to.
* ``MASK``: bool ``[...]``, optional; false marks padding frames that must not be counted.
"""

from __future__ import annotations

NEXT = "next"
OBSERVATION = "observation"
ACTION = "action"
SAMPLE_LOG_PROB = "sample_log_prob"
REWARD = (NEXT, "reward")
TERMINATED = (NEXT, "terminated")
TRUNCATED = (NEXT, "truncated")
DONE = (NEXT, "done")
NEXT_OBSERVATION = (NEXT, OBSERVATION)
EPISODE_REWARD = (NEXT, "episode_reward")
STEP_COUNT = (NEXT, "step_count")
TRAJ_IDS = ("collector", "traj_ids")
MASK = ("collector", "mask")

# Written by networks.
PRE_TANH_ACTION = "pre_tanh_action"
STATE_ACTION_VALUE = "state_action_value"
ACTION_VALUE = "action_value"
CHOSEN_ACTION_VALUE = "chosen_action_value"
LOGITS = "logits"

# Written by losses and value estimators.
ADVANTAGE = "advantage"
VALUE_TARGET = "value_target"
STATE_VALUE = "state_value"
LOC = "loc"
SCALE = "scale"

# Written by replay buffers on sampled batches.
INDEX = "index"
PRIORITY_WEIGHT = "priority_weight"
TD_ERROR = "td_error"
