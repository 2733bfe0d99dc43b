from __future__ import annotations

import copy
import math
import pickle

import pytest
import torch
from tensordict import TensorDict
from torch import nn

from trainers.keys import (
    ACTION,
    ADVANTAGE,
    DONE,
    MASK,
    NEXT_OBSERVATION,
    OBSERVATION,
    PRE_TANH_ACTION,
    REWARD,
    SAMPLE_LOG_PROB,
    STATE_VALUE,
    TERMINATED,
    VALUE_TARGET,
)
from trainers.modules import (
    MLP,
    CategoricalActor,
    TanhNormalActor,
    ValueOperator,
    batch_actor_critic,
)
from trainers.objectives import ClipPPOLoss, KLPENPPOLoss, PPOLoss

LOG_HALF = math.log(0.5)


def _uniform_policy_batch(ratios, advantages, values=None, targets=None):
    """n samples with one-hot observations; the policy is uniform over 2 actions, and the stored
    log-probs are set so that the importance ratios are exactly ``ratios``."""
    n = len(ratios)
    actor = CategoricalActor(nn.Linear(n, 2, bias=False))
    critic = ValueOperator(nn.Linear(n, 1, bias=False))
    with torch.no_grad():
        actor.network.weight.zero_()
        critic.network.weight.copy_(torch.tensor(values or [0.0] * n)[None])
    td = TensorDict(
        {
            OBSERVATION: torch.eye(n),
            ACTION: torch.zeros(n, dtype=torch.long),
            SAMPLE_LOG_PROB: LOG_HALF - torch.tensor(ratios).log(),
            ADVANTAGE: torch.tensor(advantages)[:, None],
            VALUE_TARGET: torch.tensor(targets or [0.0] * n)[:, None],
        },
        batch_size=[n],
    )
    return actor, critic, td


def test_clip_loss_value_on_a_three_sample_example():
    ratios, advantages = [0.5, 1.1, 1.5], [1.0, -2.0, 3.0]
    actor, critic, td = _uniform_policy_batch(ratios, advantages, [1.0, 2.0, 0.0], [2.0, 0.0, 1.0])
    loss = ClipPPOLoss(
        actor, critic, clip_epsilon=0.2, normalize_advantage=False, entropy_coeff=0.1
    )
    out = loss(td)
    # min(r A, clip(r) A): 0.5 (0.8 * 1 is larger), -2.2 (inside), 3.6 (1.2 * 3 < 4.5).
    assert out["loss_objective"].item() == pytest.approx(-(0.5 - 2.2 + 3.6) / 3, rel=1e-6)
    assert out["clip_fraction"].item() == pytest.approx(2 / 3)
    # critic_coeff * mean squared error, no extra 1/2: 0.5 * (1 + 4 + 1) / 3.
    assert out["loss_critic"].item() == pytest.approx(0.5 * 6 / 3, rel=1e-6)
    # Uniform categorical over 2 actions: entropy log 2, closed form.
    assert out["entropy"].item() == pytest.approx(math.log(2), rel=1e-6)
    assert out["loss_entropy"].item() == pytest.approx(-0.1 * math.log(2), rel=1e-6)
    r = torch.tensor(ratios)
    assert out["kl_approx"].item() == pytest.approx(((r - 1) - r.log()).mean().item(), rel=1e-5)
    assert out["ESS"].item() == pytest.approx((r.sum() ** 2 / (r**2).sum() / 3).item(), rel=1e-5)
    for key in ("entropy", "kl_approx", "clip_fraction", "ESS"):
        assert not out[key].requires_grad


