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
from cosmos_policy_ros.engine.vae import PREFIX_PIXEL_FRAMES, VAE_TEMPORAL_FACTOR

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


def diffusion_loss(net, clean_latent, condition_frames, text_embedding, sigma, eps,
                   loss_frames=None):
    """The training loss of one batch (a scalar tensor with gradients through `net`).

    clean_latent: (B, 16, T, H, W) x0; condition_frames: (B, T) bool; text_embedding:
    (B or 1, L, 1024); sigma: (B,); eps: (B, 16, T, H, W) standard normal noise.
    Per sample: the weighted squared x0 error averaged over every element of the loss frames
    (default: the generated frames); then the mean over the batch. loss_frames: (B, T) bool,
    generated frames only, at least one per sample: a generated frame left out is denoised
    with the rest but not supervised (e.g. the action frame of a failed episode).
    """
    condition_frames = torch.as_tensor(condition_frames)
    if condition_frames.ndim == 1:
        condition_frames = condition_frames.expand(clean_latent.shape[0], -1)
    if loss_frames is None:
        loss_frames = ~condition_frames
    loss_frames = torch.as_tensor(loss_frames).expand(condition_frames.shape)
    if (loss_frames & condition_frames).any() or not loss_frames.any(dim=1).all():
        raise ValueError('`loss_frames` must select at least one generated frame per sample '
                         'and no conditioning frame.')
    denoiser = ConditionedDenoiser(net, clean_latent, condition_frames, text_embedding)
    sigma = sigma.to(torch.float32)
    x_sigma = clean_latent + sigma.view(-1, 1, 1, 1, 1) * eps  # (B,) -> (B, 1, 1, 1, 1)
    x0_hat = denoiser(x_sigma, sigma)
    error = (x0_hat - clean_latent) ** 2  # (B, C, T, H, W)
    supervised = loss_frames.to(error.dtype)  # (B, T)
    per_frame = error.mean(dim=(1, 3, 4))  # (B, C, T, H, W) -> (B, T)
    per_sample = (per_frame * supervised).sum(dim=1) / supervised.sum(dim=1)  # -> (B,)
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

    The decoder is kept consistent: the raw latents change as mu' = mu / d + c per channel, so
    the input columns of post_quant_conv (a 1x1x1 conv) become W_p' = W_p * d and its bias
    b_p' = b_p - W_p' c; decoding the new normalized latents gives the same pixels as before.
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
    # mu' = mu / d + c with c = M - M / d - m / (d s)
    shift = latent_mean - latent_mean / std - mean / (std * inv_std)
    post = vae.vae.post_quant_conv
    post_weight = post.weight.float() * std.view(1, -1, 1, 1, 1)  # (out, in, 1, 1, 1)
    post_bias = post.bias.float() - post_weight[:, :, 0, 0, 0] @ shift
    post.weight.copy_(post_weight.to(post.weight.dtype))
    post.bias.copy_(post_bias.to(post.bias.dtype))
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


# --- the VAE as an autoencoder -----------------------------------------------------------------
def encode_conditioning_with_grad(vae, camera_images):
    """``vae.encode_conditioning`` with gradients, for training the encoder.

    The same computation (reference layout of a policy video): the black 5-frame prefix (blank
    frame + proprio slot) encoded causally, then one 4-frame chunk of copies per camera with the
    encoder's causal cache after the prefix. The prefix is re-encoded each call because the
    weights change. camera_images: (B, N, 3, H, W) uint8. Returns (B, 16, 2 + N, H/8, W/8).
    """
    batch, cameras, _, height, width = camera_images.shape
    black = torch.zeros(1, 3, PREFIX_PIXEL_FRAMES, height, width, dtype=torch.uint8)
    cache = vae._empty_cache()
    prefix = vae._normalized_mu(vae._run_encoder(vae._pixels(black), cache, first=True))
    cache = [None if entry is None else entry.expand(batch, *entry.shape[1:])
             for entry in cache]
    pixels = vae._pixels(camera_images)  # (B, N, 3, H, W) in [-1, 1]
    chunks = [pixels[:, i, :, None].expand(-1, -1, VAE_TEMPORAL_FACTOR, -1, -1)
              for i in range(cameras)]  # N x (B, 3, 4, H, W)
    latents = vae._normalized_mu(vae._run_encoder(torch.cat(chunks, dim=2), cache, first=False))
    return torch.cat([prefix.expand(batch, *prefix.shape[1:]), latents], dim=2)


