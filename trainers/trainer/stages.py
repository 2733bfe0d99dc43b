"""The points of the training loop where hooks run.

| stage | when it fires | a hook receives | its return |
| --- | --- | --- | --- |
| ``setup`` | once, before the first batch (after a checkpoint is loaded) | nothing | ignored |
| ``pre_epoch`` | each collected batch, before ``batch_process`` | the raw batch | the batch to use (or None: keep) |
| ``batch_process`` | each collected batch | the batch | the batch to use (or None: keep) |
| ``pre_steps_log`` | after ``batch_process`` | the batch | a dict to log, or None |
| ``pre_optim_steps`` | before the optimization steps of a batch (skipped during warm-up) | nothing | ignored |
| ``process_optim_batch`` | each optimization step, before the loss | the batch | the sub-batch for the loss |
| ``post_loss`` | after the loss forward | the sub-batch (the loss may have written ``td_error`` into it) | ignored |
| ``optimizer`` | after ``post_loss``: backward, clip, step, zero_grad | the loss TensorDict | ignored |
| ``post_optim`` | after the optimizer step | nothing | ignored |
| ``post_optim_log`` | after ``post_optim`` | the sub-batch | a dict to log, or None |
| ``post_steps`` | after all optimization steps of a batch (skipped during warm-up) | nothing | ignored |
| ``post_steps_log`` | after ``post_steps`` | the batch | a dict to log, or None |
| ``post_epoch`` | at the end of each batch iteration (after logging; the periodic checkpoint follows it) | nothing | ignored |
| ``shutdown`` | once, when training ends for any reason (also on errors and Ctrl-C) | nothing | ignored |

A logging hook's dict may hold the reserved key ``"log_pbar"`` (bool): its values are then also
shown on the progress bar.
"""

from __future__ import annotations

from enum import Enum


class StageKind(Enum):
    """What a stage's hooks receive and what their return means."""

    DATA = "data"  # TensorDict in, TensorDict (or None) out
    LOGGING = "logging"  # TensorDict in, dict or None out
    OPERATION = "operation"  # no input; return ignored
    INSPECT = "inspect"  # TensorDict in; return ignored


class Stage(str, Enum):
    """Hook points, named as in the reference trainer."""

    SETUP = "setup"
    PRE_EPOCH = "pre_epoch"
    BATCH_PROCESS = "batch_process"
    PRE_STEPS_LOG = "pre_steps_log"
    PRE_OPTIM_STEPS = "pre_optim_steps"
    PROCESS_OPTIM_BATCH = "process_optim_batch"
    POST_LOSS = "post_loss"
    OPTIMIZER = "optimizer"
    POST_OPTIM = "post_optim"
    POST_OPTIM_LOG = "post_optim_log"
    POST_STEPS = "post_steps"
    POST_STEPS_LOG = "post_steps_log"
    POST_EPOCH = "post_epoch"
    SHUTDOWN = "shutdown"

    @property
    def kind(self) -> StageKind:
        return _KINDS[self]

    @classmethod
    def parse(cls, name: str | Stage) -> Stage:
        """Returns the stage called ``name``; an unknown name raises, listing the valid ones."""
        try:
            return cls(name)
        except ValueError:
            valid = ", ".join(repr(s.value) for s in cls)
            raise ValueError(f"unknown hook stage {name!r}; valid stages are: {valid}") from None


_KINDS = {
    Stage.SETUP: StageKind.OPERATION,
    Stage.PRE_EPOCH: StageKind.DATA,
    Stage.BATCH_PROCESS: StageKind.DATA,
    Stage.PRE_STEPS_LOG: StageKind.LOGGING,
    Stage.PRE_OPTIM_STEPS: StageKind.OPERATION,
    Stage.PROCESS_OPTIM_BATCH: StageKind.DATA,
    Stage.POST_LOSS: StageKind.INSPECT,
    Stage.OPTIMIZER: StageKind.INSPECT,
    Stage.POST_OPTIM: StageKind.OPERATION,
    Stage.POST_OPTIM_LOG: StageKind.LOGGING,
    Stage.POST_STEPS: StageKind.OPERATION,
    Stage.POST_STEPS_LOG: StageKind.LOGGING,
    Stage.POST_EPOCH: StageKind.OPERATION,
    Stage.SHUTDOWN: StageKind.OPERATION,
}
