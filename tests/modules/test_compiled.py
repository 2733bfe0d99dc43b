"""networks.compile: compiled forward/backward passes equal eager ones, and copies of compiled
networks (target critics, a collector's policy copy, worker processes) run their own weights."""

from __future__ import annotations

import copy
import pickle

import torch

from trainers.envs.specs import Bounded, Unbounded
from trainers.modules import MLP, EnsembleMLP, batch_actor_critic, compile_networks
from trainers.modules.builders import make_tanh_normal_actor, make_value_network
from trainers.modules.compiled import _COMPILED


class _Env:
    observation_spec = Unbounded(3)
    action_spec = Bounded(-2.0, 2.0, (1,))


def _eager_and_compiled(network: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    compiled = copy.deepcopy(network)
    assert compile_networks(compiled) >= 1
    return network, compiled


def _assert_same_outputs_and_gradients(eager, compiled, inputs: torch.Tensor) -> None:
    for network in (eager, compiled):
        network.zero_grad(set_to_none=True)
        network(inputs).square().sum().backward()
    torch.testing.assert_close(compiled(inputs), eager(inputs))
    for (name, p_eager), p_compiled in zip(
        eager.named_parameters(), compiled.parameters(), strict=True
    ):
        torch.testing.assert_close(p_compiled.grad, p_eager.grad, msg=name)


def test_compiled_networks_equal_eager_ones_at_several_batch_sizes():
    torch.manual_seed(0)
    eager, compiled = _eager_and_compiled(MLP(3, 2, [16, 16]))
    ensemble_eager, ensemble_compiled = _eager_and_compiled(EnsembleMLP(3, 1, [16, 16]))
    for batch in (8, 64, 5):  # dynamic shapes: no recompilation per batch size needed
        inputs = torch.randn(batch, 3)
        _assert_same_outputs_and_gradients(eager, compiled, inputs)
        _assert_same_outputs_and_gradients(ensemble_eager, ensemble_compiled, inputs)
        with torch.no_grad():
            torch.testing.assert_close(compiled(inputs), eager(inputs))
    assert {MLP._forward, EnsembleMLP._forward} <= set(_COMPILED)  # it did go through compile


def test_compiled_ensemble_members_equal_eager_ones():
    torch.manual_seed(0)
    actor, critic = (
        make_tanh_normal_actor(_Env(), num_cells=[16]),
        make_value_network(_Env(), num_cells=[16]),
    )
    assert batch_actor_critic(actor, critic)
    compiled_actor, compiled_critic = copy.deepcopy((actor, critic))
    assert compile_networks(compiled_actor, compiled_critic) == 3  # ensemble + two members
    inputs = torch.randn(8, 3)
    for eager, compiled in ((actor, compiled_actor), (critic, compiled_critic)):
        with torch.no_grad():
            torch.testing.assert_close(compiled.network(inputs), eager.network(inputs))
        _assert_same_outputs_and_gradients(eager.network, compiled.network, inputs)


def test_copies_of_a_compiled_network_run_their_own_weights():
    torch.manual_seed(0)
    network = MLP(3, 1, [16])
    compile_networks(network)
    inputs = torch.randn(4, 3)
    before = network(inputs).detach()
    for copied in (copy.deepcopy(network), pickle.loads(pickle.dumps(network))):
        assert copied.compiled
        with torch.no_grad():
            for p in copied.parameters():
                p.add_(1.0)
        expected = MLP(3, 1, [16])
        expected.load_state_dict(copied.state_dict())
        torch.testing.assert_close(copied(inputs), expected(inputs))
        torch.testing.assert_close(network(inputs), before)  # the original is untouched
