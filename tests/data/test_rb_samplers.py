"""Samplers and segment trees against plain-Python references."""

from __future__ import annotations

import bisect
import itertools
import math

import pytest
import torch
from tensordict import TensorDict

from trainers.data import (
    LazyTensorStorage,
    MinTree,
    PrioritizedSampler,
    RandomSampler,
    ReplayBuffer,
    SamplerWithoutReplacement,
    SumTree,
)
from trainers.keys import INDEX, PRIORITY_WEIGHT


def buffer(n: int, sampler, max_size: int | None = None, batch_size: int | None = None):
    rb = ReplayBuffer(
        storage=LazyTensorStorage(max_size or n), sampler=sampler, batch_size=batch_size
    )
    rb.extend(TensorDict({"id": torch.arange(n)}, batch_size=[n]))
    return rb


# Segment trees ---------------------------------------------------------------------------


@pytest.mark.parametrize("capacity", [1, 5, 8, 13])
def test_sum_and_min_trees_match_python_after_random_updates(capacity):
    gen = torch.Generator().manual_seed(capacity)
    sums, mins = SumTree(capacity), MinTree(capacity)
    reference: dict[int, float] = {}
    for _ in range(6):
        k = int(torch.randint(1, capacity + 1, (1,), generator=gen))
        index = torch.randperm(capacity, generator=gen)[:k]
        values = torch.rand(k, generator=gen, dtype=torch.float64) * 10
        sums[index] = values
        mins[index] = values
        reference.update(zip(index.tolist(), values.tolist(), strict=True))
        assert math.isclose(float(sums.reduce()), sum(reference.values()), rel_tol=1e-12)
        assert float(mins.reduce()) == min(reference.values())
    leaves = [reference.get(i, 0.0) for i in range(capacity)]
    assert sums.leaves.tolist() == leaves
    # find(mass) is the leaf whose cumulative interval [c_j, c_j + v_j) holds mass.
    cumulative = list(itertools.accumulate(leaves))
    total = cumulative[-1]
    masses = torch.rand(200, generator=gen, dtype=torch.float64) * total
    expected = [bisect.bisect_right(cumulative, m) for m in masses.tolist()]
    assert sums.find(masses).tolist() == expected


def test_sum_tree_hand_example_and_rebuild():
    tree = SumTree(4)
    tree[torch.arange(4)] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    # Intervals: [0,1) -> 0, [1,3) -> 1, [3,6) -> 2, [6,10) -> 3.
    assert tree.find(torch.tensor([0.0, 0.99, 1.0, 2.99, 3.0, 6.0, 9.99])).tolist() == [
        0, 0, 1, 1, 2, 3, 3,
    ]  # fmt: skip
    rebuilt = SumTree(4)
    rebuilt.load_leaves(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64))
    assert torch.equal(rebuilt._tree, tree._tree)


# Prioritized sampling --------------------------------------------------------------------


