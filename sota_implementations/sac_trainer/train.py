"""Train SAC: ``python sota_implementations/sac_trainer/train.py [key=value ...]``.

The config is ``conf/sac.yaml`` (see ``--help``); ``--resume RUN_DIR`` continues a stopped run.
"""

import sys

import hydra
from omegaconf import DictConfig

from configs.cli import checked_argv, exit_on_config_error, report_stop  # also registers configs


@hydra.main(config_path="../../conf", config_name="sac", version_base=None)
def main(cfg: DictConfig) -> None:
    with exit_on_config_error():
        trainer = hydra.utils.instantiate(cfg.trainer)
    trainer.train()
    report_stop(trainer)


if __name__ == "__main__":
    sys.argv = checked_argv(sys.argv, "sac")
    main()
