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


def test_loss_frames_leave_a_generated_frame_unsupervised():
    # F = 0 as above; sample 0 supervises frame 3 only (frame 2 generated, not supervised),
    # sample 1 its default frames 1-3. A conditioning frame or an empty selection is refused.
    x0, eps, flags, text, sigma = _case()
    frames = torch.tensor([[False, False, False, True], [False, True, True, True]])
    loss = diffusion_loss(FormulaNet(lambda x, t: torch.zeros_like(x)), x0, flags, text, sigma,
                          eps, loss_frames=frames)
    per_sample = [((eps[0, :, 3] - x0[0, :, 3]) ** 2).mean(),
                  ((eps[1, :, 1:] - x0[1, :, 1:]) ** 2).mean()]
    assert math.isclose(float(loss), float(sum(per_sample) / 2), rel_tol=1e-5)
    default = diffusion_loss(FormulaNet(lambda x, t: torch.zeros_like(x)), x0, flags, text,
                             sigma, eps)
    assert not math.isclose(float(loss), float(default), rel_tol=1e-3)
    for bad in ([[True, False, False, True], [False, True, True, True]],
                [[False, False, False, False], [False, True, True, True]]):
        with pytest.raises(ValueError, match='loss_frames'):
            diffusion_loss(FormulaNet(lambda x, t: torch.zeros_like(x)), x0, flags, text,
                           sigma, eps, loss_frames=torch.tensor(bad))


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


# --- the VAE as an autoencoder -----------------------------------------------------------------
def _tiny_vae(seed=3):
    from cosmos_policy_ros.engine.checkpoint import convert_vae_state_dict
    from cosmos_policy_ros.engine.synthetic_checkpoints import random_vae_state_dict
    from cosmos_policy_ros.engine.vae import CosmosVAE
    vae = CosmosVAE('tiny')
    converted, _ = convert_vae_state_dict(random_vae_state_dict('tiny', seed=seed))
    vae.vae.load_state_dict(converted, strict=True)
    return vae.float().eval().requires_grad_(False)


def _camera_images(batch=3, size=16, seed=0):
    """(B, 2, 3, S, S) uint8: a flat background with a bright square at a random place."""
    rng = np.random.RandomState(seed)
    images = np.full((batch, 2, 3, size, size), 200, dtype=np.uint8)
    for b in range(batch):
        for n in range(2):
            u, v = rng.randint(0, size - 4, size=2)
            images[b, n, :, v:v + 4, u:u + 4] = rng.randint(0, 255, size=(3, 1, 1))
    return torch.from_numpy(images)


def test_encode_with_grad_equals_encode_conditioning():
    from cosmos_policy_ros.engine.training import encode_conditioning_with_grad
    vae = _tiny_vae()
    images = _camera_images()
    expected = vae.encode_conditioning(images)
    got = encode_conditioning_with_grad(vae, images)
    assert got.shape == expected.shape == (3, 16, 4, 2, 2)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_foreground_weights_by_hand():
    from cosmos_policy_ros.engine.training import foreground_weights
    video = torch.zeros(1, 3, 1, 1, 3)
    video[0, :, 0, 0, 1] = torch.tensor([0.0, 0.05, 0.0])   # within 0.1 of the background
    video[0, :, 0, 0, 2] = torch.tensor([0.0, 0.0, -0.5])   # foreground
    weights = foreground_weights(video, torch.zeros(3), 4.0)
    assert weights.flatten().tolist() == [1.0, 1.0, 5.0]


def test_weighted_reconstruction_loss_by_hand():
    """With a VAE whose decode is replaced by a constant, the loss is the weighted mean error."""
    from cosmos_policy_ros.engine.training import vae_reconstruction_loss
    vae = _tiny_vae()
    images = _camera_images(batch=2)
    target = images.reshape(4, 3, 1, 16, 16).float() / 127.5 - 1.0  # (B N, 3, 1, H, W)
    seen = []

    def decode(z, return_dict=False):
        seen.append(tuple(z.shape))
        return (torch.zeros_like(target),)
    vae.vae.decode = decode
    background = torch.full((3,), 200 / 127.5 - 1.0)
    plain = vae_reconstruction_loss(vae, images)
    torch.testing.assert_close(plain, (target ** 2).mean())
    weighted = vae_reconstruction_loss(vae, images, background=background,
                                       foreground_weight=9.0)
    mask = ((target - background.view(1, 3, 1, 1, 1)).abs().amax(1, keepdim=True) > 0.1)
    w = 1.0 + 9.0 * mask.float()
    torch.testing.assert_close(weighted, (w * target ** 2).sum() / (3 * w.sum()))
    assert seen == [(4, 16, 1, 2, 2)] * 2  # each camera latent decoded alone


def test_vae_reconstruction_loss_falls_in_a_few_steps():
    from cosmos_policy_ros.engine.training import vae_reconstruction_loss
    torch.manual_seed(0)
    vae = _tiny_vae()
    vae.vae.train().requires_grad_(True)
    images = _camera_images(batch=4)
    optimizer = torch.optim.Adam(vae.vae.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        loss = vae_reconstruction_loss(vae, images)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0], losses


def test_calibration_keeps_the_decoder_consistent():
    """After calibrate_vae_latents, decoding the new latents gives the old decoded pixels."""
    from cosmos_policy_ros.engine.training import calibrate_vae_latents
    vae = _tiny_vae()
    images = _camera_images(batch=4)
    latents = vae.encode_conditioning(images)
    before = vae.vae.decode(latents / vae._latent_scale()[1] + vae._latent_scale()[0],
                            return_dict=False)[0]
    calibrated = calibrate_vae_latents(vae, latents)
    torch.testing.assert_close(vae.encode_conditioning(images), calibrated, rtol=1e-4,
                               atol=1e-4)
    cameras = calibrated[:, :, 2:]
    torch.testing.assert_close(cameras.mean(dim=(0, 2, 3, 4)), torch.zeros(16), atol=1e-4,
                               rtol=0)
    after = vae.vae.decode(calibrated / vae._latent_scale()[1] + vae._latent_scale()[0],
                           return_dict=False)[0]
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


def test_position_probe_loss_by_hand():
    from cosmos_policy_ros.engine.training import position_probe_loss
    generator = torch.Generator().manual_seed(1)
    latents = torch.randn(5, 16, 2, 2, generator=generator)
    targets = torch.randn(5, 3, generator=generator)
    probe = torch.nn.Linear(64, 3)
    z = latents.reshape(5, 64)
    variance = z.var(dim=0)
    standardized = (z - z.mean(dim=0)) / torch.sqrt(variance + 0.01 * variance.mean())
    expected = ((standardized @ probe.weight.T + probe.bias - targets) ** 2).mean()
    torch.testing.assert_close(position_probe_loss(probe, latents, targets), expected)
    # Invariant to a per-feature affine change of the latents (up to the variance floor).
    scaled = position_probe_loss(probe, 3.0 * latents + 2.0, targets)
    torch.testing.assert_close(scaled, expected, rtol=1e-4, atol=1e-5)
