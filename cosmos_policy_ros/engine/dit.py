"""The Cosmos-Predict2-2B video DiT of Cosmos Policy, as diffusers' CosmosTransformer3DModel.

The network is ``diffusers.CosmosTransformer3DModel`` built with the 2B Video2World config
(reference section 5; /work/shared/reference/diffusers-adapter.md). ``CosmosDiT`` is the adapter
that makes it compute exactly what the reference ``MinimalV1LVGDiT`` computes:

- q/k RMSNorm eps 1e-6 in every self- and cross-attention (diffusers' default is 1e-5);
- ``fps=None`` (the reference has RoPE fps modulation off; any fps turns it on in diffusers);
- per-frame timesteps (B, T) passed as (B, 1, T, 1, 1);
- the conditioning mask as the extra input channel, then an all-zero padding mask of shape
  (1, 1, 8H, 8W) (diffusers repeats it over the batch itself);
- no T5 attention mask (the reference attends to all 512 tokens, zero rows included).

Optional patches, applied per instance to modules this file constructs (diffusers' classes and
other users of them in the process are untouched):

- bf16 parity (``parity``; by default on for bf16 weights, off otherwise): the RoPE dim ranges
  are rounded to bf16 before ``theta ** -r`` (the reference keeps them in bf16 buffers), and the
  q/k and t-embedding RMSNorms round once (fp32 math including the weight, one cast), as
  Transformer Engine's RMSNorm does. The RMSNorm patch changes nothing for fp32 weights; the
  RoPE rounding applies whenever parity is on (forced on, it mimics the bf16 buffers in fp32).
- per-frame AdaLN (``per_frame_adaln``, default on): the AdaLN-LoRA modulation MLPs run once per
  latent frame instead of once per token, as in the reference. Mathematically identical (every
  token of a frame carries the same embedding); saves about 9 % of the 2B FLOPs.
- batch invariance on the CPU (inference, per-frame AdaLN): the time embedding and the AdaLN
  modulation MLPs, whose GEMMs have a few rows per sample, run one sample at a time. oneDNN/MKL
  choose a GEMM kernel by the row count, so those few rows would round differently in a batch
  of B than alone; the token-wise GEMMs and attention already give a sample the same bits at
  any batch size. So a sample's output is bit for bit the same in any batch (several robots of
  a policy server, best-of-N candidates): test/engine/test_infer_batch.py. Not on CUDA, where
  cuBLAS picks kernels by the row count for the large GEMMs too.

torchvision is not needed: diffusers resizes the padding mask with
``torchvision.transforms.functional.resize(..., NEAREST)``. When torchvision is not importable,
``CosmosDiT`` puts a nearest-neighbour stand-in (``F.interpolate(mode='nearest')``, exact for
the all-zero mask) into the ``transformer_cosmos`` module namespace, where the name
``transforms`` is otherwise undefined and the forward would fail. An installed torchvision is
left alone.
"""
from dataclasses import dataclass
import types

from diffusers.models.normalization import RMSNorm
from diffusers.models.transformers import transformer_cosmos
from diffusers.models.transformers.transformer_cosmos import (
    CosmosAdaLayerNorm, CosmosAdaLayerNormZero, CosmosEmbedding, CosmosRotaryPosEmbed,
    CosmosTransformer3DModel)
import torch
from torch import nn
import torch.nn.functional as F

from cosmos_policy_ros.layout import LATENT_CHANNELS, VAE_SPATIAL_FACTOR

QK_NORM_EPS = 1e-6  # Transformer Engine RMSNorm eps of the reference q/k norms
T5_DIM = 1024  # width of the T5-11B encoder states the DiT cross-attends to


