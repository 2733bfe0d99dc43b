"""PPO command lines that name a MuJoCo task get the MuJoCo preset, unless they pick a preset."""

from __future__ import annotations

import pytest

from configs.task_defaults import with_task_preset

HOPPER = "training_env.create_env_fn.base_env.env_name=Hopper-v5"
PRESET = "+preset=mujoco_ppo"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([HOPPER, "optimizer.lr=0.001"], [PRESET, HOPPER, "optimizer.lr=0.001"]),
        # Hydra's parser takes the overrides as one unbroken run: the preset goes before them.
        (["--multirun", HOPPER], ["--multirun", PRESET, HOPPER]),
        ([HOPPER, "--cfg", "job"], [PRESET, HOPPER, "--cfg", "job"]),
        (["--cfg", "job", HOPPER], ["--cfg", "job", PRESET, HOPPER]),
        # A sweep over MuJoCo tasks only.
        (
            ["-m", "training_env.create_env_fn.base_env.env_name=Hopper-v5,Walker2d-v4"],
            ["-m", PRESET, "training_env.create_env_fn.base_env.env_name=Hopper-v5,Walker2d-v4"],
        ),
        (["++" + HOPPER], [PRESET, "++" + HOPPER]),
    ],
)
def test_a_mujoco_task_brings_the_mujoco_preset(args, expected, capsys):
    assert with_task_preset(["train.py", *args], "ppo") == ["train.py", *expected]
    assert "+preset=none keeps the Pendulum-tuned defaults" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("config_name", "args"),
    [
        ("ppo", []),
        ("ppo", ["optimizer.lr=0.001"]),
        ("ppo", ["training_env.create_env_fn.base_env.env_name=Pendulum-v1"]),
        ("ppo", ["training_env.create_env_fn.base_env.env_name=CartPole-v1"]),
        ("ppo", ["+preset=none", HOPPER]),  # the user's choice of preset stands
        ("ppo", [HOPPER, "+preset=halfcheetah_ppo"]),
        ("ppo", ["-m", "training_env.create_env_fn.base_env.env_name=Pendulum-v1,Hopper-v5"]),
        ("ppo", ["--config-path", "/runs/a/.hydra", "--config-name", "config", HOPPER]),
        ("sac", [HOPPER]),  # SAC's defaults are MuJoCo's already
        ("ppo", ["training_env.create_env_fn.base_env.env_name=[Hopper-v5"]),  # Hydra reports it
    ],
)
def test_other_command_lines_are_left_as_they_are(config_name, args, capsys):
    argv = ["train.py", *args]
    assert with_task_preset(argv, config_name) == argv
    assert capsys.readouterr().err == ""
