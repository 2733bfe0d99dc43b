"""Built-in hooks against hand-computed references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tensordict import TensorDict

from tests.trainer.toy import LinearLoss, ToyCollector
from trainers import (
    BatchSubSampler,
    ClearCudaCache,
    CountFramesLog,
    LogScalar,
    LRSchedulerHook,
    OptimizerHook,
    RewardNormalizer,
    SelectKeys,
    TargetNetUpdaterHook,
    Trainer,
    UpdateWeights,
    UTDRHook,
)
from trainers.trainer.metrics import MetricAccumulator


def _batch() -> TensorDict:
    reward = torch.arange(8, dtype=torch.float32).reshape(2, 4, 1)
    return TensorDict(
        {"observation": torch.randn(2, 4, 3), "next": {"reward": reward}}, batch_size=[2, 4]
    )


def _trainer(**kw) -> Trainer:
    loss = LinearLoss()
    args = dict(
        collector=ToyCollector(total_frames=32),
        total_frames=32,
        frame_skip=1,
        optim_steps_per_batch=2,
        loss_module=loss,
        progress_bar=False,
    )
    args.update(kw)
    return Trainer(**args)


@pytest.mark.parametrize(
    ("reduction", "expected"), [("mean", 3.5), ("max", 7.0), ("min", 0.0), ("sum", 28.0)]
)
def test_log_scalar_reductions(reduction, expected):
    out = LogScalar(logname="r", reduction=reduction, include_std=False)(_batch())
    value = out["r"] if reduction == "mean" else out["r"].value
    assert float(value) == expected
    assert out["log_pbar"] is False


@pytest.mark.parametrize(
    ("reduction", "expected"), [("mean", 5.5), ("max", 11.0), ("min", 0.0), ("sum", 28.0 + 60.0)]
)
def test_log_scalar_combines_a_window_of_batches_by_its_reduction(reduction, expected):
    hook = LogScalar(logname="r", reduction=reduction, include_std=False)
    accumulator = MetricAccumulator()
    for batch in (_batch(), _batch() + 4.0):  # values 0..7, then 4..11
        out = hook(batch)
        del out["log_pbar"]
        accumulator.add(out)
    assert accumulator.flush() == {"r": expected}


def test_log_scalar_std_and_mask():
    batch = _batch()
    out = LogScalar(logname="r", include_std=True, log_pbar=True)(batch)
    assert float(out["r_std"]) == pytest.approx(np.std(np.arange(8), ddof=1), rel=1e-6)
    batch.set(("collector", "mask"), torch.tensor([[True] * 4, [False] * 4]))
    masked = LogScalar(logname="r")(batch)
    assert float(masked["r"]) == 1.5  # mean of 0..3
    assert LogScalar(key="missing")(batch) is None


def test_log_scalar_rejects_unknown_reduction():
    with pytest.raises(ValueError, match="reduction must be one of"):
        LogScalar(reduction="median")


def test_select_keys_keeps_only_listed_entries():
    out = SelectKeys(["observation"])(_batch())
    assert list(out.keys()) == ["observation"]
    with pytest.raises(TypeError, match="list of keys"):
        SelectKeys("observation")


def test_batch_sub_sampler_frames_and_windows():
    torch.manual_seed(0)
    batch = _batch()
    batch.set("t", torch.arange(4).expand(2, 4))
    flat = BatchSubSampler(batch_size=5)(batch)
    assert flat.batch_size == torch.Size([5])
    windows = BatchSubSampler(batch_size=6, sub_traj_len=3)(batch)
    assert windows.batch_size == torch.Size([2, 3])
    steps = windows["t"]
    assert torch.equal(steps[:, 1:] - steps[:, :-1], torch.ones(2, 2, dtype=steps.dtype))
    with pytest.raises(ValueError, match="sub_traj_len must be 0 or divide batch_size=5"):
        BatchSubSampler(batch_size=5, sub_traj_len=2)


def test_reward_normalizer_matches_numpy_reference():
    normalizer = RewardNormalizer(decay=0.5, scale=2.0)
    rewards = [np.arange(8.0), np.arange(8.0) * 3 + 1]
    for r in rewards:
        batch = TensorDict({"next": {"reward": torch.tensor(r).reshape(2, 4, 1)}}, [2, 4])
        normalizer.update_reward_stats(batch)
    w = 0.5 * 8 + 8
    s = 0.5 * rewards[0].sum() + rewards[1].sum()
    sq = 0.5 * (rewards[0] ** 2).sum() + (rewards[1] ** 2).sum()
    mean, std = s / w, np.sqrt(sq / w - (s / w) ** 2)
    out = normalizer.normalize_reward(_batch())
    expected = 2.0 * (np.arange(8.0) - mean) / std
    np.testing.assert_allclose(out["next", "reward"].flatten().numpy(), expected, rtol=1e-5)
    assert torch.equal(_batch()["next", "reward"], torch.arange(8.0).reshape(2, 4, 1))


def test_reward_normalizer_state_round_trip():
    a, b = RewardNormalizer(), RewardNormalizer()
    a.update_reward_stats(_batch())
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.normalize(torch.ones(3)), b.normalize(torch.ones(3)))


def test_optimizer_hook_clips_by_norm_like_torch():
    torch.manual_seed(0)
    trainer = _trainer(clip_norm=0.01)
    optim = torch.optim.SGD(trainer.loss_module.parameters(), lr=1.0)
    hook = OptimizerHook(optim)
    hook.register(trainer)
    before = [p.detach().clone() for p in trainer.loss_module.parameters()]
    batch = next(iter(ToyCollector()))
    losses = trainer.loss_module(batch)
    losses["loss_mse"].backward(retain_graph=True)
    reference_norm = torch.sqrt(sum(p.grad.pow(2).sum() for p in trainer.loss_module.parameters()))
    optim.zero_grad()
    hook(losses)
    assert float(losses["grad_norm"]) == pytest.approx(float(reference_norm), rel=1e-5)
    step = torch.sqrt(
        sum(
            (b - p.detach()).pow(2).sum()
            for b, p in zip(before, trainer.loss_module.parameters(), strict=True)
        )
    )
    assert float(step) == pytest.approx(0.01, rel=1e-4)  # lr 1: the update is the clipped grad
    assert all(p.grad is None for p in trainer.loss_module.parameters())


def _grad_norms(trainer: Trainer, names: list[str]) -> list[dict[str, float]]:
    """Records the logged gradient norms of every optimization step, after all hooks ran."""
    norms: list[dict[str, float]] = []
    trainer.register_op(
        "optimizer", lambda losses: norms.append({n: float(losses[n]) for n in names})
    )
    return norms


def _clip_coef(norm: float, clip_norm: float | None) -> float:
    """torch.nn.utils.clip_grad_norm_'s scale: max_norm / (norm + 1e-6), at most 1."""
    return 1.0 if clip_norm is None else min(1.0, clip_norm / (norm + 1e-6))


