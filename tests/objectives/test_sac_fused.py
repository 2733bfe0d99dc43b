"""SACLoss's fused path (hand-derived gradients) against its autograd path."""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys

import pytest
import torch
from tensordict import TensorDict
from torch import nn
from torch._dynamo.utils import counters

from trainers.keys import (
    ACTION,
    NEXT_OBSERVATION,
    OBSERVATION,
    PRIORITY_WEIGHT,
    REWARD,
    TD_ERROR,
    TERMINATED,
)
from trainers.modules import MLP, EnsembleQValueNetwork, TanhNormalActor, compile_networks
from trainers.objectives import SACLoss, sac_fused

OBS, ACT = 5, 3


def _pair(
    activation: type[nn.Module] = nn.ReLU,
    state_independent_scale: bool = False,
    scale_mapping: str = "biased_softplus_1.0",
    dtype: torch.dtype = torch.float64,
    cells: tuple[int, ...] = (32, 16),
    num_qvalue_nets: int = 2,
    critic_activation: type[nn.Module] | None = None,
    **loss_kwargs,
) -> tuple[SACLoss, SACLoss]:
    """Two copies of one SACLoss: the fused path, and the autograd path."""
    torch.manual_seed(0)
    outputs = ACT if state_independent_scale else 2 * ACT
    actor = TanhNormalActor(
        MLP(OBS, outputs, list(cells), activation_class=activation),
        low=torch.tensor([-2.0, -1.0, 0.0]),
        high=torch.tensor([1.0, 1.0, 3.0]),
        state_independent_scale=state_independent_scale,
        scale_mapping=scale_mapping,
    )
    if state_independent_scale:
        with torch.no_grad():
            actor.raw_scale.normal_()
    critics = EnsembleQValueNetwork(
        OBS,
        ACT,
        list(cells),
        num_qvalue_nets=num_qvalue_nets,
        activation_class=critic_activation or activation,
    )
    fused = SACLoss(
        actor, critics, num_qvalue_nets=num_qvalue_nets, alpha_init=0.7, **loss_kwargs
    ).to(dtype)
    assert fused.fused_path is not None, fused.fused_unsupported
    autograd = copy.deepcopy(fused)
    autograd.fused_path = None
    return fused, autograd


def _batch(
    shape: tuple[int, ...],
    dtype: torch.dtype = torch.float64,
    observation_dim: int = OBS,
    action_dim: int = ACT,
) -> TensorDict:
    td = TensorDict(
        {
            OBSERVATION: torch.randn(*shape, observation_dim),
            ACTION: torch.rand(*shape, action_dim) * 2 - 1,
            NEXT_OBSERVATION: torch.randn(*shape, observation_dim),
            REWARD: torch.randn(*shape, 1),
        },
        batch_size=shape,
    ).to(dtype)
    td[TERMINATED] = torch.rand(*shape, 1) < 0.3
    return td


def _run(loss: SACLoss, td: TensorDict, seed: int = 1) -> tuple[TensorDict, torch.Tensor, dict]:
    """The loss output, the td_error it wrote and the gradients of the summed losses."""
    torch.manual_seed(seed)
    td = td.clone()
    out = loss(td)
    (out["loss_actor"] + out["loss_qvalue"] + out["loss_alpha"]).backward()
    grads = {name: p.grad for name, p in loss.named_parameters()}
    return out, td[TD_ERROR], grads


def _ran_fused(out: TensorDict) -> bool:
    """Whether the losses came from the fused path's autograd function."""
    return "_SACLosses" in out["loss_actor"].grad_fn.name()


def _assert_same(fused: SACLoss, autograd: SACLoss, td: TensorDict, rtol: float, atol: float):
    out_f, td_error_f, grads_f = _run(fused, td)
    after_fused = torch.randn(4)
    out_a, td_error_a, grads_a = _run(autograd, td)
    assert _ran_fused(out_f) and not _ran_fused(out_a)
    torch.testing.assert_close(after_fused, torch.randn(4), rtol=0, atol=0)  # same draws
    for key in out_a.keys():
        torch.testing.assert_close(out_f[key], out_a[key], rtol=rtol, atol=atol, msg=key)
    torch.testing.assert_close(td_error_f, td_error_a, rtol=rtol, atol=atol)
    assert grads_f.keys() == grads_a.keys()
    for name, grad in grads_a.items():
        assert grad is not None and grad.abs().sum() > 0, name
        torch.testing.assert_close(grads_f[name], grad, rtol=rtol, atol=atol, msg=name)


