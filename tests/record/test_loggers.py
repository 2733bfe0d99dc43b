"""CSV and TensorBoard loggers, get_logger and the shared helpers, read back from disk."""

from __future__ import annotations

import csv
import enum
import io
import re
import time
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image, ImageSequence

from trainers.record.loggers import (
    CSVLogger,
    Logger,
    TensorboardLogger,
    generate_exp_name,
    get_logger,
)
from trainers.record.loggers.utils import flatten_hparams, safe_relpath, video_frames

CFG = {
    "optimizer": {"lr": 3e-4, "betas": [0.9, 0.999]},
    "trainer": {"total_frames": 1000, "clip_grad_norm": True, "save_trainer_file": None},
    "env": "Pendulum-v1",
}
FLAT_CFG = {
    "optimizer.lr": 3e-4,
    "optimizer.betas": "[0.9, 0.999]",
    "trainer.total_frames": 1000,
    "trainer.clip_grad_norm": True,
    "trainer.save_trainer_file": "None",
    "env": "Pendulum-v1",
}


def read_rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as file:
        return list(csv.reader(file))


def wait_for_next_second() -> None:
    """TensorBoard event files sort by their name, which starts with the time in seconds: a
    resumed logger's file must be named after the earlier one's."""
    time.sleep(1 - time.time() % 1 + 0.01)


def solid_video(colors: list[tuple[int, int, int]], size: int = 6) -> torch.Tensor:
    """A [T, 3, size, size] uint8 video whose frame t is filled with colors[t]."""
    video = torch.tensor(colors, dtype=torch.uint8)[:, :, None, None]
    return video.expand(-1, -1, size, size).contiguous()


def gif_colors(data: bytes) -> list[tuple[int, int, int]]:
    """The colour of pixel (0, 0) of each frame of a GIF."""
    frames = ImageSequence.Iterator(Image.open(io.BytesIO(data)))
    return [frame.convert("RGB").getpixel((0, 0)) for frame in frames]


COLORS = [(0, 0, 0), (255, 0, 0), (0, 255, 0), (0, 0, 255)]
# Steps 1..5 logged with value = step, a checkpoint at step 3, steps 4..6 logged again after the
# resume with value = 10 * step: what the resume tests read back, each step once.
RESUMED_CURVE = [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0), (5, 50.0), (6, 60.0)]


# --- helpers -------------------------------------------------------------------------------


def test_flatten_hparams_dotted_keys_and_stringified_leaves():
    nested = {**CFG, "empty": {}, "tensor": torch.tensor(2.5), "path": Path("a/b")}
    assert flatten_hparams(nested) == {**FLAT_CFG, "empty": "{}", "tensor": 2.5, "path": "a/b"}


def test_flatten_hparams_stringifies_enums_so_logger_state_loads_weights_only(tmp_path):
    class Mode(str, enum.Enum):
        FAST = "fast"

    class Level(enum.IntEnum):
        HIGH = 3

    cfg = {"mode": Mode.FAST, "level": Level.HIGH, "lr": 3e-4}
    flat = flatten_hparams(cfg)
    assert {key: type(value) for key, value in flat.items()} == {
        "mode": str,
        "level": str,
        "lr": float,
    }
    with TensorboardLogger("run", log_dir=tmp_path) as logger:
        logger.log_hparams(cfg)
        buffer = io.BytesIO()
        torch.save(logger.state_dict(), buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True)["hparams"] == flat


def test_safe_relpath_keeps_slashes_as_folders_and_never_escapes():
    assert safe_relpath("train/loss actor").as_posix() == "train/loss_actor"
    assert safe_relpath("../../etc/passwd").as_posix() == "__/__/etc/passwd"
    assert safe_relpath("a//b").as_posix() == "a/_/b"


def test_generate_exp_name_is_unique_timestamped_and_filesystem_safe():
    names = {generate_exp_name("SAC", "walker 2d/v4") for _ in range(100)}
    assert len(names) == 100
    pattern = re.compile(r"SAC_walker_2d_v4_\d{8}-\d{6}_[0-9a-f]{8}")
    assert all(pattern.fullmatch(name) for name in names)
    assert re.fullmatch(r"PPO_\d{8}-\d{6}_[0-9a-f]{8}", generate_exp_name("PPO", ""))


