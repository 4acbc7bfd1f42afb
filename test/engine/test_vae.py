"""The VAE adapter: latent normalization, conditioning encode with the prefix cache, decode."""
from diffusers import AutoencoderKLWan
import pytest
import torch
import torch.nn.functional as F

from cosmos_policy_ros.engine.checkpoint import load_vae
from cosmos_policy_ros.engine.synthetic_checkpoints import write_vae_checkpoint
from cosmos_policy_ros.engine.vae import (
    CosmosVAE, LATENT_MEAN, LATENT_STD, vae_config, VAEConfig)
from cosmos_policy_ros.layout import LatentLayout

SIZE = 16  # pixels; 2 x 2 latents


@pytest.fixture(scope='module')
def tokenizer(tmp_path_factory):
    return write_vae_checkpoint(tmp_path_factory.mktemp('vae') / 'tokenizer.pth', 'tiny', seed=5)


@pytest.fixture(scope='module')
def vae(tokenizer):
    return load_vae(tokenizer, 'tiny', dtype=torch.float32)


def _policy_video(layout, cameras, generator):
    """The full uint8 policy video of a layout (reference section 1): blank, black proprio slot,
    4 copies of each camera, then placeholders (black action, random future frames, black value).
    """
    batch = cameras.shape[0]
    black = torch.zeros(batch, 3, 4, SIZE, SIZE, dtype=torch.uint8)
    frames = [black[:, :, :1], black]
    frames += [cameras[:, i, :, None].expand(-1, -1, 4, -1, -1) for i in range(layout.num_cameras)]
    frames += [black, torch.randint(0, 256, (batch, 3, 4 * (1 + layout.num_cameras), SIZE, SIZE),
                                    generator=generator, dtype=torch.uint8), black]
    video = torch.cat(frames, dim=2)
    assert video.shape[2] == layout.num_pixel_frames
    return video


def _cameras(batch, count, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, count, 3, SIZE, SIZE), generator=generator,
                         dtype=torch.uint8), generator


def test_latent_constants_are_the_wan21_statistics():
    # Independent source: the default config of diffusers' AutoencoderKLWan (= Wan2.1).
    with torch.device('meta'):
        config = AutoencoderKLWan().config
    assert list(config.latents_mean) == list(LATENT_MEAN)
    assert list(config.latents_std) == list(LATENT_STD)


