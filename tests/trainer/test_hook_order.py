"""The exact order of hook calls, and what each kind of hook receives and may return."""

from __future__ import annotations

import torch
from tensordict import TensorDict

from tests.trainer.toy import LinearLoss, ToyCollector
from trainers import Stage, Trainer

GOLDEN_2_BATCHES_2_STEPS = [
    "setup",
    # batch 1
    "pre_epoch", "batch_process", "pre_steps_log", "pre_optim_steps",
    "process_optim_batch", "post_loss", "optimizer", "post_optim", "post_optim_log",
    "process_optim_batch", "post_loss", "optimizer", "post_optim", "post_optim_log",
    "post_steps", "post_steps_log", "post_epoch",
    # batch 2
    "pre_epoch", "batch_process", "pre_steps_log", "pre_optim_steps",
    "process_optim_batch", "post_loss", "optimizer", "post_optim", "post_optim_log",
    "process_optim_batch", "post_loss", "optimizer", "post_optim", "post_optim_log",
    "post_steps", "post_steps_log", "post_epoch",
    "shutdown",
]  # fmt: skip


def _recording_trainer(calls: list[str], optim_steps: int = 2, **kwargs) -> Trainer:
    loss = LinearLoss()
    trainer = Trainer(
        collector=ToyCollector(frames_per_batch=8, total_frames=16),
        total_frames=16,
        frame_skip=1,
        optim_steps_per_batch=optim_steps,
        loss_module=loss,
        progress_bar=False,
        **kwargs,
    )
    for stage in Stage:

        def record(*args, _stage=stage):
            calls.append(_stage.value)
            if _stage is Stage.OPTIMIZER:
                args[0]["loss_mse"].backward()

        trainer.register_op(stage, record)
    return trainer


def test_golden_hook_order_two_batches_two_optim_steps():
    calls: list[str] = []
    _recording_trainer(calls).train()
    assert calls == GOLDEN_2_BATCHES_2_STEPS


class _RecordsCheckpoints:
    """A checkpointed module that notes each checkpoint (its state_dict is read for each)."""

    def __init__(self, calls: list[str]):
        self.calls = calls

    def state_dict(self):
        self.calls.append("checkpoint")
        return {}

    def load_state_dict(self, state_dict):
        del state_dict


def test_periodic_checkpoints_are_written_after_post_epoch(tmp_path, monkeypatch):
    monkeypatch.setenv("CKPT_BACKEND", "torch")
    calls: list[str] = []
    trainer = _recording_trainer(
        calls, save_trainer_file=tmp_path / "c.pt", save_trainer_interval=8
    )
    trainer.register_module("records_checkpoints", _RecordsCheckpoints(calls))
    trainer.train()
    expected: list[str] = []
    for stage in GOLDEN_2_BATCHES_2_STEPS:
        if stage == "shutdown":
            expected.append("checkpoint")  # the final one, forced at the end of training
        expected.append(stage)
        if stage == "post_epoch":
            expected.append("checkpoint")  # every 8 frames: each batch
    assert calls == expected


def test_hook_order_matches_reference_loop_built_independently():
    """Builds the expected sequence from the reference's loop description, for 3 steps."""
    calls: list[str] = []
    _recording_trainer(calls, optim_steps=3).train()
    per_step = ["process_optim_batch", "post_loss", "optimizer", "post_optim", "post_optim_log"]
    per_batch = ["pre_epoch", "batch_process", "pre_steps_log", "pre_optim_steps"]
    per_batch += per_step * 3 + ["post_steps", "post_steps_log", "post_epoch"]
    assert calls == ["setup", *per_batch, *per_batch, "shutdown"]
    # The 10 reference stages appear in the reference's relative order within one batch.
    reference = [
        "batch_process", "pre_steps_log", "pre_optim_steps", "process_optim_batch",
        "post_loss", "optimizer", "post_optim", "post_optim_log", "post_steps", "post_steps_log",
    ]  # fmt: skip
    first_batch = calls[1 : 1 + len(per_batch)]
    positions = [first_batch.index(stage) for stage in reference]
    assert positions == sorted(positions)


def test_data_hooks_replace_or_keep_the_batch_and_log_hooks_return_dicts():
    seen: dict[str, object] = {}
    logs: list[dict] = []

    class ListLogger:
        def log_scalars(self, values, step):
            logs.append({"step": step, **values})

    loss = LinearLoss()
    trainer = Trainer(
        collector=ToyCollector(frames_per_batch=8, total_frames=8),
        total_frames=8,
        frame_skip=1,
        optim_steps_per_batch=1,
        loss_module=loss,
        optimizer=torch.optim.SGD(loss.parameters(), lr=0.0),
        logger=ListLogger(),
        progress_bar=False,
        log_interval=1,
    )
    trainer.register_op("batch_process", lambda batch: None)  # None keeps the batch
    trainer.register_op("batch_process", lambda batch: batch.set("marker", torch.ones(2, 4)))

    def sub_batch(batch):
        return batch[0, :2]

    trainer.register_op("process_optim_batch", sub_batch)
    trainer.register_op("post_loss", lambda td: seen.setdefault("post_loss", td))
    trainer.register_op("pre_steps_log", lambda batch: {"marker_sum": batch["marker"].sum()})
    trainer.register_op("post_steps_log", lambda batch: None)
    trainer.register_op("post_optim_log", lambda sub: {"sub_size": sub.numel(), "log_pbar": True})
    trainer.train()
    assert seen["post_loss"].batch_size == torch.Size([2])
    assert "marker" in seen["post_loss"].keys()
    assert logs[-1]["marker_sum"] == 8.0
    assert logs[-1]["sub_size"] == 2.0
    assert "log_pbar" not in logs[-1]
    assert logs[-1]["step"] == 8
    # Loss terms and diagnostics are logged as averages over the optimization steps.
    assert {"loss_mse", "pred_mean"} <= set(logs[-1])


def test_kwargs_given_to_register_op_reach_the_hook():
    got: list[int] = []
    trainer = Trainer(
        collector=ToyCollector(frames_per_batch=8, total_frames=8),
        total_frames=8,
        frame_skip=1,
        optim_steps_per_batch=0,
        loss_module=LinearLoss(),
        progress_bar=False,
    )
    trainer.register_op("post_epoch", lambda scale: got.append(scale), scale=3)
    trainer.train()
    assert got == [3]


def test_optimization_waits_for_the_collectors_random_warmup_frames():
    calls: list[str] = []
    trainer = _recording_trainer(calls)
    trainer.collector.init_random_frames = 16  # type: ignore[attr-defined]
    trainer.total_frames = 24
    trainer.collector.total_frames = 24  # type: ignore[attr-defined]
    trainer.train()
    batches = [i for i, c in enumerate(calls) if c == "pre_epoch"]
    assert len(batches) == 3
    first = calls[batches[0] : batches[1]]
    second = calls[batches[1] : batches[2]]
    assert "optimizer" not in first  # 8 frames < 16
    assert second.count("optimizer") == 2  # 16 frames reached


def test_the_returned_loss_td_reaches_the_optimizer_stage():
    got: list[TensorDict] = []
    trainer = Trainer(
        collector=ToyCollector(frames_per_batch=8, total_frames=8),
        total_frames=8,
        frame_skip=1,
        optim_steps_per_batch=1,
        loss_module=LinearLoss(),
        progress_bar=False,
    )
    trainer.register_op("optimizer", got.append)
    trainer.train()
    assert set(got[0].keys()) == {"loss_mse", "pred_mean"}
