"""Storages: lazy allocation, contents, memory-mapped persistence and state round trips."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import torch
from tensordict import TensorDict

from trainers.data import LazyMemmapStorage, LazyTensorStorage
from trainers.data.replay_buffers import storages as storages_module


def rows(n: int, start: int = 0) -> TensorDict:
    ids = torch.arange(start, start + n)
    return TensorDict(
        {
            "id": ids,
            "observation": ids[:, None].float().expand(n, 3).clone(),
            "next": {"reward": -ids[:, None].float(), "done": (ids % 2 == 0)[:, None]},
        },
        batch_size=[n],
    )


@pytest.mark.parametrize("make", [LazyTensorStorage, LazyMemmapStorage])
def test_storage_allocates_on_first_write_and_returns_written_rows(make):
    storage = make(10)
    assert len(storage) == 0 and not storage.is_allocated
    storage.set(torch.tensor([0, 1, 2, 3]), rows(4, start=100))
    assert storage.is_allocated and len(storage) == 4
    got = storage.get(torch.tensor([3, 0]))
    assert got.batch_size == torch.Size([2])
    assert got["id"].tolist() == [103, 100]
    assert got["observation"].tolist() == [[103.0] * 3, [100.0] * 3]
    assert got["next", "reward"].tolist() == [[-103.0], [-100.0]]
    assert got["next", "done"].dtype == torch.bool
    storage.set(7, rows(1, start=7)[0])
    assert len(storage) == 8  # one past the highest written row


def test_tensor_index_get_is_a_copy_not_a_view():
    storage = LazyTensorStorage(4)
    storage.set(torch.arange(4), rows(4))
    got = storage.get(torch.tensor([1]))
    got["id"] += 50
    assert storage.get(torch.tensor([1]))["id"].tolist() == [1]


@pytest.mark.parametrize("make", [LazyTensorStorage, LazyMemmapStorage])
def test_writing_rows_with_other_keys_names_the_difference(make):
    storage = make(4)
    storage.set(torch.arange(2), rows(2))
    with pytest.raises(KeyError, match=r"misses \['id'\] and has extra \['other'\]"):
        storage.set(torch.arange(2), rows(2).exclude("id").set("other", torch.zeros(2)).clone())


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_max_size_is_rejected(bad):
    with pytest.raises(ValueError, match="max_size must be an int >= 1"):
        LazyTensorStorage(bad)


def test_get_before_any_write_explains():
    with pytest.raises(RuntimeError, match="nothing was written"):
        LazyTensorStorage(4).get(torch.tensor([0]))


def test_memmap_storage_lives_in_files_and_reopens_from_its_directory(tmp_path):
    storage = LazyMemmapStorage(6, scratch_dir=tmp_path)
    storage.set(torch.arange(5), rows(5, start=10))
    assert (tmp_path / "storage" / "meta.json").exists()
    # 6 rows of 3 float32: the file holds the whole table, not just the written rows.
    assert (tmp_path / "storage" / "observation.memmap").stat().st_size == 6 * 3 * 4
    reopened = LazyMemmapStorage(6, scratch_dir=tmp_path)
    assert len(reopened) == 5
    assert reopened.get(torch.arange(5))["id"].tolist() == [10, 11, 12, 13, 14]
    assert reopened.get(torch.tensor([4]))["next", "reward"].tolist() == [[-14.0]]


def test_reopening_with_another_max_size_fails_clearly(tmp_path):
    LazyMemmapStorage(6, scratch_dir=tmp_path).set(torch.arange(2), rows(2))
    with pytest.raises(ValueError, match=r"holds a storage of \[6\] rows, but max_size=8"):
        LazyMemmapStorage(8, scratch_dir=tmp_path)


def test_memmap_contents_survive_the_process_that_wrote_them(tmp_path):
    script = textwrap.dedent(
        f"""
        import torch
        from tensordict import TensorDict
        from trainers.data import LazyMemmapStorage, ReplayBuffer
        rb = ReplayBuffer(storage=LazyMemmapStorage(5, scratch_dir={str(tmp_path)!r}))
        ids = torch.arange(7)
        rb.extend(TensorDict({{"id": ids, "x": ids[:, None] * 1.5}}, batch_size=[7]))
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    storage = LazyMemmapStorage(5, scratch_dir=tmp_path)
    assert len(storage) == 5
    # 7 rows into 5 slots: rows 5 and 6 overwrote slots 0 and 1.
    assert storage.get(torch.arange(5))["id"].tolist() == [5, 6, 2, 3, 4]
    assert storage.get(torch.arange(5))["x"].flatten().tolist() == [7.5, 9.0, 3.0, 4.5, 6.0]


