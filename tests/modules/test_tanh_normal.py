from __future__ import annotations

import math

import torch
from torch import distributions as D

from trainers.modules import TanhNormal


def _cdf(a: torch.Tensor, loc: float, scale: float, low: float, high: float) -> torch.Tensor:
    """P(A <= a) for A = low + (high - low) (tanh(X) + 1) / 2, X ~ N(loc, scale), in float64."""
    y = (2 * (a - low) / (high - low) - 1).clamp(-1 + 1e-15, 1 - 1e-15)
    return D.Normal(loc, scale).cdf(torch.atanh(y))


def test_log_prob_matches_finite_difference_of_cdf():
    loc = torch.tensor([[0.3, -1.2]], dtype=torch.float64)
    scale = torch.tensor([[0.7, 1.5]], dtype=torch.float64)
    low = torch.tensor([-2.0, 0.0], dtype=torch.float64)
    high = torch.tensor([2.0, 5.0], dtype=torch.float64)
    dist = TanhNormal(loc, scale, low, high)
    actions = torch.tensor(
        [[-1.9, 0.1], [-0.5, 1.0], [0.0, 2.5], [1.3, 4.0], [1.99, 4.95]], dtype=torch.float64
    )
    h = 1e-6
    log_density = torch.zeros(len(actions), dtype=torch.float64)
    for d in range(2):
        args = (loc[0, d].item(), scale[0, d].item(), low[d].item(), high[d].item())
        a = actions[:, d]
        pdf = (_cdf(a + h, *args) - _cdf(a - h, *args)) / (2 * h)
        log_density += pdf.log()
    torch.testing.assert_close(dist.log_prob(actions), log_density, rtol=1e-6, atol=1e-6)


def test_rsample_log_prob_matches_log_prob_of_the_sample():
    torch.manual_seed(0)
    dist = TanhNormal(torch.randn(1000, 3), torch.rand(1000, 3) + 0.2, -3.0, 1.0)
    action, log_prob = dist.rsample_and_log_prob()
    torch.testing.assert_close(dist.log_prob(action), log_prob, rtol=1e-4, atol=1e-4)


def test_samples_stay_in_bounds_even_when_saturated():
    torch.manual_seed(0)
    low, high = torch.tensor([-2.0, 0.5]), torch.tensor([2.0, 0.75])
    loc = torch.tensor([[30.0, -30.0]]).expand(500, 2)
    dist = TanhNormal(loc, torch.full_like(loc, 3.0), low, high)
    for action in (dist.sample(), dist.rsample((4,)), dist.mode):
        assert bool(((action >= low) & (action <= high)).all())
    # Saturated samples round onto the bound; their log-prob stays finite.
    saturated = dist.sample()
    assert bool((saturated[:, 0] == 2.0).any())
    assert bool(torch.isfinite(dist.log_prob(saturated)).all())
    on_bounds = torch.stack([low, high])
    assert bool(
        torch.isfinite(TanhNormal(loc[:2], loc[:2].abs(), low, high).log_prob(on_bounds)).all()
    )


def test_mode_is_rescaled_tanh_of_loc():
    loc = torch.tensor([[0.5, -1.0]])
    dist = TanhNormal(loc, torch.ones(1, 2), torch.tensor([-1.0, 2.0]), torch.tensor([3.0, 4.0]))
    expected = torch.tensor([[1.0 + 2.0 * math.tanh(0.5), 3.0 + math.tanh(-1.0)]])
    torch.testing.assert_close(dist.mode, expected)
    torch.testing.assert_close(dist.deterministic_sample, expected)


def test_log_prob_numerically_stable_for_large_pre_tanh_values():
    # Around x = 12 the naive log(1 - tanh(x)^2) is log(0) = -inf in float32.
    dist = TanhNormal(torch.tensor([[12.0]]), torch.tensor([[1.0]]))
    torch.manual_seed(0)
    noise = torch.randn(1, 1).item()
    torch.manual_seed(0)
    _, log_prob = dist.rsample_and_log_prob()
    x = 12.0 + noise
    expected = (
        -0.5 * noise**2
        - 0.5 * math.log(2 * math.pi)
        - 2 * (math.log(2) - x - math.log1p(math.exp(-2 * x)))
    )
    assert abs(log_prob.item() - expected) < 1e-4


def test_shapes_and_gradients():
    loc = torch.zeros(4, 2, requires_grad=True)
    scale = torch.ones(4, 2, requires_grad=True)
    dist = TanhNormal(loc, scale)
    assert dist.batch_shape == (4,) and dist.event_shape == (2,)
    action, log_prob = dist.rsample_and_log_prob()
    assert log_prob.shape == (4,)
    (action.sum() + log_prob.sum()).backward()
    assert loc.grad is not None and scale.grad is not None
    assert torch.isfinite(loc.grad).all() and torch.isfinite(scale.grad).all()
