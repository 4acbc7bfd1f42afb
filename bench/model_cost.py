"""FLOP and memory formulas for the Cosmos Policy networks (DiT and Wan2.1 VAE).

Used by the benchmarks (expected ratios next to measured ones) and by memory_estimate.py.

DiT FLOPs (multiply-adds x 2) per forward, per sample, for N tokens in T frames, width D,
AdaLN-LoRA rank r and L text tokens (reference section 5; docs/networks.md):
  linear layers per token and block: self-attention q, k, v, out 4 D^2, cross-attention q, out
  2 D^2, MLP 8 D^2; cross-attention k, v on the text 2 L 1024 D per block; attention scores
  and values 4 N^2 D (self) and 4 N L D (cross) per block; AdaLN-LoRA 3 x (D r + r 3D) = 12 D r
  per row and block, with N rows per token or T rows per frame; final layer 3 D r per row plus
  D x 64 per token; patch embedding 72 D per token; t-embedding 4 D^2 per frame.

DiT activation peak (live tensors, inference, SDPA attention): 17 tensors of (B, N, D) at the
MLP of a block, counted in the diffusers forward as the CosmosDiT adapter runs it:
  block input (1) + residual stream (1) + the cross-attention output still referenced (1)
  + per-token copies of the t-embedding LoRA term (3) and of the embedded timestep (1)
  + modulated MLP input (1) + gate (1) + MLP hidden (4) + GELU output (4) = 17.
bench_memory measures exactly this on the CPU (live-tensor tracking, any dtype). With SDPA's
math fallback (no flash / memory-efficient kernel) add the (B, heads, N, N) score and softmax
tensors per self-attention.
"""
import torch

from cosmos_policy_ros.engine.dit import dit_config
from cosmos_policy_ros.engine.vae import CosmosVAE

DIT_ACTIVATION_UNITS = 17  # live (B, N, D) tensors at the DiT's peak (see the module docstring)
T5_TOKENS, T5_WIDTH = 512, 1024
GB = 1e9

# Conditioning-only VAE encode (prefix cached), batch 1, in units of base_dim x H x W values:
# 28.6 with one camera, 37.5 with two or more (the encoder runs one 4-frame chunk per camera;
# from the second chunk on, the causal caches of the previous one are live as well). Measured
# with live_memory.LiveTensorPeak on the Wan2.1 VAE (random weights) at 32 and 64 px:
# 29.0 / 37.7 / 37.9 and 28.6 / 37.3 / 37.5 for 1 / 2 / 3 cameras; activations scale with pixels.
VAE_CONDITIONING_UNITS = (28.6, 37.5)
# What the reference does per query instead, in the same units (Wan2.1 VAE, measured the same
# way at 32 and 48 px, 33 and 41 frames): the full-video encode in 16-frame windows (its
# temporal_window) 94.7, and the decode of the whole generated sequence 52.5.
VAE_REFERENCE_ENCODE_UNITS = 94.7
VAE_REFERENCE_DECODE_UNITS = 52.5


def dit_flops(config, tokens, frames, *, text_tokens=T5_TOKENS, per_frame_adaln=True):
    """Dict of FLOPs per sample of one DiT forward, by part, and 'total'."""
    config = dit_config(config)
    width, rank, blocks = config.hidden_size, config.adaln_lora_dim, config.num_layers
    adaln_rows = frames if per_frame_adaln else tokens
    parts = {
        'linear': 2 * blocks * tokens * 14 * width ** 2,
        'cross_kv': 2 * blocks * 2 * text_tokens * config.text_dim * width,
        'attention': 2 * blocks * (2 * tokens ** 2 * width + 2 * tokens * text_tokens * width),
        'adaln': 2 * blocks * adaln_rows * 12 * width * rank,
        'final_and_embeddings': 2 * (adaln_rows * 3 * width * rank + tokens * width * 64
                                     + tokens * 72 * width + frames * 4 * width ** 2),
    }
    parts['total'] = sum(parts.values())
    return parts


def dit_activation_bytes(batch, tokens, width, dtype_bytes, *, heads=16, attention='sdpa'):
    """Peak live activation bytes of one DiT forward (see the module docstring)."""
    if attention not in ('sdpa', 'math'):
        raise ValueError(f"`attention` must be 'sdpa' or 'math'. Got {attention!r}.")
    peak = DIT_ACTIVATION_UNITS * batch * tokens * width * dtype_bytes
    if attention == 'math':
        peak += 2 * batch * heads * tokens ** 2 * dtype_bytes
    return peak


def vae_conditioning_bytes(cameras, image_size, base_dim, dtype_bytes, batch=1):
    """Peak live activation bytes of CosmosVAE.encode_conditioning (prefix cached)."""
    one, several = VAE_CONDITIONING_UNITS
    units = one if cameras == 1 else several
    return batch * units * base_dim * image_size ** 2 * dtype_bytes


def vae_reference_bytes(image_size, base_dim, dtype_bytes, batch=1):
    """Peak activation bytes of the reference's per-query VAE work: full encode + decode."""
    units = VAE_REFERENCE_ENCODE_UNITS + VAE_REFERENCE_DECODE_UNITS
    return batch * units * base_dim * image_size ** 2 * dtype_bytes


def parameter_counts():
    """Exact parameter counts of the released sizes, built on the meta device (no memory)."""
    from cosmos_policy_ros.engine.dit import CosmosDiT
    with torch.device('meta'):
        dit = CosmosDiT('2b')
        vae = CosmosVAE('wan2.1')
    encoder = sum(p.numel() for p in vae.vae.encoder.parameters())
    encoder += sum(p.numel() for p in vae.vae.quant_conv.parameters())
    return {
        'dit_2b': sum(p.numel() for p in dit.parameters()),
        'vae': sum(p.numel() for p in vae.parameters()),
        'vae_encoder': encoder,
    }
