"""The Wan2.1 causal video VAE of Cosmos-Predict2, as diffusers' AutoencoderKLWan.

``CosmosVAE`` wraps ``diffusers.AutoencoderKLWan`` (default config = the Wan2.1 VAE; reference
section 6; /work/shared/reference/diffusers-adapter.md section 3) and adds what the policy needs:

- pixels: uint8 -> ``x / 127.5 - 1`` in the VAE dtype (the reference runs the VAE in bf16);
- latent normalization of the reference, in the VAE dtype: ``(mu - mean) * (1 / std)`` with the
  16 per-channel constants below, and its inverse ``z / (1 / std) + mean`` before decoding;
- chunked causal encoding (frame 0 alone, then 4-frame chunks) with an explicit feature cache,
  so that only the frames whose latents are needed are encoded:
  ``encode_conditioning`` encodes the blank frame and the black proprio slot once (their latents
  and the encoder's causal cache after them are cached per image size, dtype and device), then
  per query only one 4-frame chunk per camera. Because the encoder is causal, this equals the
  conditioning latents of a full encode of the whole 1 + 4 (T - 1)-frame policy video.
- optional bf16 parity (``parity``; by default on for bf16 weights): the VAE's RMS norms
  normalize in the input dtype as the reference does (diffusers normalizes bf16 input in fp32).
  Applied per instance; diffusers' own WanRMS_norm class is not modified.
- batch invariance on the CPU: PyTorch takes other conv3d kernels for one sample than for a
  batch (oneDNN for more of the layers at B >= 2, rounding differently), and the oneDNN rows of
  a sample are the same bits at any B >= 2. So ``encode_conditioning`` encodes a lone sample as
  a batch of two copies there: a sample's latents are then the same bits alone and in any batch
  (a policy server's robots), as the DiT's outputs are (engine/dit.py); the pair costs a single
  robot about 5 ms (23 -> 28 ms, the shipped sim model), where encoding batches one sample at
  a time would cost a batch of four 92 instead of 41 ms. On CUDA a batch is encoded as it comes.
"""
from dataclasses import dataclass

from diffusers.models.autoencoders.autoencoder_kl_wan import (
    AutoencoderKLWan, WanCausalConv3d, WanRMS_norm)
import torch
from torch import nn
import torch.nn.functional as F

from cosmos_policy_ros.layout import LATENT_CHANNELS, VAE_SPATIAL_FACTOR, VAE_TEMPORAL_FACTOR

# Per-channel statistics of Wan2.1 latents (reference tokenizers/wan2pt1.py:229-267).
LATENT_MEAN = (-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
               0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921)
LATENT_STD = (2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
              3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160)

# Pixel frames of the constant prefix of every policy video: the blank frame and the black
# proprio slot (4 frames), i.e. latent frames 0 and 1.
PREFIX_PIXEL_FRAMES = 1 + VAE_TEMPORAL_FACTOR


@dataclass(frozen=True)
class VAEConfig:
    """Size of a Wan2.1-style causal VAE. Only `wan2.1` matches the released tokenizer."""

    name: str
    base_dim: int                              # channels of the first encoder level
    dim_mult: tuple = (1, 2, 4, 4)             # channel multiplier per level
    num_res_blocks: int = 2                    # residual blocks per encoder level
    temporal_downsample: tuple = (False, True, True)  # which levels halve time

    def __post_init__(self):
        object.__setattr__(self, 'dim_mult', tuple(self.dim_mult))
        object.__setattr__(self, 'temporal_downsample', tuple(self.temporal_downsample))
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f'`name` must be a non-empty string. Got {self.name!r}.')
        for field in ('base_dim', 'num_res_blocks'):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f'`{field}` must be a positive integer. Got {value!r}.')
        # The Wan2.1 layout (and diffusers' checkpoint converter) assume four levels with two
        # temporal and three spatial down-samplings: 4x in time, 8x in space.
        if self.dim_mult != (1, 2, 4, 4) or self.temporal_downsample != (False, True, True):
            raise ValueError(f'`dim_mult` must be (1, 2, 4, 4) and `temporal_downsample` '
                             f'(False, True, True) (the Wan2.1 layout). Got {self.dim_mult!r}, '
                             f'{self.temporal_downsample!r}.')
        if self.base_dim % 2:
            raise ValueError(f'`base_dim` must be even. Got {self.base_dim}.')

    def diffusers_kwargs(self):
        """Keyword arguments of AutoencoderKLWan for this size."""
        return dict(
            base_dim=self.base_dim,
            z_dim=LATENT_CHANNELS,
            dim_mult=list(self.dim_mult),
            num_res_blocks=self.num_res_blocks,
            attn_scales=[],
            temperal_downsample=list(self.temporal_downsample),
            latents_mean=list(LATENT_MEAN),
            latents_std=list(LATENT_STD),
        )


