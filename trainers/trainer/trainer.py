"""The Trainer: an outer loop over collected batches, an inner loop of optimization steps."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Protocol

import torch
from tensordict import TensorDictBase
from torch import nn
from tqdm import tqdm

from trainers import keys
from trainers.trainer.checkpoint import backend_from_env, load_checkpoint, save_checkpoint
from trainers.trainer.denormals import denormals_flushed
from trainers.trainer.metrics import MetricAccumulator
from trainers.trainer.seeding import rng_state, seed_everything, set_rng_state
from trainers.trainer.stages import Stage, StageKind

LOG_PBAR = "log_pbar"


class Stateful(Protocol):
    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: dict[str, Any], /) -> Any: ...


@dataclass
class TrainerState:
    """Counters of one run. Lives on the trainer instance and in every checkpoint."""

    frames: int = 0
    optim_steps: int = 0
    iteration: int = 0
    stop_reason: str | None = None
    frames_at_last_log: int = 0
    frames_at_last_save: int = 0


@dataclass
class _Op:
    fn: Callable[..., Any]
    kwargs: dict[str, Any]


class Trainer:
    """Collects batches, runs hooks and optimization steps, logs and checkpoints.

    The loop, for each batch the collector yields (see ``trainers/trainer/stages.py`` for the
    full table of hook points)::

        pre_epoch -> batch_process -> pre_steps_log -> pre_optim_steps
            -> optim_steps_per_batch x [process_optim_batch -> loss -> post_loss
                                        -> optimizer -> post_optim -> post_optim_log]
            -> post_steps -> post_steps_log -> (log) -> post_epoch -> (save)

    Optimization waits until the collector's ``init_random_frames`` (if any) were collected.

    Args:
        collector: any iterable of TensorDict batches. ``set_seed``, ``update_policy_weights_``,
            ``shutdown``, ``state_dict``/``load_state_dict`` are used when present.
        total_frames: frames (after ``frame_skip``) to train on; > 0.
        frame_skip: env frames per collected frame; >= 1.
        optim_steps_per_batch: optimization steps per collected batch; >= 0.
        loss_module: an ``nn.Module`` or callable TensorDict -> TensorDict; its ``loss*``
            entries are summed for backward, every other scalar entry is logged.
        optimizer: when given, an ``OptimizerHook`` is registered for it.
        logger: a ``trainers.record.loggers.Logger``.
        clip_grad_norm: clip by global norm (True) or by value (False); only if ``clip_norm``.
        clip_norm: the clipping threshold; None disables clipping; > 0.
        progress_bar: show a tqdm bar over frames.
        seed: seeds Python, numpy, torch and the collector.
        save_trainer_interval: frames between two checkpoints; > 0.
        log_interval: frames between two logger writes (values are averaged in between); > 0.
        save_trainer_file: checkpoint path (a file for ``CKPT_BACKEND=torch``, a directory for
            ``CKPT_BACKEND=torchsnapshot``); None disables checkpointing.
        async_collection: the collector fills a replay buffer in the background (algorithm
            trainers use it to pick their hooks).
        flush_denormals: ``train()`` flushes denormal floats to zero on its thread's CPU ops
            and on torch's OpenMP worker threads (``torch.set_flush_denormal`` on each; back to
            torch's default when it returns). Denormals slow CPU arithmetic ~100x; they appear
            in Adam's moments of dead units.

    Examples:
        >>> trainer = Trainer(collector=collector, total_frames=10_000, frame_skip=1,
        ...                   optim_steps_per_batch=4, loss_module=loss, optimizer=optim)
        >>> trainer.register_op("post_steps", lambda: print("batch done"))
        >>> trainer.train()
    """

    def __init__(
        self,
        *,
        collector: Iterable[TensorDictBase],
        total_frames: int,
        frame_skip: int,
        optim_steps_per_batch: int,
        loss_module: nn.Module | Callable[[TensorDictBase], TensorDictBase],
        optimizer: torch.optim.Optimizer | None = None,
        logger: Any | None = None,
        clip_grad_norm: bool = True,
        clip_norm: float | None = None,
        progress_bar: bool = True,
        seed: int | None = None,
        save_trainer_interval: int = 10000,
        log_interval: int = 10000,
        save_trainer_file: str | Path | None = None,
        async_collection: bool = False,
        flush_denormals: bool = True,
    ) -> None:
        _check_positive_int("total_frames", total_frames)
        _check_positive_int("frame_skip", frame_skip)
        _check_positive_int("optim_steps_per_batch", optim_steps_per_batch, allow_zero=True)
        _check_positive_int("save_trainer_interval", save_trainer_interval)
        _check_positive_int("log_interval", log_interval)
        if clip_norm is not None and not clip_norm > 0:
            raise ValueError(f"clip_norm must be > 0 or None (no clipping), got {clip_norm!r}")
        if not callable(loss_module):
            raise TypeError(f"loss_module must be callable, got {type(loss_module).__name__}")
        self.collector = collector
        self.total_frames = total_frames
        self.frame_skip = frame_skip
        self.optim_steps_per_batch = optim_steps_per_batch
        self.loss_module = loss_module
        self.optimizer = optimizer
        self.logger = logger
        self.clip_grad_norm = clip_grad_norm
        self.clip_norm = clip_norm
        self.progress_bar = progress_bar
        self.seed = seed
        self.save_trainer_interval = save_trainer_interval
        self.log_interval = log_interval
        self.save_trainer_file = Path(save_trainer_file) if save_trainer_file else None
        self.async_collection = async_collection
        self.flush_denormals = flush_denormals
        self.state = TrainerState()
        self.logged: dict[str, float] = {}  # the values of the last logger write
        self._ops: dict[Stage, list[_Op]] = {stage: [] for stage in Stage}
        self._modules: dict[str, Stateful] = {}
        self._metrics = MetricAccumulator()
        self._pbar_names: set[str] = set()
        self._bar: tqdm | None = None
        self._interrupted = False

        if isinstance(loss_module, nn.Module):
            self.register_module("loss_module", loss_module)
        if _is_stateful(collector):
            self.register_module("collector", collector)  # type: ignore[arg-type]
        if optimizer is not None:
            from trainers.hooks.optim import OptimizerHook

            OptimizerHook(optimizer).register(self)
        if seed is not None:
            self.set_seed(seed)

    # Registration -------------------------------------------------------------------------

    def register_op(self, dest: str | Stage, op: Callable[..., Any], **kwargs: Any) -> None:
        """Runs ``op`` at stage ``dest`` (see the stage table); ``kwargs`` are passed to it."""
        if not callable(op):
            raise TypeError(f"hook for stage {dest!r} must be callable, got {op!r}")
        self._ops[Stage.parse(dest)].append(_Op(op, kwargs))

    def register_module(self, module_name: str, module: Stateful) -> None:
        """Checkpoints ``module``'s ``state_dict`` under ``module_name``."""
        if module_name in self._modules:
            raise ValueError(
                f"a module named {module_name!r} is already registered; "
                f"registered names: {sorted(self._modules)}"
            )
        if not _is_stateful(module):
            raise TypeError(
                f"module {module_name!r} ({type(module).__name__}) has no "
                "state_dict/load_state_dict, so it cannot be checkpointed"
            )
        self._modules[module_name] = module

    def ops(self, stage: str | Stage) -> list[Callable[..., Any]]:
        """The hooks registered at ``stage``, in call order."""
        return [op.fn for op in self._ops[Stage.parse(stage)]]

    def set_seed(self, seed: int) -> None:
        """Seeds Python, numpy and torch, then the collector when it can be seeded."""
        seed_everything(seed)
        set_seed = getattr(self.collector, "set_seed", None)
        if callable(set_seed):
            set_seed(seed)

    def request_stop(self, reason: str) -> None:
        """Ends training after the current batch (checkpoint and shutdown hooks still run)."""
        if self.state.stop_reason is None:
            self.state.stop_reason = reason

    # The loop -----------------------------------------------------------------------------

    def train(self) -> None:
        """Runs the loop until ``total_frames``, the collector's end, or a stop request."""
        self.state.stop_reason = None
        self._interrupted = False
        try:
            with (
                self._progress_bar(),
                self._graceful_interrupts(),
                denormals_flushed(self.flush_denormals),
            ):
                self._run(Stage.SETUP)
                if self.state.frames < self.total_frames:
                    self._loop()
                if not self._interrupted:
                    # An interrupted run keeps its partial log window in the checkpoint, so
                    # the resumed run writes the same rows as an uninterrupted one would.
                    self._flush_logs()
                self.save_trainer(force=self.save_trainer_file is not None)
        finally:
            self._shutdown()

    def _loop(self) -> None:
        for batch in self.collector:
            self._train_on_batch(batch)
            if self.state.frames >= self.total_frames:
                self.request_stop("total_frames reached")
            if self.state.stop_reason is not None:
                return
        self.request_stop("collector exhausted")

    def _train_on_batch(self, batch: TensorDictBase) -> None:
        state = self.state
        state.iteration += 1
        frames = self._count_frames(batch)
        state.frames += frames
        batch = self._process(Stage.PRE_EPOCH, batch)
        batch = self._process(Stage.BATCH_PROCESS, batch)
        self._collect_logs(Stage.PRE_STEPS_LOG, batch)
        if state.frames >= getattr(self.collector, "init_random_frames", 0):
            self._run(Stage.PRE_OPTIM_STEPS)
            for _ in range(self.optim_steps_per_batch):
                self._optim_step(batch)
            self._run(Stage.POST_STEPS)
        self._collect_logs(Stage.POST_STEPS_LOG, batch)
        if self._bar is not None:
            if state.frames > self._bar.total:  # the last batch ran past total_frames
                self._bar.total = state.frames
            self._bar.update(frames)
        if state.frames - state.frames_at_last_log >= self.log_interval:
            self._flush_logs()
        self._run(Stage.POST_EPOCH)
        # After post_epoch: its state changes (early-stopping patience, evaluation results)
        # belong to this batch's checkpoint.
        self.save_trainer()

    def _optim_step(self, batch: TensorDictBase) -> None:
        self.state.optim_steps += 1
        sub_batch = self._process(Stage.PROCESS_OPTIM_BATCH, batch)
        losses = self._fused_step(sub_batch)
        fused = losses is not None
        if losses is None:
            losses = self.loss_module(sub_batch)
            if not any(str(k).startswith("loss") for k in losses.keys()):
                raise ValueError(
                    f"the loss module {type(self.loss_module).__name__} returned no 'loss*' "
                    f"entry (got keys {sorted(map(str, losses.keys()))}); the trainer sums "
                    "entries whose name starts with 'loss' for backward"
                )
        self._run(Stage.POST_LOSS, sub_batch)
        if not fused:
            self._run(Stage.OPTIMIZER, losses)
        self._metrics.add_tensors(
            {k: v for k, v in losses.items() if isinstance(v, torch.Tensor) and v.numel() == 1}
        )
        self._run(Stage.POST_OPTIM)
        self._collect_logs(Stage.POST_OPTIM_LOG, sub_batch)

    def _fused_step(self, sub_batch: TensorDictBase) -> TensorDictBase | None:
        """The loss and the ``optimizer`` stage computed at once, by a trainer that can do so
        for its default hooks (``SACTrainer(fused_update=True)``); returns the losses, or None:
        the loss and the stage run one by one."""
        del sub_batch
        return None

    def _count_frames(self, batch: TensorDictBase) -> int:
        mask = batch.get(keys.MASK, None)
        valid = int(mask.sum()) if mask is not None else batch.numel()
        return valid * self.frame_skip

    def _run(self, stage: Stage, *args: Any) -> None:
        for op in self._ops[stage]:
            op.fn(*args, **op.kwargs)

    def _process(self, stage: Stage, batch: TensorDictBase) -> TensorDictBase:
        if stage.kind is not StageKind.DATA:
            raise RuntimeError(f"{stage.value} is not a data stage")
        for op in self._ops[stage]:
            out = op.fn(batch, **op.kwargs)
            if out is not None:
                batch = out
        return batch

    def _collect_logs(self, stage: Stage, batch: TensorDictBase) -> None:
        for op in self._ops[stage]:
            out = op.fn(batch, **op.kwargs)
            if out is None:
                continue
            values = dict(out)
            if values.pop(LOG_PBAR, False):
                self._pbar_names.update(values)
            self._metrics.add(values)

    def _flush_logs(self) -> None:
        self.state.frames_at_last_log = self.state.frames
        if not self._metrics:
            return
        values = self._metrics.flush()
        self.logged = values
        if self.logger is not None:
            self.logger.log_scalars(values, step=self.state.frames)
        if self._bar is not None:
            shown = {k: f"{v:.4g}" for k, v in values.items() if k in self._pbar_names}
            self._bar.set_postfix(shown, refresh=False)

    # Checkpointing ------------------------------------------------------------------------

    def save_trainer(self, force: bool = False) -> None:
        """Writes a checkpoint if ``force`` or ``save_trainer_interval`` frames have passed."""
        if self.save_trainer_file is None:
            if force:
                raise ValueError("save_trainer(force=True) needs save_trainer_file to be set")
            return
        due = self.state.frames - self.state.frames_at_last_save >= self.save_trainer_interval
        if not (force or due):
            return
        self.state.frames_at_last_save = self.state.frames
        save_checkpoint(self.state_dict(), self.save_trainer_file, backend_from_env())

    def load_from_file(self, file: str | Path) -> None:
        """Restores a checkpoint written by :meth:`save_trainer`."""
        self.load_state_dict(load_checkpoint(file))

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: counters, modules, hooks, RNGs, pending logs."""
        logger_state = getattr(self.logger, "state_dict", None)
        return {
            "state": asdict(self.state),
            "modules": {name: module.state_dict() for name, module in self._modules.items()},
            "rng": rng_state(),
            "metrics": self._metrics.state_dict(),
            "pbar_names": sorted(self._pbar_names),
            "logger": logger_state() if callable(logger_state) else {},
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        missing = set(self._modules) - set(state_dict["modules"])
        unexpected = set(state_dict["modules"]) - set(self._modules)
        if missing or unexpected:
            raise ValueError(
                "the checkpoint does not match this trainer's registered modules: "
                f"missing {sorted(missing)}, unexpected {sorted(unexpected)}"
            )
        for name, module in self._modules.items():
            module.load_state_dict(state_dict["modules"][name])
        known = {f.name for f in fields(TrainerState)}
        self.state = TrainerState(**{k: v for k, v in state_dict["state"].items() if k in known})
        self._metrics.load_state_dict(state_dict["metrics"])
        self._pbar_names = set(state_dict["pbar_names"])
        load_logger = getattr(self.logger, "load_state_dict", None)
        if callable(load_logger) and state_dict["logger"]:
            load_logger(state_dict["logger"])
        set_rng_state(state_dict["rng"])

    # Lifecycle helpers --------------------------------------------------------------------

    @contextlib.contextmanager
    def _progress_bar(self) -> Iterator[None]:
        if not self.progress_bar:
            yield
            return
        with tqdm(
            total=self.total_frames, initial=self.state.frames, unit="frames", dynamic_ncols=True
        ) as bar:
            self._bar = bar
            try:
                yield
            finally:
                self._bar = None

    @contextlib.contextmanager
    def _graceful_interrupts(self) -> Iterator[None]:
        """First Ctrl-C or SIGTERM: finish the batch, checkpoint, stop. Second Ctrl-C: abort."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def stop(signum: int, frame: Any) -> None:
            del frame
            name = signal.Signals(signum).name
            if self.state.stop_reason is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self._interrupted = True
            self.request_stop(f"interrupted by {name}")
            tqdm.write(
                f"{name} received: stopping after this batch and saving a checkpoint "
                "(press Ctrl-C again to abort at once)."
            )

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _shutdown(self) -> None:
        try:
            self._run(Stage.SHUTDOWN)
        finally:
            shutdown = getattr(self.collector, "shutdown", None)
            if callable(shutdown):
                shutdown()


def _is_stateful(obj: object) -> bool:
    return callable(getattr(obj, "state_dict", None)) and callable(
        getattr(obj, "load_state_dict", None)
    )


def _check_positive_int(name: str, value: Any, *, allow_zero: bool = False) -> None:
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be an integer {bound}, got {value!r}")
