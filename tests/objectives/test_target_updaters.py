from __future__ import annotations

import pytest
import torch

from trainers.modules import MLP, EnsembleQValueNetwork, QValueActor, TanhNormalActor
from trainers.objectives import (
    DQNLoss,
    HardUpdate,
    SACLoss,
    SoftUpdate,
    make_target_updater,
)


def _sac_loss() -> SACLoss:
    torch.manual_seed(0)
    actor = TanhNormalActor(MLP(3, 2, [8]), low=-torch.ones(1), high=torch.ones(1))
    return SACLoss(actor, EnsembleQValueNetwork(3, 1, [8]))


def _pairs(loss):
    targets, sources = loss.target_parameter_pairs()
    return [t.clone() for t in targets], [s.clone() for s in sources]


def _perturb_online(loss):
    with torch.no_grad():
        for p in loss.qvalue_network.parameters():
            p.add_(torch.randn_like(p))


def test_soft_update_is_polyak_average():
    loss = _sac_loss()
    _perturb_online(loss)
    targets, sources = _pairs(loss)
    assert len(targets) == 4  # 2 stacked layers x (weight, bias)
    SoftUpdate(loss, tau=0.1).step()
    for t_new, t_old, s in zip(loss.target_parameter_pairs()[0], targets, sources, strict=True):
        torch.testing.assert_close(t_new, 0.9 * t_old + 0.1 * s)
    # eps is TorchRL's 1 - tau.
    targets, sources = _pairs(loss)
    updater = SoftUpdate(loss, eps=0.75)
    assert updater.tau == 0.25
    updater.step()
    for t_new, t_old, s in zip(loss.target_parameter_pairs()[0], targets, sources, strict=True):
        torch.testing.assert_close(t_new, 0.75 * t_old + 0.25 * s)


def test_target_used_by_the_loss_is_the_updated_one():
    loss = _sac_loss()
    _perturb_online(loss)
    SoftUpdate(loss, tau=0.5).init_()
    x, a = torch.randn(5, 3), torch.randn(5, 1)
    torch.testing.assert_close(loss.target_qvalue_network(x, a), loss.qvalue_network(x, a))


def test_hard_update_copies_every_interval():
    loss = DQNLoss(QValueActor(MLP(4, 2, [8])), gamma=0.9)
    updater = HardUpdate(loss, value_network_update_interval=3)
    for step in range(1, 7):
        with torch.no_grad():
            for p in loss.value_network.parameters():
                p.add_(1.0)
        before, _ = _pairs(loss)
        updater.step()
        targets, sources = loss.target_parameter_pairs()
        copied = step % 3 == 0
        for t, b, s in zip(targets, before, sources, strict=True):
            assert torch.equal(t, s) == copied, step
            assert torch.equal(t, b) == (not copied), step
    assert updater.state_dict() == {"steps": 6}
    restored = HardUpdate(loss, value_network_update_interval=3)
    restored.load_state_dict(updater.state_dict())
    assert restored.steps == 6


def test_targets_follow_the_loss_through_state_dict_and_to():
    loss = _sac_loss()
    _perturb_online(loss)
    SoftUpdate(loss, tau=0.3).step()
    other = _sac_loss()
    other.load_state_dict(loss.state_dict())
    for a, b in zip(
        other.target_parameter_pairs()[0], loss.target_parameter_pairs()[0], strict=True
    ):
        assert torch.equal(a, b)
    other = other.to(torch.float64)
    SoftUpdate(other, tau=0.3).step()  # pairs are looked up again after .to()
    assert other.target_parameter_pairs()[0][0].dtype == torch.float64


def test_updater_errors_and_builder():
    loss = _sac_loss()
    with pytest.raises(ValueError, match="give one of them"):
        SoftUpdate(loss, eps=0.9, tau=0.1)
    with pytest.raises(ValueError, match=r"tau=1\.5"):
        SoftUpdate(loss, tau=1.5)
    with pytest.raises(ValueError, match="value_network_update_interval=0"):
        HardUpdate(loss, value_network_update_interval=0)
    with pytest.raises(TypeError, match="no target networks"):
        SoftUpdate(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="no target parameters"):
        SoftUpdate(DQNLoss(QValueActor(MLP(4, 2, [8])), gamma=0.9, delay_value=False))
    updater = make_target_updater(loss, tau=0.02)
    assert isinstance(updater, SoftUpdate) and updater.tau == 0.02
    assert isinstance(make_target_updater(loss, hard_update=True), HardUpdate)