def test_video_frames_tiles_a_batch_into_a_grid():
    videos = torch.stack([solid_video([(i * 50, 0, 0)] * 2, size=2) for i in range(1, 4)])
    frames = video_frames(videos)  # 3 videos -> 2 x 2 grid, the 4th cell black
    assert frames.shape == (2, 4, 4, 3)
    assert frames[0, 0, 0, 0] == 50 and frames[0, 0, 2, 0] == 100
    assert frames[1, 2, 0, 0] == 150 and frames[1, 2, 2, 0] == 0


@pytest.mark.parametrize(
    ("video", "error"),
    [
        (torch.zeros(2, 3, 4, 4), TypeError),  # float
        (torch.zeros(3, 4, 4, dtype=torch.uint8), ValueError),  # no time dimension
        (torch.zeros(2, 2, 4, 4, dtype=torch.uint8), ValueError),  # 2 channels
        (torch.zeros(0, 3, 4, 4, dtype=torch.uint8), ValueError),  # no frames
    ],
)
def test_log_video_rejects_bad_videos(tmp_path, video, error):
    with CSVLogger("run", log_dir=tmp_path) as logger, pytest.raises(error, match="video"):
        logger.log_video("eval", video)


# --- CSV -----------------------------------------------------------------------------------


def test_csv_rows_read_back_per_scalar_with_sanitized_paths(tmp_path):
    logger = CSVLogger("run", log_dir=tmp_path)
    logger.log_scalars({"r_training": -5.25, "train/loss actor": 0.1}, step=100)
    logger.log_scalars({"r_training": 1 / 3, "train/loss actor": 1e-12}, step=200)
    logger.log_scalar("r_training", 7.0, step=300)
    # Read while the logger is still open: rows are flushed after each call.
    scalars = tmp_path / "run" / "scalars"
    assert read_rows(scalars / "r_training.csv") == [
        ["step", "value"],
        ["100", "-5.25"],
        ["200", repr(1 / 3)],
        ["300", "7.0"],
    ]
    rows = read_rows(scalars / "train" / "loss_actor.csv")
    assert [(int(s), float(v)) for s, v in rows[1:]] == [(100, 0.1), (200, 1e-12)]
    logger.close()


def test_csv_step_none_counts_per_name_and_resumes_from_state_dict(tmp_path):
    with CSVLogger("run", log_dir=tmp_path) as logger:
        logger.log_scalar("a", 1.0)
        logger.log_scalar("a", 2.0)
        logger.log_scalars({"a": 3.0, "b": 4.0})
        state = logger.state_dict()
    assert state == {"last_step": {"a": 2, "b": 0}}
    with CSVLogger("run", log_dir=tmp_path) as resumed:
        resumed.load_state_dict(state)
        resumed.log_scalar("a", 5.0)
    rows = read_rows(tmp_path / "run" / "scalars" / "a.csv")
    assert rows == [["step", "value"], ["0", "1.0"], ["1", "2.0"], ["2", "3.0"], ["3", "5.0"]]


