"""SACTrainer on Pendulum with tiny budgets, against plain-Python references."""

from __future__ import annotations

import pytest
import torch
from tensordict import TensorDictBase

from tests.algorithms._common import (
    SENTINEL,
    log_windows,
    make_sac,
    record_batches,
    valid_rows,
    window_metrics,
)
from trainers import keys
from trainers.algorithms import SACTrainer
from trainers.data import PrioritizedSampler
from trainers.objectives import SoftUpdate
from trainers.trainer.checkpoint import load_checkpoint
from trainers.trainer.stages import Stage
from trainers.trainer.trainer import TrainerState


def _stored(trainer: SACTrainer) -> TensorDictBase:
    buffer = trainer.replay_buffer
    return buffer.storage.get(torch.arange(len(buffer)))


def test_warmup_batches_are_stored_and_optimization_waits_for_init_random_frames():
    trainer, _ = make_sac(init_random_frames=40, optim_steps_per_batch=3, total_frames=80)
    batches = record_batches(trainer)
    frames_at_step: list[int] = []
    trainer.register_op(Stage.POST_OPTIM, lambda: frames_at_step.append(trainer.state.frames))
    trainer.train()

    # Batches at 20 and 40 frames are random warm-up ones; optimization starts once 40 frames
    # are in, i.e. right after the second warm-up batch.
    assert frames_at_step == [40] * 3 + [60] * 3 + [80] * 3
    assert trainer.state.optim_steps == 9
    assert len(trainer.replay_buffer) == 80
    stored = _stored(trainer).get(keys.OBSERVATION).tolist()
    collected = [row for batch, _ in batches for row in valid_rows(batch, keys.OBSERVATION)]
    assert stored == collected
    assert keys.SAMPLE_LOG_PROB not in batches[0][0].keys()  # the first batch was random


def test_target_networks_take_one_polyak_step_after_each_optimizer_step():
    tau = 0.25
    trainer, _ = make_sac(tau=tau, optim_steps_per_batch=2, total_frames=40)
    loss = trainer.loss_module
    online = dict(loss.qvalue_network.named_parameters())
    target = dict(loss.target_qvalue_network.named_buffers())
    assert set(online) == set(target)
    before: dict[str, list[float]] = {}
    checked: list[int] = []

    def after_optimizer(losses: TensorDictBase) -> None:  # the optimizer stepped; targets not
        del losses
        before.update({name: target[name].flatten().tolist() for name in target})
        before.update({f"online.{n}": p.flatten().tolist() for n, p in online.items()})

    def after_target_update() -> None:
        for name, tensor in target.items():
            old, source = before[name], before[f"online.{name}"]
            expected = [(1 - tau) * t + tau * s for t, s in zip(old, source, strict=True)]
            assert tensor.flatten().tolist() == pytest.approx(expected, rel=1e-5, abs=1e-7)
            assert tensor.flatten().tolist() != old
        checked.append(trainer.state.optim_steps)

    trainer.register_op(Stage.OPTIMIZER, after_optimizer)
    trainer.register_op(Stage.POST_OPTIM, after_target_update)
    trainer.train()
    assert checked == [1, 2, 3, 4]


def test_priorities_follow_the_td_error_of_each_sampled_batch():
    alpha, eps = 0.6, 1e-8
    sampler = PrioritizedSampler(200, alpha=alpha, beta=0.4, eps=eps)
    trainer, _ = make_sac(sampler=sampler, total_frames=60)
    checked: list[int] = []

    def check_priorities(minibatch: TensorDictBase) -> None:  # after the trainer's update
        leaves = sampler.state_dict()["sum_tree"].tolist()
        latest = dict(
            zip(
                minibatch.get(keys.INDEX).tolist(),
                minibatch.get(keys.TD_ERROR).tolist(),
                strict=True,
            )
        )  # a repeated row keeps its last TD error
        for row, td_error in latest.items():
            assert leaves[row] == pytest.approx((td_error + eps) ** alpha, rel=1e-6)
        checked.append(len(latest))

    trainer.register_op(Stage.POST_LOSS, check_priorities)
    trainer.train()
    assert len(checked) == trainer.state.optim_steps == 6
    assert keys.PRIORITY_WEIGHT in trainer.replay_buffer.sample().keys()


