"""EpisodeWriter skips padding frames, like LogEpisodeStats."""

from __future__ import annotations

import torch
from tensordict import TensorDict

from tests.algorithms._common import SENTINEL, finished_episodes, make_sac, record_batches
from tests.trainer.toy import LinearLoss, ToyCollector
from trainers import EpisodeWriter, Trainer, keys


def _masked_batch() -> TensorDict:
    """Two envs, four steps; env 0 ends an episode at step 1, env 1's last two steps are
    padding, the last one marked done with a sentinel return."""
    done = torch.zeros(2, 4, 1, dtype=torch.bool)
    done[0, 1] = done[1, 3] = True
    episode_reward = -torch.arange(1.0, 9.0).reshape(2, 4, 1)
    episode_reward[1, 2:] = SENTINEL
    mask = torch.ones(2, 4, dtype=torch.bool)
    mask[1, 2:] = False
    return TensorDict(
        {
            keys.DONE: done,
            keys.EPISODE_REWARD: episode_reward,
            keys.STEP_COUNT: torch.arange(2 * 4).reshape(2, 4, 1) + 10,
            keys.MASK: mask,
        },
        batch_size=[2, 4],
    )


def test_a_padding_frame_marked_done_writes_no_row(tmp_path):
    path = tmp_path / "episodes.csv"
    writer = EpisodeWriter(path)
    trainer = Trainer(
        collector=ToyCollector(),
        total_frames=8,
        frame_skip=1,
        optim_steps_per_batch=0,
        loss_module=LinearLoss(),
        progress_bar=False,
    )
    writer.register(trainer)
    trainer.state.frames = 6
    writer(_masked_batch())
    assert path.read_text().splitlines() == ["frames,return,length", "6,-2,11"]
    assert writer.rows == 1
    everything_padding = _masked_batch()
    everything_padding.set(keys.MASK, torch.zeros(2, 4, dtype=torch.bool))
    writer(everything_padding)
    assert writer.rows == 1


def test_rows_are_the_episodes_that_end_at_valid_frames(tmp_path):
    path = tmp_path / "episodes.csv"
    trainer, _ = make_sac(pad=4, total_frames=64)  # 20 frames a batch, the last 4 padding
    EpisodeWriter(path).register(trainer)
    batches = record_batches(trainer)
    trainer.train()

    expected = [
        (frames, episode_return, length)
        for batch, frames in batches
        for episode_return, length in finished_episodes(batch)
    ]
    rows = [line.split(",") for line in path.read_text().splitlines()[1:]]
    assert len(expected) >= 2
    assert [(int(f), float(r), int(n)) for f, r, n in rows] == [
        (frames, float(f"{ret:.6g}"), length) for frames, ret, length in expected
    ]
    # Every batch's padding holds done frames; none of them became a row.
    assert all(float(r) < SENTINEL for _, r, _ in rows)