VAE_PRESETS = {
    # The Wan2.1 VAE of Cosmos-Predict2 (tokenizer.pth): 126.9 M parameters.
    'wan2.1': VAEConfig('wan2.1', base_dim=96),
    # Tests and benchmarks: the same layout with 8 base channels (~0.9 M parameters).
    'tiny': VAEConfig('tiny', base_dim=8),
}


def vae_config(name):
    """The VAEConfig preset `name` ('wan2.1' or 'tiny'); a VAEConfig is returned as is."""
    if isinstance(name, VAEConfig):
        return name
    try:
        return VAE_PRESETS[name]
    except (KeyError, TypeError):
        raise ValueError(f'unknown VAE preset {name!r}; choose one of {sorted(VAE_PRESETS)}.'
                         ) from None


class _PatchState:
    def __init__(self):
        self.bf16_parity = False


class _ParityWanRMSNorm(WanRMS_norm):
    """WanRMS_norm that normalizes in the input dtype (reference RMS_norm) under bf16 parity."""

    def forward(self, x):
        if not self._patch_state.bf16_parity or x.dtype == torch.float32:
            return super().forward(x)
        normalized = F.normalize(x, dim=1 if self.channel_first else -1)
        return normalized * self.scale * self.gamma + self.bias


class CosmosVAE(nn.Module):
    """Wan2.1 VAE with the policy's pixel and latent conventions.

    ``self.vae`` is the diffusers AutoencoderKLWan (its state-dict keys are the diffusers ones).
    Build it with ``cosmos_policy_ros.engine.checkpoint.load_vae`` for real weights.
    parity: None (bf16 parity on exactly when the weights are bf16), True or False.
    """

    def __init__(self, config='wan2.1', *, parity=None):
        super().__init__()
        if parity not in (None, True, False):
            raise ValueError(f'`parity` must be None, True or False. Got {parity!r}.')
        self.config = vae_config(config)
        self.parity = parity
        self.vae = AutoencoderKLWan(**self.config.diffusers_kwargs())
        self._patch_state = _PatchState()
        for module in self.vae.modules():
            if type(module) is WanRMS_norm:
                module.__class__ = _ParityWanRMSNorm
                module._patch_state = self._patch_state
        self._encoder_convs = sum(
            isinstance(module, WanCausalConv3d) for module in self.vae.encoder.modules())
        self._prefix = {}

    @property
    def dtype(self):
        return self.vae.quant_conv.weight.dtype

    @property
    def device(self):
        return self.vae.quant_conv.weight.device

    @property
    def bf16_parity(self):
        return self.parity if self.parity is not None else self.dtype == torch.bfloat16

    # --- public API ----------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, video):
        """Normalized latents of a whole uint8 video.

        video: (B, 3, F, H, W) uint8 with F = 1 + 4k and H, W multiples of 8.
        Returns (B, 16, 1 + k, H/8, W/8) in the VAE dtype.
        """
        self._check_video(video, 'video')
        self._patch_state.bf16_parity = self.bf16_parity
        features = self._run_encoder(self._pixels(video), self._empty_cache(), first=True)
        return self._normalized_mu(features)

    @torch.no_grad()
    def encode_conditioning(self, camera_images):
        """Latents of the conditioning frames of a policy video: blank, proprio, each camera.

        camera_images: (B, N, 3, H, W) uint8, the current images in layout camera order.
        Returns (B, 16, 2 + N, H/8, W/8) in the VAE dtype: equal to the first 2 + N latent
        frames of ``encode`` of the full policy video (blank frame, 4 black proprio frames,
        4 copies of each camera image, then any placeholder frames).
        """
        if camera_images.ndim != 5 or camera_images.shape[2] != 3:
            raise ValueError(f'`camera_images` must be (B, N, 3, H, W). '
                             f'Got {tuple(camera_images.shape)}.')
        batch, cameras, _, height, width = camera_images.shape
        if batch == 1 and self.device.type == 'cpu':  # batch invariance (module docstring)
            return self.encode_conditioning(camera_images.expand(2, -1, -1, -1, -1))[:1]
        self._check_video(camera_images[:, 0, :, None], 'camera_images')
        self._patch_state.bf16_parity = self.bf16_parity
        prefix_latents, prefix_cache = self._prefix_for(height, width)
        cache = [None if entry is None else entry.expand(batch, *entry.shape[1:])
                 for entry in prefix_cache]  # slots of uncached 1x1x1 shortcut convs stay None
        pixels = self._pixels(camera_images)  # (B, N, 3, H, W) in the VAE dtype
        chunks = [pixels[:, i, :, None].expand(-1, -1, VAE_TEMPORAL_FACTOR, -1, -1)
                  for i in range(cameras)]  # N x (B, 3, 4, H, W): 4 copies of each image
        features = self._run_encoder(torch.cat(chunks, dim=2), cache, first=False)
        latents = self._normalized_mu(features)  # (B, 16, N, h, w)
        prefix = prefix_latents.expand(batch, *prefix_latents.shape[1:])
        return torch.cat([prefix, latents], dim=2)

    @torch.no_grad()
    def decode(self, latents):
        """uint8 video of normalized latents (visualisation of predicted frames).

        latents: (B, 16, T, h, w), any float dtype. Returns (B, 3, 1 + 4 (T - 1), 8h, 8w) uint8.
        """
        if latents.ndim != 5 or latents.shape[1] != LATENT_CHANNELS:
            raise ValueError(f'`latents` must be (B, {LATENT_CHANNELS}, T, h, w). '
                             f'Got {tuple(latents.shape)}.')
        self._patch_state.bf16_parity = self.bf16_parity
        mean, inv_std = self._latent_scale()
        z = latents.to(device=self.device, dtype=self.dtype) / inv_std + mean  # reference order
        video = self.vae.decode(z, return_dict=False)[0]  # (B, 3, F, H, W) in [-1, 1]
        return ((video.float() + 1.0) * 127.5).clamp(0, 255).to(torch.uint8)

    def clear_prefix_cache(self):
        """Forget the cached prefix (call after changing the weights in place)."""
        self._prefix.clear()

    # --- internals -----------------------------------------------------------------------------
    def _pixels(self, video):
        """uint8 -> [-1, 1] in the VAE dtype, as the reference (x.to(dtype) / 127.5 - 1)."""
        return video.to(device=self.device, dtype=self.dtype) / 127.5 - 1.0

    def _empty_cache(self):
        return [None] * self._encoder_convs

    def _run_encoder(self, pixels, cache, *, first):
        """Causal encoder over (B, 3, F, H, W): frame 0 alone if `first`, then 4-frame chunks.

        `cache` is the per-conv causal feature cache, updated in place.
        Returns the encoder output (B, 32, chunks, h, w).
        """
        frames = pixels.shape[2]
        starts = [0] if first else []
        begin = 1 if first else 0
        starts += list(range(begin, frames, VAE_TEMPORAL_FACTOR))
        outputs = []
        for i, start in enumerate(starts):
            stop = 1 if first and i == 0 else start + VAE_TEMPORAL_FACTOR
            outputs.append(self.vae.encoder(pixels[:, :, start:stop], feat_cache=cache,
                                            feat_idx=[0]))
        return torch.cat(outputs, dim=2)

    def _normalized_mu(self, features):
        """quant_conv, keep mu, then (mu - mean) * (1 / std) in the VAE dtype."""
        mu = self.vae.quant_conv(features)[:, :LATENT_CHANNELS]  # (B, 32, T, h, w) -> mu
        mean, inv_std = self._latent_scale()
        return (mu - mean) * inv_std

    def _latent_scale(self):
        """(mean, 1 / std) as (1, 16, 1, 1, 1) tensors in the VAE dtype (1 / std rounded there)."""
        kwargs = dict(dtype=self.dtype, device=self.device)
        mean = torch.tensor(LATENT_MEAN, **kwargs).view(1, LATENT_CHANNELS, 1, 1, 1)
        inv_std = 1.0 / torch.tensor(LATENT_STD, **kwargs).view(1, LATENT_CHANNELS, 1, 1, 1)
        return mean, inv_std

    def _prefix_for(self, height, width):
        """Latents (1, 16, 2, h, w) and encoder cache after the black 5-frame prefix, cached."""
        key = (height, width, self.dtype, self.device, self.bf16_parity)
        if key not in self._prefix:
            black = torch.zeros(1, 3, PREFIX_PIXEL_FRAMES, height, width, dtype=torch.uint8)
            cache = self._empty_cache()
            features = self._run_encoder(self._pixels(black), cache, first=True)
            self._prefix.clear()
            self._prefix[key] = (self._normalized_mu(features), cache)
        return self._prefix[key]

    def _check_video(self, video, name):
        if video.dtype != torch.uint8:
            raise TypeError(f'`{name}` must be uint8 pixels. Got {video.dtype}.')
        if video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(f'`{name}` must be (B, 3, F, H, W). Got {tuple(video.shape)}.')
        frames, height, width = video.shape[2:]
        if (frames - 1) % VAE_TEMPORAL_FACTOR:
            raise ValueError(f'`{name}` must have 1 + {VAE_TEMPORAL_FACTOR}k frames. '
                             f'Got {frames}.')
        if height % VAE_SPATIAL_FACTOR or width % VAE_SPATIAL_FACTOR:
            raise ValueError(f'`{name}` height and width must be multiples of '
                             f'{VAE_SPATIAL_FACTOR}. Got {(height, width)}.')
