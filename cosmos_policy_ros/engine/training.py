"""The Cosmos Policy training objective (reference sections 2-4), for small models on a CPU.

One training sample is a clean latent sequence x0 of the layout (image latents of the current
and future camera frames, the injected proprio, action chunk and value) and a set of
conditioning frames. The objective, as in the reference:

    sigma ~ hybrid: 70 % log-normal(p_mean = ln 4, p_std = 1.2), 30 % U[1, 85],
            times the video noise multiplier sqrt(latent frames)
    x_sigma = x0 + sigma * eps,  eps ~ N(0, 1)
    x0_hat  = the package's rectified-flow denoiser (engine.denoiser.ConditionedDenoiser):
              conditioning frames clean with t = 0, the others c_in * x_sigma with
              t = sigma / (1 + sigma)
    loss    = mean over the generated frames of (1 + sigma)^2 / sigma^2 * (x0_hat - x0)^2

and the value target: a successful episode of T steps has return G = gamma^(T - f) at its state
f (1 at the final state), stored as 2G - 1; a failed one stores -1 (reference: G_t =
gamma^(T-1-t) r_T rescaled to [-1, 1], taken at the future frame).
"""
import math

import numpy as np
import torch

from cosmos_policy_ros.engine.denoiser import ConditionedDenoiser

P_MEAN = math.log(4.0)
P_STD = 1.2
UNIFORM_RANGE = (1.0, 85.0)
LOGNORMAL_SHARE = 0.7


def video_noise_multiplier(num_frames):
    """sqrt(latent frames): the reference scales every training sigma by it (3 for LIBERO)."""
    return math.sqrt(num_frames)


def sample_sigma(batch, generator, *, multiplier=1.0, p_mean=P_MEAN, p_std=P_STD,
                 uniform_range=UNIFORM_RANGE, lognormal_share=LOGNORMAL_SHARE):
    """(batch,) float32 sigmas from the hybrid distribution, times `multiplier`.

    Each sample is log-normal with probability `lognormal_share`, uniform otherwise; the
    three draws come from `generator` (a torch.Generator) in a fixed order.
    """
    normal = torch.randn(batch, generator=generator)
    uniform = torch.rand(batch, generator=generator)
    choice = torch.rand(batch, generator=generator)
    lognormal = torch.exp(p_mean + p_std * normal)
    low, high = uniform_range
    flat = low + (high - low) * uniform
    return (torch.where(choice < lognormal_share, lognormal, flat) * multiplier).float()


def loss_weight(sigma):
    """(1 + sigma)^2 / sigma^2, the rectified-flow weighting of the x0 error."""
    return (1.0 + sigma) ** 2 / sigma ** 2


def diffusion_loss(net, clean_latent, condition_frames, text_embedding, sigma, eps):
    """The training loss of one batch (a scalar tensor with gradients through `net`).

    clean_latent: (B, 16, T, H, W) x0; condition_frames: (B, T) bool; text_embedding:
    (B or 1, L, 1024); sigma: (B,); eps: (B, 16, T, H, W) standard normal noise.
    Per sample: the weighted squared x0 error averaged over every element of the generated
    frames; then the mean over the batch.
    """
    condition_frames = torch.as_tensor(condition_frames)
    if condition_frames.ndim == 1:
        condition_frames = condition_frames.expand(clean_latent.shape[0], -1)
    denoiser = ConditionedDenoiser(net, clean_latent, condition_frames, text_embedding)
    sigma = sigma.to(torch.float32)
    x_sigma = clean_latent + sigma.view(-1, 1, 1, 1, 1) * eps  # (B,) -> (B, 1, 1, 1, 1)
    x0_hat = denoiser(x_sigma, sigma)
    error = (x0_hat - clean_latent) ** 2  # (B, C, T, H, W)
    generated = (~condition_frames).to(error.dtype)[:, None, :, None, None]  # (B, 1, T, 1, 1)
    per_frame = error.mean(dim=(1, 3, 4))  # (B, C, T, H, W) -> (B, T)
    per_sample = (per_frame * generated[:, 0, :, 0, 0]).sum(dim=1) / generated[
        :, 0, :, 0, 0].sum(dim=1)  # mean over generated frames -> (B,)
    return (loss_weight(sigma) * per_sample).mean()


