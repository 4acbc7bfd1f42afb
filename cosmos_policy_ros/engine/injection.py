"""Latent frame injection and extraction: how proprio, actions and the value live in latents.

Cosmos Policy stores non-image data in whole latent frames (reference section 2). A vector of n
values (the proprio (D,), or the action chunk (K, d) flattened timestep-major) is repeated to
fill one frame of ``16 x S x S`` values in C-major order (index ``c*S*S + h*S + w``) and
truncated, so element j of the flattened frame holds ``flat[j mod n]``. When n does not divide
the frame (ALOHA: 700 action values in 12544) the last copy is partial. Reading back averages
the full copies and ignores the partial one. The value is a scalar: its frame is filled with it
and read back as the mean of the whole frame, mapped from [-1, 1] to [0, 1] and clamped.

All functions are batched: latents are (B, 16, T, S, S), data (B, ...). Injection returns a new
latent and leaves its input untouched.
"""
import numpy as np
import torch


def tile_frame(values, frame_shape):
    """Tile (B, n) values into (B, C, H, W) frames: element j (C-major) holds values[:, j % n].

    Raises ValueError if n exceeds C*H*W.
    """
    batch, count = values.shape
    channels, height, width = frame_shape
    size = channels * height * width
    if count > size:
        raise ValueError(f'{count} values do not fit in one latent frame of {channels} x '
                         f'{height} x {width} = {size} values.')
    repeats = -(-size // count)  # ceil(size / count)
    flat = values.repeat(1, repeats)[:, :size]  # (B, n) -> (B, repeats*n) -> (B, C*H*W)
    return flat.reshape(batch, channels, height, width)  # (B, C*H*W) -> (B, C, H, W)


def mean_of_copies(frame, shape):
    """Read back what `tile_frame` wrote: average the full copies of a `shape`-sized block.

    frame: (B, C, H, W); shape: per-sample shape of the data, e.g. (K, d) or (D,).
    Returns (B, *shape) in the frame's dtype. The partial tail copy is ignored.
    """
    batch = frame.shape[0]
    count = int(np.prod(shape))
    flat = frame.reshape(batch, -1)  # (B, C, H, W) -> (B, C*H*W)
    copies = flat.shape[1] // count
    if copies < 1:
        raise ValueError(f'a latent frame of {flat.shape[1]} values holds no full copy of '
                         f'{count} values.')
    blocks = flat[:, :copies * count].reshape(batch, copies, *shape)  # -> (B, copies, *shape)
    return blocks.mean(dim=1)  # (B, copies, *shape) -> (B, *shape)


# --- injection -----------------------------------------------------------------------------------
def inject_actions(latent, layout, actions):
    """Write a normalized action chunk (B, K, d) into the action frame; returns a new latent."""
    check_latent(latent, layout)
    actions = _batched(actions, latent.shape[0], (layout.chunk_size, layout.action_dim),
                       'actions')
    flat = actions.reshape(actions.shape[0], -1)  # (B, K, d) -> (B, K*d), timestep-major
    return _with_frame(latent, layout.action_index, flat)


def inject_proprio(latent, layout, proprio, *, future=False, round_to_bf16=True):
    """Write normalized proprio (B, D) into the current (or future) proprio frame.

    round_to_bf16: round the values to bfloat16 first, as the reference does at inference
    (its proprio tensor is bf16 before injection); the frame keeps the latent's dtype.
    Returns a new latent.
    """
    check_latent(latent, layout)
    proprio = _batched(proprio, latent.shape[0], (layout.proprio_dim,), 'proprio')
    if round_to_bf16:
        proprio = proprio.to(torch.bfloat16)
    index = layout.future_proprio_index if future else layout.proprio_index
    return _with_frame(latent, index, proprio)


def inject_value(latent, layout, value):
    """Fill the value frame with a per-sample scalar (B,) on the latent scale [-1, 1].

    (The model's value v in [0, 1] is stored as 2v - 1.) Returns a new latent.
    """
    check_latent(latent, layout)
    value = _batched(value, latent.shape[0], (), 'value')
    _, channels, _, height, width = latent.shape
    value = value.to(device=latent.device, dtype=latent.dtype)
    frame = value.reshape(-1, 1, 1, 1)  # (B,) -> (B, 1, 1, 1)
    result = latent.clone()
    result[:, :, layout.value_index] = frame.expand(-1, channels, height, width)  # -> (B, C, H, W)
    return result


# --- extraction ----------------------------------------------------------------------------------
def extract_actions(latent, layout):
    """Normalized action chunk (B, K, d): the mean of the full copies in the action frame."""
    check_latent(latent, layout)
    frame = latent[:, :, layout.action_index]  # (B, C, T, H, W) -> (B, C, H, W)
    return mean_of_copies(frame, (layout.chunk_size, layout.action_dim))


def extract_proprio(latent, layout, *, future=True):
    """Normalized proprio (B, D) read from the future (default) or current proprio frame."""
    check_latent(latent, layout)
    index = layout.future_proprio_index if future else layout.proprio_index
    return mean_of_copies(latent[:, :, index], (layout.proprio_dim,))


def extract_value(latent, layout):
    """Value (B,) in [0, 1]: mean of the whole value frame v, then clamp((v + 1) / 2, 0, 1)."""
    check_latent(latent, layout)
    frame = latent[:, :, layout.value_index]  # (B, C, T, H, W) -> (B, C, H, W)
    raw = frame.reshape(frame.shape[0], -1).mean(dim=1)  # (B, C, H, W) -> (B, C*H*W) -> (B,)
    return torch.clamp((raw + 1) / 2, min=0, max=1)


# --- checks --------------------------------------------------------------------------------------
def check_latent(latent, layout, name='latent'):
    """Raise unless `latent` is a floating (B, 16, T, S, S) tensor of `layout`."""
    if not isinstance(latent, torch.Tensor):
        raise TypeError(f'`{name}` must be a torch.Tensor, got {type(latent).__name__}.')
    if latent.ndim != 5 or tuple(latent.shape[1:]) != layout.latent_shape:
        shape = ', '.join(map(str, layout.latent_shape))
        raise ValueError(f'`{name}` must have shape (B, {shape}) for layout {layout.name!r}; '
                         f'got {tuple(latent.shape)}.')
    if not latent.is_floating_point():
        raise ValueError(f'`{name}` must be a floating tensor, got {latent.dtype}.')


def _batched(values, batch, shape, name):
    """`values` as a float tensor of shape (batch, *shape), finite; clear errors otherwise."""
    if not isinstance(values, torch.Tensor):
        values = torch.as_tensor(np.asarray(values, dtype=np.float64))
    if not values.is_floating_point():
        values = values.to(torch.float64)
    want = (batch, *shape)
    if tuple(values.shape) != want:
        raise ValueError(f'`{name}` must have shape {want}, got {tuple(values.shape)}.')
    if not bool(torch.isfinite(values).all()):
        index = tuple(int(i) for i in torch.nonzero(~torch.isfinite(values))[0])
        raise ValueError(f'`{name}` has a non-finite value {values[index].item()!r} at index '
                         f'{index}.')
    return values


def _with_frame(latent, index, flat):
    """Copy of `latent` with frame `index` replaced by `flat` (B, n) tiled over the frame."""
    _, channels, _, height, width = latent.shape
    frame = tile_frame(flat.to(device=latent.device), (channels, height, width))
    result = latent.clone()
    result[:, :, index] = frame.to(latent.dtype)
    return result
