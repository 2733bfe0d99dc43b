"""PPO command lines that name a MuJoCo task get the MuJoCo preset, unless they pick a preset."""

from __future__ import annotations

import pytest

from configs.task_defaults import with_task_preset

ENV = "training_env.create_env_fn.base_env.env_name"
HOPPER = f"{ENV}=Hopper-v5"
PRESET = "+preset=mujoco_ppo"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([HOPPER, "optimizer.lr=0.001"], [PRESET, HOPPER, "optimizer.lr=0.001"]),
        # Hydra's parser takes the overrides as one unbroken run: the preset goes before them.
        (["--multirun", HOPPER], ["--multirun", PRESET, HOPPER]),
        ([HOPPER, "--cfg", "job"], [PRESET, HOPPER, "--cfg", "job"]),
        (["--cfg", "job", HOPPER], ["--cfg", "job", PRESET, HOPPER]),
        (["--info", "config", HOPPER], ["--info", "config", PRESET, HOPPER]),
        ([HOPPER, "-i"], [PRESET, HOPPER, "-i"]),  # --info's value is optional
        # PPO's own config named, or only a search directory added.
        (["-cn", "ppo", HOPPER], ["-cn", "ppo", PRESET, HOPPER]),
        (["--config-dir", "extra", HOPPER], ["--config-dir", "extra", PRESET, HOPPER]),
        # Sweeps over MuJoCo tasks only.
        ([f"{ENV}=Hopper-v5,Walker2d-v4"], [PRESET, f"{ENV}=Hopper-v5,Walker2d-v4"]),
        ([f"{ENV}=choice(Hopper-v5,Ant-v5)"], [PRESET, f"{ENV}=choice(Hopper-v5,Ant-v5)"]),
        (["++" + HOPPER], [PRESET, "++" + HOPPER]),
        # Hydra applies the last value of a key.
        ([f"{ENV}=Pendulum-v1", HOPPER], [PRESET, f"{ENV}=Pendulum-v1", HOPPER]),
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
        ("ppo", [f"{ENV}=Pendulum-v1"]),
        ("ppo", [f"{ENV}=CartPole-v1"]),
        ("ppo", [HOPPER, f"{ENV}=Pendulum-v1"]),
        ("ppo", ["+preset=none", HOPPER]),  # the user's choice of preset stands
        ("ppo", [HOPPER, "+preset=halfcheetah_ppo"]),
        ("ppo", ["-m", f"{ENV}=glob(Hop*)"]),
        ("ppo", ["--config-path", "/runs/a/.hydra", "--config-name", "config", HOPPER]),
        ("ppo", ["-cn", "my_config", HOPPER]),
        ("sac", [HOPPER]),  # SAC's defaults are MuJoCo's already
        ("ppo", [f"{ENV}=[Hopper-v5"]),  # a grammar error: Hydra reports it
    ],
)
def test_other_command_lines_are_left_as_they_are(config_name, args, capsys):
    argv = ["train.py", *args]
    assert with_task_preset(argv, config_name) == argv
    assert capsys.readouterr().err == ""


def test_a_sweep_mixing_mujoco_and_other_tasks_gets_no_preset_and_says_why(capsys):
    argv = ["train.py", "-m", f"{ENV}=Pendulum-v1,Hopper-v5"]
    assert with_task_preset(argv, "ppo") == argv
    assert "mixes MuJoCo and other tasks, so PPO adds no preset" in capsys.readouterr().err