def test_gradient_is_zero_exactly_when_clipped_in_the_advantage_direction():
    ratios = [1.5, 1.5, 0.5, 0.5, 1.1, 0.9]
    advantages = [2.0, -2.0, -2.0, 2.0, 2.0, -2.0]
    clipped = [True, False, True, False, False, False]
    actor, critic, td = _uniform_policy_batch(ratios, advantages)
    loss = ClipPPOLoss(actor, critic, clip_epsilon=0.2, normalize_advantage=False)
    loss(td)["loss_objective"].backward()
    # Sample i only touches column i of the policy weights (one-hot observations).
    per_sample_grad = actor.network.weight.grad.abs().sum(0)
    for i, is_clipped in enumerate(clipped):
        if is_clipped:
            assert per_sample_grad[i] == 0, i
        else:
            assert per_sample_grad[i] > 0, i
    assert critic.network.weight.grad is None


def test_normalized_advantage_and_plain_ratio_objective():
    ratios, advantages = [0.5, 1.1, 1.5, 1.0], [1.0, -2.0, 3.0, 0.5]
    actor, critic, td = _uniform_policy_batch(ratios, advantages)
    out = PPOLoss(actor, critic)(td)
    a = torch.tensor(advantages)
    a = (a - a.mean()) / (a.std() + 1e-8)
    expected = -(torch.tensor(ratios) * a).mean()
    assert out["loss_objective"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert "clip_fraction" not in out.keys()


def test_clipped_value_loss():
    actor, critic, td = _uniform_policy_batch([1.0, 1.0], [0.0, 0.0], [3.0, 0.5], [0.0, 0.0])
    td[STATE_VALUE] = torch.tensor([[1.0], [0.0]])  # old values
    out = ClipPPOLoss(actor, critic, clip_value=0.5, critic_coeff=1.0)(td)
    # Sample 0: v=3, clipped to 1.5; max(9, 2.25) = 9. Sample 1: v=0.5 (inside); 0.25.
    assert out["loss_critic"].item() == pytest.approx((9.0 + 0.25) / 2)
    del td[STATE_VALUE]
    with pytest.raises(KeyError, match="clip_value"):
        ClipPPOLoss(actor, critic, clip_value=0.5)(td)


def test_smooth_l1_critic_loss():
    actor, critic, td = _uniform_policy_batch([1.0, 1.0], [0.0, 0.0], [3.0, 0.5], [0.0, 0.0])
    out = ClipPPOLoss(actor, critic, loss_critic_type="smooth_l1", critic_coeff=1.0)(td)
    assert out["loss_critic"].item() == pytest.approx((2.5 + 0.125) / 2)


def test_klpen_loss_value_and_adaptive_beta():
    ratios, advantages = [0.5, 2.0], [1.0, -1.0]
    actor, critic, td = _uniform_policy_batch(ratios, advantages)
    loss = KLPENPPOLoss(actor, critic, beta=1.0, dtarg=0.01, normalize_advantage=False)
    out = loss(td)
    r = torch.tensor(ratios)
    kl = ((r - 1) - r.log()).mean().item()
    assert out["loss_objective"].item() == pytest.approx(-(0.5 - 2.0) / 2 + kl, rel=1e-5)
    assert out["beta"].item() == 1.0
    assert loss.beta.item() == 2.0  # kl > 1.5 * dtarg
    actor, critic, td = _uniform_policy_batch([1.0, 1.0], advantages)
    loss.actor_network = actor
    loss(td)
    assert loss.beta.item() == 1.0  # kl = 0 < dtarg / 1.5
    assert "beta" in loss.state_dict()


def _continuous_rollout(num_envs=4, steps=8):
    torch.manual_seed(0)
    actor = TanhNormalActor(MLP(3, 2, [16]), low=-2 * torch.ones(1), high=2 * torch.ones(1))
    critic = ValueOperator(MLP(3, 1, [16]))
    td = TensorDict(
        {
            OBSERVATION: torch.randn(num_envs, steps, 3),
            NEXT_OBSERVATION: torch.randn(num_envs, steps, 3),
            REWARD: torch.randn(num_envs, steps, 1),
            DONE: torch.zeros(num_envs, steps, 1, dtype=torch.bool),
            TERMINATED: torch.zeros(num_envs, steps, 1, dtype=torch.bool),
        },
        batch_size=[num_envs, steps],
    )
    with torch.no_grad():
        actor(td)
    return actor, critic, td


def test_first_pass_on_collected_data_has_ratio_one_and_loss_runs_its_own_gae():
    actor, critic, td = _continuous_rollout()
    loss = ClipPPOLoss(actor, critic, gamma=0.99, lmbda=0.95)
    out = loss(td)
    assert ADVANTAGE in td.keys() and VALUE_TARGET in td.keys()
    assert out["kl_approx"].item() == 0.0
    assert out["clip_fraction"].item() == 0.0
    assert out["ESS"].item() == pytest.approx(1.0)
    total = sum(v for k, v in out.items() if k.startswith("loss_"))
    total.backward()
    assert all(p.grad is not None for p in actor.parameters())
    assert all(p.grad is not None for p in critic.parameters())
    with pytest.raises(KeyError, match="no 'advantage'"):
        ClipPPOLoss(actor, critic)(td.exclude(ADVANTAGE))


def test_saturated_actions_are_scored_from_the_pre_tanh_sample():
    actor, critic, td = _continuous_rollout(num_envs=16, steps=16)
    with torch.no_grad():  # loc around 12: tanh rounds the actions onto the bound in float32
        actor.network[-1].bias[0] = 12.0
        actor(td)
    assert bool((td[ACTION].abs() == 2.0).any())
    td[ADVANTAGE] = torch.randn(16, 16, 1)
    td[VALUE_TARGET] = torch.zeros(16, 16, 1)
    out = ClipPPOLoss(actor, critic)(td)
    assert out["kl_approx"].item() == 0.0
    assert out["clip_fraction"].item() == 0.0
    # Inverting the saturated actions with atanh cannot recover the sample: ratios drift.
    from_atanh = ClipPPOLoss(actor, critic)(td.exclude(PRE_TANH_ACTION))
    assert from_atanh["clip_fraction"].item() > 0.1


def test_tanh_normal_entropy_is_a_sample_estimate():
    actor, critic, td = _continuous_rollout(num_envs=64, steps=64)
    td[ADVANTAGE] = torch.zeros(64, 64, 1)
    td[VALUE_TARGET] = torch.zeros(64, 64, 1)
    out = ClipPPOLoss(actor, critic, entropy_coeff=0.01)(td)
    with torch.no_grad():
        dist = actor.get_dist(td)
        _, log_prob = dist.rsample_and_log_prob((16,))
    assert out["entropy"].item() == pytest.approx(-log_prob.mean().item(), abs=0.02)
    out["loss_entropy"].backward()
    assert actor.network[0].weight.grad.abs().sum() > 0


def test_without_entropy_bonus_the_entropy_is_a_diagnostic_only():
    actor, critic, td = _continuous_rollout(num_envs=64, steps=64)
    td[ADVANTAGE] = torch.zeros(64, 64, 1)
    td[VALUE_TARGET] = torch.zeros(64, 64, 1)
    with_bonus = ClipPPOLoss(actor, critic, entropy_coeff=0.01)(td)
    for loss in (ClipPPOLoss(actor, critic), ClipPPOLoss(actor, critic, entropy_bonus=False)):
        out = loss(td)
        assert "loss_entropy" not in out.keys()
        assert not out["entropy"].requires_grad
        # Importance-weighted from the batch's own actions: close to the fresh-sample estimate.
        assert out["entropy"].item() == pytest.approx(with_bonus["entropy"].item(), abs=0.05)


def test_entropy_diagnostic_is_importance_weighted_after_the_policy_moved():
    actor, critic, td = _continuous_rollout(num_envs=64, steps=64)
    td[ADVANTAGE] = torch.zeros(64, 64, 1)
    td[VALUE_TARGET] = torch.zeros(64, 64, 1)
    with torch.no_grad():  # the policy moves away from the one that collected the batch
        actor.network[-1].bias.add_(0.3)
    out = ClipPPOLoss(actor, critic)(td)
    with torch.no_grad():
        _, log_prob = actor.get_dist(td).rsample_and_log_prob((16,))
    fresh_estimate = -log_prob.mean().item()
    assert out["ESS"].item() < 0.99  # the ratios are no longer one
    assert out["entropy"].item() == pytest.approx(fresh_estimate, abs=0.05)


def test_mask_drops_padding_frames():
    ratios, advantages = [0.5, 1.1, 1.5], [1.0, -2.0, 3.0]
    actor, critic, td = _uniform_policy_batch(ratios, advantages)
    td[MASK] = torch.tensor([True, True, False])
    out = ClipPPOLoss(actor, critic, normalize_advantage=False)(td)
    assert out["loss_objective"].item() == pytest.approx(-(0.5 - 2.2) / 2, rel=1e-6)


def test_invalid_settings():
    actor, critic, _ = _uniform_policy_batch([1.0], [0.0])
    with pytest.raises(ValueError, match=r"clip_epsilon=1\.5"):
        ClipPPOLoss(actor, critic, clip_epsilon=1.5)
    with pytest.raises(ValueError, match="loss_critic_type='l3'"):
        ClipPPOLoss(actor, critic, loss_critic_type="l3")
    with pytest.raises(ValueError, match="give both"):
        ClipPPOLoss(actor, critic, gamma=0.99)
    with pytest.raises(TypeError, match="get_dist"):
        ClipPPOLoss(critic, critic)
    loss = KLPENPPOLoss(actor, critic, clip_value=0.5)
    for setting, value, allowed in (
        ("entropy_coeff", -0.1, "a number >= 0"),
        ("clip_value", 0.0, "None or a number > 0"),
        ("dtarg", 0.0, "a number > 0"),
        ("decrement", 1.0, r"a number in \(0, 1\)"),
        ("clip_value", "0.3", "None or a number > 0"),
    ):
        with pytest.raises(
            ValueError, match=rf"KLPENPPOLoss: {setting}={value}; allowed: {allowed}"
        ):
            setattr(loss, setting, value)  # a schedule hook's bad value, caught where it is set
    assert loss.clip_value == 0.5 and loss.entropy_coeff == 0.0


def test_float_settings_are_buffers_outside_the_state_dict():
    """The float settings the computation reads are 0-d buffers (so that a compiled graph takes
    them as inputs), kept in step with the attribute; an off value (no clipping, no entropy
    bonus) leaves the buffer None; the state dict, and so checkpoints, do not change."""
    actor, critic, _ = _uniform_policy_batch([1.0], [0.0])
    loss = ClipPPOLoss(actor, critic, clip_epsilon=0.3, entropy_coeff=0.01)
    keys = set(loss.state_dict())
    assert loss._clip_epsilon.item() == pytest.approx(0.3) and loss._clip_value is None
    loss.clip_epsilon, loss.clip_value, loss.entropy_coeff = 0.1, 0.2, 0.0
    assert loss.clip_epsilon == 0.1 and loss._clip_epsilon.item() == pytest.approx(0.1)
    assert loss._clip_value.item() == pytest.approx(0.2) and loss._entropy_coeff is None
    assert set(loss.state_dict()) == keys == {k for k in keys if "network" in k}
    # Made where the networks are, in their dtype, as KLPEN's beta (no CPU scalar beside
    # accelerator tensors, no float64 scalar promoting float32 losses).
    loss = KLPENPPOLoss(actor.to("meta", torch.float16), critic.to("meta"), clip_value=0.2)
    tensors = (loss.beta, loss._dtarg, loss._clip_value)
    assert {(t.device.type, t.dtype) for t in tensors} == {("meta", torch.float16)}


def test_losses_keep_the_networks_dtype_and_a_setting_changed_before_backward_waits():
    """Every loss and diagnostic is float32 with float32 networks. A hook that changes a setting
    between a loss and its backward pass (``post_loss``) changes the next loss: the pending
    backward pass uses the value its loss was computed with."""
    actor = TanhNormalActor(MLP(3, 2, [8]), low=-torch.ones(1), high=torch.ones(1))
    critic = ValueOperator(MLP(3, 1, [8]))
    td = _minibatch(actor, 16, 0)
    settings = {"clip_value": 0.2, "critic_coeff": 0.5, "entropy_coeff": 0.01, "dtarg": 0.01}
    changed = {"clip_value": 0.1, "critic_coeff": 0.25, "entropy_coeff": 0.02, "dtarg": 0.02}
    gradients = []
    for change in (False, True):
        torch.manual_seed(0)
        loss = KLPENPPOLoss(copy.deepcopy(actor), copy.deepcopy(critic), **settings)
        out = loss(td.clone())
        assert {value.dtype for value in out.values()} == {torch.float32}
        if change:
            for setting, value in changed.items():
                setattr(loss, setting, value)
        sum(v for k, v in out.items() if k.startswith("loss_")).backward()
        gradients.append([p.grad for p in loss.parameters()])
    for before, after in zip(*gradients, strict=True):
        torch.testing.assert_close(after, before, rtol=0, atol=0)


def _compiled_and_eager(make_loss, categorical=False):
    """A loss built with ``compile=True`` and its eager twin, on copies of the same networks
    (batched into one actor-critic network, the configs' default, for tanh-normal actors)."""
    torch.manual_seed(0)
    if categorical:
        actor = CategoricalActor(MLP(3, 4, [16, 16]))
    else:
        actor = TanhNormalActor(MLP(3, 2, [16, 16]), low=-torch.ones(1), high=torch.ones(1))
    critic = ValueOperator(MLP(3, 1, [16, 16]))
    if not categorical:
        batch_actor_critic(actor, critic)
    twin_actor, twin_critic = copy.deepcopy((actor, critic))
    return make_loss(actor, critic, compile=True), make_loss(twin_actor, twin_critic)


def _minibatch(actor, size, seed):
    torch.manual_seed(seed)
    td = TensorDict({OBSERVATION: torch.randn(size, 3)}, batch_size=[size])
    with torch.no_grad():
        actor(td)
        td[SAMPLE_LOG_PROB] = td[SAMPLE_LOG_PROB] + 0.3 * torch.randn(size)  # ratios != 1
    td[ADVANTAGE], td[VALUE_TARGET] = torch.randn(size, 1), torch.randn(size, 1)
    td[STATE_VALUE] = td[VALUE_TARGET] + 0.5 * torch.randn(size, 1)
    return td


def _assert_same_step(compiled, eager, td):
    """Same losses, diagnostics and gradients from both losses on ``td``."""
    out_c, out_e = compiled(td.clone()), eager(td.clone())
    assert sorted(out_c.keys()) == sorted(out_e.keys())
    for key in out_e.keys():
        torch.testing.assert_close(out_c[key], out_e[key], rtol=1e-5, atol=1e-6, msg=key)
    for loss, out in ((compiled, out_c), (eager, out_e)):
        loss.zero_grad()
        sum(v for k, v in out.items() if k.startswith("loss_")).backward()
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize(
    "make_loss, categorical",
    [
        # Plain ClipPPOLoss: the tests below (each graph costs seconds to compile in CI).
        (lambda a, c, **kw: ClipPPOLoss(a, c, clip_value=0.2, loss_critic_type="smooth_l1",
                                        **kw), False),
        (lambda a, c, **kw: KLPENPPOLoss(a, c, beta=0.5, **kw), False),
        (lambda a, c, **kw: PPOLoss(a, c, entropy_coeff=0.01, **kw), True),
    ],
    ids=["clip-value-smooth-l1", "klpen", "plain-categorical-entropy"],
)  # fmt: skip
def test_compiled_loss_equals_eager(make_loss, categorical, compiled_calls):
    """``compile=True``: the compiled graph's losses, diagnostics, gradients (and KLPEN's
    adaptive beta) are eager's, step after step, also after a schedule changed the float
    settings, which the graph reads as inputs: no recompile."""
    compiled, eager = _compiled_and_eager(make_loss, categorical)
    _assert_same_step(compiled, eager, _minibatch(eager.actor_network, 64, 0))
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    for seed in (1, 2):
        for loss in (compiled, eager):
            loss.critic_coeff = 0.5 - 0.1 * seed
            if isinstance(loss, ClipPPOLoss):
                loss.clip_epsilon = 0.2 - 0.05 * seed
            if isinstance(loss, KLPENPPOLoss):
                loss.increment, loss.decrement = 2.0 + seed, 0.5 - 0.1 * seed
            for setting in ("clip_value", "dtarg", "entropy_coeff"):
                if getattr(loss, setting, None):
                    setattr(loss, setting, getattr(loss, setting) * (1 + seed))
        _assert_same_step(compiled, eager, _minibatch(eager.actor_network, 64, seed))
    assert len(compiled_calls) == 3
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == graphs
    if isinstance(eager, KLPENPPOLoss):
        assert compiled.beta.item() == eager.beta.item() != 0.5
    assert not compiled.compiled.failed


def test_compiled_loss_runs_other_batch_sizes_and_no_grad_eagerly(compiled_calls):
    """A smaller last minibatch, an evaluation under ``no_grad`` (first, so it must not claim
    the graph) and a masked batch run eagerly, with eager's results."""
    compiled, eager = _compiled_and_eager(ClipPPOLoss)
    with torch.no_grad():
        values = compiled(_minibatch(eager.actor_network, 16, 0))
    assert not compiled_calls
    expected = eager(_minibatch(eager.actor_network, 16, 0))
    torch.testing.assert_close(values["loss_objective"], expected["loss_objective"])
    _assert_same_step(compiled, eager, _minibatch(eager.actor_network, 64, 1))
    _assert_same_step(compiled, eager, _minibatch(eager.actor_network, 40, 2))
    masked = _minibatch(eager.actor_network, 64, 3)
    masked[MASK] = torch.arange(64) % 3 > 0
    _assert_same_step(compiled, eager, masked)
    assert len(compiled_calls) == 1  # the 64-sample minibatch only


def test_compiled_loss_pickles_and_copies(compiled_calls):
    compiled, eager = _compiled_and_eager(ClipPPOLoss)
    td = _minibatch(eager.actor_network, 32, 0)
    compiled(td.clone())
    for copied in (pickle.loads(pickle.dumps(compiled)), copy.deepcopy(compiled)):
        assert copied.compiled is not None and copied.compiled._compiled is None
        calls = len(compiled_calls)
        _assert_same_step(copied, eager, td)
        assert len(compiled_calls) == calls + 1  # the copy compiled its own graph


def test_the_first_compiled_call_compiles_the_backward_graph_too():
    """AOTAutograd would compile the backward graph at the first ``backward()``, where a
    compile failure would stop the run instead of falling back to eager: it is compiled with
    the forward graph. Checked by breaking the C++ compiler between the two, with inductor's
    caches off (a cached graph needs no compiler)."""
    import torch._inductor.config as inductor_config

    compiled, eager = _compiled_and_eager(ClipPPOLoss)
    td = _minibatch(eager.actor_network, 64, 0)
    with inductor_config.patch(force_disable_caches=True):
        out = compiled(td.clone())
        with inductor_config.patch({"cpp.cxx": ("/nonexistent/g++",)}):
            sum(v for k, v in out.items() if k.startswith("loss_")).backward()
    assert not compiled.compiled.failed
    expected = eager(td.clone())
    sum(v for k, v in expected.items() if k.startswith("loss_")).backward()
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-5, atol=1e-6, msg=name)
