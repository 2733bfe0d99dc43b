"""ReplayBufferTrainer: flattening, sampling, priority updates, registration in a Trainer."""

from __future__ import annotations

import itertools

import pytest
import torch
from tensordict import TensorDict
from torch import nn

from tests.trainer.toy import ToyCollector
from trainers.data import (
    LazyMemmapStorage,
    LazyTensorStorage,
    PrioritizedSampler,
    SamplerWithoutReplacement,
    TensorDictReplayBuffer,
    make_replay_buffer,
)
from trainers.hooks.replay_buffer import ReplayBufferTrainer
from trainers.keys import INDEX, MASK, TD_ERROR
from trainers.trainer import Stage, Trainer


def collector_batch(num_envs: int = 2, steps: int = 5) -> TensorDict:
    ids = torch.arange(num_envs * steps).reshape(num_envs, steps)
    return TensorDict({"id": ids, "next": {"reward": ids[..., None].float()}}, [num_envs, steps])


def prioritized(max_size: int = 16, batch_size: int = 4) -> TensorDictReplayBuffer:
    return TensorDictReplayBuffer(
        storage=LazyTensorStorage(max_size),
        sampler=PrioritizedSampler(max_size, alpha=1.0, beta=1.0, eps=0.0),
        batch_size=batch_size,
    )


def test_extend_flattens_the_batch_and_returns_it_unchanged():
    rb = make_replay_buffer("cpu", buffer_size=20, batch_size=4)
    hook = ReplayBufferTrainer(rb)
    batch = collector_batch()
    assert hook.extend(batch) is batch
    assert batch.batch_size == torch.Size([2, 5])
    assert rb.storage.get(slice(0, 10))["id"].tolist() == list(range(10))


def test_extend_drops_padding_frames_of_the_collector_mask():
    rb = make_replay_buffer("cpu", buffer_size=20, batch_size=4)
    batch = collector_batch()
    batch[MASK] = torch.tensor([[True] * 5, [True, True, False, False, False]])
    ReplayBufferTrainer(rb).extend(batch)
    assert len(rb) == 7
    assert rb.storage.get(slice(0, 7))["id"].tolist() == [0, 1, 2, 3, 4, 5, 6]


def test_unflattened_batches_must_already_be_flat():
    rb = make_replay_buffer("cpu", buffer_size=20, batch_size=4)
    hook = ReplayBufferTrainer(rb, flatten_tensordicts=False)
    hook.extend(collector_batch().reshape(-1))
    assert len(rb) == 10
    with pytest.raises(ValueError, match=r"reshape\(-1\)"):
        hook.extend(collector_batch())


def test_sample_ignores_its_input_and_uses_the_hooks_batch_size():
    torch.manual_seed(0)
    rb = make_replay_buffer("cpu", buffer_size=20, batch_size=4)
    hook = ReplayBufferTrainer(rb, batch_size=6, device="cpu")
    hook.extend(collector_batch())
    sample = hook.sample(collector_batch())
    assert sample.batch_size == torch.Size([6]) and sample.device == torch.device("cpu")
    assert torch.equal(sample["id"], sample[INDEX])
    assert ReplayBufferTrainer(rb).sample(None).batch_size == torch.Size([4])


def test_iterate_walks_whole_epochs_without_replacement():
    torch.manual_seed(1)
    rb = TensorDictReplayBuffer(
        storage=LazyTensorStorage(10), sampler=SamplerWithoutReplacement(), batch_size=4
    )
    hook = ReplayBufferTrainer(rb, iterate=True)
    hook.extend(collector_batch())
    batches = [hook.sample(None)[INDEX].tolist() for _ in range(6)]
    assert [len(b) for b in batches] == [4, 4, 2, 4, 4, 2]
    for epoch in (batches[:3], batches[3:]):
        assert sorted(itertools.chain(*epoch)) == list(range(10))


def test_update_priority_is_a_no_op_for_uniform_buffers():
    rb = make_replay_buffer("cpu", buffer_size=20, batch_size=4)
    ReplayBufferTrainer(rb).update_priority(TensorDict({}, []))  # no td_error needed


def test_update_priority_from_a_sampled_batch_holding_the_td_error():
    rb = prioritized()
    hook = ReplayBufferTrainer(rb)
    hook.extend(collector_batch())
    sample = hook.sample(None)
    sample[TD_ERROR] = sample["id"].float() + 100
    hook.update_priority(sample)
    leaves = rb.sampler._sum_tree.leaves
    expected = torch.ones(16, dtype=torch.float64)
    expected[10:] = 0.0
    expected[sample[INDEX]] = sample["id"].double() + 100
    assert torch.equal(leaves, expected)