@pytest.mark.parametrize("clip_norm", [None, 2.0])
def test_two_optimizer_hooks_on_separate_loss_components(clip_norm):
    """Each optimizer steps on the gradient of its own loss terms only, clipped on its own.

    ``shared`` is in both losses' graphs but owned by ``opt_b``: its update must be the
    gradient of ``loss_b`` alone, not of ``loss_a + loss_b``.
    """
    a = torch.nn.Parameter(torch.tensor([2.0]))
    b = torch.nn.Parameter(torch.tensor([3.0]))
    shared = torch.nn.Parameter(torch.tensor([0.5]))
    means: list[float] = []

    def loss(td):
        m = 1.0 + td["observation"].mean()  # about 1: gradients of order 1
        means.append(float(m))
        base = shared * m
        return TensorDict({"loss_a": (a * base) ** 2, "loss_b": (b * base) ** 2}, [])

    trainer = _trainer(
        loss_module=loss, optim_steps_per_batch=3, total_frames=8, clip_norm=clip_norm
    )
    lr = 0.1
    OptimizerHook(torch.optim.SGD([a], lr=lr), ["loss_a"]).register(trainer, "opt_a")
    OptimizerHook(torch.optim.SGD([b, shared], lr=lr), ["loss_b"]).register(trainer, "opt_b")
    norms = _grad_norms(trainer, ["grad_norm_opt_a", "grad_norm_opt_b"] if clip_norm else [])
    trainer.train()  # also fails without retain_graph on the first hook: the graphs overlap

    ra, rb, rs = 2.0, 3.0, 0.5  # plain-Python reference of 3 SGD steps
    assert len(means) == 3
    for step, m in enumerate(means):
        grad_a = 2 * ra * (rs * m) ** 2  # d/da (a s m)^2
        grad_b = 2 * rb * (rs * m) ** 2  # d/db (b s m)^2
        grad_s = 2 * rs * (rb * m) ** 2  # d/ds (b s m)^2, loss_b only
        norm_a, norm_b = abs(grad_a), float(np.hypot(grad_b, grad_s))
        if clip_norm is not None:
            assert norms[step]["grad_norm_opt_a"] == pytest.approx(norm_a, rel=1e-5)
            assert norms[step]["grad_norm_opt_b"] == pytest.approx(norm_b, rel=1e-5)
        coef_a, coef_b = _clip_coef(norm_a, clip_norm), _clip_coef(norm_b, clip_norm)
        ra -= lr * coef_a * grad_a
        rb -= lr * coef_b * grad_b
        rs -= lr * coef_b * grad_s
    if clip_norm is not None:  # per hook: clips opt_b's gradient (about 9), not opt_a's (1)
        assert norms[0]["grad_norm_opt_a"] < clip_norm < norms[0]["grad_norm_opt_b"]
    assert a.item() == pytest.approx(ra, rel=1e-5)
    assert b.item() == pytest.approx(rb, rel=1e-5)
    assert shared.item() == pytest.approx(rs, rel=1e-5)
    assert a.grad is None and b.grad is None and shared.grad is None
    with pytest.raises(KeyError, match="loss_c"):
        OptimizerHook(torch.optim.SGD([a], lr=0.1), ["loss_c"])(loss(_batch()))


