"""The pre-Hydra check of command-line keys: unknown ones are named with what exists."""

from __future__ import annotations

import pytest

from configs.cli import CONF_DIR
from configs.overrides import unknown_key_problems


def _problems(algo: str, *args: str) -> list[str]:
    return unknown_key_problems(["train.py", *args], CONF_DIR, algo)


@pytest.mark.parametrize(
    ("algo", "args"),
    [
        ("ppo", ["trainer.total_frames=2000000", "networks.policy_network.num_cells=[256,256]"]),
        ("ppo", ["--multirun", "optimizer.lr=0.0001,0.001", "training_env.num_workers=1,2"]),
        ("ppo", ["+preset=mujoco_ppo", "training_env.create_env_fn.base_env.env_name=Hopper-v5"]),
        ("sac", ["logger=wandb", "logger.offline=false", "logger.exp_name=sac_walker2d"]),
        ("sac", ["replay_buffer.storage.max_size=1000", "target_net_updater.tau=0.01"]),
        ("ppo", ["+training_env.create_env_fn.base_env.env_kwargs.g=9.0", "hydra.run.dir=x"]),
        ("ppo", ["--help", "loss.gamma=0.9"]),  # no run follows: nothing to check
    ],
)
def test_valid_command_lines_pass(algo, args):
    assert _problems(algo, *args) == []


def test_an_unknown_key_names_its_node_and_the_closest_existing_keys():
    (problem,) = _problems("ppo", "loss.gamma=0.9")
    assert problem.startswith("loss.gamma=0.9: unknown key; loss has: clip_epsilon, ")
    assert problem.endswith("did you mean trainer.gamma?")
    (typo,) = _problems("ppo", "optimizer=sgd", "optimizer.momentun=0.9")
    assert "did you mean optimizer.momentum" in typo  # the key of the chosen group option


def test_every_unknown_key_is_reported_once_and_known_ones_are_not():
    problems = _problems("sac", "trainer.utd=1", "optimizer.lr=0.001", "nope.key=1")
    assert len(problems) == 2
    assert (
        problems[0].startswith("trainer.utd=1: unknown key") and "trainer.utd_ratio" in problems[0]
    )
    assert problems[1] == "nope.key=1: unknown key (nope does not exist)"


def test_a_new_key_of_a_free_form_mapping_asks_for_a_leading_plus():
    (problem,) = _problems("ppo", "training_env.create_env_fn.base_env.env_kwargs.g=9.0")
    assert problem.endswith("+training_env.create_env_fn.base_env.env_kwargs.g=9.0")


def test_a_misspelt_group_name_is_an_unknown_key_with_the_group_suggested():
    (problem,) = _problems("ppo", "loger=tensorboard")
    assert problem.startswith("loger=tensorboard: unknown key; the config has: ")
    assert problem.endswith("did you mean logger?")
