"""SACTrainer's fused update (``trainers/algorithms/sac_update.py``): the optimization step
without autograd's backward pass must train as the hooks do, to the bit, and step aside
wherever it would skip something the hooks do."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
import torch
from tensordict import TensorDict, TensorDictBase

from tests.algorithms._common import make_sac
from trainers.data import PrioritizedSampler
from trainers.hooks.optim import OptimizerHook
from trainers.objectives import SACLoss
from trainers.trainer.stages import Stage

# Enough steps for any difference in the arithmetic to show.
STEPS = dict(frames_per_batch=10, total_frames=60, init_random_frames=10, optim_steps_per_batch=6)


def _assert_same_training(trained: Any, reference: Any) -> None:
    """Networks, target networks, log_alpha and the optimizer state equal to the bit."""
    networks, expected = trained.loss_module.state_dict(), reference.loss_module.state_dict()
    assert networks.keys() == expected.keys()
    for name, value in expected.items():
        assert torch.equal(networks[name], value), name
    adam, adam_expected = trained.optimizer.state_dict(), reference.optimizer.state_dict()
    assert adam["param_groups"] == adam_expected["param_groups"]
    for index, state in adam_expected["state"].items():
        assert adam["state"][index].keys() == state.keys()
        for name, value in state.items():
            assert torch.equal(adam["state"][index][name], value), (index, name)


def _optimizer_step_hook(trainer: Any, calls: list[int]) -> None:
    trainer.optimizer.register_step_post_hook(lambda optimizer, args, kwargs: calls.append(1))


def _lr_scheduler(trainer: Any, calls: list[int]) -> None:
    scheduler = torch.optim.lr_scheduler.StepLR(trainer.optimizer, step_size=5, gamma=0.5)
    trainer.register_op(Stage.POST_OPTIM, lambda: (scheduler.step(), calls.append(1)))


def _post_optim_hook(trainer: Any, calls: list[int]) -> None:
    trainer.register_op(Stage.POST_OPTIM, lambda: calls.append(1))


def _prioritized(trainer: Any, calls: list[int]) -> None:
    sampler = trainer.replay_buffer.sampler
    trainer.register_op(Stage.POST_OPTIM, lambda: calls.append(1))  # counts the steps
    assert isinstance(sampler, PrioritizedSampler)


@pytest.mark.parametrize(
    ("what", "kwargs", "change"),
    [
        ("the defaults, compiled loss", {"loss_compile": True}, None),
        ("the defaults, eager fused loss", {}, None),
        ("Adam without the fused kernel", {"adam_options": {"fused": False}}, None),
        ("torch's fused Adam kernel (the configs'), compiled loss",
         {"loss_compile": True, "adam_options": {"fused": True}}, None),
        ("the fused Adam kernel with clipping", {"adam_options": {"fused": True}, "clip_norm": 0.5},
         None),
        ("gradient clipping", {"clip_norm": 0.5}, None),
        ("Adam's weight decay and amsgrad",
         {"adam_options": {"weight_decay": 0.01, "amsgrad": True}}, None),
        ("an optimizer step hook", {}, _optimizer_step_hook),
        ("an LR scheduler stepped at post_optim", {}, _lr_scheduler),
        ("a user hook at post_optim", {}, _post_optim_hook),
        ("prioritized replay (weights; priorities from the TD errors)", {}, _prioritized),
    ],
)  # fmt: skip
def test_the_fused_update_trains_as_the_hooks_do_to_the_bit(
    what: str, kwargs: dict[str, Any], change: Any
):
    runs, logs, calls = [], [], []
    for fused_update in (True, False):
        if change is _prioritized:  # a sampler of its own for each run
            kwargs = {"sampler": PrioritizedSampler(200, alpha=0.6, beta=0.4)}
        trainer, logger = make_sac(**STEPS, fused_update=fused_update, **kwargs)
        calls.append([])
        if change is not None:
            change(trainer, calls[-1])
        trainer.train()
        runs.append(trainer)
        logs.append([values for _, values in logger.scalars])
    fused, hooks = runs
    assert hooks.fused_update is None, what
    assert fused.fused_update is not None and fused.fused_update.steps == 36, what
    _assert_same_training(fused, hooks)
    assert logs[0] == logs[1] and len(logs[0]) == 6, what  # losses, grad norms, alpha, ...
    assert len(calls[0]) == len(calls[1]) == (36 if change is not None else 0), what


class _LossWithMore(SACLoss):
    """A subclass whose forward adds a term: the fused step would drop it."""

    calls: list[int]

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        self.calls.append(1)
        losses = super().forward(tensordict)
        losses.set("loss_l2", 1e-3 * sum(p.square().sum() for p in self.actor_network.parameters()))
        return losses


def _named_loss_terms(trainer: Any, calls: list[int]) -> None:
    del calls
    (hook,) = [op for op in trainer.ops(Stage.OPTIMIZER) if isinstance(op, OptimizerHook)]
    hook.loss_components = ["loss_actor", "loss_qvalue", "loss_alpha"]


def _loss_subclass(trainer: Any, calls: list[int]) -> None:
    trainer.loss_module.__class__ = _LossWithMore
    trainer.loss_module.calls = calls


def _loss_forward_hook(trainer: Any, calls: list[int]) -> None:
    trainer.loss_module.register_forward_hook(lambda module, args, out: calls.append(1))


def _post_loss_hook(trainer: Any, calls: list[int]) -> None:
    trainer.register_op(Stage.POST_LOSS, lambda batch: calls.append(1))


def _gradient_hook(trainer: Any, calls: list[int]) -> None:
    critic_weight = trainer.loss_module.fused_path.parameters()[-1]
    critic_weight.register_hook(lambda grad: calls.append(1))


def _post_accumulate_hook(trainer: Any, calls: list[int]) -> None:
    actor_weight = trainer.loss_module.fused_path.parameters()[0]
    actor_weight.register_post_accumulate_grad_hook(lambda param: calls.append(1))


def _autograd_loss(trainer: Any, calls: list[int]) -> None:
    del calls
    trainer.loss_module.fused_path = None


@pytest.mark.parametrize(
    ("what", "kwargs", "change"),
    [
        ("loss terms named for the optimizer", {}, _named_loss_terms),
        ("a SACLoss subclass", {}, _loss_subclass),
        ("a forward hook on the loss", {}, _loss_forward_hook),
        ("a user hook at post_loss", {}, _post_loss_hook),
        ("a gradient hook on a parameter", {}, _gradient_hook),
        ("a post-accumulate-grad hook on a parameter", {}, _post_accumulate_hook),
        ("the autograd loss path", {}, _autograd_loss),
        ("trainer.fused_update=false", {"fused_update": False}, None),
    ],
)
def test_the_hooks_run_one_by_one_where_the_fused_update_would_skip_something(
    what: str, kwargs: dict[str, Any], change: Any
):
    trainer, _ = make_sac(**{**STEPS, "total_frames": 20, **kwargs})
    calls: list[int] = []
    if change is not None:
        change(trainer, calls)
    trainer.train()
    assert trainer.state.optim_steps == 12, what
    assert trainer.fused_update is None or trainer.fused_update.steps == 0, what
    if change in (_loss_subclass, _loss_forward_hook, _post_loss_hook, _gradient_hook,
                  _post_accumulate_hook):  # fmt: skip
        assert len(calls) == 12, what  # each step ran the hook (or the subclass's forward)


@pytest.mark.parametrize("fixed_alpha", [False, True])
def test_forward_with_gradients_adds_what_backward_adds(fixed_alpha: bool):
    """Onto gradients already there (accumulated as autograd does), and with a fixed
    temperature (no temperature loss)."""
    trainer, _ = make_sac(**STEPS)
    trainer.train()
    loss = trainer.loss_module
    loss.fixed_alpha = fixed_alpha
    loss.log_alpha.requires_grad_(not fixed_alpha)
    batch = trainer.replay_buffer.sample()
    params = [p for p in loss.parameters() if p.requires_grad]
    results = []
    for direct in (True, False):
        for param in params:
            param.grad = torch.full_like(param, 0.25)
        torch.manual_seed(1)
        sample = batch.clone()
        if direct:
            losses = loss.forward_with_gradients(sample)
            assert losses is not None
        else:
            losses = loss(sample)
            sum(value for key, value in losses.items() if key.startswith("loss")).backward()
        results.append(([p.grad.clone() for p in params], losses.detach(), sample))
    (grads, losses, sample), (expected_grads, expected_losses, expected_sample) = results
    assert all(torch.equal(g, e) for g, e in zip(grads, expected_grads, strict=True))
    assert (losses == expected_losses).all()
    assert torch.equal(sample["td_error"], expected_sample["td_error"])
    assert loss.log_alpha.grad is None if fixed_alpha else loss.log_alpha.grad is not None


def _frozen(loss: SACLoss) -> None:
    loss.requires_grad_(False)


def _log_alpha_in_float64(loss: SACLoss) -> None:
    loss.log_alpha = torch.nn.Parameter(loss.log_alpha.detach().double())


@pytest.mark.parametrize(
    ("what", "change", "context"),
    [
        ("grad mode off", None, torch.no_grad),
        ("anomaly detection on", None, torch.autograd.detect_anomaly),
        ("no parameter takes a gradient", _frozen, contextlib.nullcontext),
        ("log_alpha in another dtype than the networks", _log_alpha_in_float64,
         contextlib.nullcontext),
    ],
)  # fmt: skip
def test_forward_with_gradients_draws_and_writes_nothing_where_backward_would_differ(
    what: str, change: Any, context: Any
):
    trainer, _ = make_sac(**STEPS)
    trainer.train()
    loss = trainer.loss_module
    if change is not None:
        change(loss)
    batch = trainer.replay_buffer.sample()
    rng = torch.get_rng_state()
    with context():
        assert loss.forward_with_gradients(batch) is None, what
    assert torch.equal(torch.get_rng_state(), rng), what
    assert all(p.grad is None for p in loss.parameters()), what


def test_anomaly_detection_runs_the_steps_hook_by_hook():
    trainer, _ = make_sac(**{**STEPS, "total_frames": 20})
    with torch.autograd.detect_anomaly():
        trainer.train()
    assert trainer.fused_update is not None and trainer.fused_update.steps == 0


def test_a_run_with_the_fused_update_resumes_exactly(tmp_path):
    uninterrupted, _ = make_sac(**STEPS, loss_compile=True)
    uninterrupted.train()
    checkpoint = tmp_path / "checkpoint.pt"
    first, _ = make_sac(**{**STEPS, "total_frames": 30}, loss_compile=True,
                        save_trainer_file=checkpoint)  # fmt: skip
    first.train()
    resumed, _ = make_sac(**STEPS, loss_compile=True)
    resumed.load_from_file(checkpoint)
    assert resumed.state.optim_steps == 18
    resumed.train()
    assert resumed.fused_update is not None and resumed.fused_update.steps == 18
    _assert_same_training(resumed, uninterrupted)


@pytest.mark.slow
def test_the_fused_update_trains_as_the_hooks_do_at_the_published_sizes(tmp_path, monkeypatch):
    """The SAC config as published (HalfCheetah-v5, 256x256 networks, batch 256, fused Adam,
    compiled loss): 20 steps both ways, equal to the bit."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from tests.configs.test_compose import CONF

    monkeypatch.chdir(tmp_path)
    trained = []
    for fused_update in ("true", "false"):
        with initialize_config_dir(CONF, version_base=None):
            cfg = compose("sac", overrides=[
                f"trainer.fused_update={fused_update}", "trainer.progress_bar=false",
                "training_env.create_env_fn.base_env.env_name=HalfCheetah-v5",
                "collector.init_random_frames=1000", "collector.frames_per_batch=10",
                "trainer.total_frames=1010", "trainer.save_trainer_file=null",
            ])  # fmt: skip
        trainer = instantiate(cfg.trainer)
        trainer.train()
        trained.append(trainer)
    fused, hooks = trained
    assert fused.fused_update.steps == fused.state.optim_steps == 20
    _assert_same_training(fused, hooks)
