"""Checkpoints: exact resume in a fresh process, atomic writes, clear errors on bad files."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.trainer.toy import make_toy_trainer
from trainers import CheckpointError, TrainerHookBase
from trainers.trainer.checkpoint import load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ["torch", "torchsnapshot"]

RESUME_SCRIPT = """
import sys, torch
from tests.trainer.toy import make_toy_trainer
trainer = make_toy_trainer(total_frames=64, save_file=sys.argv[1])
trainer.load_from_file(sys.argv[1])
assert trainer.state.frames == 32, trainer.state
trainer.train()
torch.save({"params": trainer.loss_module.state_dict(),
            "optim": trainer.optimizer.state_dict(),
            "frames": trainer.state.frames,
            "optim_steps": trainer.state.optim_steps}, sys.argv[2])
"""


def _checkpoint_path(tmp_path: Path, backend: str) -> Path:
    return tmp_path / ("ckpt.pt" if backend == "torch" else "ckpt")


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    monkeypatch.setenv("CKPT_BACKEND", request.param)
    return request.param


def test_resume_in_a_fresh_process_matches_an_uninterrupted_run_bit_for_bit(tmp_path, backend):
    uninterrupted = make_toy_trainer(total_frames=64)
    uninterrupted.train()

    ckpt = _checkpoint_path(tmp_path, backend)
    first_half = make_toy_trainer(total_frames=64, save_file=ckpt, save_interval=1000)
    first_half.register_op(
        "post_steps",
        lambda: first_half.state.frames == 32 and first_half.request_stop("test pause"),
    )
    first_half.train()
    assert first_half.state.frames == 32

    out = tmp_path / "resumed.pt"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CKPT_BACKEND": backend}
    subprocess.run(
        [sys.executable, "-c", RESUME_SCRIPT, str(ckpt), str(out)],
        check=True,
        cwd=ROOT,
        env=env,
    )
    resumed = torch.load(out, weights_only=True)
    assert resumed["frames"] == 64
    assert resumed["optim_steps"] == uninterrupted.state.optim_steps
    for name, value in uninterrupted.loss_module.state_dict().items():
        assert torch.equal(resumed["params"][name], value), name
    reference_optim = uninterrupted.optimizer.state_dict()
    for index, param_state in reference_optim["state"].items():
        for key, value in param_state.items():
            assert torch.equal(resumed["optim"]["state"][index][key], value), (index, key)


def test_checkpoint_holds_counters_modules_hooks_rng_and_loads_weights_only(tmp_path, backend):
    ckpt = _checkpoint_path(tmp_path, backend)
    trainer = make_toy_trainer(total_frames=32, save_file=ckpt)
    trainer.train()
    state = load_checkpoint(ckpt)
    assert state["state"]["frames"] == 32
    assert set(state["modules"]) == {"loss_module", "collector", "optimizer"}
    assert state["modules"]["collector"]["frames"] == 32
    assert {"python", "numpy", "torch"} <= set(state["rng"])
    if backend == "torch":
        payload = torch.load(ckpt, weights_only=True)  # raises if anything needs unpickling
        assert payload["format"] == "trainrl-checkpoint"


def test_periodic_saves_follow_save_trainer_interval(tmp_path, monkeypatch):
    monkeypatch.setenv("CKPT_BACKEND", "torch")
    saves: list[int] = []
    trainer = make_toy_trainer(total_frames=64, save_file=tmp_path / "c.pt", save_interval=24)
    real_save = trainer.save_trainer

    def spy(force=False):
        before = trainer.state.frames_at_last_save
        real_save(force)
        if trainer.state.frames_at_last_save != before or force:
            saves.append(trainer.state.frames)

    trainer.save_trainer = spy  # type: ignore[method-assign]
    trainer.train()
    assert saves == [24, 48, 64]


class _Unpicklable(TrainerHookBase):
    """A hook whose state cannot be serialized: saving it fails half-way."""

    def __init__(self):
        self.fail = False

    def register(self, trainer, name="fragile"):
        trainer.register_module(name, self)

    def state_dict(self):
        return {"ok": torch.ones(3), "bad": (lambda: None) if self.fail else None}

    def load_state_dict(self, state_dict):
        pass


def test_a_crash_during_a_save_leaves_the_previous_checkpoint_loadable(tmp_path, backend):
    ckpt = _checkpoint_path(tmp_path, backend)
    trainer = make_toy_trainer(total_frames=16, save_file=ckpt)
    fragile = _Unpicklable()
    fragile.register(trainer)
    trainer.train()
    assert load_checkpoint(ckpt)["state"]["frames"] == 16

    fragile.fail = True
    trainer.state.frames = 99
    with pytest.raises(Exception):  # noqa: B017 - pickling a lambda fails, type varies
        trainer.save_trainer(force=True)
    assert load_checkpoint(ckpt)["state"]["frames"] == 16


class _PostEpochCounter(TrainerHookBase):
    """Counts the batches whose ``post_epoch`` ran; checkpointed."""

    def __init__(self):
        self.count = 0

    def register(self, trainer, name="post_epoch_counter"):
        trainer.register_module(name, self)
        trainer.register_op("post_epoch", self)

    def __call__(self):
        self.count += 1

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state_dict):
        self.count = state_dict["count"]


def test_a_periodic_checkpoint_holds_the_post_epoch_state_of_its_batch(tmp_path, backend):
    ckpt = _checkpoint_path(tmp_path, backend)
    killed = make_toy_trainer(total_frames=64, save_file=ckpt, save_interval=8)
    _PostEpochCounter().register(killed)

    def kill_at_third_batch(batch):
        if killed.state.iteration == 3:
            raise RuntimeError("killed")

    killed.register_op("pre_epoch", kill_at_third_batch)
    with pytest.raises(RuntimeError, match="killed"):
        killed.train()

    fresh = make_toy_trainer(total_frames=64, save_file=ckpt, save_interval=8)
    counter = _PostEpochCounter()
    counter.register(fresh)
    fresh.load_from_file(ckpt)  # the save written for batch 2
    assert fresh.state.frames == 16
    assert counter.count == 2  # batch 2's post_epoch ran before its checkpoint
    fresh.train()
    assert counter.count == 8  # as in an uninterrupted run of 8 batches


def _temporaries(ckpt: Path) -> list[str]:
    return sorted(p.name for p in ckpt.parent.iterdir() if p.name.startswith(f".{ckpt.name}.tmp-"))


def test_the_next_save_removes_temporaries_left_by_failed_or_killed_saves(tmp_path, backend):
    ckpt = _checkpoint_path(tmp_path, backend)
    trainer = make_toy_trainer(total_frames=16, save_file=ckpt)
    fragile = _Unpicklable()
    fragile.register(trainer)
    fragile.fail = True
    with pytest.raises(Exception):  # noqa: B017 - pickling a lambda fails, type varies
        trainer.save_trainer(force=True)
    assert _temporaries(ckpt) == [f".{ckpt.name}.tmp-{os.getpid()}"]  # the failed save's
    killed_file = tmp_path / f".{ckpt.name}.tmp-999999"  # as if a process was killed mid-save
    killed_file.write_bytes(b"partial")
    killed_dir = tmp_path / f".{ckpt.name}.tmp-999998"
    (killed_dir / "tensors").mkdir(parents=True)
    unrelated = tmp_path / ".other.pt.tmp-999999"  # another checkpoint's: not ours to remove
    unrelated.write_bytes(b"x")

    fragile.fail = False
    trainer.save_trainer(force=True)
    assert _temporaries(ckpt) == []
    assert unrelated.exists()
    assert load_checkpoint(ckpt)["state"]["frames"] == 0


def test_truncated_and_foreign_checkpoint_directories_give_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("CKPT_BACKEND", "torchsnapshot")
    good = tmp_path / "good"
    save_checkpoint({"x": torch.arange(1000.0), "y": torch.ones(3)}, good, "torchsnapshot")

    def fails(path: Path, message: str) -> None:
        with pytest.raises(CheckpointError, match=re.escape(str(path)) + ".*" + message):
            load_checkpoint(path)

    foreign = tmp_path / "foreign"  # a random folder
    foreign.mkdir()
    (foreign / "notes.txt").write_text("hello")
    fails(foreign, "directory without meta.pt")
    with pytest.raises(CheckpointError, match=re.escape(str(foreign))):
        make_toy_trainer(total_frames=8).load_from_file(foreign)

    truncated_meta = tmp_path / "truncated_meta"
    shutil.copytree(good, truncated_meta)
    meta = truncated_meta / "meta.pt"
    meta.write_bytes(meta.read_bytes()[:100])
    fails(truncated_meta, "truncated or foreign")

    foreign_meta = tmp_path / "foreign_meta"
    shutil.copytree(good, foreign_meta)
    torch.save({"model": torch.ones(2)}, foreign_meta / "meta.pt")
    fails(foreign_meta, "not written by trainrl")

    truncated_tensor = tmp_path / "truncated_tensor"
    shutil.copytree(good, truncated_tensor)
    tensor_files = sorted((truncated_tensor / "tensors").glob("*.memmap"))
    big = max(tensor_files, key=lambda f: f.stat().st_size)
    big.write_bytes(big.read_bytes()[:1000])
    fails(truncated_tensor, "truncated: .*has 1000 bytes, 4000 expected")
    assert big.stat().st_size == 1000  # reading did not pad the file with zeros

    no_tensors = tmp_path / "no_tensors"
    shutil.copytree(good, no_tensors)
    shutil.rmtree(no_tensors / "tensors")
    fails(no_tensors, "truncated: .*has 0 bytes")


def test_directory_checkpoint_survives_a_crash_between_the_two_renames(tmp_path):
    ckpt = tmp_path / "ckpt"
    save_checkpoint({"x": torch.arange(3)}, ckpt, "torchsnapshot")
    ckpt.rename(tmp_path / ".ckpt.previous")  # as if killed right after moving the old one
    assert torch.equal(load_checkpoint(ckpt)["x"], torch.arange(3))


def test_directory_backend_loads_large_tensors_memory_mapped_and_small_ones_in_ram(tmp_path):
    big = torch.arange(5_000_000, dtype=torch.float32)  # 20 MB: above MEMMAP_MIN_BYTES
    small = torch.ones(10)
    save_checkpoint({"buffer": {"storage": big}, "p": small}, tmp_path / "ckpt", "torchsnapshot")
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert torch.equal(loaded["buffer"]["storage"], big)
    assert type(loaded["buffer"]["storage"]).__name__ == "MemoryMappedTensor"
    assert type(loaded["p"]) is torch.Tensor and torch.equal(loaded["p"], small)


def test_truncated_and_foreign_files_give_clear_errors(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint({"x": torch.ones(1000)}, good, "torch")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="truncated or foreign"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": torch.ones(2)}, foreign)
    with pytest.raises(CheckpointError, match="not written by trainrl"):
        load_checkpoint(foreign)
    junk = tmp_path / "junk.pt"
    junk.write_text("hello")
    with pytest.raises(CheckpointError, match="truncated or foreign"):
        load_checkpoint(junk)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")


def test_loading_into_a_trainer_with_other_modules_names_the_difference(tmp_path):
    ckpt = tmp_path / "c.pt"
    trainer = make_toy_trainer(total_frames=16, save_file=ckpt)
    trainer.train()
    other = make_toy_trainer(total_frames=16)
    _Unpicklable().register(other, "extra")
    with pytest.raises(ValueError, match=r"missing \['extra'\]"):
        other.load_from_file(ckpt)


def test_unknown_backend_is_rejected(tmp_path, monkeypatch):
    monkeypatch.setenv("CKPT_BACKEND", "pickle")
    trainer = make_toy_trainer(total_frames=8, save_file=tmp_path / "c.pt")
    with pytest.raises(ValueError, match="CKPT_BACKEND='pickle' is not supported"):
        trainer.train()