def test_prioritized_frequencies_follow_priority_to_the_alpha():
    torch.manual_seed(0)
    alpha, eps = 0.7, 1e-8
    sampler = PrioritizedSampler(max_capacity=8, alpha=alpha, beta=0.5, eps=eps)
    rb = buffer(5, sampler, max_size=8, batch_size=10_000)
    priorities = [0.5, 1.0, 2.0, 4.0, 8.0]
    rb.update_priority(torch.arange(5), torch.tensor(priorities))
    draws = 200_000
    index = torch.cat([rb.sample()[INDEX] for _ in range(draws // 10_000)])
    assert int(index.max()) == 4  # rows 5..7 were never written and are never drawn
    counts = torch.bincount(index, minlength=5)
    weights = [(p + eps) ** alpha for p in priorities]
    expected = [draws * w / sum(weights) for w in weights]
    chi2 = sum((c - e) ** 2 / e for c, e in zip(counts.tolist(), expected, strict=True))
    assert chi2 < 18.47  # the 99.9% quantile of chi-square with 4 degrees of freedom


def test_alpha_zero_is_uniform_and_all_weights_are_one():
    torch.manual_seed(1)
    rb = buffer(4, PrioritizedSampler(4, alpha=0.0, beta=0.9), batch_size=40_000)
    rb.update_priority(torch.arange(4), torch.tensor([0.1, 1.0, 10.0, 100.0]))
    sample = rb.sample()
    frequencies = torch.bincount(sample[INDEX], minlength=4) / 40_000
    assert torch.allclose(frequencies, torch.full((4,), 0.25), atol=0.01)
    assert torch.equal(sample[PRIORITY_WEIGHT], torch.ones(40_000))


def test_importance_weights_match_the_hand_formula():
    torch.manual_seed(2)
    alpha, beta, eps = 0.6, 0.4, 0.01
    rb = buffer(4, PrioritizedSampler(6, alpha=alpha, beta=beta, eps=eps), max_size=6)
    priorities = [3.0, 0.0, 1.0, 7.0]
    rb.update_priority(torch.arange(4), torch.tensor(priorities))
    sample = rb.sample(64)
    scaled = [(p + eps) ** alpha for p in priorities]
    total, n = sum(scaled), 4
    prob = [s / total for s in scaled]
    max_weight = (n * min(prob)) ** -beta
    expected = [(n * prob[i]) ** -beta / max_weight for i in sample[INDEX].tolist()]
    assert sample[PRIORITY_WEIGHT].dtype == torch.float32
    assert torch.allclose(sample[PRIORITY_WEIGHT], torch.tensor(expected), rtol=1e-6)
    assert sample[PRIORITY_WEIGHT].max() <= 1.0


def test_new_rows_get_the_largest_priority_seen_so_far():
    sampler = PrioritizedSampler(8, alpha=0.5, beta=0.5, eps=0.0, max_priority_init=2.0)
    rb = buffer(3, sampler, max_size=8)
    # approx: torch's pow may differ from Python's in the last bit, depending on the CPU
    assert sampler._sum_tree.leaves[:3].tolist() == pytest.approx([2.0**0.5] * 3, rel=1e-12)
    rb.update_priority(torch.tensor([0, 1]), torch.tensor([9.0, 0.25]))
    rb.extend(TensorDict({"id": torch.tensor([3, 4])}, batch_size=[2]))
    expected = [3.0, 0.5, 2.0**0.5, 3.0, 3.0]
    assert sampler._sum_tree.leaves[:5].tolist() == pytest.approx(expected, rel=1e-12)
    assert float(sampler._min_tree.reduce()) == 0.5


def test_a_repeated_index_takes_its_last_priority():
    sampler = PrioritizedSampler(4, alpha=1.0, beta=0.5, eps=0.0)
    buffer(4, sampler)
    sampler.update_priority(torch.tensor([2, 0, 2, 2]), torch.tensor([5.0, 1.0, 6.0, 7.0]))
    assert sampler._sum_tree.leaves.tolist() == [1.0, 1.0, 7.0, 1.0]
    sampler.update_priority(torch.tensor([1, 3]), 0.5)  # a scalar applies to every index
    assert sampler._sum_tree.leaves.tolist() == [1.0, 0.5, 7.0, 0.5]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_capacity": 0}, "max_capacity must be an int >= 1, got 0"),
        ({"max_capacity": 3.0}, "max_capacity must be an int >= 1"),
        ({"alpha": -0.1}, "alpha must be a finite number >= 0, got -0.1"),
        ({"beta": -1}, "beta must be a finite number >= 0"),
        ({"beta": float("nan")}, "beta must be a finite number >= 0"),
        ({"eps": -1e-3}, "eps must be a finite number >= 0"),
        ({"max_priority_init": 0.0}, "max_priority_init must be a finite number > 0"),
        ({"alpha": True}, "alpha must be a finite number"),
    ],
)
def test_prioritized_sampler_rejects_bad_arguments(kwargs, message):
    args = {"max_capacity": 4, "alpha": 0.6, "beta": 0.4} | kwargs
    with pytest.raises(ValueError, match=message):
        PrioritizedSampler(**args)


def test_prioritized_sampler_rejects_bad_priorities_and_small_capacity():
    sampler = PrioritizedSampler(4, alpha=0.6, beta=0.4)
    buffer(4, sampler)
    with pytest.raises(ValueError, match="finite and >= 0"):
        sampler.update_priority(torch.tensor([0, 1]), torch.tensor([1.0, -2.0]))
    with pytest.raises(ValueError, match="finite and >= 0"):
        sampler.update_priority(torch.tensor([0]), torch.tensor([float("nan")]))
    with pytest.raises(ValueError, match="2 indices but 3 priorities"):
        sampler.update_priority(torch.tensor([0, 1]), torch.ones(3))
    with pytest.raises(IndexError, match=r"in \[0, 4\)"):
        sampler.update_priority(torch.tensor([4]), torch.ones(1))
    with pytest.raises(ValueError, match=r"max_capacity=3.*max_size=4"):
        ReplayBuffer(storage=LazyTensorStorage(4), sampler=PrioritizedSampler(3, 0.6, 0.4))


# Without replacement ---------------------------------------------------------------------


def test_without_replacement_visits_each_row_once_per_epoch():
    torch.manual_seed(3)
    rb = buffer(10, SamplerWithoutReplacement(), batch_size=3)
    for _ in range(3):
        batches = [b[INDEX].tolist() for b in rb]  # one epoch
        assert [len(b) for b in batches] == [3, 3, 3, 1]
        assert sorted(itertools.chain(*batches)) == list(range(10))


def test_without_replacement_drop_last_skips_the_incomplete_batch():
    torch.manual_seed(4)
    rb = buffer(10, SamplerWithoutReplacement(drop_last=True), batch_size=3)
    epochs = [[b[INDEX].tolist() for b in rb] for _ in range(2)]
    for batches in epochs:
        assert [len(b) for b in batches] == [3, 3, 3]
        assert len(set(itertools.chain(*batches))) == 9
    assert epochs[0] != epochs[1]  # a new permutation each epoch
    with pytest.raises(ValueError, match="batch_size=11 from 10 stored rows"):
        rb.sample(11)


def test_without_replacement_unshuffled_runs_in_index_order_across_epochs():
    rb = buffer(5, SamplerWithoutReplacement(shuffle=False), batch_size=2)
    got = [rb.sample()[INDEX].tolist() for _ in range(4)]
    assert got == [[0, 1], [2, 3], [4], [0, 1]]


def test_without_replacement_restarts_when_the_storage_grows():
    torch.manual_seed(5)
    rb = buffer(4, SamplerWithoutReplacement(), max_size=8, batch_size=3)
    rb.sample()
    rb.extend(TensorDict({"id": torch.arange(4, 8)}, batch_size=[4]))
    assert sorted(itertools.chain(*(b[INDEX].tolist() for b in rb))) == list(range(8))


def test_random_sampler_draws_stored_rows_with_replacement():
    torch.manual_seed(6)
    rb = buffer(3, RandomSampler(), max_size=10)
    index = rb.sample(300)[INDEX]
    assert set(index.tolist()) == {0, 1, 2}
