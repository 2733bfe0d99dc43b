"""What the ``train.py`` entry points share: ``--resume``, readable config errors, the exit note."""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

from configs.overrides import exit_on_unknown_keys
from configs.task_defaults import with_task_preset
from configs.validation import ConfigError
from trainers.trainer.trainer import Trainer

RESUME_FLAG = "--resume"
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def checked_argv(argv: list[str], config_name: str) -> list[str]:
    """``argv`` with ``--resume`` rewritten (:func:`resume_argv`) and the task's preset added
    (:func:`~configs.task_defaults.with_task_preset`), after exiting on unknown keys."""
    argv = with_task_preset(resume_argv(argv), config_name)
    exit_on_unknown_keys(argv, CONF_DIR, config_name)
    return argv


def resume_argv(argv: list[str]) -> list[str]:
    """Rewrites ``--resume RUN_DIR`` into the Hydra arguments that rerun that run's config there.

    The run's composed config (``RUN_DIR/.hydra/config.yaml``) becomes the primary config and
    Hydra runs in ``RUN_DIR`` again, where the trainer finds and loads its checkpoint. Other
    ``key=value`` arguments still apply (e.g. a larger ``trainer.total_frames``).
    """
    if RESUME_FLAG not in argv:
        return argv
    position = argv.index(RESUME_FLAG)
    if position + 1 >= len(argv):
        sys.exit(
            f"{RESUME_FLAG} needs a run directory, e.g. {RESUME_FLAG} outputs/2026-01-01/12-00-00"
        )
    run_dir = Path(argv[position + 1]).resolve()
    config = run_dir / ".hydra" / "config.yaml"
    if not config.is_file():
        sys.exit(
            f"{RESUME_FLAG} {run_dir}: no {config.relative_to(run_dir)} there; is it a run directory?"
        )
    rest = argv[:position] + argv[position + 2 :]
    return [
        rest[0],
        "--config-path",
        str(config.parent),
        "--config-name",
        "config",
        *rest[1:],
        f"hydra.run.dir={run_dir}",
        "hydra.job.chdir=true",
        "hydra.output_subdir=.hydra_resumed",
    ]


@contextlib.contextmanager
def exit_on_config_error() -> Iterator[None]:
    """Prints a :class:`ConfigError` as a short message (no traceback) and exits with code 2.

    Warnings raised while building (e.g. a ``total_frames`` that is not a whole number of
    batches) are printed as ``warning: ...`` lines: issued through ``hydra.utils.instantiate``,
    they would otherwise point at a line of Hydra's code.
    """
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            yield
        for warning in caught:
            if issubclass(warning.category, UserWarning):
                print(f"warning: {warning.message}", file=sys.stderr)
            else:
                warnings.showwarning(
                    warning.message, warning.category, warning.filename, warning.lineno
                )
    except Exception as err:
        cause: BaseException | None = err
        while cause is not None and not isinstance(cause, ConfigError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        sys.exit(2)


def report_stop(trainer: Trainer) -> None:
    """Prints why training stopped and, if it was interrupted, how to resume it."""
    reason = trainer.state.stop_reason
    print(f"stopped at {trainer.state.frames} frames: {reason}", file=sys.stderr)
    if reason and reason.startswith("interrupted") and trainer.save_trainer_file is not None:
        script = Path(sys.argv[0])
        print(f"resume with: python {script} {RESUME_FLAG} {Path.cwd()}", file=sys.stderr)
