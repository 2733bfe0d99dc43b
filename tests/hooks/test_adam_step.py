"""``fused_adam_step``: the fused Adam kernel called directly must step exactly as
``Adam.step()`` does, and step aside wherever ``step()`` would do more."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch

from trainers.hooks.adam_step import fused_adam_step


def _params() -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(shape, generator=generator))
            for shape in ((5, 3), (3,), (4, 5, 2), ())]  # fmt: skip


def _set_gradients(params: list[torch.nn.Parameter], seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    for index, param in enumerate(params):
        # The last parameter gets no gradient at odd steps: Adam skips it then.
        skip = index == len(params) - 1 and seed % 2
        param.grad = None if skip else torch.randn(param.shape, generator=generator) * 1e-3


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"weight_decay": 0.1, "eps": 1e-6, "betas": (0.8, 0.99)},
        {"maximize": True, "lr": 0.05},
    ],
)
@pytest.mark.parametrize("groups", [1, 2])
def test_it_steps_as_adam_step_does_to_the_bit(options: dict[str, Any], groups: int):
    direct, reference = _params(), _params()

    def optimizer(params: list[torch.nn.Parameter]) -> torch.optim.Adam:
        split = [params[:2], params[2:]] if groups == 2 else [params]
        return torch.optim.Adam([{"params": group} for group in split], fused=True, **options)

    direct_adam, reference_adam = optimizer(direct), optimizer(reference)
    for step in range(8):
        _set_gradients(direct, step)
        _set_gradients(reference, step)
        if step == 0:  # the first step makes Adam's state: step() does it
            assert not fused_adam_step(direct_adam)
            direct_adam.step()
        else:
            assert fused_adam_step(direct_adam)
        reference_adam.step()
    for param, expected in zip(direct, reference, strict=True):
        assert torch.equal(param, expected)
        state, expected_state = direct_adam.state[param], reference_adam.state[expected]
        assert state.keys() == expected_state.keys()
        assert all(torch.equal(state[name], expected_state[name]) for name in state)


def _with_hook(adam: torch.optim.Adam) -> None:
    adam.register_step_pre_hook(lambda optimizer, args, kwargs: None)


def _with_scheduler(adam: torch.optim.Adam) -> None:
    torch.optim.lr_scheduler.StepLR(adam, step_size=1)


def _adamw(adam: torch.optim.Adam) -> torch.optim.Optimizer:
    return torch.optim.AdamW(adam.param_groups[0]["params"], fused=True)


def _grad_scaler_state(adam: torch.optim.Adam) -> None:
    adam.grad_scale = torch.tensor(2.0)  # what GradScaler.step hands to the kernel


def _a_parameter_without_state(adam: torch.optim.Adam) -> None:
    adam.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))]})


@pytest.mark.parametrize(
    ("what", "options", "change"),
    [
        ("Adam without the fused kernel", {"fused": False}, None),
        ("amsgrad", {"amsgrad": True}, None),
        ("a tensor learning rate", {"lr": torch.tensor(0.01)}, None),
        ("a step hook", {}, _with_hook),
        ("an LR scheduler", {}, _with_scheduler),
        ("AdamW", {}, _adamw),
        ("GradScaler's scale", {}, _grad_scaler_state),
        ("a parameter whose first gradient comes later", {}, _a_parameter_without_state),
    ],
)
def test_it_leaves_the_step_to_adam_where_step_does_more(
    what: str, options: dict[str, Any], change: Callable[[torch.optim.Adam], Any] | None
):
    params = _params()
    adam: torch.optim.Optimizer = torch.optim.Adam(params, **{"fused": True, **options})
    if change is not None:
        adam = change(adam) or adam
    _set_gradients(params, 0)
    if change is _a_parameter_without_state:
        adam.param_groups[1]["params"][0].grad = None
    adam.step()  # Adam's state exists (not for a parameter without a gradient)
    _set_gradients(params, 2)
    if change is _a_parameter_without_state:
        late = adam.param_groups[1]["params"][0]
        late.grad = torch.ones_like(late)
    params_before, state_before = copy.deepcopy((params, adam.state_dict()["state"]))
    assert not fused_adam_step(adam), what
    assert all(torch.equal(p, q) for p, q in zip(params, params_before, strict=True)), what
    state = adam.state_dict()["state"]
    assert state.keys() == state_before.keys(), what
    for index, values in state_before.items():
        assert all(torch.equal(state[index][name], value) for name, value in values.items()), what