def foreground_weights(video, background, foreground_weight):
    """Per-pixel weights (B, 1, F, H, W): 1, plus `foreground_weight` where the pixel is not the
    background colour (max channel difference > 0.1 on the [-1, 1] scale).

    The sim's images are mostly flat background; the small target discs, which the policy must
    locate, cover a few pixels, so an unweighted squared error barely rewards keeping them.
    background: (3,) RGB on the [-1, 1] scale.
    """
    difference = (video - background.view(1, 3, 1, 1, 1)).abs().amax(dim=1, keepdim=True)
    return 1.0 + foreground_weight * (difference > 0.1).to(video.dtype)


def vae_reconstruction_loss(vae, camera_images, *, background=None, foreground_weight=0.0,
                            return_latents=False):
    """Autoencoder loss of the VAE on a batch of current camera images (a scalar tensor).

        z_n    = normalized latent frame of camera n, encoded as the policy encodes it
                 (encode_conditioning_with_grad: after the black prefix, 4 copies per camera)
        x_hat  = decoder output of z_n alone as a one-frame video (the package's decode:
                 z / (1 / std) + mean, then the decoder's first-frame path)
        loss   = sum(w * (x_hat - x)^2) / sum(w) over every pixel of every camera, x in [-1, 1]

    with w = 1 everywhere, or foreground_weights(...) given a background colour. The encoder is
    trained on exactly its inference computation; the decoder on single frames (decoding the
    whole 13-frame conditioning video costs about 6x more on a CPU), so decoded later frames of
    a multi-frame policy video are only approximate. Deterministic: the posterior mean, no
    sampling and no KL term (nothing samples from the latent prior here, and the latents are
    rescaled to unit scale afterwards by calibrate_vae_latents).
    camera_images: (B, N, 3, H, W) uint8. With return_latents: (loss, camera latents
    (B, 16, N, h, w)).
    """
    batch, cameras, channels, height, width = camera_images.shape
    latents = encode_conditioning_with_grad(vae, camera_images)[:, :, 2:]  # (B, 16, N, h, w)
    mean, inv_std = vae._latent_scale()
    frames = (latents / inv_std + mean).transpose(1, 2).reshape(
        batch * cameras, latents.shape[1], 1, *latents.shape[3:])  # (B N, 16, 1, h, w)
    decoded = vae.vae.decode(frames, return_dict=False)[0]  # (B N, 3, 1, H, W) in [-1, 1]
    target = camera_images.reshape(batch * cameras, channels, 1, height, width).float()
    target = target / 127.5 - 1.0
    if background is None or foreground_weight == 0.0:
        loss = ((decoded - target) ** 2).mean()
    else:
        weights = foreground_weights(target, background, foreground_weight)
        loss = (weights * (decoded - target) ** 2).sum() / (weights.sum() * channels)
    return (loss, latents) if return_latents else loss


def position_probe_loss(probe, latents, targets):
    """Auxiliary VAE loss: how well a linear map reads positions from one camera's latent.

        z    = flatten(latents)                                     (B, 16 h w)
        z'   = (z - mean_b z) / sqrt(var_b z + 0.01 mean_f var_b z) per feature f over the batch
        loss = mean over batch and outputs of (probe(z') - y)^2

    probe: a torch.nn.Linear(16 h w, K) trained along with the encoder (not part of the VAE
    file); latents: (B, 16, h, w) normalized latents of one camera; targets: (B, K), already
    normalized to unit scale. The per-feature standardization (as batch normalization, with a
    floor of 1 % of the mean variance against near-constant features) matters: the latents'
    sample-to-sample variations are small next to their spatial structure, and a linear head on
    the raw latents hardly learns. It makes the encoder keep what the policy must read (where
    the small targets are) in a linearly readable form.
    """
    z = latents.flatten(1)
    variance = z.var(dim=0, keepdim=True)
    z = (z - z.mean(dim=0, keepdim=True)) / torch.sqrt(variance + 0.01 * variance.mean())
    return ((probe(z) - targets) ** 2).mean()