# A child process that makes a temporary storage, prints its directory, then waits for stdin.
TEMPORARY_STORAGE_OWNER = textwrap.dedent(
    """
    import sys, torch
    from tensordict import TensorDict
    from trainers.data import LazyMemmapStorage
    storage = LazyMemmapStorage(4)
    storage.set(torch.arange(2), TensorDict({"x": torch.ones(2, 3)}, batch_size=[2]))
    print(storage.scratch_dir, flush=True)
    sys.stdin.read()
    """
)


def test_temporary_storages_of_killed_processes_are_removed_by_the_next_one(tmp_path, monkeypatch):
    def start_owner() -> tuple[subprocess.Popen, Path]:
        owner = subprocess.Popen(
            [sys.executable, "-c", TEMPORARY_STORAGE_OWNER],
            env={**os.environ, "TMPDIR": str(tmp_path)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert owner.stdout is not None
        return owner, Path(owner.stdout.readline().strip())

    killed, orphan = start_owner()
    live, in_use = start_owner()
    killed.kill()  # SIGKILL: no cleanup runs
    killed.wait(timeout=60)
    assert orphan.parent == tmp_path and (orphan / "storage" / "x.memmap").exists()
    unlocked = tmp_path / "trainrl_memmap_unlocked"  # no owner lock: not ours to judge
    unlocked.mkdir()

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    storage = LazyMemmapStorage(4)
    assert not orphan.exists()
    assert (in_use / "storage" / "x.memmap").exists() and unlocked.exists()
    assert storage.scratch_dir.exists()  # made after the sweep, and locked: the next one keeps it
    assert storages_module.remove_orphaned_scratch_dirs(tmp_path) == []

    live.kill()
    live.wait(timeout=60)
    assert storages_module.remove_orphaned_scratch_dirs(tmp_path) == [in_use]
    assert not in_use.exists() and storage.scratch_dir.exists()


def test_memmap_state_dict_shares_the_files_and_loads_weights_only(tmp_path):
    storage = LazyMemmapStorage(4, scratch_dir=tmp_path / "rb")
    storage.set(torch.arange(3), rows(3))
    state = storage.state_dict()
    assert state["len"] == 3
    obs = state["data"]["observation"]
    assert type(obs) is torch.Tensor  # not the MemoryMappedTensor subclass: weights_only
    # No copy: the tensor's memory is the storage file itself.
    assert (
        Path(obs.untyped_storage().filename) == tmp_path / "rb" / "storage" / "observation.memmap"
    )
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    assert loaded["len"] == 3
    assert loaded["data"]["next"]["reward"][:3].flatten().tolist() == [0.0, -1.0, -2.0]


@pytest.mark.parametrize("target", ["tensor", "memmap"])
def test_load_state_dict_copies_a_memory_mapped_checkpoint_chunk_by_chunk(
    tmp_path, monkeypatch, target
):
    source = LazyTensorStorage(50)
    source.set(torch.arange(37), rows(37, start=1000))
    # What a directory checkpoint hands back: the state's tensors, memory-mapped from disk.
    on_disk = TensorDict(source.state_dict()["data"], batch_size=[50]).memmap(tmp_path / "ckpt")
    on_disk = TensorDict.load_memmap(tmp_path / "ckpt")
    monkeypatch.setattr(storages_module, "_COPY_CHUNK_BYTES", 40)  # 3-10 rows per chunk
    storage = (
        LazyTensorStorage(50)
        if target == "tensor"
        else LazyMemmapStorage(50, scratch_dir=tmp_path / "rb")
    )
    storage.load_state_dict({"len": 37, "data": on_disk})
    assert len(storage) == 37
    got = storage.get(torch.arange(37))
    assert torch.equal(got["id"], torch.arange(1000, 1037))
    assert torch.equal(got["next", "done"], rows(37, start=1000)["next", "done"])
    # The loaded rows are the storage's own: the checkpoint files stay untouched by new writes.
    storage.set(torch.tensor([0]), rows(1, start=-1))
    assert int(TensorDict.load_memmap(tmp_path / "ckpt")["id"][0]) == 1000


def test_load_state_dict_rejects_another_size():
    source = LazyTensorStorage(8)
    source.set(torch.arange(2), rows(2))
    with pytest.raises(ValueError, match=r"state of \[8\] rows .*max_size=5"):
        LazyTensorStorage(5).load_state_dict(source.state_dict())


def test_empty_state_round_trip():
    storage = LazyTensorStorage(3)
    storage.load_state_dict(LazyTensorStorage(3).state_dict())
    assert len(storage) == 0 and not storage.is_allocated


def test_state_dict_with_an_empty_nested_table_round_trips():
    storage = LazyTensorStorage(4)
    rows = TensorDict({"x": torch.arange(4.0), "nested": TensorDict({}, [4])}, [4])
    storage.set(torch.arange(4), rows)
    fresh = LazyTensorStorage(4)
    fresh.load_state_dict(storage.state_dict())
    assert torch.equal(fresh.get(torch.arange(4))["x"], torch.arange(4.0))
