"""batch_actor_critic: the same networks, outputs and gradients, evaluated as one in the loss."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from tensordict import TensorDict
from torch import nn

from trainers.envs.specs import Bounded, Categorical, Unbounded
from trainers.keys import ADVANTAGE, VALUE_TARGET
from trainers.modules import (
    MLP,
    EnsembleMember,
    ValueOperator,
    batch_actor_critic,
    make_categorical_actor,
    make_tanh_normal_actor,
    make_value_network,
)
from trainers.objectives import ClipPPOLoss

OBS_DIM, ACTION_DIM = 5, 3
BOX_ENV = SimpleNamespace(
    observation_spec=Unbounded(OBS_DIM), action_spec=Bounded(-2.0, 2.0, (ACTION_DIM,))
)


def _pair(state_independent_scale: bool = False, **critic: object) -> tuple[nn.Module, nn.Module]:
    actor = make_tanh_normal_actor(
        BOX_ENV, num_cells=[16, 16], state_independent_scale=state_independent_scale
    )
    settings = {"num_cells": [16, 16], **critic}
    return actor, make_value_network(BOX_ENV, **settings)  # type: ignore[arg-type]


def _batch(actor: nn.Module, size: int = 12) -> TensorDict:
    with torch.no_grad():
        td = actor(TensorDict(observation=torch.randn(size, OBS_DIM), batch_size=[size]))
    td[ADVANTAGE], td[VALUE_TARGET] = torch.randn(size, 1), torch.randn(size, 1)
    return td


def _linears(network: nn.Module) -> list[nn.Linear]:
    return [m for m in network if isinstance(m, nn.Linear)]


def test_batching_keeps_the_outputs_and_the_random_stream():
    torch.manual_seed(0)
    actor, critic = _pair()
    separate_actor, separate_critic = copy.deepcopy(actor), copy.deepcopy(critic)
    rng = torch.get_rng_state()
    assert batch_actor_critic(actor, critic)
    assert torch.equal(rng, torch.get_rng_state())  # later draws (env seeds, samples) unchanged
    assert isinstance(actor.network, EnsembleMember) and isinstance(critic.network, EnsembleMember)
    assert actor.network.ensemble is critic.network.ensemble
    obs = TensorDict(observation=torch.randn(4, 7, OBS_DIM), batch_size=[4, 7])
    for key in ("loc", "scale"):
        torch.testing.assert_close(
            actor.get_dist(obs).loc if key == "loc" else actor.get_dist(obs).scale,
            getattr(separate_actor.get_dist(obs), key),
        )
    torch.testing.assert_close(
        critic(obs.clone())["state_value"], separate_critic(obs)["state_value"]
    )


@pytest.mark.parametrize("state_independent_scale", [False, True])
def test_ppo_loss_and_gradients_equal_those_of_the_separate_networks(state_independent_scale):
    torch.manual_seed(1)
    actor, critic = _pair(state_independent_scale)
    td = _batch(actor)
    with torch.no_grad():  # a policy step away from the data, so that the ratios are not all 1
        for p in [*actor.parameters(), *critic.parameters()]:
            p.add_(0.05 * torch.randn_like(p))
    separate = ClipPPOLoss(copy.deepcopy(actor), copy.deepcopy(critic), entropy_coeff=0.01)
    assert batch_actor_critic(actor, critic)
    batched = ClipPPOLoss(actor, critic, entropy_coeff=0.01)
    ensemble = actor.network.ensemble
    torch.manual_seed(2)
    expected = separate(td.clone())
    torch.manual_seed(2)  # the entropy bonus draws one sample per state
    got = batched(td.clone())
    for key in ("loss_objective", "loss_critic", "loss_entropy", "kl_approx", "clip_fraction"):
        torch.testing.assert_close(got[key], expected[key], rtol=1e-5, atol=1e-6)
    assert float(expected["clip_fraction"]) > 0  # the clipped branch is exercised
    sum(v for k, v in expected.items() if k.startswith("loss")).backward()
    sum(v for k, v in got.items() if k.startswith("loss")).backward()
    for member, net in enumerate((separate.actor_network.network, separate.critic_network.network)):
        for weight, bias, layer in zip(
            ensemble.weights, ensemble.biases, _linears(net), strict=True
        ):
            out = layer.out_features
            torch.testing.assert_close(weight.grad[member, :, :out], layer.weight.grad.T)
            torch.testing.assert_close(bias.grad[member, 0, :out], layer.bias.grad)
            assert not weight.grad[member, :, out:].any()  # padding outputs get no gradient
    if state_independent_scale:
        torch.testing.assert_close(actor.raw_scale.grad, separate.actor_network.raw_scale.grad)


def test_the_loss_runs_the_shared_network_once_and_no_member_alone():
    actor, critic = _pair()
    assert batch_actor_critic(actor, critic)
    calls = {"ensemble": 0, "member": 0}
    actor.network.ensemble.register_forward_hook(
        lambda *_: calls.__setitem__("ensemble", calls["ensemble"] + 1)
    )
    for member in (actor.network, critic.network):
        member.register_forward_hook(lambda *_: calls.__setitem__("member", calls["member"] + 1))
    td = _batch(actor)
    calls.update(ensemble=0, member=0)
    ClipPPOLoss(actor, critic)(td)
    assert calls == {"ensemble": 1, "member": 0}


def test_categorical_actor_and_critic_batch_too():
    env = SimpleNamespace(observation_spec=Unbounded(4), action_spec=Categorical(3))
    torch.manual_seed(3)
    actor = make_categorical_actor(env, num_cells=[8])
    critic = make_value_network(env, num_cells=[8])
    separate = ClipPPOLoss(copy.deepcopy(actor), copy.deepcopy(critic))
    assert batch_actor_critic(actor, critic)
    with torch.no_grad():
        td = actor(TensorDict(observation=torch.randn(9, 4), batch_size=[9]))
    td[ADVANTAGE], td[VALUE_TARGET] = torch.randn(9, 1), torch.randn(9, 1)
    got, expected = ClipPPOLoss(actor, critic)(td.clone()), separate(td.clone())
    for key in ("loss_objective", "loss_critic", "entropy"):
        torch.testing.assert_close(got[key], expected[key])


@pytest.mark.parametrize(
    "critic",
    [
        {"num_cells": [16, 8]},  # other hidden widths
        {"activation_class": "relu"},  # another activation
    ],
    ids=["widths", "activation"],
)
def test_networks_that_cannot_be_stacked_stay_as_they_are(critic):
    actor, value = _pair(**critic)
    networks = actor.network, value.network
    assert not batch_actor_critic(actor, value)
    assert (actor.network, value.network) == networks


def test_a_critic_reading_other_keys_or_a_custom_network_is_not_stacked():
    actor, _ = _pair()
    other_keys = ValueOperator(MLP(OBS_DIM, 1, [16, 16]), in_keys=["other"])
    assert not batch_actor_critic(actor, other_keys)
    reshaped = ValueOperator(MLP(OBS_DIM, (1, 1), [16, 16]))
    assert not batch_actor_critic(actor, reshaped)


def test_padding_stays_zero_through_training_and_a_state_dict_round_trip():
    torch.manual_seed(4)
    actor, critic = _pair()
    assert batch_actor_critic(actor, critic)
    loss = ClipPPOLoss(actor, critic)
    optimizer = torch.optim.Adam(loss.parameters(), lr=1e-2)
    for _ in range(5):
        out = loss(_batch(actor))
        (out["loss_objective"] + out["loss_critic"]).backward()
        optimizer.step()
        optimizer.zero_grad()
    ensemble = actor.network.ensemble
    assert not ensemble.weights[-1][1, :, 1:].any() and not ensemble.biases[-1][1, 0, 1:].any()
    fresh_actor, fresh_critic = _pair()
    assert batch_actor_critic(fresh_actor, fresh_critic)
    fresh = ClipPPOLoss(fresh_actor, fresh_critic)
    fresh.load_state_dict(loss.state_dict())
    td = _batch(actor)
    torch.testing.assert_close(fresh(td.clone())["loss_critic"], loss(td.clone())["loss_critic"])
    assert fresh_actor.network.ensemble is fresh_critic.network.ensemble


def test_a_member_without_gradients_follows_its_parameters_wherever_they_are():
    """The no-grad path reuses slices of the parameters: they must follow in-place updates,
    tensors moved by ``to`` and copies."""
    actor, critic = _pair()
    assert batch_actor_critic(actor, critic)
    member, obs = critic.network, torch.randn(6, OBS_DIM)

    def agree(module: nn.Module, x: torch.Tensor) -> None:
        with torch.no_grad():
            cached = module(x)
        torch.testing.assert_close(cached, module(x).detach())  # fresh slices with gradients

    agree(member, obs)
    with torch.no_grad():
        for p in member.ensemble.parameters():
            p.mul_(2.0)  # an optimizer step: in place
    agree(member, obs)
    member.double()  # new tensors
    agree(member, obs.double())
    copied = copy.deepcopy(member)
    with torch.no_grad():
        copied.ensemble.weights[0].add_(1.0)
        assert not torch.allclose(copied(obs.double()), member(obs.double()))
    agree(copied, obs.double())


def test_stacked_weights_keep_the_networks_dtype():
    actor, critic = _pair()
    actor.double(), critic.double()
    separate = copy.deepcopy(critic)
    assert batch_actor_critic(actor, critic)
    assert all(p.dtype == torch.float64 for p in actor.network.ensemble.parameters())
    obs = TensorDict(observation=torch.randn(4, OBS_DIM, dtype=torch.float64), batch_size=[4])
    torch.testing.assert_close(critic(obs.clone())["state_value"], separate(obs)["state_value"])
