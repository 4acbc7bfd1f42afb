"""The DiT adapter against an independent from-scratch reference forward (reference section 5).

`reference_forward` below is written from the reference description only (MinimalV1LVGDiT:
channel-major patchify of [latent, mask, padding], [cos, sin] time embedding, AdaLN-LoRA,
q/k RMSNorm eps 1e-6, 3D RoPE with rotate-half on self-attention, unmasked cross-attention,
GELU MLP, final layer, (p1 p2 t C) unpatchify) and reads the *reference-keyed* (`net.*`) state
dict in float64. The adapter loads the same file through diffusers' converter, so one
comparison checks the converter, the eps fix, fps=None, the timestep layout and the channel
order; the negative controls show that each of those would be caught.
"""
import math

from diffusers.models.transformers.transformer_cosmos import (
    CosmosRotaryPosEmbed, CosmosTransformer3DModel)
import pytest
import torch

from cosmos_policy_ros.engine.checkpoint import dit_state_dict, load_dit
from cosmos_policy_ros.engine.dit import (
    _ensure_padding_mask_resize, CosmosDiT, dit_config, DiTConfig)
from cosmos_policy_ros.engine.synthetic_checkpoints import random_dit_state_dict

TOLERANCE = 1e-5  # max |adapter - oracle| / max |oracle| in fp32
Q_K_SCALE = 0.05  # shrink q/k projections so the RMSNorm eps visibly matters (see fixture)


