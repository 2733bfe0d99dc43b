"""The reference's builders: env factories and a DQN trainer wired by make_trainer."""

from __future__ import annotations

import pickle

import torch

from trainers.collectors import SyncDataCollector
from trainers.envs import RewardSum
from trainers.helpers import (
    make_dqn_loss,
    make_replay_buffer,
    make_trainer,
    parallel_env_constructor,
    transformed_env_constructor,
)
from trainers.modules.builders import make_qvalue_actor


def test_env_constructors_are_picklable_and_build_the_env():
    make = transformed_env_constructor("CartPole-v1", num_envs=2, transforms=[RewardSum()])
    env = pickle.loads(pickle.dumps(make))()
    assert env.batch_size == torch.Size([2])
    assert "episode_reward" in env.reset().keys()
    env.close()
    serial, parallel = make(), parallel_env_constructor("CartPole-v1", num_workers=2)()
    serial.set_seed(3)
    parallel.set_seed(3)
    assert torch.equal(serial.reset()["observation"], parallel.reset()["observation"])
    serial.close()
    parallel.close()


def test_make_trainer_wires_a_dqn_run_on_cartpole():
    torch.manual_seed(0)
    env = transformed_env_constructor("CartPole-v1", num_envs=2)()
    actor = make_qvalue_actor(env, num_cells=[32], epsilon=0.1)
    loss, updater = make_dqn_loss(actor, gamma=0.99, value_network_update_interval=4)
    buffer = make_replay_buffer("cpu", buffer_size=1000, batch_size=32)
    collector = SyncDataCollector(env, actor, frames_per_batch=100, total_frames=300)
    trainer = make_trainer(
        collector=collector,
        loss_module=loss,
        optimizer=torch.optim.Adam(loss.parameters(), lr=1e-3),
        total_frames=300,
        optim_steps_per_batch=5,
        replay_buffer=buffer,
        target_net_updater=updater,
        policy_exploration=actor,
        recorder=transformed_env_constructor("CartPole-v1", num_envs=1)(),
        record_interval=1,
        record_frames=50,
        log_interval=100,
        progress_bar=False,
    )
    trainer.train()
    assert len(buffer) == 300
    assert trainer.state.optim_steps == 15
    assert updater.steps == 15
    assert {"loss_qvalue", "r_training", "episode_return_eval"} <= set(trainer.logged)