def value_targets(num_states, success, gamma):
    """(num_states,) value targets on the latent scale [-1, 1] for states 0 .. num_states-1.

    Success: 2 * gamma^(T - f) - 1 with T = num_states - 1 the final state; failure: -1.
    """
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f'`gamma` must be in (0, 1]. Got {gamma!r}.')
    if not success:
        return np.full(num_states, -1.0)
    remaining = (num_states - 1) - np.arange(num_states)
    return 2.0 * gamma ** remaining - 1.0


@torch.no_grad()
def calibrate_vae_latents(vae, latents):
    """Rescale a VAE's quant_conv so its normalized camera latents are ~N(0, 1) per channel.

    latents: (B, 16, 2 + N, h, w), `vae.encode_conditioning` of a sample of current images
    (frames 2.. are the cameras). A random VAE gives latents of arbitrary per-channel scale;
    this affine change of the latent-mean rows of quant_conv makes them unit-scale (the
    released VAE's are, by its LATENT_MEAN / LATENT_STD). Returns `latents` as the changed VAE
    encodes them (the same affine map per channel; exact up to float rounding).
    """
    cameras = latents.float()[:, :, 2:]
    mean = cameras.mean(dim=(0, 2, 3, 4))
    std = cameras.std(dim=(0, 2, 3, 4)).clamp_min(1e-6)
    conv = vae.vae.quant_conv
    channels = mean.numel()
    latent_mean, inv_std = vae._latent_scale()
    latent_mean = latent_mean.flatten().float()
    inv_std = inv_std.flatten().float()
    # normalized' = ((W x + b - M) * s - m) / d  <=>  W' = W / d,  b' = (b - M - m / s) / d + M
    weight = conv.weight[:channels].float() / std.view(-1, 1, 1, 1, 1)
    bias = (conv.bias[:channels].float() - latent_mean - mean / inv_std) / std + latent_mean
    conv.weight[:channels] = weight.to(conv.weight.dtype)
    conv.bias[:channels] = bias.to(conv.bias.dtype)
    vae.clear_prefix_cache()
    view = (1, channels, 1, 1, 1)
    return (latents.float() - mean.view(view)) / std.view(view)


def text_rows_in_use(text_embeddings):
    """1 + the last token row that is non-zero in any of (N, L, D) embeddings."""
    used = (text_embeddings != 0).any(dim=2).any(dim=0)  # (N, L, D) -> (L,)
    rows = torch.nonzero(used)
    return int(rows.max()) + 1 if len(rows) else 1


def skip_zero_text_rows(transformer, rows):
    """Training speed-up: cross-attention key/value projections only on the first `rows` tokens.

    T5 embeddings are zero past the instruction's tokens and the projections have no bias, so
    their keys and values there are exactly zero: computing them as zeros is exact (values,
    and gradients, which zero inputs do not contribute to). Only valid while every embedding
    fed to `transformer` is zero from row `rows` on (see text_rows_in_use). Patches the
    instances' forward; weights and state-dict keys are untouched.
    """
    for block in transformer.transformer_blocks:
        for projection in (block.attn2.to_k, block.attn2.to_v):
            if projection.bias is not None:
                raise ValueError('skip_zero_text_rows needs bias-free key/value projections.')
            projection.forward = _leading_rows_linear(projection, rows)


def _leading_rows_linear(projection, rows):
    def forward(x):
        head = torch.nn.functional.linear(x[:, :rows], projection.weight)  # (B, rows, out)
        tail = head.new_zeros((x.shape[0], x.shape[1] - rows, head.shape[2]))
        return torch.cat([head, tail], dim=1)  # (B, L, out)
    return forward
