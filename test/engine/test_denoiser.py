"""The x0 denoiser: rectified-flow scaling, conditioning frames and dtype casts around the net."""
import pytest
import torch

from cosmos_policy_ros.engine.denoiser import ConditionedDenoiser, rectified_flow_scaling

B, T, S, L = 2, 9, 4, 6
FRAMES = torch.tensor([True] * 4 + [False] * 5)  # LIBERO policy pass


def _tensors(seed=0):
    generator = torch.Generator().manual_seed(seed)
    clean = torch.randn(B, 16, T, S, S, generator=generator)
    x = torch.randn(B, 16, T, S, S, generator=generator) * 20
    text = torch.randn(1, L, 1024, generator=generator)
    return clean, x, text


def test_scaling_closed_form():
    # sigma = 4: t = 0.8, c_skip = c_in = 1/5, c_out = -4/5, c_noise = 4/5.
    # sigma = 80: c_in = 1/81, t = 80/81.
    c_skip, c_out, c_in, c_noise = rectified_flow_scaling(torch.tensor([4.0, 80.0, 0.0],
                                                                       dtype=torch.float64))
    torch.testing.assert_close(c_skip, torch.tensor([0.2, 1 / 81, 1.0], dtype=torch.float64))
    torch.testing.assert_close(c_in, c_skip)
    torch.testing.assert_close(c_out, torch.tensor([-0.8, -80 / 81, 0.0], dtype=torch.float64))
    torch.testing.assert_close(c_noise, -c_out)
    # x0 = c_skip x + c_out F with x = x0 + sigma eps and F = eps - x0 recovers x0 exactly.
    x0, eps, sigma = 0.7, -1.3, 12.0
    c_skip, c_out, _, _ = rectified_flow_scaling(torch.tensor(sigma, dtype=torch.float64))
    assert float(c_skip * (x0 + sigma * eps) + c_out * (eps - x0)) == pytest.approx(x0)


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_what_the_network_sees_and_what_comes_back(make_net, dtype):
    clean, x, text = _tensors()
    net = make_net(dtype=dtype, record=True)
    sigma = torch.tensor([4.0, 42.29])
    x0 = ConditionedDenoiser(net, clean, FRAMES, text)(x, sigma)
    call = net.calls[0]
    # Every input arrives in the network's dtype, the text expanded to the batch.
    assert {call['x'].dtype, call['timesteps'].dtype, call['mask'].dtype,
            call['text'].dtype} == {dtype}
    assert call['text'].shape == (B, L, 1024)
    assert torch.equal(call['text'], text.expand(B, -1, -1).to(dtype))
    # x: the clean latent on conditioning frames, x / (1 + sigma) elsewhere.
    c_in = (1 / (1 + sigma)).reshape(B, 1, 1, 1, 1)
    torch.testing.assert_close(call['x'][:, :, :4], clean[:, :, :4].to(dtype), rtol=0, atol=0)
    torch.testing.assert_close(call['x'][:, :, 4:].float(), (x * c_in)[:, :, 4:],
                               rtol=1e-2 if dtype == torch.bfloat16 else 1e-6, atol=0)
    # Time 0 on conditioning frames and t = sigma / (1 + sigma) elsewhere, in the net dtype
    # (bf16 rounds 0.8 to 0.80078125 and 42.29 / 43.29 to 0.9765625).
    t = (sigma / (1 + sigma)).to(dtype)
    expected = torch.cat([torch.zeros(B, 4, dtype=dtype), t[:, None].expand(B, 5)], dim=1)
    assert torch.equal(call['timesteps'], expected)
    # Mask channel: (B, 1, T, H, W), 1 on the first four frames.
    assert call['mask'].shape == (B, 1, T, S, S)
    assert call['mask'][:, :, :4].eq(1).all() and call['mask'][:, :, 4:].eq(0).all()
    # x0: float32, the clean latent on conditioning frames, c_skip x + c_out F elsewhere.
    assert x0.dtype == torch.float32
    assert torch.equal(x0[:, :, :4], clean[:, :, :4])
    output = net.formula(call['x'], call['timesteps'], call['mask'], call['text']).float()
    sigma_ = sigma.reshape(B, 1, 1, 1, 1)
    expected_x0 = x / (1 + sigma_) - sigma_ / (1 + sigma_) * output
    torch.testing.assert_close(x0[:, :, 4:], expected_x0[:, :, 4:], rtol=1e-5, atol=1e-5)


def test_bfloat16_timesteps_are_rounded_like_the_reference(make_net):
    clean, x, text = _tensors()
    net = make_net(dtype=torch.bfloat16, record=True)
    ConditionedDenoiser(net, clean, FRAMES, text)(x, torch.tensor([4.0, 9.6183]))
    # 9.6183 / 10.6183 = 0.905820... -> bf16 0.90625 (8 significant bits).
    assert net.calls[0]['timesteps'][1, -1].item() == 0.90625
    assert net.calls[0]['timesteps'][0, -1].item() == 0.80078125


def test_per_sample_condition_frames(make_net):
    clean, x, text = _tensors()
    frames = torch.zeros(B, T, dtype=torch.bool)
    frames[0, :4] = True
    frames[1, :8] = True  # e.g. a value pass for the second sample
    net = make_net(record=True)
    x0 = ConditionedDenoiser(net, clean, frames, torch.cat([text, text * 2]))(
        x, torch.tensor([10.0, 10.0]))
    assert net.calls[0]['timesteps'][0].eq(0).tolist() == [True] * 4 + [False] * 5
    assert net.calls[0]['timesteps'][1].eq(0).tolist() == [True] * 8 + [False]
    assert torch.equal(x0[1, :, :8], clean[1, :, :8])
    assert not torch.equal(x0[0, :, 4:8], clean[0, :, 4:8])


def test_bad_inputs(make_net):
    clean, x, text = _tensors()
    net = make_net()
    with pytest.raises(ValueError, match=r'`condition_frames` must be a bool tensor of shape '
                                         r'\(2, 9\) or \(9,\)'):
        ConditionedDenoiser(net, clean, torch.ones(8, dtype=torch.bool), text)
    with pytest.raises(ValueError, match=r'`text_embedding` must be a \(1 or 2, L, 1024\)'):
        ConditionedDenoiser(net, clean, FRAMES, torch.zeros(3, L, 1024))
    with pytest.raises(ValueError, match=r'`text_embedding` must be'):
        ConditionedDenoiser(net, clean, FRAMES, torch.zeros(1, L, 4096))
    with pytest.raises(ValueError, match=r'`clean_latent` must be a \(B, 16, T, H, W\) tensor'):
        ConditionedDenoiser(net, clean[0], FRAMES, text)

    class NoDtype:
        device = torch.device('cpu')

        def __call__(self, *args):
            return args[0]
    with pytest.raises(TypeError, match=r'`net.dtype` must be a floating torch.dtype'):
        ConditionedDenoiser(NoDtype(), clean, FRAMES, text)
    denoiser = ConditionedDenoiser(make_net(lambda x, t, m, e: x[:, :8]), clean, FRAMES, text)
    with pytest.raises(ValueError, match=r'the network must return F of shape \(2, 16, 9, 4, 4\)'):
        denoiser(x, torch.tensor([4.0, 4.0]))
    with pytest.raises(ValueError, match=r'sigma must have shape \(2,\)'):
        ConditionedDenoiser(net, clean, FRAMES, text)(x, torch.tensor(4.0))
