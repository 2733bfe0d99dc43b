"""Trainer construction errors, counters, logging cadence, stopping and shutdown."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from tensordict import TensorDict

from tests.trainer.toy import LinearLoss, ToyCollector, make_toy_trainer
from trainers import EarlyStopping, Trainer, TrainerHookBase


def _trainer(**overrides) -> Trainer:
    kwargs = dict(
        collector=ToyCollector(),
        total_frames=64,
        frame_skip=1,
        optim_steps_per_batch=1,
        loss_module=LinearLoss(),
        progress_bar=False,
    )
    kwargs.update(overrides)
    return Trainer(**kwargs)


class ListLogger:
    def __init__(self):
        self.rows: list[dict] = []

    def log_scalars(self, values, step):
        self.rows.append({"step": step, **values})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("total_frames", 0, "total_frames must be an integer > 0, got 0"),
        ("total_frames", -5, "total_frames must be an integer > 0, got -5"),
        ("frame_skip", 0, "frame_skip must be an integer > 0, got 0"),
        ("clip_norm", 0.0, "clip_norm must be > 0 or None"),
        ("clip_norm", -1.0, "clip_norm must be > 0 or None"),
        ("optim_steps_per_batch", -1, "optim_steps_per_batch must be an integer >= 0"),
        ("log_interval", 0, "log_interval must be an integer > 0"),
        ("save_trainer_interval", 1.5, "save_trainer_interval must be an integer > 0"),
    ],
)
def test_bad_constructor_values_raise_naming_the_setting(name, value, message):
    with pytest.raises(ValueError, match=message):
        _trainer(**{name: value})


def test_unknown_stage_lists_the_valid_ones():
    trainer = _trainer()
    with pytest.raises(ValueError) as err:
        trainer.register_op("post_optimizer", lambda: None)
    text = str(err.value)
    assert "'post_optimizer'" in text
    for stage in ("batch_process", "post_optim", "post_steps_log", "optimizer"):
        assert repr(stage) in text


def test_duplicate_module_name_raises():
    trainer = _trainer()
    with pytest.raises(ValueError, match="'loss_module' is already registered"):
        trainer.register_module("loss_module", LinearLoss())


def test_loss_without_loss_entries_raises_clearly():
    def bad_loss(td):
        return TensorDict({"mse": td["target"].mean()}, [])

    trainer = _trainer(loss_module=bad_loss)
    with pytest.raises(ValueError, match=r"returned no 'loss\*' entry.*'mse'"):
        trainer.train()


def test_frames_count_frame_skip_and_the_validity_mask():
    collector = ToyCollector(frames_per_batch=8, total_frames=32)
    trainer = _trainer(collector=collector, total_frames=64, frame_skip=2, optim_steps_per_batch=0)

    def drop_first_env(batch):
        batch.set(("collector", "mask"), torch.tensor([[False] * 4, [True] * 4]))
        return batch

    # The mask must be present when the batch arrives: wrap the collector's iterator.
    trainer.collector = (drop_first_env(b) for b in collector)
    trainer.train()
    assert trainer.state.frames == 4 * 4 * 2  # 4 batches x 4 valid frames x frame_skip 2
    assert trainer.state.iteration == 4


def test_counters_are_per_instance():
    first, second = make_toy_trainer(total_frames=32), make_toy_trainer(total_frames=16)
    first.train()
    assert second.state.frames == 0 and second.state.optim_steps == 0
    second.train()
    assert (first.state.frames, first.state.optim_steps) == (32, 12)
    assert (second.state.frames, second.state.optim_steps) == (16, 6)


def test_logger_writes_are_throttled_by_log_interval_and_average_in_between():
    logger = ListLogger()
    trainer = _trainer(logger=logger, log_interval=24, total_frames=64)  # batches of 8 frames
    seen: list[float] = []

    def constant_per_batch(batch):
        seen.append(float(len(seen)))
        return {"batch_index": seen[-1]}

    trainer.register_op("pre_steps_log", constant_per_batch)
    trainer.train()
    assert [row["step"] for row in logger.rows] == [24, 48, 64]
    assert [row["batch_index"] for row in logger.rows] == [1.0, 4.0, 6.5]


def test_log_pbar_values_reach_the_progress_bar_and_other_values_do_not(capsys):
    trainer = _trainer(progress_bar=True, log_interval=32, total_frames=32)  # one write
    trainer.register_op(
        "post_steps_log",
        lambda batch: {"pbar_metric": trainer.state.frames / 16, "log_pbar": True},
    )
    trainer.register_op("pre_steps_log", lambda batch: {"hidden_metric": 7.0})
    trainer.train()
    bar = capsys.readouterr().err  # tqdm writes to stderr
    assert trainer.logged["pbar_metric"] == 1.25  # mean of 8/16, 16/16, 24/16, 32/16
    assert "32/32" in bar
    assert "pbar_metric=1.25" in bar
    assert "hidden_metric" not in bar and "loss_mse" not in bar
    assert trainer.logged["hidden_metric"] == 7.0  # logged, just not shown


def test_the_progress_bar_ends_full_when_the_last_batch_runs_past_total_frames(capsys):
    trainer = _trainer(progress_bar=True, total_frames=20)  # batches of 8: stops at 24
    trainer.train()
    bar = capsys.readouterr().err
    assert trainer.state.frames == 24
    assert "24/24" in bar and "100%" in bar


def test_seed_makes_runs_identical_and_different_seeds_differ():
    def final_weights(seed):
        trainer = make_toy_trainer(seed=seed)
        trainer.train()
        return trainer.loss_module.linear.weight.detach().clone()

    assert torch.equal(final_weights(3), final_weights(3))
    assert not torch.equal(final_weights(3), final_weights(4))


def test_request_stop_ends_after_the_current_batch():
    trainer = _trainer()

    class StopAfterTwo(TrainerHookBase):
        def register(self, trainer, name=None):
            self.trainer = trainer
            trainer.register_op("post_steps", self)

        def __call__(self):
            if self.trainer.state.iteration == 2:
                self.trainer.request_stop("enough")

    StopAfterTwo().register(trainer)
    trainer.train()
    assert trainer.state.iteration == 2
    assert trainer.state.stop_reason == "enough"


def test_training_ends_at_total_frames_even_if_the_collector_goes_on():
    trainer = _trainer(collector=ToyCollector(total_frames=-1), total_frames=24)
    trainer.train()
    assert trainer.state.frames == 24
    assert trainer.state.stop_reason == "total_frames reached"


def test_shutdown_hooks_and_collector_shutdown_run_when_a_hook_raises():
    collector = ToyCollector()
    trainer = _trainer(collector=collector)
    calls: list[str] = []
    trainer.register_op("shutdown", lambda: calls.append("shutdown"))

    def explode():
        raise RuntimeError("boom")

    trainer.register_op("post_steps", explode)
    with pytest.raises(RuntimeError, match="boom"):
        trainer.train()
    assert calls == ["shutdown"]
    assert collector.shutdown_calls == 1


def test_sigterm_stops_gracefully_with_a_final_checkpoint(tmp_path):
    trainer = make_toy_trainer(save_file=tmp_path / "ckpt.pt", save_interval=10_000)

    def terminate_at_batch_3():
        if trainer.state.iteration == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    trainer.register_op("post_steps", terminate_at_batch_3)
    previous = signal.getsignal(signal.SIGTERM)
    trainer.train()
    assert trainer.state.iteration == 3
    assert trainer.state.stop_reason == "interrupted by SIGTERM"
    assert (tmp_path / "ckpt.pt").exists()
    assert signal.getsignal(signal.SIGTERM) is previous  # handlers restored


def test_second_ctrl_c_aborts_at_once_and_still_shuts_down():
    trainer = make_toy_trainer()
    calls: list[str] = []
    trainer.register_op("shutdown", lambda: calls.append("shutdown"))

    def interrupt_twice():
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)

    trainer.register_op("post_steps", interrupt_twice)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert calls == ["shutdown"]


def test_early_stopping_stops_at_threshold():
    logger = ListLogger()
    trainer = _trainer(logger=logger, log_interval=8, collector=ToyCollector(total_frames=-1))
    trainer.total_frames = 10_000
    trainer.register_op("pre_steps_log", lambda b: {"score": float(trainer.state.iteration)})
    EarlyStopping("score", threshold=3.0).register(trainer)
    trainer.train()
    assert trainer.state.iteration == 3
    assert trainer.state.stop_reason == "early stopping: score=3 reached target"


def test_early_stopping_patience_counts_logs_without_improvement():
    trainer = _trainer(log_interval=8, collector=ToyCollector(total_frames=-1))
    trainer.total_frames = 10_000
    scores = iter([1.0, 2.0, 2.0, 1.5, 1.9, 5.0])
    trainer.register_op("pre_steps_log", lambda b: {"score": next(scores)})
    EarlyStopping("score", patience=3).register(trainer)
    trainer.train()
    assert trainer.state.iteration == 5
    assert "did not improve for 3 logs" in trainer.state.stop_reason


def test_missing_save_file_with_force_raises():
    with pytest.raises(ValueError, match="save_trainer_file"):
        _trainer().save_trainer(force=True)
