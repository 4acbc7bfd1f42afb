"""Inputs and networks the benchmarks share: layouts, DiT call inputs, networks, camera images."""
import numpy as np
import torch

from cosmos_policy_ros.engine.dit import CosmosDiT
from cosmos_policy_ros.layout import LatentLayout

TEXT_TOKENS = 512  # the released T5 embedding length


def layout(name='libero', image_size=224):
    """A released layout at another image size (224 is the real one: 28 x 28 latents)."""
    base = LatentLayout.preset(name)
    return LatentLayout(base.name, base.cameras, base.chunk_size, base.action_dim,
                        base.proprio_dim, image_size=image_size)


def dit(preset, ctx, seed=0, **options):
    """A CosmosDiT with random weights, in eval mode without gradients, on ctx's device/dtype.

    Built directly on the device in the dtype (no float32 CPU copy of the 2B weights first).
    """
    torch.manual_seed(seed)
    default = torch.get_default_dtype()
    torch.set_default_dtype(ctx.dtype)
    try:
        with torch.device(ctx.device):
            net = CosmosDiT(preset, **options)
    finally:
        torch.set_default_dtype(default)
    net.eval()
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    return net.to(device=ctx.device, dtype=ctx.dtype)


def dit_inputs(layout, ctx, batch=1, seed=1):
    """(x, timesteps, condition_mask, text_embedding) as the denoiser makes them (policy pass)."""
    generator = torch.Generator().manual_seed(seed)
    channels, frames, height, width = layout.latent_shape
    conditioning = layout.num_conditioning_frames
    x = torch.randn(batch, channels, frames, height, width, generator=generator)
    timesteps = torch.full((batch, frames), 80.0 / 81.0)  # t at sigma_max
    timesteps[:, :conditioning] = 0
    mask = torch.zeros(batch, 1, frames, height, width)
    mask[:, :, :conditioning] = 1
    text = torch.randn(batch, TEXT_TOKENS, 1024, generator=generator)
    text[:, 24:] = 0  # the T5 rows after the instruction are zero
    return tuple(value.to(device=ctx.device, dtype=ctx.dtype)
                 for value in (x, timesteps, mask, text))


def pass_inputs(layout, batch=1, seed=2):
    """(clean_latent, proprio, text) of a policy pass: image latents on the camera frames."""
    generator = torch.Generator().manual_seed(seed)
    clean = torch.zeros(batch, *layout.latent_shape)
    for camera in layout.cameras:
        clean[:, :, layout.camera_index(camera)] = torch.randn(
            batch, 16, *layout.latent_shape[2:], generator=generator)
    proprio = torch.rand(batch, layout.proprio_dim, generator=generator) * 2 - 1
    text = torch.randn(1, TEXT_TOKENS, 1024, generator=generator)
    return clean, proprio, text


def camera_image(height=480, width=640, seed=0):
    """A camera-like uint8 RGB image: smooth shading, edges and sensor noise (JPEG-realistic)."""
    rng = np.random.RandomState(seed)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([
        120 + 80 * np.sin(rows / 37.0) * np.cos(cols / 53.0),
        100 + 60 * np.cos((rows + cols) / 71.0),
        90 + 50 * np.sin(cols / 29.0),
    ], axis=-1)
    image[(rows // 60 + cols // 80) % 2 == 0] += 40  # blocky objects with sharp edges
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


class IdentityNet:
    """The cheapest protocol network: F = x. Times everything of a pass except the network."""

    def __init__(self, device, dtype):
        self.device, self.dtype = torch.device(device), dtype

    def __call__(self, x, timesteps, condition_mask, text_embedding):
        return x