def test_a_later_hook_may_backpropagate_through_a_detached_view_of_earlier_parameters():
    """SAC-like: the actor loss saved detached critic weights, which the critic hook steps.

    The detached view shares the critic weight's version counter, so stepping the critic before
    the actor's backward would fail with "modified by an inplace operation"; the actor's update
    must use the critic weight of the forward pass.
    """
    w = torch.nn.Parameter(torch.tensor([1.5]))  # critic
    theta = torch.nn.Parameter(torch.tensor([0.5]))  # actor
    means: list[float] = []

    def loss(td):
        x = td["observation"].mean()
        means.append(float(x))
        return TensorDict(
            {
                "loss_qvalue": (w * x - 1.0) ** 2,
                "loss_actor": -((w.detach() * theta * x) ** 2),  # saves w.detach() for backward
            },
            [],
        )

    trainer = _trainer(loss_module=loss, optim_steps_per_batch=2, total_frames=8)
    lr = 0.1
    OptimizerHook(torch.optim.SGD([w], lr=lr), ["loss_qvalue"]).register(trainer, "critic")
    OptimizerHook(torch.optim.SGD([theta], lr=lr), ["loss_actor"]).register(trainer, "actor")
    trainer.train()

    rw, rt = 1.5, 0.5
    for x in means:
        grad_w = 2 * (rw * x - 1.0) * x
        grad_t = -2 * rw**2 * rt * x**2  # uses the critic weight before its step
        rw, rt = rw - lr * grad_w, rt - lr * grad_t
    assert len(means) == 2
    assert w.item() == pytest.approx(rw, rel=1e-5)
    assert theta.item() == pytest.approx(rt, rel=1e-5)


def test_optimizer_hooks_of_one_trainer_must_not_share_parameters():
    p = torch.nn.Parameter(torch.ones(1))
    trainer = _trainer()
    OptimizerHook(torch.optim.SGD([p], lr=0.1), ["loss_a"]).register(trainer, "opt_a")
    with pytest.raises(ValueError, match="'opt_b' and 'opt_a' share 1 parameter"):
        OptimizerHook(torch.optim.SGD([p], lr=0.1), ["loss_b"]).register(trainer, "opt_b")


def test_update_weights_interval_and_getter():
    class Collector:
        def __init__(self):
            self.received = []

        def update_policy_weights_(self, weights=None):
            self.received.append(weights)

    collector = Collector()
    hook = UpdateWeights(collector, update_weights_interval=2, policy_weights_getter=lambda: "w")
    for _ in range(5):
        hook()
    assert collector.received == ["w", "w"]
    with pytest.raises(TypeError, match="update_policy_weights_"):
        UpdateWeights(object())


def test_target_net_updater_hook_steps_after_each_optimizer_step():
    class Counter:
        def __init__(self):
            self.steps = 0

        def step(self):
            self.steps += 1

    counter = Counter()
    trainer = _trainer(optimizer=torch.optim.SGD(LinearLoss().parameters(), lr=0.0))
    TargetNetUpdaterHook(counter).register(trainer)
    trainer.train()
    assert counter.steps == trainer.state.optim_steps == 8
    with pytest.raises(TypeError, match="step"):
        TargetNetUpdaterHook(None)


