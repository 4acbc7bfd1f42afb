"""The training objective against hand-computed cases (engine.training)."""
import math

import numpy as np
import pytest
import torch

from cosmos_policy_ros.engine.training import (
    diffusion_loss, loss_weight, sample_sigma, value_targets, video_noise_multiplier)


class FormulaNet:
    """net(x, t, mask, text) -> formula(x, t); the package's network protocol."""

    dtype = torch.float32
    device = torch.device('cpu')

    def __init__(self, formula):
        self.formula = formula

    def __call__(self, x, timesteps, condition_mask, text_embedding):
        return self.formula(x, timesteps)


def _case():
    generator = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 16, 4, 2, 2, generator=generator)
    eps = torch.randn(2, 16, 4, 2, 2, generator=generator)
    flags = torch.tensor([[True, True, False, False], [True, False, False, False]])
    text = torch.zeros(1, 3, 1024)
    sigma = torch.tensor([3.0, 0.5])
    return x0, eps, flags, text, sigma


def test_zero_network_loss_is_the_mean_of_eps_minus_x0_squared_on_generated_frames():
    # F = 0: x0_hat = x_sigma / (1 + s), so x0_hat - x0 = s (eps - x0) / (1 + s) and the
    # (1 + s)^2 / s^2 weight cancels: loss = mean over generated frames of (eps - x0)^2.
    x0, eps, flags, text, sigma = _case()
    loss = diffusion_loss(FormulaNet(lambda x, t: torch.zeros_like(x)), x0, flags, text, sigma,
                          eps)
    per_sample = [((eps[0, :, 2:] - x0[0, :, 2:]) ** 2).mean(),
                  ((eps[1, :, 1:] - x0[1, :, 1:]) ** 2).mean()]
    assert math.isclose(float(loss), float(sum(per_sample) / 2), rel_tol=1e-5)


def test_constant_network_loss_by_hand():
    # F = 1 everywhere: x0_hat - x0 = s (eps - x0 - 1) / (1 + s) on generated frames.
    x0 = torch.zeros(1, 16, 2, 2, 2)
    eps = torch.zeros(1, 16, 2, 2, 2)
    eps[:, :, 1] = 2.0  # generated frame: eps - x0 - 1 = 1 everywhere
    eps[:, :, 0] = 5.0  # conditioning frame: ignored
    flags = torch.tensor([[True, False]])
    loss = diffusion_loss(FormulaNet(lambda x, t: torch.ones_like(x)), x0, flags,
                          torch.zeros(1, 1, 1024), torch.tensor([4.0]), eps)
    assert math.isclose(float(loss), 1.0, rel_tol=1e-6)


def test_velocity_oracle_has_zero_loss():
    # The rectified-flow target: F = eps - x0 gives x0_hat = x0 exactly.
    x0, eps, flags, text, sigma = _case()
    loss = diffusion_loss(FormulaNet(lambda x, t: eps - x0), x0, flags, text, sigma, eps)
    assert float(loss) < 1e-10


def test_network_sees_clean_conditioning_frames_at_time_zero():
    x0, eps, flags, text, sigma = _case()
    seen = {}

    def formula(x, t):
        seen['x'], seen['t'] = x.clone(), t.clone()
        return torch.zeros_like(x)

    diffusion_loss(FormulaNet(formula), x0, flags, text, sigma, eps)
    torch.testing.assert_close(seen['x'][0, :, :2], x0[0, :, :2])
    torch.testing.assert_close(seen['x'][0, :, 2:], (x0[0, :, 2:] + 3.0 * eps[0, :, 2:]) / 4.0)
    torch.testing.assert_close(seen['t'][0], torch.tensor([0.0, 0.0, 0.75, 0.75]))


def test_loss_weight():
    assert math.isclose(float(loss_weight(torch.tensor(1.0))), 4.0)
    assert math.isclose(float(loss_weight(torch.tensor(3.0))), 16.0 / 9.0, rel_tol=1e-6)


def test_sigma_distribution_parts_and_multiplier():
    generator = torch.Generator().manual_seed(0)
    lognormal = sample_sigma(40000, generator, multiplier=3.0, lognormal_share=1.0)
    logs = torch.log(lognormal / 3.0)
    assert abs(float(logs.mean()) - math.log(4.0)) < 0.03
    assert abs(float(logs.std()) - 1.2) < 0.03
    uniform = sample_sigma(40000, generator, multiplier=3.0, lognormal_share=0.0)
    assert float(uniform.min()) >= 3.0 and float(uniform.max()) <= 255.0
    assert abs(float(uniform.mean()) - 129.0) < 1.5
    mixed = sample_sigma(40000, generator, multiplier=1.0)
    # P(sigma > 85) comes from the log-normal part only: 0.7 * P(Z > (ln 85 - ln 4) / 1.2).
    above = float((mixed > 85).float().mean())
    z = (math.log(85) - math.log(4)) / 1.2
    expected = 0.7 * 0.5 * math.erfc(z / math.sqrt(2))
    assert abs(above - expected) < 0.002
    # Below 1: log-normal only as well, 0.7 * P(Z < -ln 4 / 1.2).
    below = float((mixed < 1).float().mean())
    assert abs(below - 0.7 * 0.5 * math.erfc(math.log(4) / 1.2 / math.sqrt(2))) < 0.01


def test_sigma_is_deterministic_for_a_generator_seed():
    a = sample_sigma(8, torch.Generator().manual_seed(3))
    b = sample_sigma(8, torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, b)
    assert video_noise_multiplier(9) == 3.0


def test_value_targets():
    np.testing.assert_allclose(value_targets(4, True, 0.5),
                               [2 * 0.125 - 1, 2 * 0.25 - 1, 0.0, 1.0])
    np.testing.assert_array_equal(value_targets(3, False, 0.9), [-1.0, -1.0, -1.0])
    with pytest.raises(ValueError, match='gamma'):
        value_targets(3, True, 0.0)
