"""Replay buffers: writing order, sampling, priorities, state round trips, the builder."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDict

from trainers.data import (
    LazyMemmapStorage,
    LazyTensorStorage,
    PrioritizedSampler,
    RandomSampler,
    ReplayBuffer,
    RoundRobinWriter,
    SamplerWithoutReplacement,
    TensorDictReplayBuffer,
    make_replay_buffer,
)
from trainers.keys import INDEX, PRIORITY_WEIGHT, TD_ERROR
from trainers.trainer.checkpoint import load_checkpoint, save_checkpoint


def rows(n: int, start: int = 0) -> TensorDict:
    ids = torch.arange(start, start + n)
    return TensorDict(
        {"id": ids, "observation": ids[:, None].float().expand(n, 2).clone()}, batch_size=[n]
    )


def stored_ids(rb: ReplayBuffer) -> list[int]:
    return rb.storage.get(slice(0, len(rb)))["id"].tolist()


def test_round_robin_overwrites_the_oldest_rows_first():
    rb = ReplayBuffer(storage=LazyTensorStorage(4), writer=RoundRobinWriter())
    assert rb.extend(rows(3)).tolist() == [0, 1, 2]
    assert rb.extend(rows(3, start=3)).tolist() == [3, 0, 1]
    assert stored_ids(rb) == [4, 5, 2, 3] and len(rb) == 4
    assert rb.add(rows(1, start=6)[0]) == 2
    assert stored_ids(rb) == [4, 5, 6, 3]
    assert rb.writer.state_dict() == {"cursor": 3, "written": 7}
    # More rows than slots in one call: the newest max_size rows win.
    assert rb.extend(rows(6, start=10)).tolist() == [3, 0, 1, 2, 3, 0]
    assert stored_ids(rb) == [15, 12, 13, 14]
    assert rb.writer.state_dict() == {"cursor": 1, "written": 13}


def test_sample_returns_the_stored_rows_at_index():
    torch.manual_seed(0)
    rb = ReplayBuffer(storage=LazyTensorStorage(20), batch_size=8)
    rb.extend(rows(20, start=100))
    sample = rb.sample()
    assert sample.batch_size == torch.Size([8])
    assert INDEX in sample.keys() and sample[INDEX].dtype == torch.int64
    assert torch.equal(sample["id"], sample[INDEX] + 100)
    assert torch.equal(sample["observation"][:, 0], (sample[INDEX] + 100).float())
    assert rb.sample(3).batch_size == torch.Size([3])


def test_sampled_index_and_weight_are_not_stored_again():
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(8), sampler=PrioritizedSampler(8, 1, 1))
    rb.extend(rows(4))
    rb.extend(rb.sample(2))
    assert set(rb.storage.get(torch.arange(6)).keys()) == {"id", "observation"}


def test_multi_dimensional_batches_must_be_flattened_first():
    rb = ReplayBuffer(storage=LazyTensorStorage(10))
    with pytest.raises(ValueError, match=r"batch size \[N\], got \[2, 3\].*reshape\(-1\)"):
        rb.extend(rows(6).reshape(2, 3))
    with pytest.raises(ValueError, match=r"one TensorDict row of batch size \[\], got \[2\]"):
        rb.add(rows(2))
    assert rb.extend(rows(0)).tolist() == [] and len(rb) == 0


def test_sampling_errors_are_explained():
    rb = ReplayBuffer(storage=LazyTensorStorage(10))
    with pytest.raises(ValueError, match="no batch size: pass sample"):
        rb.sample()
    with pytest.raises(RuntimeError, match="cannot sample from an empty ReplayBuffer"):
        rb.sample(4)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        rb.sample(0)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got -2"):
        ReplayBuffer(storage=LazyTensorStorage(10), batch_size=-2)


def test_transform_is_applied_to_sampled_batches():
    rb = ReplayBuffer(
        storage=LazyTensorStorage(5),
        batch_size=4,
        transform=lambda td: td.set("double", td["id"] * 2),
    )
    rb.extend(rows(5))
    sample = rb.sample()
    assert torch.equal(sample["double"], 2 * sample["id"])


def test_update_tensordict_priority_reads_index_and_the_priority_key():
    torch.manual_seed(1)
    sampler = PrioritizedSampler(4, alpha=1.0, beta=1.0, eps=0.0)
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(4), sampler=sampler, batch_size=3)
    rb.extend(rows(4))
    batch = TensorDict({INDEX: torch.tensor([0, 3]), TD_ERROR: torch.tensor([[2.0], [5.0]])}, [2])
    rb.update_tensordict_priority(batch)
    assert sampler._sum_tree.leaves.tolist() == [2.0, 1.0, 1.0, 5.0]
    custom = TensorDictReplayBuffer(
        storage=LazyTensorStorage(4), sampler=PrioritizedSampler(4, 1, 1, eps=0.0),
        priority_key=("loss", "err"),
    )  # fmt: skip
    custom.extend(rows(4))
    custom.update_tensordict_priority(
        TensorDict({INDEX: torch.tensor([1]), "loss": {"err": torch.tensor([7.0])}}, [1])
    )
    assert custom.sampler._sum_tree.leaves.tolist() == [1.0, 7.0, 1.0, 1.0]
    with pytest.raises(KeyError, match="needs \\['td_error'\\]"):
        rb.update_tensordict_priority(TensorDict({INDEX: torch.tensor([1])}, [1]))


def test_empty_forgets_rows_cursor_and_priorities():
    rb = TensorDictReplayBuffer(storage=LazyTensorStorage(4), sampler=PrioritizedSampler(4, 1, 1))
    rb.extend(rows(3))
    rb.update_priority(torch.tensor([0]), 9.0)
    rb.empty()
    assert len(rb) == 0 and rb.writer.cursor == 0
    assert float(rb.sampler._sum_tree.reduce()) == 0.0
    assert rb.extend(rows(2, start=50)).tolist() == [0, 1]
    assert rb.sampler._sum_tree.leaves[:2].tolist() == [1.0, 1.0]


def _filled(sampler, storage=None, max_size: int = 16) -> ReplayBuffer:
    torch.manual_seed(2)
    rb = ReplayBuffer(storage=storage or LazyTensorStorage(max_size), sampler=sampler, batch_size=5)
    rb.extend(rows(12))
    rb.extend(rows(8, start=12))  # wraps: cursor 4
    if isinstance(sampler, PrioritizedSampler):
        rb.update_priority(torch.arange(16), torch.linspace(0.1, 3.0, 16))
    rb.sample()
    return rb


@pytest.mark.parametrize(
    "make_sampler",
    [
        RandomSampler,
        lambda: SamplerWithoutReplacement(drop_last=True),
        lambda: PrioritizedSampler(16, alpha=0.7, beta=0.5),
    ],
    ids=["random", "without_replacement", "prioritized"],
)
def test_state_dict_round_trip_through_a_weights_only_file_resumes_exactly(tmp_path, make_sampler):
    original = _filled(make_sampler())
    torch.save(original.state_dict(), tmp_path / "rb.pt")
    state = torch.load(tmp_path / "rb.pt", weights_only=True)
    restored = ReplayBuffer(storage=LazyTensorStorage(16), sampler=make_sampler(), batch_size=5)
    restored.load_state_dict(state)
    assert len(restored) == 16 and stored_ids(restored) == stored_ids(original)
    rng = torch.get_rng_state()
    expected = [original.sample() for _ in range(4)]
    torch.set_rng_state(rng)
    got = [restored.sample() for _ in range(4)]
    for a, b in zip(expected, got, strict=True):
        assert torch.equal(a[INDEX], b[INDEX]) and torch.equal(a["id"], b["id"])
        if PRIORITY_WEIGHT in a.keys():
            assert torch.equal(a[PRIORITY_WEIGHT], b[PRIORITY_WEIGHT])
    # The writer resumes at the same cursor.
    assert (
        restored.extend(rows(2, start=90)).tolist() == original.extend(rows(2, start=90)).tolist()
    )


@pytest.mark.parametrize("backend", ["torch", "torchsnapshot"])
def test_memmap_buffer_survives_the_trainers_checkpoint_backends(tmp_path, backend):
    original = _filled(
        PrioritizedSampler(16, alpha=0.7, beta=0.5),
        storage=LazyMemmapStorage(16, scratch_dir=tmp_path / "live"),
    )
    path = tmp_path / ("ckpt.pt" if backend == "torch" else "ckpt")
    save_checkpoint({"replay_buffer": original.state_dict()}, path, backend)
    restored = ReplayBuffer(
        storage=LazyMemmapStorage(16, scratch_dir=tmp_path / "restored"),
        sampler=PrioritizedSampler(16, alpha=0.7, beta=0.5),
        batch_size=5,
    )
    restored.load_state_dict(load_checkpoint(path)["replay_buffer"])
    assert stored_ids(restored) == stored_ids(original)
    rng = torch.get_rng_state()
    expected = original.sample()
    torch.set_rng_state(rng)
    assert torch.equal(restored.sample()["id"], expected["id"])


def test_a_reopened_memmap_buffer_samples_its_rows(tmp_path):
    first = ReplayBuffer(
        storage=LazyMemmapStorage(8, scratch_dir=tmp_path),
        sampler=PrioritizedSampler(8, 0.7, 0.5),
    )
    first.extend(rows(5, start=40))
    again = ReplayBuffer(
        storage=LazyMemmapStorage(8, scratch_dir=tmp_path),
        sampler=PrioritizedSampler(8, 0.7, 0.5),
    )
    assert len(again) == 5 and again.writer.cursor == 5
    assert set(again.sample(200)["id"].tolist()) == {40, 41, 42, 43, 44}


def test_make_replay_buffer_builds_what_it_is_asked_for(tmp_path):
    plain = make_replay_buffer("cpu", buffer_size=100, batch_size=32)
    assert isinstance(plain, TensorDictReplayBuffer)
    assert isinstance(plain.storage, LazyTensorStorage) and plain.storage.max_size == 100
    assert isinstance(plain.sampler, RandomSampler) and plain.batch_size == 32
    per = make_replay_buffer(
        "cpu",
        buffer_size=50,
        batch_size=8,
        prioritized=True,
        alpha=0.6,
        beta=0.4,
        memmap=True,
        scratch_dir=tmp_path,
    )
    assert isinstance(per.storage, LazyMemmapStorage) and per.storage.scratch_dir == tmp_path
    assert isinstance(per.sampler, PrioritizedSampler)
    assert (per.sampler.alpha, per.sampler.beta, per.sampler.max_capacity) == (0.6, 0.4, 50)
    with pytest.raises(ValueError, match=r"scratch_dir=.* set memmap=True"):
        make_replay_buffer("cpu", buffer_size=10, batch_size=2, scratch_dir=tmp_path)