# --- the independent oracle --------------------------------------------------------------------
def _rms(x, weight, eps=1e-6):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def _layer_norm(x, eps=1e-6):
    mean = x.mean(-1, keepdim=True)
    var = (x - mean).pow(2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def _silu(x):
    return x * torch.sigmoid(x)


def _gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def _rope_tables(config, frames, rows, cols):
    """Angles (L, head_dim) of the reference 3D RoPE: [t, h, w] twice, NTK-scaled theta."""
    hd = config.head_dim
    dim_h = hd // 6 * 2
    dim_t = hd - 2 * dim_h
    ratio_t, ratio_h, ratio_w = config.rope_scale

    def freqs(dim, ratio):
        theta = 10000.0 * ratio ** (dim / (dim - 2))
        return theta ** (-(torch.arange(0, dim, 2, dtype=torch.float64) / dim))

    t, h, w = torch.meshgrid(torch.arange(frames, dtype=torch.float64),
                             torch.arange(rows, dtype=torch.float64),
                             torch.arange(cols, dtype=torch.float64), indexing='ij')
    angles = torch.cat([t[..., None] * freqs(dim_t, ratio_t), h[..., None] * freqs(dim_h, ratio_h),
                        w[..., None] * freqs(dim_h, ratio_w)], dim=-1)
    angles = angles.reshape(frames * rows * cols, hd // 2)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def _attention(w, prefix, x, context, heads, rope):
    batch, tokens, dim = x.shape
    hd = dim // heads
    q = (x @ w[prefix + 'q_proj.weight'].T).reshape(batch, tokens, heads, hd)
    k = (context @ w[prefix + 'k_proj.weight'].T).reshape(batch, context.shape[1], heads, hd)
    v = (context @ w[prefix + 'v_proj.weight'].T).reshape(batch, context.shape[1], heads, hd)
    q = _rms(q, w[prefix + 'q_norm.weight'])
    k = _rms(k, w[prefix + 'k_norm.weight'])
    if rope is not None:
        cos, sin = (table[:, None, :] for table in rope)  # (L, 1, hd) over heads

        def rotate(u):
            first, second = u[..., :hd // 2], u[..., hd // 2:]
            return u * cos + torch.cat([-second, first], dim=-1) * sin
        q, k = rotate(q), rotate(k)
    scores = torch.einsum('bqhd,bkhd->bhqk', q, k) / math.sqrt(hd)
    out = torch.einsum('bhqk,bkhd->bqhd', scores.softmax(-1), v).reshape(batch, tokens, dim)
    return out @ w[prefix + 'output_proj.weight'].T


def reference_forward(state_dict, config, x, timesteps, mask, context, *, mask_channel=16):
    """MinimalV1LVGDiT forward from a `net.*` state dict, in float64: F of shape (B, 16, T, H, W).

    mask_channel: input channel of the condition mask (16 in the reference; 17 swaps it with
    the padding mask, for the negative control).
    """
    w = {key[len('net.'):]: value.double() for key, value in state_dict.items()
         if key.startswith('net.') and value.is_floating_point()}
    batch, _, frames, height, width = x.shape
    rows, cols, dim = height // 2, width // 2, config.hidden_size
    pad = torch.zeros_like(mask)
    channels = [x, mask, pad] if mask_channel == 16 else [x, pad, mask]
    inputs = torch.cat(channels, dim=1).double()  # latent 16, mask, padding: 18 channels
    # b c t (h m) (w n) -> b t h w (c m n): channel-major patch features
    patches = inputs.reshape(batch, 18, frames, rows, 2, cols, 2)
    patches = patches.permute(0, 2, 3, 5, 1, 4, 6).reshape(batch, frames, rows * cols, 72)
    tokens = patches @ w['x_embedder.proj.1.weight'].T  # (B, T, HW, D)

    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half)
    angles = timesteps.double()[..., None] * freqs  # (B, T, D/2)
    sinusoid = torch.cat([angles.cos(), angles.sin()], dim=-1)  # cos first
    lora = _silu(sinusoid @ w['t_embedder.1.linear_1.weight'].T) @ w[
        't_embedder.1.linear_2.weight'].T  # (B, T, 3D)
    emb = _rms(sinusoid, w['t_embedding_norm.weight'])
    rope = _rope_tables(config, frames, rows, cols)
    ctx = context.double()

    def modulation(prefix, chunks):
        out = _silu(emb) @ w[prefix + '.1.weight'].T @ w[prefix + '.2.weight'].T
        out = out + lora[..., :chunks * dim]
        return [part[:, :, None] for part in out.chunk(chunks, dim=-1)]  # (B, T, 1, D)

    h = tokens
    for i in range(config.num_layers):
        p = f'blocks.{i}.'
        shift, scale, gate = modulation(p + 'adaln_modulation_self_attn', 3)
        y = (_layer_norm(h) * (1 + scale) + shift).reshape(batch, -1, dim)
        h = h + gate * _attention(w, p + 'self_attn.', y, y, config.num_heads, rope).reshape(
            h.shape)
        shift, scale, gate = modulation(p + 'adaln_modulation_cross_attn', 3)
        y = (_layer_norm(h) * (1 + scale) + shift).reshape(batch, -1, dim)
        h = h + gate * _attention(w, p + 'cross_attn.', y, ctx, config.num_heads, None).reshape(
            h.shape)
        shift, scale, gate = modulation(p + 'adaln_modulation_mlp', 3)
        y = _layer_norm(h) * (1 + scale) + shift
        h = h + gate * (_gelu(y @ w[p + 'mlp.layer1.weight'].T) @ w[p + 'mlp.layer2.weight'].T)
    shift, scale = modulation('final_layer.adaln_modulation', 2)
    out = (_layer_norm(h) * (1 + scale) + shift) @ w['final_layer.linear.weight'].T
    # B T H W (p1 p2 t C) -> B C (T t) (H p1) (W p2): channel-minor output features
    out = out.reshape(batch, frames, rows, cols, 2, 2, 1, 16)
    return out.permute(0, 7, 1, 6, 2, 4, 3, 5).reshape(batch, 16, frames, height, width)


# --- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def tiny_checkpoint(tmp_path_factory):
    """A released-format tiny DiT .pt (fp32) and its reference-keyed tensors.

    The q/k projections are scaled down so that q and k have a small RMS (~0.05): then the
    RMSNorm eps (1e-6 vs diffusers' 1e-5) changes the output by ~1e-3, far above TOLERANCE.
    """
    tensors = random_dit_state_dict('tiny', seed=7)
    for key in tensors:
        if key.endswith(('q_proj.weight', 'k_proj.weight')):
            tensors[key] = tensors[key] * Q_K_SCALE
    path = tmp_path_factory.mktemp('dit') / 'Cosmos-Policy-TINY-Predict2-2B.pt'
    torch.save(tensors, path)
    return path, tensors


@pytest.fixture(scope='module')
def inputs():
    """B=2, T=11 (5 conditioning frames), 8x8 latent; per-frame t, zero-padded T5 rows."""
    generator = torch.Generator().manual_seed(3)
    batch, frames, size = 2, 11, 8
    x = torch.randn(batch, 16, frames, size, size, generator=generator)
    timesteps = 0.8 + 0.19 * torch.rand(batch, frames, generator=generator)
    timesteps[:, :5] = 0.0  # conditioning frames are clean
    mask = torch.zeros(batch, 1, frames, size, size)
    mask[:, :, :5] = 1.0
    context = torch.randn(batch, 512, 1024, generator=generator)
    context[:, 20:] = 0.0  # T5 output is zero after the real tokens
    return x, timesteps, mask, context


@pytest.fixture(scope='module')
def oracle(tiny_checkpoint, inputs):
    _, tensors = tiny_checkpoint
    return reference_forward(tensors, dit_config('tiny'), *inputs)


def _relative_error(output, reference):
    return ((output.double() - reference).abs().max() / reference.abs().max()).item()


def _plain_diffusers(path, eps):
    """The diffusers class as shipped (no adapter patches), with the checkpoint and a q/k eps."""
    _ensure_padding_mask_resize()  # torchvision is not installed here
    model = CosmosTransformer3DModel(**dit_config('tiny').diffusers_kwargs()).eval()
    model.load_state_dict(dit_state_dict(path, 'tiny'), strict=True)
    for block in model.transformer_blocks:
        for attention in (block.attn1, block.attn2):
            attention.norm_q.eps = attention.norm_k.eps = eps
    return model


def _plain_forward(model, inputs, *, fps=None, timesteps=None):
    x, t, mask, context = inputs
    t = t if timesteps is None else timesteps
    batch, _, frames, height, width = x.shape
    return model(hidden_states=x, timestep=t.reshape(batch, 1, frames, 1, 1),
                 encoder_hidden_states=context, fps=fps, condition_mask=mask,
                 padding_mask=torch.zeros(1, 1, 8 * height, 8 * width),
                 return_dict=False)[0]


# --- the oracle comparison ---------------------------------------------------------------------
@pytest.mark.parametrize('per_frame_adaln', [True, False])
def test_adapter_matches_reference_forward_in_fp32(tiny_checkpoint, inputs, oracle,
                                                   per_frame_adaln):
    net = load_dit(tiny_checkpoint[0], 'tiny', dtype=torch.float32,
                   per_frame_adaln=per_frame_adaln)
    output = net(*inputs)
    assert output.shape == inputs[0].shape and output.dtype == torch.float32
    assert oracle.abs().max() > 1.0  # a non-trivial output
    assert _relative_error(output, oracle) < TOLERANCE


def test_plain_diffusers_with_the_fixes_matches_too(tiny_checkpoint, inputs, oracle):
    # The adapter adds nothing structural beyond the documented call convention and eps.
    with torch.no_grad():
        output = _plain_forward(_plain_diffusers(tiny_checkpoint[0], 1e-6), inputs)
    assert _relative_error(output, oracle) < TOLERANCE


def test_the_comparison_catches_each_missing_fix(tiny_checkpoint, inputs, oracle):
    path = tiny_checkpoint[0]
    fixed = _plain_diffusers(path, 1e-6)
    x, t, mask, context = inputs
    with torch.no_grad():
        errors = {
            'eps 1e-5 (diffusers default)': _plain_forward(_plain_diffusers(path, 1e-5), inputs),
            'fps=16 (pipeline default)': _plain_forward(fixed, inputs, fps=16),
            'timesteps frame-major vs batch-major': _plain_forward(
                fixed, inputs, timesteps=t.T.reshape(t.shape)),
            'one timestep for all frames': _plain_forward(
                fixed, inputs, timesteps=t.max(dim=1, keepdim=True).values.expand_as(t)),
        }
    errors = {name: _relative_error(out, oracle) for name, out in errors.items()}
    swapped = reference_forward(tiny_checkpoint[1], dit_config('tiny'), *inputs, mask_channel=17)
    errors['mask and padding channels swapped'] = _relative_error(
        load_dit(path, 'tiny', dtype=torch.float32)(*inputs), swapped)
    for name, error in errors.items():
        assert error > 10 * TOLERANCE, f'{name}: error {error:.2e} would not be caught'


def test_per_frame_adaln_equals_per_token_adaln(tiny_checkpoint, inputs):
    for dtype in (torch.float32, torch.bfloat16):
        net = load_dit(tiny_checkpoint[0], 'tiny', dtype=dtype)
        args = [value.to(dtype) for value in inputs]
        per_frame = net(*args)
        net.per_frame_adaln = False
        per_token = net(*args)
        scale = per_token.float().abs().max()
        assert (per_frame.float() - per_token.float()).abs().max() <= 1e-6 * scale


def test_bf16_network_stays_within_bf16_noise_of_the_reference(tiny_checkpoint, inputs, oracle):
    net = load_dit(tiny_checkpoint[0], 'tiny', dtype=torch.bfloat16)
    assert net.bf16_parity
    output = net(*[value.to(torch.bfloat16) for value in inputs])
    assert output.dtype == torch.bfloat16
    assert _relative_error(output, oracle) < 3e-2  # bf16 has 8 mantissa bits


# --- the bf16 parity patches -------------------------------------------------------------------
def test_rope_parity_uses_bf16_rounded_ranges_in_the_closed_form():
    with torch.device('meta'):
        net = CosmosDiT('2b')  # the real head_dim 128: t 44, h 42, w 42
    rope = net.transformer.rope
    frames, rows, cols = 3, 4, 5
    probe = torch.zeros(1, 18, frames, 2 * rows, 2 * cols)
    net._patch_state.bf16_parity = True
    cos, sin = rope(probe)

    def closed_form(dim, ratio, positions):
        exponents = (torch.arange(0, dim, 2) / dim).to(torch.bfloat16).double()
        theta = 10000.0 * ratio ** (dim / (dim - 2))
        return positions.double()[:, None] * theta ** (-exponents)

    t, h, w = torch.meshgrid(torch.arange(frames), torch.arange(rows), torch.arange(cols),
                             indexing='ij')
    angles = torch.cat([closed_form(44, 1.0, t.flatten()), closed_form(42, 3.0, h.flatten()),
                        closed_form(42, 3.0, w.flatten())], dim=-1).repeat(1, 2)
    assert cos.shape == (frames * rows * cols, 128)
    torch.testing.assert_close(cos.double(), angles.cos(), rtol=0, atol=2e-6)
    torch.testing.assert_close(sin.double(), angles.sin(), rtol=0, atol=2e-6)

    net._patch_state.bf16_parity = False
    cos_fp32, sin_fp32 = rope(probe)
    assert (cos_fp32.double() - angles.cos()).abs().max() > 1e-4  # the rounding is visible
    original = CosmosRotaryPosEmbed(hidden_size=128, max_size=(128, 240, 240),
                                    patch_size=(1, 2, 2), rope_scale=(1.0, 3.0, 3.0))
    cos_diffusers, sin_diffusers = original(probe)
    assert torch.equal(cos_fp32, cos_diffusers) and torch.equal(sin_fp32, sin_diffusers)


def test_single_rounding_rmsnorm_equals_fp32_math_then_one_cast():
    net = CosmosDiT('tiny').to(torch.bfloat16)
    norm = net.transformer.transformer_blocks[0].attn1.norm_q
    assert norm.eps == 1e-6
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        norm.weight.copy_(1.0 + 0.3 * torch.randn(norm.weight.shape, generator=generator))
    x = torch.randn(4, 2, 64, 32, generator=generator).to(torch.bfloat16)
    xf, wf = x.float(), norm.weight.float()
    expected = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + 1e-6) * wf).to(torch.bfloat16)
    net._patch_state.bf16_parity = True
    assert torch.equal(norm(x), expected)
    net._patch_state.bf16_parity = False
    assert not torch.equal(norm(x), expected)  # diffusers rounds twice


