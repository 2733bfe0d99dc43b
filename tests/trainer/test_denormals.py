"""Flush-to-zero while training: denormals become zero inside ``train()``, and only there."""

from __future__ import annotations

import pytest
import torch

from tests.trainer.toy import make_toy_trainer
from trainers.trainer.denormals import denormals_flushed

DENORMAL = 1e-39  # below float32's smallest normal number, 1.18e-38


def _product_with_denormal() -> float:
    """A float32 product whose exact result (1e-39) is a denormal."""
    return (torch.full((4,), DENORMAL * 1e3) * 1e-3)[0].item()


@pytest.fixture
def flushing_supported():
    if not torch.set_flush_denormal(True):
        pytest.skip("this CPU cannot flush denormals (torch.set_flush_denormal returned False)")
    torch.set_flush_denormal(False)


def test_the_block_flushes_denormals_and_restores_the_default(flushing_supported):
    assert _product_with_denormal() == pytest.approx(DENORMAL, rel=1e-3)
    with denormals_flushed() as flushing:
        assert flushing
        assert _product_with_denormal() == 0.0
    assert _product_with_denormal() == pytest.approx(DENORMAL, rel=1e-3)


def test_disabled_block_keeps_denormals(flushing_supported):
    with denormals_flushed(enabled=False) as flushing:
        assert not flushing
        assert _product_with_denormal() == pytest.approx(DENORMAL, rel=1e-3)


def test_the_default_is_restored_when_the_block_raises(flushing_supported):
    with pytest.raises(RuntimeError), denormals_flushed():
        raise RuntimeError("hook failed")
    assert _product_with_denormal() != 0.0


@pytest.mark.parametrize("flush", [True, False])
def test_train_flushes_denormals_in_its_hooks_only_when_asked(flushing_supported, flush):
    trainer = make_toy_trainer(total_frames=32, flush_denormals=flush)
    seen: list[float] = []
    trainer.register_op("post_optim", lambda: seen.append(_product_with_denormal()))
    trainer.train()
    assert seen
    assert all((value == 0.0) is flush for value in seen)
    assert _product_with_denormal() != 0.0  # the thread is back at torch's default