@dataclass(frozen=True)
class DiTConfig:
    """Size of a Cosmos video DiT. Only `2b` matches the released checkpoints."""

    name: str
    num_layers: int                  # transformer blocks
    num_heads: int                   # attention heads
    head_dim: int                    # channels per head (RoPE splits it into t/h/w parts)
    adaln_lora_dim: int              # hidden width of the AdaLN-LoRA modulation MLPs
    mlp_ratio: float = 4.0           # MLP hidden width / model width
    text_dim: int = T5_DIM           # width of the cross-attention context
    rope_scale: tuple = (1.0, 3.0, 3.0)  # NTK extrapolation ratios (t, h, w)
    max_size: tuple = (128, 240, 240)    # largest (T, H, W) latent the RoPE tables cover
    patch_size: tuple = (1, 2, 2)        # (t, h, w) patch of the latent per token

    def __post_init__(self):
        for field in ('rope_scale', 'max_size', 'patch_size'):
            object.__setattr__(self, field, tuple(getattr(self, field)))
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f'`name` must be a non-empty string. Got {self.name!r}.')
        for field in ('num_layers', 'num_heads', 'head_dim', 'adaln_lora_dim', 'text_dim'):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f'`{field}` must be a positive integer. Got {value!r}.')
        if self.head_dim % 2 or self.head_dim < 12:
            # RoPE: h and w get head_dim // 6 * 2 channels each, t the rest; all even and > 2.
            raise ValueError(f'`head_dim` must be even and at least 12 (the RoPE t/h/w split). '
                             f'Got {self.head_dim}.')
        if not self.mlp_ratio > 0:
            raise ValueError(f'`mlp_ratio` must be positive. Got {self.mlp_ratio!r}.')
        for field in ('rope_scale', 'max_size', 'patch_size'):
            value = getattr(self, field)
            if len(value) != 3 or not all(v > 0 for v in value):
                raise ValueError(f'`{field}` must be three positive numbers (t, h, w). '
                                 f'Got {value!r}.')
        if self.patch_size[0] != 1:
            raise ValueError(f'`patch_size` must have a temporal patch of 1 (per-frame AdaLN). '
                             f'Got {self.patch_size!r}.')

    @property
    def hidden_size(self):
        return self.num_heads * self.head_dim

    def diffusers_kwargs(self):
        """Keyword arguments of CosmosTransformer3DModel for this size (Video2World layout)."""
        return dict(
            in_channels=LATENT_CHANNELS + 1,  # latent + conditioning mask (+1 padding, below)
            out_channels=LATENT_CHANNELS,
            num_attention_heads=self.num_heads,
            attention_head_dim=self.head_dim,
            num_layers=self.num_layers,
            mlp_ratio=self.mlp_ratio,
            text_embed_dim=self.text_dim,
            adaln_lora_dim=self.adaln_lora_dim,
            max_size=self.max_size,
            patch_size=self.patch_size,
            rope_scale=self.rope_scale,
            concat_padding_mask=True,
            extra_pos_embed_type=None,
        )


DIT_PRESETS = {
    # The released Cosmos-Predict2-2B Video2World net (reference section 5): 1,956,413,440 params.
    '2b': DiTConfig('2b', num_layers=28, num_heads=16, head_dim=128, adaln_lora_dim=256),
    # CPU benchmarks: the real head_dim (42/42/44 RoPE split), 2 heads, 4 blocks (~8 M params).
    'small': DiTConfig('small', num_layers=4, num_heads=2, head_dim=128, adaln_lora_dim=64),
    # Tests: 2 blocks of width 64 (10/10/12 RoPE split), ~0.5 M params.
    'tiny': DiTConfig('tiny', num_layers=2, num_heads=2, head_dim=32, adaln_lora_dim=16),
}


def dit_config(name):
    """The DiTConfig preset `name` ('2b', 'small' or 'tiny'); a DiTConfig is returned as is."""
    if isinstance(name, DiTConfig):
        return name
    try:
        return DIT_PRESETS[name]
    except (KeyError, TypeError):
        raise ValueError(f'unknown DiT preset {name!r}; choose one of {sorted(DIT_PRESETS)}.'
                         ) from None


# --- per-instance patches ----------------------------------------------------------------------
class _PatchState:
    """Per-forward settings shared by the patched modules of one CosmosDiT."""

    def __init__(self):
        self.bf16_parity = False  # round like the reference's bf16 buffers / TE RMSNorm
        self.tokens_per_frame = None  # set during CosmosDiT.forward: AdaLN runs per frame
        self.per_sample = False  # set during CosmosDiT.forward: small GEMMs one sample at a time


class _ParityRMSNorm(RMSNorm):
    """RMSNorm that rounds once in bf16: fp32 math including the weight, then one cast."""

    def forward(self, hidden_states):
        if not self._patch_state.bf16_parity or hidden_states.dtype == torch.float32:
            return super().forward(hidden_states)
        x = hidden_states.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight.float()
        return x.to(hidden_states.dtype)