def test_parity_flag_defaults_to_the_weight_dtype():
    net = CosmosDiT('tiny')
    assert not net.bf16_parity
    assert net.to(torch.bfloat16).bf16_parity
    assert not CosmosDiT('tiny', parity=False).to(torch.bfloat16).bf16_parity
    assert CosmosDiT('tiny', parity=True).bf16_parity


# --- configuration and input checks ------------------------------------------------------------
def test_2b_preset_is_the_released_config():
    kwargs = dit_config('2b').diffusers_kwargs()
    assert kwargs['in_channels'] == 17 and kwargs['concat_padding_mask']
    assert kwargs['num_layers'] == 28 and kwargs['num_attention_heads'] == 16
    assert kwargs['attention_head_dim'] == 128 and kwargs['adaln_lora_dim'] == 256
    assert kwargs['rope_scale'] == (1.0, 3.0, 3.0) and kwargs['extra_pos_embed_type'] is None
    with torch.device('meta'):
        net = CosmosDiT('2b')
    assert sum(p.numel() for p in net.parameters()) == 1_956_413_440
    tiny = sum(p.numel() for p in CosmosDiT('tiny').parameters())
    assert tiny < 2_000_000


@pytest.mark.parametrize('field, value', [('num_layers', 0), ('head_dim', 13), ('name', ''),
                                          ('patch_size', (2, 2, 2))])
