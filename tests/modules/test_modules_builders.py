from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from tensordict.nn import InteractionType, set_interaction_type
from torch import nn

from trainers.envs import GymEnv
from trainers.envs.specs import Bounded, Categorical, Unbounded
from trainers.keys import ACTION, SAMPLE_LOG_PROB
from trainers.modules import (
    make_categorical_actor,
    make_qvalue_actor,
    make_qvalue_network,
    make_tanh_normal_actor,
    make_value_network,
)


@pytest.fixture(scope="module")
def pendulum():
    env = GymEnv("Pendulum-v1", num_envs=2)
    yield env
    env.close()


def test_sizes_and_bounds_come_from_a_real_env(pendulum):
    torch.manual_seed(0)
    actor = make_tanh_normal_actor(pendulum, num_cells=[32, 32], activation_class="relu")
    assert actor.network[0].in_features == 3 and actor.network[-1].out_features == 2
    assert isinstance(actor.network[1], nn.ReLU)
    torch.testing.assert_close(actor.low, torch.tensor([-2.0]))
    torch.testing.assert_close(actor.high, torch.tensor([2.0]))
    td = pendulum.rollout(4, policy=actor)
    assert td[ACTION].shape == (2, 4, 1) and td[SAMPLE_LOG_PROB].shape == (2, 4)
    assert pendulum.action_spec.is_in(td[ACTION])
    value = make_value_network(pendulum, num_cells=[16])
    assert value(td)["state_value"].shape == (2, 4, 1)
    q = make_qvalue_network(pendulum, num_cells=[16], num_qvalue_nets=3)
    assert q(td["observation"], td[ACTION]).shape == (3, 2, 4, 1)


def test_state_independent_scale_and_orthogonal_policy_head():
    env = SimpleNamespace(observation_spec=Unbounded(5), action_spec=Bounded(-1.0, 1.0, (3,)))
    actor = make_tanh_normal_actor(
        env, num_cells=[8], state_independent_scale=True, init="orthogonal"
    )
    head = actor.network[-1].weight.detach()
    assert head.shape == (3, 8)
    torch.testing.assert_close(head @ head.T, 1e-4 * torch.eye(3), atol=1e-7, rtol=0)


def test_discrete_builders():
    env = SimpleNamespace(observation_spec=Unbounded(4), action_spec=Categorical(3))
    actor = make_categorical_actor(env, num_cells=[8])
    qactor = make_qvalue_actor(env, num_cells=[8], epsilon=0.2)
    assert actor.network[-1].out_features == 3 and qactor.network[-1].out_features == 3
    assert qactor.epsilon == 0.2


def test_wrong_action_kind_or_names_fail_clearly():
    box = SimpleNamespace(observation_spec=Unbounded(4), action_spec=Bounded(-1.0, 1.0, (2,)))
    discrete = SimpleNamespace(observation_spec=Unbounded(4), action_spec=Categorical(3))
    with pytest.raises(ValueError, match="box actions"):
        make_tanh_normal_actor(discrete)
    with pytest.raises(ValueError, match="discrete actions"):
        make_qvalue_actor(box)
    with pytest.raises(ValueError, match="activation_class='swishy'"):
        make_value_network(box, activation_class="swishy")
    image = SimpleNamespace(observation_spec=Unbounded((3, 8, 8)), action_spec=Categorical(3))
    with pytest.raises(ValueError, match=r"observation_spec.shape=\(3, 8, 8\)"):
        make_categorical_actor(image)


def test_deterministic_rollout_is_repeatable(pendulum):
    torch.manual_seed(0)
    actor = make_tanh_normal_actor(pendulum, num_cells=[8])
    with set_interaction_type(InteractionType.DETERMINISTIC):
        pendulum.set_seed(3)
        first = pendulum.rollout(3, policy=actor)[ACTION]
        pendulum.set_seed(3)
        second = pendulum.rollout(3, policy=actor)[ACTION]
    assert torch.equal(first, second)
