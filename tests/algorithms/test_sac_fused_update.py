"""SACTrainer's fused update (``trainers/algorithms/sac_update.py``): the whole optimization
step as one compiled graph must train exactly as the hooks do, keep Adam's state as Adam keeps
it, and step aside wherever the hooks are not the defaults."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from tensordict import TensorDict, TensorDictBase

from tests.algorithms._common import make_sac
from trainers.algorithms.sac_update import _initial_adam_state
from trainers.hooks.optim import OptimizerHook
from trainers.objectives import SACLoss
from trainers.objectives.compiled import CompiledOnce
from trainers.trainer.stages import Stage

# Enough steps for rounding differences to show if the arithmetic differed.
STEPS = dict(frames_per_batch=10, total_frames=60, init_random_frames=10, optim_steps_per_batch=6)


def _trained(fused_update: bool, **kwargs: Any):
    trainer, logger = make_sac(**STEPS, loss_compile=True, fused_update=fused_update, **kwargs)
    trainer.train()
    return trainer, logger


@pytest.mark.parametrize("fused_adam", [False, True])
def test_the_fused_update_trains_as_the_hooks_do(fused_adam: bool):
    fused, fused_log = _trained(True, adam_options={"fused": fused_adam})
    hooks, hooks_log = _trained(False, adam_options={"fused": fused_adam})
    assert fused.fused_update is not None and hooks.fused_update is None
    assert fused.fused_update.steps == fused.state.optim_steps == 36
    networks, reference = fused.loss_module.state_dict(), hooks.loss_module.state_dict()
    assert networks.keys() == reference.keys()
    for name in networks:  # the online and target networks, log_alpha
        torch.testing.assert_close(networks[name], reference[name], rtol=1e-4, atol=1e-6)
    adam, adam_reference = fused.optimizer.state_dict(), hooks.optimizer.state_dict()
    assert adam["param_groups"] == adam_reference["param_groups"]
    for index, state in adam_reference["state"].items():
        assert adam["state"][index].keys() == state.keys()
        for name, value in state.items():  # step counts exactly, moments to rounding
            torch.testing.assert_close(adam["state"][index][name], value, rtol=1e-4, atol=1e-7)
    logged = [values for _, values in fused_log.scalars]
    logged_reference = [values for _, values in hooks_log.scalars]
    assert len(logged) == len(logged_reference) == 6
    for values, reference_values in zip(logged, logged_reference, strict=True):
        assert values.keys() == reference_values.keys()
        for name in ("loss_actor", "loss_qvalue", "loss_alpha", "alpha", "entropy", "q_mean",
                     "target_value_mean"):  # fmt: skip
            assert values[name] == pytest.approx(reference_values[name], rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("default_dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fused", [False, True, None])
def test_the_adam_state_it_makes_before_the_first_step_is_adams(
    fused: bool | None, default_dtype: torch.dtype
):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(default_dtype)
    try:
        _check_initial_adam_state(fused)
    finally:
        torch.set_default_dtype(previous)


def _check_initial_adam_state(fused: bool | None) -> None:
    param = torch.nn.Parameter(torch.randn(3, 4, dtype=torch.float32))
    optimizer = torch.optim.Adam([param], fused=fused)
    param.grad = torch.zeros_like(param)
    optimizer.step()  # zero gradients: Adam makes its state, the moments stay zero
    made = _initial_adam_state(param, optimizer.param_groups[0]["fused"])
    state = optimizer.state[param]
    assert made.keys() == state.keys()
    for name, value in made.items():
        assert (value.dtype, value.device, value.shape) == (
            state[name].dtype,
            state[name].device,
            state[name].shape,
        )
    assert made["step"].item() == 0.0 and state["step"].item() == 1.0
    assert not made["exp_avg"].any() and not made["exp_avg_sq"].any()


class _LossWithMore(SACLoss):
    """A subclass whose forward adds a term: the fused step would drop it."""

    calls: list[int]

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        self.calls.append(1)
        losses = super().forward(tensordict)
        losses.set("loss_l2", 1e-3 * sum(p.square().sum() for p in self.actor_network.parameters()))
        return losses


def _extra_post_optim_hook(trainer: Any, calls: list[int]) -> None:
    trainer.register_op(Stage.POST_OPTIM, lambda: calls.append(1))


def _named_loss_terms(trainer: Any, calls: list[int]) -> None:
    del calls
    (hook,) = [op for op in trainer.ops(Stage.OPTIMIZER) if isinstance(op, OptimizerHook)]
    hook.loss_components = ["loss_actor", "loss_qvalue", "loss_alpha"]


def _loss_subclass(trainer: Any, calls: list[int]) -> None:
    trainer.loss_module.__class__ = _LossWithMore
    trainer.loss_module.calls = calls


def _loss_forward_hook(trainer: Any, calls: list[int]) -> None:
    trainer.loss_module.register_forward_hook(lambda module, args, out: calls.append(1))


def _optimizer_step_hook(trainer: Any, calls: list[int]) -> None:
    trainer.optimizer.register_step_post_hook(lambda optimizer, args, kwargs: calls.append(1))


def _lr_scheduler(trainer: Any, calls: list[int]) -> None:
    del calls  # the scheduler wraps optimizer.step to count its calls
    torch.optim.lr_scheduler.LambdaLR(trainer.optimizer, lambda epoch: 1.0)


@pytest.mark.parametrize(
    ("what", "kwargs", "change"),
    [
        ("a user hook at post_optim", {}, _extra_post_optim_hook),
        ("loss terms named for the optimizer", {}, _named_loss_terms),
        ("a SACLoss subclass", {}, _loss_subclass),
        ("a forward hook on the loss", {}, _loss_forward_hook),
        ("an optimizer step hook", {}, _optimizer_step_hook),
        ("an LR scheduler", {}, _lr_scheduler),
        ("a tensor learning rate", {"adam_options": {"lr": torch.tensor(1e-3)}}, None),
        ("gradient clipping", {"clip_norm": 1.0}, None),
        ("Adam's weight decay", {"adam_options": {"weight_decay": 0.01}}, None),
        ("trainer.fused_update=false", {"fused_update": False}, None),
        ("an uncompiled loss", {"loss_compile": False}, None),
    ],
)
def test_the_hooks_run_one_by_one_where_the_fused_update_does_not_apply(
    what: str, kwargs: dict[str, Any], change: Any
):
    settings = {"loss_compile": True, "fused_update": True, **STEPS, "total_frames": 20, **kwargs}
    trainer, _ = make_sac(**settings)
    calls: list[int] = []
    if change is not None:
        change(trainer, calls)
    trainer.train()
    assert trainer.state.optim_steps == 12, what
    assert trainer.fused_update is None or trainer.fused_update.steps == 0, what
    if change in (_extra_post_optim_hook, _loss_subclass, _loss_forward_hook,
                  _optimizer_step_hook):  # fmt: skip
        assert len(calls) == 12, what  # each step ran the hook (or the subclass's forward)


def _raises(*args: Any) -> None:
    raise AttributeError("a graph dynamo cannot capture")


def test_a_failed_compile_leaves_the_steps_and_their_random_draws_to_the_hooks():
    failing, _ = make_sac(**STEPS, loss_compile=True, fused_update=True)
    assert failing.fused_update is not None
    failing.fused_update.compiled = CompiledOnce(_raises, "trainer.fused_update", "hooks")
    with pytest.warns(UserWarning, match="trainer.fused_update: torch.compile failed, hooks"):
        failing.train()
    hooks, _ = _trained(False)
    assert failing.fused_update.steps == 0
    networks, reference = failing.loss_module.state_dict(), hooks.loss_module.state_dict()
    assert all(torch.equal(networks[name], reference[name]) for name in reference)


def test_a_run_with_the_fused_update_resumes_exactly(tmp_path):
    uninterrupted, _ = _trained(True)
    checkpoint = tmp_path / "checkpoint.pt"
    first, _ = make_sac(**{**STEPS, "total_frames": 30}, loss_compile=True, fused_update=True,
                        save_trainer_file=checkpoint)  # fmt: skip
    first.train()
    resumed, _ = make_sac(**STEPS, loss_compile=True, fused_update=True)
    resumed.load_from_file(checkpoint)
    assert resumed.state.optim_steps == 18
    resumed.train()
    assert resumed.fused_update is not None and resumed.fused_update.steps == 18
    networks, reference = resumed.loss_module.state_dict(), uninterrupted.loss_module.state_dict()
    assert all(torch.equal(networks[name], reference[name]) for name in reference)
    adam = resumed.optimizer.state_dict()["state"]
    for index, state in uninterrupted.optimizer.state_dict()["state"].items():
        assert all(torch.equal(adam[index][name], value) for name, value in state.items())


@pytest.mark.slow
def test_the_fused_update_trains_as_the_hooks_do_at_the_published_sizes(tmp_path, monkeypatch):
    """The SAC config as published (HalfCheetah-v5, 256x256 networks, batch 256, fused Adam):
    20 steps both ways agree to rounding. (Later the runs drift apart as any two roundings do:
    docs/learning.md.)"""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from tests.configs.test_compose import CONF

    monkeypatch.chdir(tmp_path)
    trained = []
    for fused_update in ("true", "false"):
        with initialize_config_dir(CONF, version_base=None):
            cfg = compose("sac", overrides=[
                f"trainer.fused_update={fused_update}", "trainer.progress_bar=false",
                "collector.init_random_frames=1000", "collector.frames_per_batch=10",
                "trainer.total_frames=1010", "trainer.save_trainer_file=null",
            ])  # fmt: skip
        trainer = instantiate(cfg.trainer)
        trainer.train()
        trained.append(trainer)
    fused, hooks = trained
    assert fused.fused_update.steps == fused.state.optim_steps == 20
    networks, reference = fused.loss_module.state_dict(), hooks.loss_module.state_dict()
    for name in reference:
        torch.testing.assert_close(networks[name], reference[name], rtol=1e-5, atol=1e-6)