def test_padding_frames_reach_neither_the_buffer_nor_the_logs():
    trainer, logger = make_sac(pad=4, total_frames=48)  # 20 frames a batch, 16 of them valid
    batches = record_batches(trainer)
    sampled: list[TensorDictBase] = []
    trainer.register_op(Stage.POST_LOSS, lambda minibatch: sampled.append(minibatch.clone()))
    trainer.train()

    assert trainer.state.frames == 48
    assert len(batches) == 3
    assert len(trainer.replay_buffer) == 48
    stored = _stored(trainer)
    for key in (keys.OBSERVATION, keys.ACTION, keys.NEXT_OBSERVATION, keys.REWARD):
        collected = [row for batch, _ in batches for row in valid_rows(batch, key)]
        assert stored.get(key).reshape(48, -1).tolist() == collected, key
    for minibatch in sampled:
        assert bool((minibatch.get(keys.REWARD) < SENTINEL).all())
    for logged, window in log_windows(logger, batches):
        for name, value in window_metrics(window).items():
            assert logged[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
        assert logged["r_max"] <= 0.0  # Pendulum rewards are <= 0; padding holds SENTINEL


def test_logged_batch_metrics_match_plain_python():
    steps = 2
    trainer, logger = make_sac(
        init_random_frames=40, optim_steps_per_batch=steps, total_frames=80, log_interval=40
    )
    batches = record_batches(trainer)
    trainer.train()

    windows = log_windows(logger, batches)
    assert [len(window) for _, window in windows] == [2, 2]
    for logged, window in windows:
        expected = window_metrics(window)
        assert {"episode_return", "episode_length", "r_training_std"} <= set(expected)
        for name, value in expected.items():
            assert logged[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
    # utd_ratio: optimization steps / collected frames within each log window.
    frames = [f for _, f in batches]
    stepped = [steps * (f >= 40) for f in frames]
    collected = [b - a for a, b in zip([0, *frames], frames, strict=False)]
    assert [logged["utd_ratio"] for logged, _ in windows] == pytest.approx(
        [sum(stepped[:2]) / sum(collected[:2]), sum(stepped[2:]) / sum(collected[2:])]
    )
    assert {"loss_actor", "loss_qvalue", "loss_alpha"} <= set(windows[0][0])


def test_two_trainers_keep_their_own_counters_and_hooks():
    first, _ = make_sac(total_frames=40)
    second, _ = make_sac(total_frames=40)
    for stage in Stage:
        owners_first = {id(getattr(fn, "__self__", fn)) for fn in first.ops(stage)}
        owners_second = {id(getattr(fn, "__self__", fn)) for fn in second.ops(stage)}
        assert owners_first.isdisjoint(owners_second), stage
    first.register_op(Stage.POST_EPOCH, lambda: None)
    assert len(second.ops(Stage.POST_EPOCH)) == len(first.ops(Stage.POST_EPOCH)) - 1
    first.train()

    assert (first.state.frames, first.state.optim_steps) == (40, 4)
    assert second.state == TrainerState()
    assert len(second.replay_buffer) == 0
    assert not hasattr(SACTrainer, "state")
    second.train()
    assert (second.state.frames, second.state.optim_steps) == (40, 4)
    assert len(first.replay_buffer) == len(second.replay_buffer) == 40


def test_a_loss_with_target_networks_needs_a_target_net_updater():
    with pytest.raises(ValueError, match="no target_net_updater was given"):
        make_sac(tau=None)


def test_async_collection_trains_on_what_the_background_thread_writes():
    trainer, logger = make_sac(
        init_random_frames=40, total_frames=120, optim_steps_per_batch=2, async_collection=True
    )
    trainer.train()

    assert trainer.state.frames == 120  # every frame counted once, however batches were grouped
    assert len(trainer.replay_buffer) == 120  # written by the thread, not by the trainer
    # Collection runs one batch ahead at most, so every batch of 20 frames from the one that
    # reaches init_random_frames on gets its 2 updates: batches 2 to 6.
    assert trainer.state.optim_steps == 5 * 2
    names = set().union(*(values for _, values in logger.scalars))
    # Batch metrics come from the sampled batches at post_optim_log in async mode, episode
    # statistics included: the thread stores them.
    logged = {"r_training", "done_percentage", "loss_actor", "loss_qvalue", "utd_ratio"}
    assert logged | {"episode_return", "episode_length"} <= names


def test_async_collection_resumes_with_the_buffer_and_the_frame_count_of_its_checkpoint(
    tmp_path,
):
    ckpt = tmp_path / "ckpt.pt"
    first, _ = make_sac(
        total_frames=60, async_collection=True, save_trainer_file=ckpt, save_trainer_interval=20
    )
    first.train()
    saved = load_checkpoint(ckpt)
    collector_state = saved["modules"]["collector"]
    pending = sum(
        int(torch.Size(batch["batch_size"]).numel()) for batch in collector_state["pending"]
    )
    # Taken at a batch boundary: what the collector counted is in the buffer, and is either
    # counted by the trainer or still to be yielded.
    assert collector_state["collector"]["frames"] == saved["state"]["frames"] + pending
    assert len(first.replay_buffer) == collector_state["collector"]["frames"]

    resumed, _ = make_sac(total_frames=120, async_collection=True, save_trainer_file=ckpt)
    resumed.load_from_file(ckpt)
    assert len(resumed.replay_buffer) == len(first.replay_buffer)
    resumed.train()
    assert resumed.state.frames == 120
    assert len(resumed.replay_buffer) == resumed.collector.frames


def test_async_collection_needs_a_collector_that_fills_the_replay_buffer():
    sync, _ = make_sac()
    with pytest.raises(ValueError, match=r"AsyncReplayCollector\(collector, replay_buffer\)"):
        SACTrainer(
            collector=sync.collector,
            total_frames=80,
            frame_skip=1,
            optim_steps_per_batch=1,
            loss_module=sync.loss_module,
            replay_buffer=sync.replay_buffer,
            target_net_updater=SoftUpdate(sync.loss_module, tau=0.1),
            async_collection=True,
        )