def test_encode_equals_diffusers_encode_then_reference_normalization(vae):
    cameras, generator = _cameras(1, 2, seed=1)
    video = _policy_video(LatentLayout.preset('libero'), cameras, generator)
    latents = vae.encode(video)
    assert latents.shape == (1, 16, 9, SIZE // 8, SIZE // 8)
    with torch.no_grad():
        mu = vae.vae.encode(video.float() / 127.5 - 1.0).latent_dist.mode()
    mean = torch.tensor(LATENT_MEAN).view(1, 16, 1, 1, 1)
    std = torch.tensor(LATENT_STD).view(1, 16, 1, 1, 1)
    torch.testing.assert_close(latents, (mu - mean) / std, rtol=1e-5, atol=1e-5)
    assert latents.std() > 0.1


@pytest.mark.parametrize('preset, batch', [('libero', 1), ('aloha', 2)])
def test_conditioning_encode_equals_full_encode(vae, preset, batch):
    layout = LatentLayout.preset(preset)
    cameras, generator = _cameras(batch, layout.num_cameras, seed=2)
    full = vae.encode(_policy_video(layout, cameras, generator))
    assert full.shape[2] == layout.num_frames
    vae.clear_prefix_cache()
    for _ in range(2):  # computes the prefix, then reuses it
        conditioning = vae.encode_conditioning(cameras)
        assert conditioning.shape == (batch, 16, layout.num_conditioning_frames, 2, 2)
        torch.testing.assert_close(conditioning, full[:, :, :layout.num_conditioning_frames],
                                   rtol=1e-5, atol=1e-5)
    # Each sample of a batch is encoded on its own: sample 0 alone gives the same latents.
    alone = vae.encode_conditioning(cameras[:1])
    torch.testing.assert_close(alone, conditioning[:1], rtol=1e-5, atol=1e-5)


def test_conditioning_latents_ignore_the_placeholder_frames(vae):
    # The premise of the conditioning-only encode: the VAE is causal.
    layout = LatentLayout.preset('libero')
    cameras, _ = _cameras(1, layout.num_cameras, seed=3)
    first = vae.encode(_policy_video(layout, cameras, torch.Generator().manual_seed(10)))
    second = vae.encode(_policy_video(layout, cameras, torch.Generator().manual_seed(11)))
    cond = layout.num_conditioning_frames
    assert torch.equal(first[:, :, :cond], second[:, :, :cond])
    assert not torch.allclose(first[:, :, cond:], second[:, :, cond:])


def test_prefix_cache_follows_image_size_and_dtype(tokenizer):
    vae = load_vae(tokenizer, 'tiny', dtype=torch.float32)
    cameras, _ = _cameras(1, 2, seed=4)
    small = vae.encode_conditioning(cameras)
    larger = F.interpolate(cameras[0].float(), scale_factor=2).round().to(torch.uint8)[None]
    assert vae.encode_conditioning(larger).shape[-1] == 2 * SIZE // 8
    torch.testing.assert_close(vae.encode_conditioning(cameras), small)
    bf16 = vae.to(torch.bfloat16)
    assert bf16.encode_conditioning(cameras).dtype == torch.bfloat16


def test_bf16_conditioning_encode_matches_bf16_full_encode(tokenizer):
    vae = load_vae(tokenizer, 'tiny', dtype=torch.bfloat16)
    assert vae.bf16_parity
    layout = LatentLayout.preset('libero')
    cameras, generator = _cameras(2, layout.num_cameras, seed=6)
    cond = layout.num_conditioning_frames
    # Only the conditioning frames' pixels (the later ones cannot matter, see above).
    full = vae.encode(_policy_video(layout, cameras, generator)[:, :, :1 + 4 * (cond - 1)])
    conditioning = vae.encode_conditioning(cameras)
    error = (conditioning.float() - full[:, :, :cond].float()).abs().max()
    assert error <= 2e-2 * full.float().abs().max()


def test_parity_rms_norm_normalizes_in_bf16_like_the_reference(vae):
    norm = vae.vae.encoder.down_blocks[0].norm1
    generator = torch.Generator().manual_seed(0)
    x = (3 * torch.randn(2, norm.gamma.shape[0], 3, 4, 4, generator=generator)).to(torch.bfloat16)
    gamma = (1 + 0.2 * torch.randn(norm.gamma.shape, generator=generator)).to(torch.bfloat16)
    bf16 = CosmosVAE('tiny', parity=True).to(torch.bfloat16)
    bf16_norm = bf16.vae.encoder.down_blocks[0].norm1
    with torch.no_grad():
        bf16_norm.gamma.copy_(gamma)
    # Reference RMS_norm: F.normalize over channels in the input dtype, times sqrt(C) * gamma.
    channels = x.shape[1]
    denominator = torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(1e-12)
    expected = x / denominator * channels ** 0.5 * gamma
    bf16._patch_state.bf16_parity = True
    assert torch.equal(bf16_norm(x), expected)
    bf16._patch_state.bf16_parity = False
    assert not torch.equal(bf16_norm(x), expected)  # diffusers normalizes in fp32


def test_decode_gives_uint8_video_of_the_denormalized_latents(vae):
    layout = LatentLayout.preset('libero')
    cameras, generator = _cameras(1, layout.num_cameras, seed=8)
    latents = vae.encode(_policy_video(layout, cameras, generator))[:, :, :3]
    video = vae.decode(latents)
    assert video.shape == (1, 3, 9, SIZE, SIZE) and video.dtype == torch.uint8
    assert video.min() < 64 and video.max() > 192  # the random decoder spans the range
    mean = torch.tensor(LATENT_MEAN).view(1, 16, 1, 1, 1)
    std = torch.tensor(LATENT_STD).view(1, 16, 1, 1, 1)
    with torch.no_grad():
        pixels = vae.vae.decode(latents * std + mean).sample
    expected = ((pixels + 1) * 127.5).clamp(0, 255)
    assert (video.float() - expected).abs().max() < 1.01  # truncation to uint8, rounding


def test_bad_inputs_are_named(vae):
    with pytest.raises(TypeError, match='uint8'):
        vae.encode(torch.zeros(1, 3, 5, SIZE, SIZE))
    with pytest.raises(ValueError, match='1 \\+ 4k frames'):
        vae.encode(torch.zeros(1, 3, 4, SIZE, SIZE, dtype=torch.uint8))
    with pytest.raises(ValueError, match='camera_images'):
        vae.encode_conditioning(torch.zeros(1, 3, SIZE, SIZE, dtype=torch.uint8))
    with pytest.raises(ValueError, match='latents'):
        vae.decode(torch.zeros(1, 4, 2, 4, 4))
    with pytest.raises(ValueError, match='unknown VAE preset'):
        vae_config('wan2.2')
    with pytest.raises(ValueError, match='base_dim'):
        VAEConfig('x', base_dim=7)