@pytest.mark.parametrize("activation", [nn.ReLU, nn.Tanh])
@pytest.mark.parametrize("scale_mapping", ["biased_softplus_1.0", "softplus", "exp"])
@pytest.mark.parametrize("state_independent_scale", [False, True])
def test_fused_losses_and_gradients_equal_autograd(
    activation, scale_mapping, state_independent_scale
):
    fused, autograd = _pair(activation, state_independent_scale, scale_mapping)
    _assert_same(fused, autograd, _batch((64,)), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("num_qvalue_nets", [1, 2, 3])
def test_actor_loss_backward_with_and_without_row_split(monkeypatch, num_qvalue_nets):
    """Each critic on its own rows (CPU) and every critic on every row (accelerators)."""
    for devices in (("cpu",), ()):
        monkeypatch.setattr(sac_fused, "ROW_SPLIT_DEVICES", devices)
        fused, autograd = _pair(num_qvalue_nets=num_qvalue_nets, cells=(16, 8, 8))
        _assert_same(fused, autograd, _batch((48,)), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "loss_kwargs",
    [{"loss_function": "smooth_l1"}, {"fixed_alpha": True}, {"gamma": 1.0}, {"num_qvalue_nets": 3}],
)
def test_fused_equals_autograd_across_loss_settings(loss_kwargs):
    """Loss settings, and actor and critics with different activations."""
    fused, autograd = _pair(critic_activation=nn.Tanh, **loss_kwargs)
    td = _batch((64,))
    td[REWARD] = td[REWARD] * 5  # residuals beyond smooth_l1's quadratic zone
    _assert_same(fused, autograd, td, rtol=1e-10, atol=1e-12)


def test_fused_handles_priority_weights_and_batch_dims():
    fused, autograd = _pair()
    td = _batch((4, 16))
    td[PRIORITY_WEIGHT] = torch.rand(4, 16, dtype=torch.float64)
    _assert_same(fused, autograd, td, rtol=1e-10, atol=1e-12)
    assert fused(td.clone())["loss_qvalue"].shape == ()


@pytest.mark.parametrize("compile", [False, True])
def test_fused_float32_at_the_published_sizes(compile):
    """HalfCheetah's sizes: 17 observations, 6 actions, 256x256 networks, batch 256, eager and
    compiled (what training on CPU runs)."""
    torch.manual_seed(0)
    actor = TanhNormalActor(
        MLP(17, 12, [256, 256], activation_class=nn.ReLU), low=-torch.ones(6), high=torch.ones(6)
    )
    fused = SACLoss(actor, EnsembleQValueNetwork(17, 6, [256, 256]), compile=compile)
    autograd = copy.deepcopy(fused)
    autograd.fused_path = None
    td = _batch((256,), torch.float32, observation_dim=17, action_dim=6)
    if compile:
        _run(fused, td)  # compiles
        fused.zero_grad()
    _assert_same(fused, autograd, td, rtol=2e-4, atol=2e-6)


@pytest.mark.parametrize(
    "settings",
    [
        {"batch_shape": (64,)},
        {"activation": nn.Tanh, "state_independent_scale": True, "scale_mapping": "exp",
         "loss_function": "smooth_l1", "batch_shape": (4, 16), "weighted": True},
    ],
)  # fmt: skip
def test_compiled_fused_path_equals_autograd(settings, compiled_calls):
    """``compile=True``: one compiled graph (every critic on every row), same draws; a new
    ``gamma`` (a 0-d buffer of the loss) runs through the same graph."""
    settings = dict(settings)
    shape, weighted = settings.pop("batch_shape"), settings.pop("weighted", False)
    fused, autograd = _pair(compile=True, **settings)
    td = _batch(shape)
    if weighted:
        td[PRIORITY_WEIGHT] = torch.rand(shape, dtype=torch.float64)
    counters.clear()
    _assert_same(fused, autograd, td, rtol=1e-9, atol=1e-11)
    for loss in (fused, autograd):
        loss.zero_grad()
        loss.gamma = 0.9
    _assert_same(fused, autograd, td, rtol=1e-9, atol=1e-11)
    assert counters["stats"]["unique_graphs"] == 1  # dynamo captured one graph
    assert len(compiled_calls) == 2  # and ran both steps through it
    assert fused.fused_path.compile


def test_a_compiled_loss_compiles_once_and_runs_other_calls_eagerly():
    """Other batch sizes (a last partial batch), ``no_grad`` and a frozen actor would each
    need a graph of their own, and a tenth graph would hit dynamo's recompile limit: they run
    eagerly, with autograd's results."""
    fused, autograd = _pair(compile=True)
    counters.clear()
    with torch.no_grad():  # an evaluation first: it does not take the compiled graph's place
        fused(_batch((8,)))
    assert counters["stats"]["unique_graphs"] == 0
    _assert_same(fused, autograd, _batch((16,)), rtol=1e-9, atol=1e-11)
    assert counters["stats"]["unique_graphs"] == 1
    for size in range(3, 13):
        _assert_same(fused, autograd, _batch((size,)), rtol=1e-9, atol=1e-11)
        fused.zero_grad(), autograd.zero_grad()
    td = _batch((16,))
    with torch.no_grad():
        torch.manual_seed(2)
        values = fused(td.clone())
    torch.manual_seed(2)
    expected = autograd(td.clone())
    torch.testing.assert_close(values["loss_actor"], expected["loss_actor"], rtol=0, atol=1e-11)
    for loss in (fused, autograd):
        loss.actor_network.requires_grad_(False)
    out_f, _, grads_f = _run(fused, td)
    out_a, _, grads_a = _run(autograd, td)
    assert _ran_fused(out_f)
    torch.testing.assert_close(out_f["loss_qvalue"], out_a["loss_qvalue"], rtol=1e-9, atol=0)
    for name, grad in grads_a.items():
        if name.startswith("actor_network."):
            assert grad is None and grads_f[name] is None, name
        else:
            torch.testing.assert_close(grads_f[name], grad, rtol=1e-9, atol=1e-11, msg=name)
    assert counters["stats"]["unique_graphs"] == 1
    assert fused.fused_path.compile  # no failure on the way


def test_a_compiled_loss_pickles_and_copies():
    """The compiled function stays behind when pickled; the copy compiles its own."""
    fused, autograd = _pair(compile=True)
    td = _batch((16,))
    _run(fused, td)
    copied = pickle.loads(pickle.dumps(fused))
    assert copied.fused_path.compile and copied.fused_path.compiled._compiled is None
    deep = copy.deepcopy(fused)
    for loss in (copied, deep):
        _assert_same(loss, autograd, td, rtol=1e-9, atol=1e-11)
        autograd.zero_grad()


def test_compiled_path_without_a_cxx_compiler_warns_and_runs_eagerly(tmp_path):
    """A real failure: no C++ compiler (``CXX``) and an empty inductor cache."""
    script = """
import warnings
import torch
from tensordict import TensorDict
from trainers.modules import MLP, EnsembleQValueNetwork, TanhNormalActor
from trainers.objectives import SACLoss

torch.manual_seed(0)
actor = TanhNormalActor(MLP(3, 2, [8]), low=-torch.ones(1), high=torch.ones(1))
loss = SACLoss(actor, EnsembleQValueNetwork(3, 1, [8]), compile=True)
eager = SACLoss(actor, EnsembleQValueNetwork(3, 1, [8]), compile=False)
eager.load_state_dict(loss.state_dict())
td = TensorDict({"observation": torch.randn(5, 3), "action": torch.rand(5, 1),
    "next": {"observation": torch.randn(5, 3), "reward": torch.randn(5, 1),
             "terminated": torch.zeros(5, 1, dtype=torch.bool)}}, batch_size=[5])
torch.manual_seed(1)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    out = loss(td)  # the compile fails, this call runs eagerly
out["loss_actor"].backward()
ours = [str(w.message) for w in caught if "loss.compile" in str(w.message)]
torch.manual_seed(1)
expected = eager(td)
same = all(torch.equal(out[k], expected[k]) for k in ("loss_actor", "loss_qvalue"))
print(len(ours), ours[0].split(":")[0], loss.fused_path.compile, same)
"""
    env = {
        **os.environ,
        "CXX": str(tmp_path / "no-such-g++"),
        "TORCHINDUCTOR_CACHE_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("\n")[-2] == "1 SACLoss(compile=True) (loss.compile) False True"


def test_gradients_scale_with_the_losses_incoming_gradients():
    """The gradients computed in the forward pass, for a gradient of one on each loss, are
    scaled in the backward pass; a retained graph gives them again."""
    fused, autograd = _pair()
    td = _batch((32,))
    grads = []
    for loss in (fused, autograd):
        torch.manual_seed(5)
        out = loss(td.clone())
        total = 3.0 * out["loss_actor"] - 0.5 * out["loss_qvalue"]
        total.backward(retain_graph=True)
        total.backward()
        grads.append({name: p.grad for name, p in loss.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 2
    for name, grad in grads[1].items():
        torch.testing.assert_close(grads[0][name], grad, rtol=1e-10, atol=1e-12, msg=name)


def test_no_grad_computes_the_values_without_the_gradients(monkeypatch):
    fused, autograd = _pair()
    calls = []
    for name in ("_critic_backward", "_actor_backward"):
        original = getattr(sac_fused, name)
        monkeypatch.setattr(
            sac_fused, name, lambda *args, _f=original, _n=name: calls.append(_n) or _f(*args)
        )
    td = _batch((32,))
    with torch.no_grad():
        torch.manual_seed(5)
        values = fused(td.clone())
    assert calls == []
    torch.manual_seed(5)
    expected = autograd(td.clone())
    for key in ("loss_actor", "loss_qvalue"):
        torch.testing.assert_close(values[key], expected[key], rtol=1e-10, atol=1e-12)
    fused(td.clone())  # grad mode: both
    assert sorted(calls) == ["_actor_backward", "_critic_backward"]


def test_exp_scale_clamped_at_its_lower_bound_gets_no_gradient():
    fused, autograd = _pair(scale_mapping="exp", state_independent_scale=True)
    for loss in (fused, autograd):
        with torch.no_grad():
            loss.actor_network.raw_scale[0] = -30.0  # exp(-30) < scale_lb: clamped
    _assert_same(fused, autograd, _batch((32,)), rtol=1e-10, atol=1e-12)
    _, _, grads = _run(fused, _batch((32,)))
    assert grads["actor_network.raw_scale"][0] == 0
    # Per-sample scales (a network output): the first action dimension clamped everywhere.
    fused, autograd = _pair(scale_mapping="exp")
    for loss in (fused, autograd):
        with torch.no_grad():
            loss.actor_network.network[-1].bias[ACT] = -30.0
    _assert_same(fused, autograd, _batch((32,)), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"loss_function": "smooth_l1", "state_independent_scale": True},
        {"compile": True},
    ],
)
def test_each_loss_backpropagates_alone_into_its_own_parameters(settings):
    """As an OptimizerHook group does (one backward per optimizer, ``inputs=``), and as two
    plain ``backward()`` calls without ``retain_graph`` do."""
    fused, autograd = _pair(**settings)
    td = _batch((32,))
    td[PRIORITY_WEIGHT] = torch.rand(32, dtype=torch.float64)
    results = []
    for loss in (fused, autograd):
        torch.manual_seed(3)
        out = loss(td.clone())
        critic = list(loss.qvalue_network.parameters())
        actor = [*loss.actor_network.parameters(), loss.log_alpha]
        torch.autograd.backward(out["loss_qvalue"], inputs=critic, retain_graph=True)
        torch.autograd.backward(out["loss_actor"] + out["loss_alpha"], inputs=actor)
        grouped = [p.grad.clone() for p in [*critic, *actor]]
        loss.zero_grad()
        torch.manual_seed(3)
        out = loss(td.clone())
        out["loss_qvalue"].backward()
        out["loss_actor"].backward()
        results.append((grouped, [p.grad for p in [*critic, *actor[:-1]]]))
    for got, expected in zip(*results, strict=True):
        for g, e in zip(got, expected, strict=True):
            torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("compile", [False, True])
def test_a_parameter_changed_before_backward_is_an_error(compile):
    fused, _ = _pair(compile=compile)
    out = fused(_batch((8,)))
    with torch.no_grad():
        fused.qvalue_network.network.weights[1].add_(1.0)  # as an optimizer step would
    with pytest.raises(RuntimeError, match="modified in place"):
        out["loss_actor"].backward()
    # The critic loss's backward does not read the actor: an actor step before it is fine.
    out = fused(_batch((8,)))
    out["loss_actor"].backward()
    with torch.no_grad():
        fused.actor_network.network[0].weight.add_(1.0)
    out["loss_qvalue"].backward()
    out = fused(_batch((8,)))
    with torch.no_grad():
        fused.actor_network.network[0].weight.add_(1.0)
    with pytest.raises(RuntimeError, match="modified in place"):
        out["loss_actor"].backward()


def test_inputs_that_require_grad_and_replaced_networks_take_the_autograd_path():
    fused, autograd = _pair()
    td = _batch((16,))
    encoder = nn.Linear(OBS, OBS).double()
    td[OBSERVATION] = encoder(td[OBSERVATION])  # an encoder trained through the losses
    out = fused(td)
    assert not _ran_fused(out)
    (out["loss_actor"] + out["loss_qvalue"]).backward()
    assert encoder.weight.grad.abs().sum() > 0
    fused.actor_network = autograd.actor_network  # no longer the networks it was built for
    assert not _ran_fused(fused(_batch((16,))))
    fused, autograd = _pair()
    fused.qvalue_network.network = autograd.qvalue_network.network  # an inner network replaced
    assert not _ran_fused(fused(_batch((16,))))


def test_actor_with_several_input_keys():
    torch.manual_seed(0)
    actor = TanhNormalActor(
        MLP(OBS + 2, 2 * ACT, [16], activation_class=nn.ReLU),
        low=-torch.ones(ACT),
        high=torch.ones(ACT),
        in_keys=[OBSERVATION, "extra"],
    )
    fused = SACLoss(actor, EnsembleQValueNetwork(OBS, ACT, [16])).double()
    autograd = copy.deepcopy(fused)
    autograd.fused_path = None
    td = _batch((16,))
    td["extra"] = torch.randn(16, 2, dtype=torch.float64)
    td["next", "extra"] = torch.randn(16, 2, dtype=torch.float64)
    _assert_same(fused, autograd, td, rtol=1e-10, atol=1e-12)


def _reason(network: nn.Module, critics: nn.Module | None = None) -> str | None:
    actor = TanhNormalActor(network, low=-torch.ones(ACT), high=torch.ones(ACT))
    return SACLoss(actor, critics or EnsembleQValueNetwork(OBS, ACT, [8])).fused_unsupported


def test_networks_the_fused_path_does_not_cover_are_named():
    assert "not an MLP" in _reason(nn.Linear(OBS, 2 * ACT))
    assert "ReLU or Tanh" in _reason(MLP(OBS, 2 * ACT, [8], activate_last_layer=True))
    assert "weight and bias" in _reason(MLP(OBS, 2 * ACT, [8], bias_last_layer=False))
    assert "6 flat outputs" in _reason(MLP(OBS, 5, [8]))
    hooked = MLP(OBS, 2 * ACT, [8])
    hooked[0].register_forward_hook(lambda *args: None)
    assert "hooks" in _reason(hooked)
    compiled = MLP(OBS, 2 * ACT, [8])
    compile_networks(compiled)
    assert "compiled" in _reason(compiled)


def test_unsupported_networks_run_the_autograd_path():
    actor = TanhNormalActor(nn.Linear(OBS, 2 * ACT), low=-torch.ones(ACT), high=torch.ones(ACT))
    loss = SACLoss(actor, EnsembleQValueNetwork(OBS, ACT, [8]))
    assert loss.fused_path is None
    elu = TanhNormalActor(
        MLP(OBS, 2 * ACT, [8], activation_class=nn.ELU), low=-torch.ones(ACT), high=torch.ones(ACT)
    )
    assert "ReLU or Tanh" in SACLoss(elu, EnsembleQValueNetwork(OBS, ACT, [8])).fused_unsupported
    relu = TanhNormalActor(MLP(OBS, 2 * ACT, [8]), low=-torch.ones(ACT), high=torch.ones(ACT))
    gelu_critics = EnsembleQValueNetwork(OBS, ACT, [8], activation_class=nn.GELU)
    assert "critics' activation" in SACLoss(relu, gelu_critics).fused_unsupported
    off = SACLoss(relu, EnsembleQValueNetwork(OBS, ACT, [8]), fused=False)
    assert off.fused_path is None and off.fused_unsupported == "fused=False"
    out = loss(_batch((8,), torch.float32))
    assert not _ran_fused(out)
    assert torch.isfinite(out["loss_actor"]) and torch.isfinite(out["loss_qvalue"])


def test_networks_compiled_after_construction_switch_the_fused_path_off():
    fused, _ = _pair()
    path = fused.fused_path
    networks = (fused.actor_network, fused.qvalue_network, fused.target_qvalue_network)
    assert path.serves(*networks)
    compile_networks(fused.qvalue_network)
    assert not path.serves(*networks)