def test_utd_ratio_and_frame_count_logs():
    trainer = _trainer(
        optimizer=torch.optim.SGD(LinearLoss().parameters(), lr=0.0), log_interval=32
    )
    UTDRHook().register(trainer)
    CountFramesLog().register(trainer)
    trainer.train()
    # Steps over frames of the log window (4 batches of 8 frames, 2 steps each).
    assert trainer.logged["utd_ratio"] == pytest.approx(8 / 32)
    assert trainer.logged["n_frames"] == np.mean([8, 16, 24, 32])


def test_lr_scheduler_hook_steps_and_checkpoints():
    loss = LinearLoss()
    optim = torch.optim.SGD(loss.parameters(), lr=1.0)
    trainer = _trainer(loss_module=loss, optimizer=optim, log_interval=32)
    sched = torch.optim.lr_scheduler.StepLR(optim, step_size=1, gamma=0.5)
    LRSchedulerHook(sched, every="batch").register(trainer)
    trainer.train()
    assert optim.param_groups[0]["lr"] == 0.5**4
    assert trainer.state_dict()["modules"]["lr_scheduler"]["last_epoch"] == 4
    with pytest.raises(ValueError, match="every must be one of"):
        LRSchedulerHook(sched, every="epoch")


def test_clear_cuda_cache_validates_interval():
    with pytest.raises(ValueError, match="interval must be >= 1"):
        ClearCudaCache(0)
    hook = ClearCudaCache(2)
    hook()
    hook()
    assert hook.count == 2


def test_episode_writer_writes_one_row_per_finished_episode_and_truncates_on_resume(tmp_path):
    from trainers import EpisodeWriter

    path = tmp_path / "episodes.csv"
    writer = EpisodeWriter(path)
    trainer = _trainer()
    writer.register(trainer)
    trainer.state.frames = 8
    batch = _batch()
    done = torch.zeros(2, 4, 1, dtype=torch.bool)
    done[0, 1] = done[1, 3] = True
    batch.set(("next", "done"), done)
    batch.set(("next", "episode_reward"), torch.arange(8.0).reshape(2, 4, 1) * -1.5)
    batch.set(("next", "step_count"), torch.arange(8).reshape(2, 4, 1) + 10)
    writer(batch)
    state = writer.state_dict()
    trainer.state.frames = 16
    writer(batch)
    assert path.read_text().splitlines() == [
        "frames,return,length", "8,-1.5,11", "8,-10.5,17", "16,-1.5,11", "16,-10.5,17",
    ]  # fmt: skip
    writer.load_state_dict(state)
    assert path.read_text().splitlines() == ["frames,return,length", "8,-1.5,11", "8,-10.5,17"]


@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_matches_torch_to_the_bit(max_norm):
    from trainers.hooks.optim import clip_grad_norm

    torch.manual_seed(0)
    shapes = [(64, 17), (64,), (64, 64), (6, 64), (6,)]
    ours = [torch.randn(shape) for shape in shapes]
    params = [torch.nn.Parameter(torch.zeros(shape)) for shape in shapes]
    for param, grad in zip(params, ours, strict=True):
        param.grad = grad.clone()
    expected = torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
    assert torch.equal(clip_grad_norm(ours, max_norm), expected)
    for param, grad in zip(params, ours, strict=True):
        assert torch.equal(grad, param.grad)
    assert clip_grad_norm([], max_norm) == 0.0


def test_utd_ratio_of_a_resumed_run_counts_only_its_own_window(tmp_path):
    """With a warm-up that skips updates, the window ratio differs from the running ratio, and a
    resumed trainer must start its count at the checkpoint, not at zero."""

    def run(**kw) -> Trainer:
        collector = ToyCollector(total_frames=48)
        collector.init_random_frames = 16  # the first two batches only collect
        trainer = _trainer(collector=collector, total_frames=48, log_interval=16, **kw)
        UTDRHook().register(trainer)
        return trainer

    straight = run()
    straight.train()
    assert straight.logged["utd_ratio"] == pytest.approx(4 / 16)  # 2 batches x 2 steps
    checkpoint = tmp_path / "ckpt.pt"
    first = run(save_trainer_file=checkpoint, save_trainer_interval=32)
    first.total_frames = 32
    first.train()
    resumed = run(save_trainer_file=checkpoint)
    resumed.load_from_file(checkpoint)
    resumed.train()
    assert resumed.logged["utd_ratio"] == pytest.approx(straight.logged["utd_ratio"])
