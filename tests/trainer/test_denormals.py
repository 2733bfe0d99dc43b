"""Flush-to-zero while training: denormals become zero inside ``train()``, and only there."""

from __future__ import annotations

import threading

import pytest
import torch

from tests.trainer.toy import make_toy_trainer
from trainers.trainer.denormals import _REGION_BODY, _openmp_parallel, denormals_flushed

DENORMAL = 1e-39  # below float32's smallest normal number, 1.18e-38


def _product_with_denormal() -> float:
    """A float32 product whose exact result (1e-39) is a denormal."""
    return (torch.full((4,), DENORMAL * 1e3) * 1e-3)[0].item()


def _flushed_share(denormals: torch.Tensor) -> float:
    """Share of ``denormals * 1`` that comes out zero (each torch thread computes its part of
    the product)."""
    return ((denormals * 1.0) == 0).double().mean().item()


def _region_threads(threads: int) -> int:
    """How many threads an OpenMP parallel region of ``threads`` runs on here."""
    seen: set[int] = set()
    parallel = _openmp_parallel()
    assert parallel is not None
    parallel(_REGION_BODY(lambda _: seen.add(threading.get_native_id())), None, threads, 0)
    return len(seen)


@pytest.fixture
def two_threads():
    """Two torch threads, each running part of a parallel op."""
    if _openmp_parallel() is None:
        pytest.skip("torch's CPU ops do not run on an OpenMP runtime with GOMP_parallel")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    if _region_threads(2) < 2:  # OMP_THREAD_LIMIT=1, OMP_DYNAMIC on a busy machine
        torch.set_num_threads(before)
        pytest.skip("OpenMP runs parallel regions on one thread here")
    yield
    torch.set_num_threads(before)


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


def test_the_block_flushes_on_every_openmp_thread(flushing_supported, two_threads):
    """torch.set_flush_denormal sets the calling thread only: the other threads of a parallel
    op would compute their part on denormals (half of it here)."""
    # Made before any flushing: a float made from 1e-39 while flushing is zero.
    denormals = torch.full((1 << 21,), DENORMAL)
    assert _flushed_share(denormals) == 0.0
    with denormals_flushed():
        assert _flushed_share(denormals) == 1.0
    assert _flushed_share(denormals) == 0.0
    torch.set_flush_denormal(True)  # this thread only
    try:
        assert _flushed_share(denormals) == pytest.approx(0.5, abs=0.01)
    finally:
        torch.set_flush_denormal(False)


def test_workers_are_reset_when_the_block_lowered_the_thread_count(flushing_supported, two_threads):
    denormals = torch.full((1 << 21,), DENORMAL)
    with denormals_flushed():
        torch.set_num_threads(1)
    torch.set_num_threads(2)
    assert _flushed_share(denormals) == 0.0


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


def test_train_flushes_on_every_openmp_thread(flushing_supported, two_threads):
    denormals = torch.full((1 << 21,), DENORMAL)
    trainer = make_toy_trainer(total_frames=32)
    seen: list[float] = []
    trainer.register_op("post_optim", lambda: seen.append(_flushed_share(denormals)))
    trainer.train()
    assert seen and all(share == 1.0 for share in seen)
    assert _flushed_share(denormals) == 0.0