def test_csv_resume_drops_rows_logged_after_the_checkpoint(tmp_path):
    # A run logs steps 1..5 but is killed after its checkpoint at step 3 ...
    killed = CSVLogger("run", log_dir=tmp_path)
    for step in range(1, 6):
        if step == 4:
            killed.log_scalar("late", -1.0, step=step)  # first logged after the checkpoint
        killed.log_scalars({"a": float(step), "train/b": -step}, step=step)
        if step == 3:
            state = killed.state_dict()
    killed.close()
    a_path = tmp_path / "run" / "scalars" / "a.csv"
    with a_path.open("a") as file:
        file.write("6,0.12")  # a row cut short by the kill: no newline
    # ... and the resumed run logs 4..6 again, with other values.
    with CSVLogger("run", log_dir=tmp_path) as resumed:
        resumed.load_state_dict(state)
        for step in range(4, 7):
            resumed.log_scalars({"a": 10.0 * step, "train/b": -10.0 * step}, step=step)
    a_rows = read_rows(a_path)
    assert a_rows[0] == ["step", "value"]
    assert [(int(s), float(v)) for s, v in a_rows[1:]] == RESUMED_CURVE
    b_rows = read_rows(tmp_path / "run" / "scalars" / "train" / "b.csv")
    assert [(int(s), -float(v)) for s, v in b_rows[1:]] == RESUMED_CURVE
    assert read_rows(tmp_path / "run" / "scalars" / "late.csv") == [["step", "value"]]
    assert not list((tmp_path / "run" / "scalars").rglob("*.tmp"))


def test_csv_resume_leaves_files_alone_when_nothing_was_logged_after(tmp_path):
    with CSVLogger("run", log_dir=tmp_path) as logger:
        logger.log_scalars({"a": 1.0}, step=1)
        state = logger.state_dict()
    path = tmp_path / "run" / "scalars" / "a.csv"
    modified = path.stat().st_mtime_ns
    CSVLogger("run", log_dir=tmp_path).load_state_dict(state)
    assert path.stat().st_mtime_ns == modified


def test_csv_names_mapping_to_the_same_file_raise(tmp_path):
    with CSVLogger("run", log_dir=tmp_path) as logger:
        logger.log_scalar("loss actor", 1.0, step=0)
        with pytest.raises(ValueError, match="'loss actor' and 'loss_actor'"):
            logger.log_scalar("loss_actor", 1.0, step=0)


def test_csv_hparams_yaml_is_flattened(tmp_path):
    with CSVLogger("run", log_dir=tmp_path) as logger:
        logger.log_hparams(CFG)
    assert yaml.safe_load((tmp_path / "run" / "hparams.yaml").read_text()) == FLAT_CFG


def test_csv_videos_as_tensor_and_gif(tmp_path):
    video = solid_video(COLORS)
    with CSVLogger("pt", log_dir=tmp_path) as logger:
        logger.log_video("eval/video", video, step=10)
    assert torch.equal(torch.load(tmp_path / "pt" / "videos" / "eval" / "video_10.pt"), video)
    with CSVLogger("gif", log_dir=tmp_path, video_format="gif", video_fps=20) as logger:
        logger.log_video("eval", video)
    gif = Image.open(tmp_path / "gif" / "videos" / "eval_0.gif")
    assert gif.n_frames == 4 and gif.info["duration"] == 50
    assert gif_colors((tmp_path / "gif" / "videos" / "eval_0.gif").read_bytes()) == COLORS


def test_csv_rejects_unknown_video_format(tmp_path):
    with pytest.raises(ValueError, match=r"video_format must be one of \('pt', 'gif'\), got 'mp4'"):
        CSVLogger("run", log_dir=tmp_path, video_format="mp4")


# --- TensorBoard ---------------------------------------------------------------------------


def test_tensorboard_scalars_hparams_and_video_read_back(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    with TensorboardLogger("run", log_dir=tmp_path) as logger:
        logger.log_scalars({"r_training": -5.25, "train/loss": 0.5}, step=100)
        logger.log_scalars({"r_training": 2.0, "train/loss": 0.25}, step=200)
        logger.log_hparams(CFG)
        logger.log_video("eval", solid_video(COLORS), step=200, fps=10)

    events = EventAccumulator(str(tmp_path / "run"), size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("r_training")] == [(100, -5.25), (200, 2.0)]
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(100, 0.5), (200, 0.25)]

    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    logged = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert logged["optimizer.lr"].number_value == pytest.approx(3e-4)
    assert logged["optimizer.betas"].string_value == "[0.9, 0.999]"
    assert logged["env"].string_value == "Pendulum-v1"
    assert set(logged) == set(FLAT_CFG)
    text = events.Tensors("hparams/text_summary")[0].tensor_proto.string_val[0].decode()
    assert "| optimizer.betas | [0.9, 0.999] |" in text and "| env | Pendulum-v1 |" in text

    (image,) = events.Images("eval")
    assert (image.step, image.width, image.height) == (200, 6, 6)
    assert gif_colors(image.encoded_image_string) == COLORS