def test_update_priority_from_a_loss_output_holding_only_the_td_error():
    rb = prioritized()
    hook = ReplayBufferTrainer(rb)
    hook.extend(collector_batch())
    sample = hook.sample(None)
    loss_td = TensorDict({"loss_q": torch.tensor(1.0), TD_ERROR: torch.full((4, 1), 7.0)}, [])
    hook.update_priority(loss_td)
    assert rb.sampler._sum_tree[sample[INDEX]].tolist() == [7.0] * 4


def test_update_priority_reads_the_last_sample_when_the_loss_wrote_into_it():
    rb = prioritized()
    hook = ReplayBufferTrainer(rb)
    hook.extend(collector_batch())
    sample = hook.sample(None)
    sample[TD_ERROR] = torch.full((4,), 3.0)  # the loss wrote into the batch it was given
    hook.update_priority(TensorDict({"loss_q": torch.tensor(1.0)}, []))
    assert rb.sampler._sum_tree[sample[INDEX]].tolist() == [3.0] * 4


def test_update_priority_without_any_td_error_explains():
    rb = prioritized()
    hook = ReplayBufferTrainer(rb)
    hook.extend(collector_batch())
    hook.sample(None)
    with pytest.raises(KeyError, match="the loss must write the TD error"):
        hook.update_priority(TensorDict({"loss_q": torch.tensor(1.0)}, []))


def test_memmap_and_max_dims_are_checked(tmp_path):
    with pytest.raises(ValueError, match=r"\(memmap=True\) needs .* LazyMemmapStorage"):
        ReplayBufferTrainer(make_replay_buffer("cpu", buffer_size=8, batch_size=2), memmap=True)
    rb = make_replay_buffer("cpu", buffer_size=8, batch_size=2, memmap=True, scratch_dir=tmp_path)
    assert isinstance(ReplayBufferTrainer(rb, memmap=True).replay_buffer.storage, LazyMemmapStorage)
    with pytest.raises(ValueError, match=r"max_dims=\[2, 5\] is not supported"):
        ReplayBufferTrainer(rb, max_dims=[2, 5])


class TDErrorLoss(nn.Module):
    """Linear regression that writes its absolute error into the batch, as a TD loss does."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 1)

    def forward(self, td: TensorDict) -> TensorDict:
        error = self.linear(td["observation"]) - td["target"]
        td.set(TD_ERROR, error.detach().abs().squeeze(-1))
        return TensorDict({"loss_mse": (error.pow(2) * td["priority_weight"][:, None]).mean()})


def _trainer(rb: TensorDictReplayBuffer, total_frames: int) -> tuple[Trainer, ReplayBufferTrainer]:
    loss = TDErrorLoss()
    trainer = Trainer(
        collector=ToyCollector(frames_per_batch=8, total_frames=total_frames),
        total_frames=total_frames,
        frame_skip=1,
        optim_steps_per_batch=2,
        loss_module=loss,
        optimizer=torch.optim.Adam(loss.parameters(), lr=0.05),
        progress_bar=False,
        seed=3,
    )
    hook = ReplayBufferTrainer(rb)
    hook.register(trainer)
    return trainer, hook


def test_register_attaches_the_three_stages_and_checkpoints_the_buffer():
    rb = prioritized(max_size=64, batch_size=4)
    trainer, hook = _trainer(rb, total_frames=32)
    assert trainer.ops(Stage.BATCH_PROCESS)[-1] == hook.extend
    assert trainer.ops(Stage.PROCESS_OPTIM_BATCH)[-1] == hook.sample
    assert trainer.ops(Stage.POST_LOSS)[-1] == hook.update_priority
    with pytest.raises(ValueError, match="'replay_buffer' is already registered"):
        hook.register(trainer)

    trainer.train()
    assert len(rb) == 32
    leaves = rb.sampler._sum_tree.leaves[:32]
    assert (leaves != 1.0).sum() > 0  # the loss's TD errors reached the priorities
    state = trainer.state_dict()["modules"]["replay_buffer"]
    assert state["storage"]["len"] == 32 and state["writer"]["cursor"] == 32

    restored = prioritized(max_size=64, batch_size=4)
    fresh, _ = _trainer(restored, total_frames=32)
    fresh.load_state_dict(trainer.state_dict())
    rows = torch.arange(32)
    assert torch.equal(restored.storage.get(rows)["target"], rb.storage.get(rows)["target"])
    assert torch.equal(restored.sampler._sum_tree.leaves, rb.sampler._sum_tree.leaves)