class _CosmosRoPE(CosmosRotaryPosEmbed):
    """3D RoPE without fps modulation, optionally with bf16-rounded dim ranges; cached per size."""

    def forward(self, hidden_states, fps=None):
        if fps is not None:
            raise ValueError('Cosmos Policy runs the DiT with `fps=None`: the reference has RoPE '
                             'fps modulation off.')
        _, _, frames, height, width = hidden_states.shape
        bf16 = self._patch_state.bf16_parity
        if not _shape_caches_allowed():
            return self._tables_for(frames, height, width, hidden_states.device, bf16)
        key = (frames, height, width, hidden_states.device, bf16)
        cache = self.__dict__.setdefault('_tables', {})
        if key not in cache:
            if len(cache) > 8:
                cache.clear()
            cache[key] = self._tables_for(frames, height, width, hidden_states.device, bf16)
        return cache[key]

    def _tables_for(self, frames, height, width, device, bf16):
        p_t, p_h, p_w = self.patch_size
        sizes = (frames // p_t, height // p_h, width // p_w)
        parts = []
        for axis, (dim, ntk) in enumerate(((self.dim_t, self.t_ntk_factor),
                                           (self.dim_h, self.h_ntk_factor),
                                           (self.dim_w, self.w_ntk_factor))):
            steps = torch.arange(0, dim, 2, device=device, dtype=torch.float32)[:dim // 2]
            exponents = steps / dim
            if bf16:
                exponents = exponents.to(torch.bfloat16).float()
            freqs = 1.0 / ((10000.0 * ntk) ** exponents)
            positions = torch.arange(sizes[axis], device=device, dtype=torch.float32)
            angles = torch.outer(positions, freqs)  # (size_axis, dim // 2)
            shape = [1, 1, 1, dim // 2]
            shape[axis] = sizes[axis]
            parts.append(angles.view(shape).expand(*sizes, dim // 2))  # (T', H', W', dim // 2)
        angles = torch.cat(parts * 2, dim=-1).flatten(0, 2)  # (T', H', W', hd) -> (T'H'W', hd)
        return torch.cos(angles), torch.sin(angles)


class _FrameAdaLNZero(CosmosAdaLayerNormZero):
    """AdaLN-LoRA (shift, scale, gate) computed once per latent frame, broadcast to its tokens."""

    def forward(self, hidden_states, embedded_timestep, temb=None):
        per_frame = self._patch_state.tokens_per_frame
        if per_frame is None:
            return super().forward(hidden_states, embedded_timestep, temb)
        batch, tokens, dim = hidden_states.shape
        frames = tokens // per_frame
        modulation = _frame_modulation(self, embedded_timestep, temb, frames, per_frame)
        shift, scale, gate = modulation.chunk(3, dim=-1)  # (B, T, D) each
        x = self.norm(hidden_states).view(batch, frames, per_frame, dim)  # (B, T, HW, D)
        x = x * (1 + scale[:, :, None]) + shift[:, :, None]
        gate = gate[:, :, None].expand(batch, frames, per_frame, dim)  # (B, T, HW, D)
        return x.view(batch, tokens, dim), gate.reshape(batch, tokens, dim)


class _FrameAdaLN(CosmosAdaLayerNorm):
    """The final layer's AdaLN-LoRA (shift, scale), computed once per latent frame."""

    def forward(self, hidden_states, embedded_timestep, temb=None):
        per_frame = self._patch_state.tokens_per_frame
        if per_frame is None:
            return super().forward(hidden_states, embedded_timestep, temb)
        batch, tokens, dim = hidden_states.shape
        frames = tokens // per_frame
        if temb is not None:
            temb = temb[..., :2 * self.embedding_dim]
        modulation = _frame_modulation(self, embedded_timestep, temb, frames, per_frame)
        shift, scale = modulation.chunk(2, dim=-1)  # (B, T, D) each
        x = self.norm(hidden_states).view(batch, frames, per_frame, dim)  # (B, T, HW, D)
        x = x * (1 + scale[:, :, None]) + shift[:, :, None]
        return x.view(batch, tokens, dim)


class _PerSampleEmbedding(CosmosEmbedding):
    """The timestep embedding, one sample at a time when batch invariance is on."""

    def forward(self, hidden_states, timestep):
        batch = hidden_states.shape[0]
        if not self._patch_state.per_sample or batch == 1:
            return super().forward(hidden_states, timestep)
        rows = timestep.shape[0] // batch  # timestep: (B * T,) flattened by the transformer
        parts = [super(_PerSampleEmbedding, self).forward(hidden_states[b:b + 1],
                                                          timestep[b * rows:(b + 1) * rows])
                 for b in range(batch)]
        return tuple(torch.cat(outputs) for outputs in zip(*parts))  # (temb, embedded)


def _frame_modulation(norm, embedded_timestep, temb, frames, per_frame):
    """SiLU -> linear_1 -> linear_2 (+ LoRA temb) on the first token of each frame: (B, T, kD)."""
    batch = embedded_timestep.shape[0]
    # (B, THW, D) -> (B, T, HW, D) -> (B, T, D): every token of a frame holds the same row
    emb = norm.activation(embedded_timestep.reshape(batch, frames, per_frame, -1)[:, :, 0])
    if norm._patch_state.per_sample and batch > 1:  # T rows per sample: one sample at a time
        modulation = torch.cat([norm.linear_2(norm.linear_1(emb[b:b + 1]))
                                for b in range(batch)])
    else:
        modulation = norm.linear_2(norm.linear_1(emb))
    if temb is not None:
        modulation = modulation + temb.reshape(batch, frames, per_frame, -1)[:, :, 0]
    return modulation


def _shape_caches_allowed():
    """Whether the per-shape caches may be used: not while compiling or capturing a CUDA graph.

    Then the RoPE tables and the padding mask are computed inside the graph instead of read from
    (or stored into) the caches. A compiled graph would otherwise guard on the cache contents
    (and compile twice), and a captured graph would keep reading a cached tensor after the cache
    dropped it.
    """
    if torch.compiler.is_compiling():
        return False
    return not (torch.cuda.is_available() and torch.cuda.is_current_stream_capturing())


def _retype(module, cls, state):
    """Give one constructed instance a subclass that only overrides `forward` (no new weights)."""
    if not isinstance(module, cls.__mro__[1]):
        raise TypeError(f'cannot patch {type(module).__name__} as {cls.__name__}')
    module.__class__ = cls
    module._patch_state = state
    return module


# --- torchvision stand-in ----------------------------------------------------------------------
def _resize_nearest(image, size, interpolation='nearest', **_):
    """torchvision-style resize of a (..., H, W) tensor by nearest neighbour."""
    lead = image.shape[:-2]
    flat = image.reshape(-1, 1, *image.shape[-2:])  # (..., H, W) -> (N, 1, H, W)
    out = F.interpolate(flat, size=tuple(size), mode='nearest')
    return out.reshape(*lead, *out.shape[-2:])  # (N, 1, H', W') -> (..., H', W')


_TRANSFORMS_STAND_IN = types.SimpleNamespace(
    functional=types.SimpleNamespace(resize=_resize_nearest),
    InterpolationMode=types.SimpleNamespace(NEAREST='nearest'),
)


def _ensure_padding_mask_resize():
    if not hasattr(transformer_cosmos, 'transforms'):  # torchvision not importable
        transformer_cosmos.transforms = _TRANSFORMS_STAND_IN


# --- the adapter -------------------------------------------------------------------------------
class CosmosDiT(nn.Module):
    """The Cosmos Policy DiT: net(x, timesteps, condition_mask, text_embedding) -> F.

    Wraps ``self.transformer``, a diffusers CosmosTransformer3DModel whose state-dict keys are
    the diffusers ones (``load_state_dict`` of a converted checkpoint goes to
    ``net.transformer``). Build it with ``cosmos_policy_ros.engine.checkpoint.load_dit`` for
    real weights.

    parity: None (bf16 parity patches on exactly when the weights are bf16), True or False.
    per_frame_adaln: compute the AdaLN modulation per frame (same values, fewer FLOPs).
    """

    def __init__(self, config='2b', *, parity=None, per_frame_adaln=True):
        super().__init__()
        if parity not in (None, True, False):
            raise ValueError(f'`parity` must be None, True or False. Got {parity!r}.')
        self.config = dit_config(config)
        self.parity = parity
        self.per_frame_adaln = bool(per_frame_adaln)
        _ensure_padding_mask_resize()
        self.transformer = CosmosTransformer3DModel(**self.config.diffusers_kwargs())
        self._patch_state = _PatchState()
        self._padding_masks = {}
        state = self._patch_state
        _retype(self.transformer.rope, _CosmosRoPE, state)
        _retype(self.transformer.time_embed, _PerSampleEmbedding, state)
        _retype(self.transformer.time_embed.norm, _ParityRMSNorm, state)
        _retype(self.transformer.norm_out, _FrameAdaLN, state)
        for block in self.transformer.transformer_blocks:
            for attention in (block.attn1, block.attn2):
                for norm in (attention.norm_q, attention.norm_k):
                    norm.eps = QK_NORM_EPS
                    _retype(norm, _ParityRMSNorm, state)
            for norm in (block.norm1, block.norm2, block.norm3):
                _retype(norm, _FrameAdaLNZero, state)

    @property
    def dtype(self):
        return self.transformer.patch_embed.proj.weight.dtype

    @property
    def device(self):
        return self.transformer.patch_embed.proj.weight.device

    @property
    def bf16_parity(self):
        """Whether the bf16 parity patches are active for the current weights."""
        return self.parity if self.parity is not None else self.dtype == torch.bfloat16

    def forward(self, x, timesteps, condition_mask, text_embedding):
        """One raw network evaluation.

        x: (B, 16, T, H, W) preconditioned latent; timesteps: (B, T) per-frame t in [0, 1);
        condition_mask: (B, 1, T, H, W), 1 on conditioning frames; text_embedding: (B, L, 1024).
        All in net.dtype on net.device. Returns F: (B, 16, T, H, W) in net.dtype.
        """
        batch, _, frames, height, width = self._check_inputs(
            x, timesteps, condition_mask, text_embedding)
        _, p_h, p_w = self.config.patch_size
        state = self._patch_state
        state.bf16_parity = self.bf16_parity
        if self.per_frame_adaln:
            state.tokens_per_frame = (height // p_h) * (width // p_w)
            state.per_sample = x.device.type == 'cpu' and not torch.is_grad_enabled()
        try:
            return self.transformer(
                hidden_states=x,
                timestep=timesteps.reshape(batch, 1, frames, 1, 1),  # (B, T) -> (B, 1, T, 1, 1)
                encoder_hidden_states=text_embedding,
                fps=None,
                condition_mask=condition_mask,
                padding_mask=self._padding_mask(height, width),
                return_dict=False,
            )[0]
        finally:
            state.tokens_per_frame = None
            state.per_sample = False

    def _padding_mask(self, height, width):
        """All-zero (1, 1, 8H, 8W) padding mask (the reference's is the 224 x 224 image size)."""
        shape = (1, 1, VAE_SPATIAL_FACTOR * height, VAE_SPATIAL_FACTOR * width)
        if not _shape_caches_allowed():
            return torch.zeros(shape, dtype=self.dtype, device=self.device)
        key = (height, width, self.dtype, self.device)
        if key not in self._padding_masks:
            self._padding_masks.clear()
            self._padding_masks[key] = torch.zeros(shape, dtype=self.dtype, device=self.device)
        return self._padding_masks[key]

    def _check_inputs(self, x, timesteps, condition_mask, text_embedding):
        if x.ndim != 5 or x.shape[1] != LATENT_CHANNELS:
            raise ValueError(f'`x` must be (B, {LATENT_CHANNELS}, T, H, W). '
                             f'Got {tuple(x.shape)}.')
        batch, _, frames, height, width = x.shape
        _, p_h, p_w = self.config.patch_size
        if height % p_h or width % p_w:
            raise ValueError(f'`x` latent height and width must be multiples of the patch size '
                             f'{(p_h, p_w)}. Got {(height, width)}.')
        expected = {
            'timesteps': (batch, frames),
            'condition_mask': (batch, 1, frames, height, width),
        }
        for name, value in (('timesteps', timesteps), ('condition_mask', condition_mask)):
            if tuple(value.shape) != expected[name]:
                raise ValueError(f'`{name}` must have shape {expected[name]} for `x` of shape '
                                 f'{tuple(x.shape)}. Got {tuple(value.shape)}.')
        if (text_embedding.ndim != 3 or text_embedding.shape[0] != batch
                or text_embedding.shape[2] != self.config.text_dim):
            raise ValueError(f'`text_embedding` must be (B={batch}, L, {self.config.text_dim}). '
                             f'Got {tuple(text_embedding.shape)}.')
        for name, value in (('x', x), ('timesteps', timesteps),
                            ('condition_mask', condition_mask),
                            ('text_embedding', text_embedding)):
            if value.dtype != self.dtype:
                raise TypeError(f'`{name}` must be in net.dtype {self.dtype}. Got {value.dtype}.')
        return x.shape