def test_config_errors_name_the_field(field, value):
    kwargs = dict(name='x', num_layers=1, num_heads=1, head_dim=12, adaln_lora_dim=4)
    kwargs[field] = value
    with pytest.raises(ValueError, match=field):
        DiTConfig(**kwargs)
    with pytest.raises(ValueError, match='unknown DiT preset'):
        dit_config('7b')


def test_bad_inputs_are_named():
    net = CosmosDiT('tiny')
    x = torch.zeros(1, 16, 3, 4, 4)
    t, mask, text = torch.zeros(1, 3), torch.zeros(1, 1, 3, 4, 4), torch.zeros(1, 8, 1024)
    with pytest.raises(ValueError, match='timesteps'):
        net(x, torch.zeros(1, 3, 1, 1, 1), mask, text)
    with pytest.raises(ValueError, match='condition_mask'):
        net(x, t, torch.zeros(1, 1, 2, 4, 4), text)
    with pytest.raises(ValueError, match='text_embedding'):
        net(x, t, mask, torch.zeros(1, 8, 512))
    with pytest.raises(TypeError, match='text_embedding'):
        net(x, t, mask, text.double())
    with pytest.raises(ValueError, match='fps=None'):
        net.transformer.rope(x, fps=16)
    assert net(x, t, mask, text).shape == x.shape
