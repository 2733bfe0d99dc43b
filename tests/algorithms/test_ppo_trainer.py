"""PPOTrainer on Pendulum with tiny budgets, against plain-Python references."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from tensordict import TensorDictBase

from tests.algorithms._common import (
    LR,
    NUM_ENVS,
    log_windows,
    make_ppo,
    record_batches,
    window_metrics,
)
from trainers import keys
from trainers.algorithms import PPOTrainer
from trainers.collectors import SyncDataCollector
from trainers.data import (
    LazyTensorStorage,
    PrioritizedSampler,
    RandomSampler,
    ReplayBuffer,
    SamplerWithoutReplacement,
)
from trainers.envs import GymEnv
from trainers.modules import make_tanh_normal_actor, make_value_network
from trainers.objectives import ClipPPOLoss
from trainers.trainer.stages import Stage
from trainers.trainer.trainer import TrainerState

FRAMES_PER_BATCH = 40


def _record_minibatches(trainer: PPOTrainer) -> list[TensorDictBase]:
    minibatches: list[TensorDictBase] = []
    trainer.register_op(Stage.PROCESS_OPTIM_BATCH, lambda mb: minibatches.append(mb.clone()))
    return minibatches


@pytest.mark.parametrize(
    ("batch_size", "num_epochs", "sizes"), [(16, 3, [16, 16, 8]), (20, 2, [20, 20])]
)
def test_each_epoch_visits_every_frame_once(batch_size, num_epochs, sizes):
    trainer, _ = make_ppo(batch_size=batch_size, num_epochs=num_epochs, total_frames=80)
    steps_per_epoch = math.ceil(FRAMES_PER_BATCH / batch_size)
    assert trainer.optim_steps_per_batch == num_epochs * steps_per_epoch
    batches = record_batches(trainer)
    minibatches = _record_minibatches(trainer)
    trainer.train()

    assert len(batches) == 2
    assert trainer.state.optim_steps == 2 * num_epochs * steps_per_epoch
    for i, (batch, _) in enumerate(batches):
        frames = sorted(map(tuple, batch.get(keys.OBSERVATION).reshape(-1, 3).tolist()))
        for epoch in range(num_epochs):
            start = (i * num_epochs + epoch) * steps_per_epoch
            epoch_minibatches = minibatches[start : start + steps_per_epoch]
            assert [mb.numel() for mb in epoch_minibatches] == sizes
            rows = sorted(r for mb in epoch_minibatches for r in mb.get(keys.INDEX).tolist())
            assert rows == list(range(FRAMES_PER_BATCH))
            seen = sorted(
                tuple(row) for mb in epoch_minibatches for row in mb.get(keys.OBSERVATION).tolist()
            )
            assert seen == frames


def test_logged_loss_terms_average_all_steps_of_all_epochs_since_the_last_log():
    num_epochs = 3
    trainer, logger = make_ppo(num_epochs=num_epochs, total_frames=160, log_interval=80)
    steps: list[tuple[int, dict[str, float]]] = []

    def record_losses(losses: TensorDictBase) -> None:
        values = {name: float(value.detach()) for name, value in losses.items()}
        steps.append((trainer.state.frames, values))

    trainer.register_op(Stage.OPTIMIZER, record_losses)
    trainer.train()

    steps_per_epoch = trainer.optim_steps_per_batch // num_epochs
    assert [step for step, _ in logger.scalars] == [80, 160]
    previous = 0
    for step, logged in logger.scalars:
        window = [values for frames, values in steps if previous < frames <= step]
        assert len(window) == 2 * trainer.optim_steps_per_batch
        assert {"loss_objective", "loss_critic", "entropy", "kl_approx"} <= set(window[0])
        for name in window[0]:
            expected = statistics.fmean(values[name] for values in window)
            assert logged[name] == pytest.approx(expected, rel=1e-5, abs=1e-6), name
        # The reference keeps only the last epoch; that would be a different number.
        last_epoch = statistics.fmean(v["loss_critic"] for v in window[-steps_per_epoch:])
        assert logged["loss_critic"] != pytest.approx(last_epoch, rel=1e-3)
        previous = step


def test_anneal_lr_decays_linearly_to_zero_over_total_frames():
    batches = 4
    trainer, logger = make_ppo(total_frames=batches * FRAMES_PER_BATCH, anneal_lr=True)
    used: list[tuple[int, float]] = []
    trainer.register_op(
        Stage.OPTIMIZER,
        lambda losses: used.append(
            (trainer.state.iteration, trainer.optimizer.param_groups[0]["lr"])
        ),
    )
    trainer.train()

    # Logged after each batch's scheduler step: lr0 * (1 - k / batches) after batch k.
    logged = [values["lr"] for _, values in logger.scalars]
    assert logged == pytest.approx([LR * (1 - k / batches) for k in range(1, batches + 1)])
    assert logged[-1] == pytest.approx(0.0, abs=1e-12)
    # Batch k optimizes with the rate set after batch k - 1.
    for iteration, lr in used:
        assert lr == pytest.approx(LR * (1 - (iteration - 1) / batches))
    assert len(used) == batches * trainer.optim_steps_per_batch


def test_anneal_lr_follows_the_frames_counted_when_batches_hold_padding():
    # 2 envs x 20 steps, the last 10 steps of one env padding: 30 frames count per batch, so
    # 120 frames take 4 batches, not the 3 that frames_per_batch alone suggests.
    trainer, logger = make_ppo(total_frames=120, pad=10, anneal_lr=True, log_interval=30)
    trainer.train()
    assert trainer.state.iteration == 4
    logged = [values["lr"] for _, values in logger.scalars]
    assert logged == pytest.approx([LR * (1 - 30 * k / 120) for k in range(1, 5)], abs=1e-9)


def _plain_gae(batch: TensorDictBase, gamma: float, lmbda: float) -> list[list[float]]:
    """GAE per env, backwards over time, in plain Python."""
    reward = batch.get(keys.REWARD).squeeze(-1).tolist()
    value = batch.get(keys.STATE_VALUE).squeeze(-1).tolist()
    next_value = batch.get((keys.NEXT, keys.STATE_VALUE)).squeeze(-1).tolist()
    done = batch.get(keys.DONE).squeeze(-1).tolist()
    terminated = batch.get(keys.TERMINATED).squeeze(-1).tolist()
    advantages = []
    for env in range(len(reward)):
        advantage, row = 0.0, []
        for t in reversed(range(len(reward[env]))):
            bootstrap = 0.0 if terminated[env][t] else gamma * next_value[env][t]
            delta = reward[env][t] + bootstrap - value[env][t]
            advantage = delta + (0.0 if done[env][t] else gamma * lmbda * advantage)
            row.append(advantage)
        advantages.append(row[::-1])
    return advantages


def test_gae_runs_once_per_batch_on_the_num_envs_by_time_batch():
    gamma, lmbda = 0.9, 0.8
    trainer, _ = make_ppo(total_frames=80, gamma=gamma, lmbda=lmbda)
    critic = trainer.loss_module.critic_network
    gae_inputs: list[tuple[int, ...]] = []
    trainer.gae.register_forward_hook(
        lambda module, args, out: gae_inputs.append(tuple(args[0].batch_size))
    )
    after_gae: list[TensorDictBase] = []

    def check_values(batch: TensorDictBase) -> None:
        # GAE used the critic as it is before this batch's optimization steps.
        with torch.no_grad():
            value = critic(batch.select(keys.OBSERVATION).clone()).get(keys.STATE_VALUE)
            next_value = critic(batch.get(keys.NEXT).select(keys.OBSERVATION).clone())
        torch.testing.assert_close(batch.get(keys.STATE_VALUE), value)
        torch.testing.assert_close(
            batch.get((keys.NEXT, keys.STATE_VALUE)), next_value.get(keys.STATE_VALUE)
        )
        after_gae.append(batch.clone())

    trainer.register_op(Stage.BATCH_PROCESS, check_values)
    minibatches = _record_minibatches(trainer)
    trainer.train()

    steps = FRAMES_PER_BATCH // NUM_ENVS
    assert gae_inputs == [(NUM_ENVS, steps), (NUM_ENVS, steps)]
    assert bool(after_gae[0].get(keys.TRUNCATED).any())  # the reference crosses an episode end
    for batch in after_gae:
        advantage = batch.get(keys.ADVANTAGE)
        assert advantage.squeeze(-1).tolist() == [
            pytest.approx(row, rel=1e-4, abs=1e-4) for row in _plain_gae(batch, gamma, lmbda)
        ]
        torch.testing.assert_close(
            batch.get(keys.VALUE_TARGET), advantage + batch.get(keys.STATE_VALUE)
        )
    # Minibatches carry the batch's advantages (no recomputation per minibatch).
    per_batch = trainer.optim_steps_per_batch
    for step, minibatch in enumerate(minibatches):
        flat = after_gae[step // per_batch].reshape(-1)
        index = minibatch.get(keys.INDEX)
        torch.testing.assert_close(minibatch.get(keys.ADVANTAGE), flat.get(keys.ADVANTAGE)[index])


def test_logged_batch_metrics_match_plain_python():
    trainer, logger = make_ppo(total_frames=160, log_interval=80)
    batches = record_batches(trainer)
    trainer.train()

    windows = log_windows(logger, batches)
    assert [len(window) for _, window in windows] == [2, 2]
    for logged, window in windows:
        expected = window_metrics(window)
        assert {"episode_return", "episode_length", "r_training_std"} <= set(expected)
        assert set(expected) <= set(logged)
        for name, value in expected.items():
            assert logged[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name
    # The second window ends 4 episodes in one batch and 2 in the other: episode stats are
    # means over episodes, which differ from means of the per-batch means.
    logged, window = windows[1]
    per_batch = [window_metrics([batch])["episode_return"] for batch in window]
    assert logged["episode_return"] != pytest.approx(statistics.fmean(per_batch), rel=1e-3)


def test_two_trainers_keep_their_own_counters_and_hooks():
    first, _ = make_ppo(total_frames=80)
    second, _ = make_ppo(total_frames=80)
    extra_calls: list[int] = []

    def extra() -> None:
        extra_calls.append(first.state.iteration)

    first.register_op(Stage.POST_EPOCH, extra)
    for stage in Stage:
        owners_first = {id(getattr(fn, "__self__", fn)) for fn in first.ops(stage)}
        owners_second = {id(getattr(fn, "__self__", fn)) for fn in second.ops(stage)}
        assert owners_first.isdisjoint(owners_second), stage
    first.train()

    assert extra_calls == [1, 2]
    assert first.state.frames == 80
    assert second.state == TrainerState()
    assert len(second.replay_buffer) == 0
    assert not hasattr(PPOTrainer, "state")
    second.train()
    assert extra_calls == [1, 2]
    assert (second.state.frames, second.state.optim_steps) == (80, first.state.optim_steps)


def test_a_resumed_run_collects_with_the_loaded_weights_when_the_collector_runs_a_copy(tmp_path):
    """Worker processes, another device and background collection run a copy of the policy
    made when the collector was built; after a resume it must get the loaded weights before
    the first batch, or that batch comes from the weights the run started with."""

    def make(total_frames: int) -> PPOTrainer:
        trainer, _ = make_ppo(total_frames=total_frames, save_trainer_file=tmp_path / "ckpt.pt")
        trainer.collector.use_private_policy_copy()
        return trainer

    straight = make(160)
    straight.train()
    make(80).train()  # saves at its end
    resumed = make(160)
    resumed.load_from_file(tmp_path / "ckpt.pt")
    resumed.train()

    assert resumed.state.frames == straight.state.frames == 160
    expected = straight.loss_module.state_dict()
    for name, value in resumed.loss_module.state_dict().items():
        assert torch.equal(value, expected[name]), name


def test_trains_from_the_given_replay_buffer_and_counts_whole_minibatches_with_drop_last():
    # An empty buffer is falsy (it has a __len__); it must still replace the default one.
    buffer = ReplayBuffer(
        storage=LazyTensorStorage(100),
        sampler=SamplerWithoutReplacement(drop_last=True),
        batch_size=16,
    )
    num_epochs = 2
    trainer, _ = make_ppo(
        replay_buffer=buffer, batch_size=None, num_epochs=num_epochs, total_frames=80
    )
    # 40 frames, minibatches of 16: 2 whole ones per epoch (the last 8 frames are dropped).
    assert trainer.optim_steps_per_batch == num_epochs * (FRAMES_PER_BATCH // 16)
    minibatches = _record_minibatches(trainer)
    trainer.train()
    assert trainer.replay_buffer is buffer
    assert len(buffer) == FRAMES_PER_BATCH
    assert [mb.numel() for mb in minibatches] == [16] * trainer.state.optim_steps
    for first, second in zip(minibatches[::2], minibatches[1::2], strict=True):  # one epoch
        assert set(first.get(keys.INDEX).tolist()).isdisjoint(second.get(keys.INDEX).tolist())


def test_drop_last_with_a_minibatch_larger_than_the_batch_is_rejected():
    buffer = ReplayBuffer(
        storage=LazyTensorStorage(100), sampler=SamplerWithoutReplacement(drop_last=True)
    )
    with pytest.raises(ValueError, match="batch_size=64 is larger than frames_per_batch=40"):
        make_ppo(replay_buffer=buffer, batch_size=64)


def test_rejects_async_collection():
    with pytest.raises(ValueError, match="async_collection=True is not supported"):
        make_ppo(async_collection=True)


@pytest.mark.parametrize(
    "sampler", [RandomSampler(), PrioritizedSampler(FRAMES_PER_BATCH, alpha=0.6, beta=0.4)]
)
def test_rejects_a_replay_buffer_that_samples_with_replacement(sampler):
    buffer = ReplayBuffer(
        storage=LazyTensorStorage(FRAMES_PER_BATCH), sampler=sampler, batch_size=16
    )
    with pytest.raises(ValueError, match="sampled without replacement"):
        make_ppo(replay_buffer=buffer)


def test_rejects_a_loss_whose_own_gae_disagrees_with_the_trainer():
    env = GymEnv("Pendulum-v1")
    actor = make_tanh_normal_actor(env, num_cells=[16])
    critic = make_value_network(env, num_cells=[16])
    collector = SyncDataCollector(env, actor, frames_per_batch=40, total_frames=80)
    common = dict(collector=collector, total_frames=80, batch_size=16, progress_bar=False)
    agreeing = ClipPPOLoss(actor, critic, gamma=0.9, lmbda=0.95)
    PPOTrainer(loss_module=agreeing, gamma=0.9, lmbda=0.95, **common)
    disagreeing = ClipPPOLoss(actor, critic, gamma=0.99, lmbda=0.95)
    with pytest.raises(ValueError, match=r"gamma=0.9, lmbda=0.95, but the loss was built with"):
        PPOTrainer(loss_module=disagreeing, gamma=0.9, lmbda=0.95, **common)