def test_tensorboard_scalars_are_on_disk_after_each_call(tmp_path):
    """A run killed between two log writes keeps what it logged (no 120 s flush window)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorboardLogger("run", log_dir=tmp_path)
    logger.log_scalars({"r_training": -1.5}, step=10)
    events = EventAccumulator(str(tmp_path / "run"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("r_training")] == [(10, -1.5)]
    logger.close()


def test_tensorboard_resume_purges_events_logged_after_the_checkpoint(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with TensorboardLogger("run", log_dir=tmp_path) as killed:
        for step in range(1, 6):
            killed.log_scalars({"a": float(step), "train/b": -step}, step=step)
            if step == 3:
                state = killed.state_dict()
    wait_for_next_second()
    with TensorboardLogger("run", log_dir=tmp_path) as resumed:
        resumed.load_state_dict(state)
        for step in range(4, 7):
            resumed.log_scalars({"a": 10.0 * step, "train/b": -10.0 * step}, step=step)

    assert len(list((tmp_path / "run").glob("events.out.tfevents.*"))) == 2
    events = EventAccumulator(str(tmp_path / "run"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("a")] == RESUMED_CURVE
    assert [(e.step, -e.value) for e in events.Scalars("train/b")] == RESUMED_CURVE


def test_tensorboard_resume_logs_hparams_again_only_when_they_changed(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def hparams_texts() -> list[tuple[int, str]]:
        events = EventAccumulator(str(tmp_path / "run"), size_guidance={"tensors": 0})
        events.Reload()
        return [
            (e.step, e.tensor_proto.string_val[0].decode())
            for e in events.Tensors("hparams/text_summary")
        ]

    with TensorboardLogger("run", log_dir=tmp_path) as first:
        first.log_hparams(CFG)
        first.log_scalars({"a": 1.0}, step=7)
        state = first.state_dict()
    wait_for_next_second()
    with TensorboardLogger("run", log_dir=tmp_path) as resumed:  # the same config
        resumed.load_state_dict(state)
        resumed.log_hparams(CFG)
        resumed.log_scalars({"a": 2.0}, step=8)
        state = resumed.state_dict()
    assert [step for step, _ in hparams_texts()] == [0]

    wait_for_next_second()
    with TensorboardLogger("run", log_dir=tmp_path) as extended:  # an override on resume
        extended.load_state_dict(state)
        extended.log_hparams({**CFG, "env": "HalfCheetah-v5"})
    texts = hparams_texts()
    assert [step for step, _ in texts] == [0, 9]  # the new config from the resume step on
    assert "| env | Pendulum-v1 |" in texts[0][1] and "| env | HalfCheetah-v5 |" in texts[1][1]


# --- get_logger ----------------------------------------------------------------------------


def test_get_logger_builds_backends_by_name(tmp_path):
    csv_logger = get_logger("csv", tmp_path, "exp", video_format="gif")
    assert isinstance(csv_logger, CSVLogger) and csv_logger.video_format == "gif"
    csv_logger.log_scalar("x", 1.0, step=0)
    csv_logger.close()
    assert (tmp_path / "exp" / "scalars" / "x.csv").exists()
    with get_logger("tb", tmp_path, "tb exp/../1") as tb_logger:
        assert isinstance(tb_logger, TensorboardLogger) and isinstance(tb_logger, Logger)
        assert tb_logger.run_dir == tmp_path / "tb_exp" / "__" / "1"  # sanitized, never escapes


def test_get_logger_unknown_type_lists_valid_ones(tmp_path):
    expected = r"one of \['csv', 'tensorboard', 'tb', 'wandb', 'mlflow'\], got 'neptune'"
    with pytest.raises(ValueError, match=expected):
        get_logger("neptune", tmp_path, "exp")
