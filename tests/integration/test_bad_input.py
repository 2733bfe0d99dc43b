"""Bad command-line input fails fast with one readable message naming key, value, allowed."""

from __future__ import annotations

import time

import pytest

from tests.integration.runner import resume_train, run_train

CASES = [
    (
        ["optimizer.lr=-0.001"],
        ["optimizer.lr=-0.001: allowed is a number > 0"],
    ),
    (
        ["collector.frames_per_batch=0"],
        ["collector.frames_per_batch=0: allowed is a number >= 1"],
    ),
    (
        ["training_env.create_env_fn.base_env.env_name=HalfCheetah-v9"],
        ["training_env.create_env_fn.base_env.env_name", "HalfCheetah-v9", "HalfCheetah-v5"],
    ),
    (
        ["trainer.num_epoch=3"],  # typo of num_epochs
        ["trainer.num_epoch=3: unknown key; trainer has: ", "did you mean trainer.num_epochs?"],
    ),
    (
        ["loss.gamma=0.9"],  # PPO's gamma belongs to the trainer (GAE runs there)
        ["loss.gamma=0.9: unknown key", "did you mean trainer.gamma?"],
    ),
    (
        ["optimizer.lr=fast"],
        ["Value 'fast' of type 'str' could not be converted to Float", "optimizer.lr"],
    ),
    (
        ["logger=csvv"],
        ["Could not find 'logger/csvv'", "Available options in 'logger':\n\tcsv\n\tmlflow"],
    ),
    (
        ["collector.frames_per_batch=1001"],
        ["collector.frames_per_batch=1001 is not a multiple of training_env.num_workers=8"],
    ),
    (
        ["replay_buffer.batch_size=4096"],
        ["replay_buffer.batch_size=4096 is larger than collector.frames_per_batch=2000"],
    ),
    (
        ["networks.policy_network.num_cells=[64,0]", "trainer.gamma=1.5"],
        [
            "networks.policy_network.num_cells=[64, 0]: allowed is a non-empty list",
            "trainer.gamma=1.5: allowed is a number in [0, 1]",
        ],
    ),
    (
        ["trainer.frame_skip=2"],
        ["trainer.frame_skip=2 differs from training_env.create_env_fn.base_env.frame_skip=1"],
    ),
    (
        ["trainer.device=gpu"],
        ["trainer.device='gpu': allowed is a torch device: cpu, cuda or cuda:N"],
    ),
    (
        ["trainer.seed=-1"],
        ["trainer.seed=-1: allowed is a number >= 0"],
    ),
    (
        ["optimizer.betas=[0.9]"],
        ["optimizer.betas=[0.9]: allowed is two numbers in [0, 1)"],
    ),
    (
        ["networks.policy_network.activation_class=sigmoid"],
        ["networks.policy_network.activation_class='sigmoid': allowed is one of 'tanh'"],
    ),
]


@pytest.mark.parametrize(("overrides", "expected"), CASES, ids=lambda v: str(v)[:40])
def test_bad_input_fails_fast_with_a_readable_message(tmp_path, overrides, expected):
    start = time.monotonic()
    result = run_train("ppo", tmp_path / "run", *overrides, tiny=False, timeout=60)
    elapsed = time.monotonic() - start
    assert result.returncode != 0
    for fragment in expected:
        assert fragment in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert elapsed < 30
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_sac_names_the_buffer_options_for_a_sampler_given_as_a_string(tmp_path):
    result = run_train("sac", tmp_path / "run", "replay_buffer.sampler=prioritized", timeout=60)
    assert result.returncode == 2, result.stderr
    assert "replay_buffer.sampler='prioritized': allowed is a config node" in result.stderr
    assert "replay_buffer=off_policy|prioritized|memmap" in result.stderr


def test_async_collection_needs_the_in_process_collector(tmp_path):
    result = run_train(
        "sac", tmp_path / "run", "trainer.async_collection=true", "collector=multi_sync",
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "trainer.async_collection=true needs collector=sync" in result.stderr


def test_zero_env_workers_is_a_range_error_not_a_crash(tmp_path):
    result = run_train("ppo", tmp_path / "run", "training_env.num_workers=0", timeout=60)
    assert result.returncode == 2, result.stderr
    assert "training_env.num_workers=0: allowed is a number >= 1" in result.stderr
    assert "Traceback" not in result.stderr


def test_sac_rejects_warmup_longer_than_training(tmp_path):
    result = run_train(
        "sac", tmp_path / "run", "trainer.total_frames=1000", "collector.init_random_frames=5000",
        tiny=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "collector.init_random_frames=5000 must be < trainer.total_frames=1000" in result.stderr


def test_resume_checks_new_overrides_like_a_fresh_run(tmp_path):
    run_dir = tmp_path / "run"
    assert run_train("ppo", run_dir).returncode == 0
    for overrides, expected in (
        (["optimizer.lr=-1"], "optimizer.lr=-1: allowed is a number > 0"),
        (["optimizer.lr=fast"], "optimizer.lr: Value 'fast' of type 'str' could not be converted"),
        (["trainer.total_frames=0"], "trainer.total_frames=0: allowed is a number >= 1"),
    ):
        result = resume_train("ppo", run_dir, *overrides, timeout=60)
        assert result.returncode == 2, result.stderr
        assert expected in result.stderr
        assert "Traceback" not in result.stderr


def test_a_run_directory_holding_another_configs_checkpoint_is_a_config_error(tmp_path):
    run_dir = tmp_path / "run"
    assert run_train("ppo", run_dir).returncode == 0
    result = run_train(
        "ppo", run_dir, "networks.policy_network.num_cells=[8]", timeout=60
    )  # the same directory, other networks: its checkpoint cannot be loaded
    assert result.returncode == 2, result.stderr
    assert "trainer.resume=true" in result.stderr
    assert "was written by a run with another configuration" in result.stderr
    assert "trainer.resume=false" in result.stderr
    assert "Traceback" not in result.stderr
