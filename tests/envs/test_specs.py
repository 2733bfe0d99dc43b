"""Specs: shapes, sampling range, membership."""

from __future__ import annotations

import pytest
import torch

from trainers.envs import Bounded, Categorical, Unbounded


def test_bounded_rand_is_in_range_and_is_in():
    torch.manual_seed(0)
    spec = Bounded(torch.tensor([-1.0, 0.0]), torch.tensor([1.0, 5.0]))
    x = spec.rand([1000])
    assert x.shape == (1000, 2) and x.dtype == torch.float32
    assert (x[:, 0] >= -1).all() and (x[:, 1] <= 5).all() and x[:, 1].min() < 0.1
    assert spec.is_in(x)
    assert not spec.is_in(torch.tensor([[0.0, 6.0]]))
    assert not spec.is_in(x.double())
    with pytest.raises(ValueError, match="low <= high"):
        Bounded(1.0, 0.0, shape=(1,))


def test_categorical_and_unbounded():
    torch.manual_seed(0)
    spec = Categorical(3)
    x = spec.rand([500])
    assert x.shape == (500,) and x.dtype == torch.int64
    assert set(x.tolist()) == {0, 1, 2} and spec.is_in(x)
    assert not spec.is_in(torch.tensor([3]))
    u = Unbounded(4)
    assert u.rand([2, 3]).shape == (2, 3, 4) and u.is_in(torch.zeros(7, 4))
    assert not u.is_in(torch.zeros(7, 5))
