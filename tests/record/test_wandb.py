"""WandbLogger offline: the values in the run's ``.wandb`` file, and resuming the same run."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import torch

from trainers.record.loggers import WandbLogger

BLOCK_SIZE = 32768  # the .wandb file is a LevelDB-style log of 32 KiB blocks
HEADER_SIZE = 7  # ":W&B", a 2-byte magic number and a version byte


def read_records(path: Path) -> list:
    """Parses every record of a ``run-<id>.wandb`` file (wandb ships no reader for it)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, chunks, pos = [], b"", HEADER_SIZE
    while pos + 7 <= len(data):
        left_in_block = BLOCK_SIZE - pos % BLOCK_SIZE
        if left_in_block < 7:  # block trailer padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunks += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            records.append(wandb_internal_pb2.Record.FromString(chunks))
            chunks = b""
    return records


def read_finished_run(folder: Path, run_id: str, timeout_s: float = 20.0) -> list:
    """The records of a finished run. wandb's service process writes the transaction log
    asynchronously and may complete it shortly after ``run.finish()`` returns: wait for the
    ``exit`` record."""
    deadline = time.monotonic() + timeout_s
    while True:
        records = read_records(folder / f"run-{run_id}.wandb")
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            return records
        if time.monotonic() > deadline:
            raise TimeoutError(f"no exit record in {folder} after {timeout_s} s")
        time.sleep(0.05)


def history(records: list) -> list[dict]:
    rows = []
    for record in records:
        if record.WhichOneof("record_type") == "history":
            rows.append(
                {
                    item.key or "/".join(item.nested_key): json.loads(item.value_json)
                    for item in record.history.item
                }
            )
    return rows


def config(records: list) -> dict:
    updates = {}
    for record in records:
        if record.WhichOneof("record_type") == "config":
            updates.update({item.key: json.loads(item.value_json) for item in record.config.update})
    return updates


def run_folder(save_dir: Path, run_id: str) -> list[Path]:
    """The run's offline folders, oldest first. wandb names a folder ``offline-run-<time>-<id>``
    and appends ``-1``, ``-2``, ... when a folder of that second already exists."""
    wandb_dir = save_dir / "wandb"
    folders = [
        *wandb_dir.glob(f"offline-run-*-{run_id}"),
        *wandb_dir.glob(f"offline-run-*-{run_id}-*"),
    ]
    return sorted(folders)


def test_wandb_offline_values_read_back_and_resume_same_run(tmp_path, monkeypatch):
    logger = WandbLogger("exp", offline=True, save_dir=tmp_path, project="trainrl-tests")
    logger.log_hparams({"optimizer": {"lr": 3e-4}, "env": "Pendulum-v1", "seed": None})
    logger.log_scalars({"r_training": -5.25, "train/loss": 0.5}, step=100)
    logger.log_scalars({"r_training": 2.0, "train/loss": 0.25}, step=200)
    video = torch.zeros(3, 3, 8, 8, dtype=torch.uint8)
    video[1, 0] = 255
    logger.log_video("eval", video, step=300)
    state = logger.state_dict()
    logger.close()

    run_id = state["id"]
    (folder,) = run_folder(tmp_path, run_id)
    records = read_finished_run(folder, run_id)
    rows = history(records)
    logged = [(r["_step"], r["r_training"], r["train/loss"]) for r in rows if "r_training" in r]
    assert logged == [(100, -5.25, 0.5), (200, 2.0, 0.25)]
    assert [(r["_step"], r["eval/_type"]) for r in rows if "eval/_type" in r] == [
        (300, "video-file")
    ]
    assert len(list((folder / "files" / "media" / "videos").glob("eval_*.gif"))) == 1
    assert config(records) == {"optimizer.lr": 3e-4, "env": "Pendulum-v1", "seed": "None"}

    # Resume: offline=False, but WANDB_MODE keeps it offline; the state picks the run id.
    monkeypatch.setenv("WANDB_MODE", "offline")
    resumed = WandbLogger("exp", save_dir=tmp_path, project="trainrl-tests")
    resumed.load_state_dict(state)
    resumed.log_scalar("r_training", 3.0, step=400)
    assert resumed.experiment.id == run_id
    resumed.close()
    folders = run_folder(tmp_path, run_id)
    assert len(folders) == 2
    new_rows = history(read_finished_run(folders[-1], run_id))
    assert [(r["_step"], r["r_training"]) for r in new_rows] == [(400, 3.0)]
