"""(a) VAE conditioning encode: cached black prefix + one chunk per camera vs the full video.

The reference encodes the whole 1 + 4 (T - 1)-frame policy video (blank frame, proprio slot,
camera slots, action, future proprio, future cameras, value) for every query, although only
the conditioning latents are used. CosmosVAE.encode_conditioning encodes the constant black
prefix once (cached) and then 4 frames per camera: 8 instead of 33 pixel frames for LIBERO.
"""
from harness import ratio
import torch
import workloads

from cosmos_policy_ros.engine.vae import CosmosVAE
from cosmos_policy_ros.layout import VAE_TEMPORAL_FACTOR

NAME = 'vae_prefix'
TITLE = 'VAE conditioning encode with the prefix cache vs the reference full-video encode'
ORDER = 10


def policy_video(images, layout):
    """The reference's uint8 policy video (B, 3, 1 + 4 (T - 1), H, W) for current images.

    images: (B, N, 3, H, W). Non-image slots are black; future-camera slots hold copies of the
    current images, as the reference fills them at inference.
    """
    batch, _, _, height, width = images.shape
    black = torch.zeros(batch, 3, VAE_TEMPORAL_FACTOR, height, width, dtype=torch.uint8)
    cameras = [images[:, i, :, None].expand(-1, -1, VAE_TEMPORAL_FACTOR, -1, -1)
               for i in range(layout.num_cameras)]  # N x (B, 3, 4, H, W)
    slots = [black[:, :, :1], black, *cameras, black, black, *cameras, black]
    return torch.cat(slots, dim=2)  # -> (B, 3, 1 + 4 (T - 1), H, W)


def run(ctx):
    if ctx.cuda and not ctx.quick:
        preset, size = 'wan2.1', 224
    else:
        preset, size = 'tiny', 64 if ctx.quick else 128
    layout = workloads.layout('libero', size)
    torch.manual_seed(0)
    vae = CosmosVAE(preset).eval().to(device=ctx.device, dtype=ctx.dtype)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (1, layout.num_cameras, 3, size, size), dtype=torch.uint8,
                           generator=generator)
    video = policy_video(images, layout)
    assert video.shape[2] == layout.num_pixel_frames

    def uncached():
        vae.clear_prefix_cache()
        return vae.encode_conditioning(images)

    medians = ctx.compare({
        'full_video_encode': lambda: vae.encode(video),
        'conditioning_cached_prefix': lambda: vae.encode_conditioning(images),
        'conditioning_uncached_prefix': uncached,
    })
    conditioning = layout.num_conditioning_frames
    difference = (vae.encode_conditioning(images).float()
                  - vae.encode(video)[:, :, :conditioning].float()).abs().max()
    speedup = ratio(medians['full_video_encode'], medians['conditioning_cached_prefix'])
    pixel_frames = {'full_video_encode': layout.num_pixel_frames,
                    'conditioning_cached_prefix': VAE_TEMPORAL_FACTOR * layout.num_cameras,
                    'conditioning_uncached_prefix': 1 + VAE_TEMPORAL_FACTOR
                    * (1 + layout.num_cameras)}
    return {
        'preset': f'{preset} VAE, {size}x{size}, LIBERO layout ({layout.num_cameras} cameras)',
        'headline': f'{speedup}x: full {layout.num_pixel_frames}-frame encode '
                    f'{medians["full_video_encode"]:.1f} ms vs conditioning-only '
                    f'{medians["conditioning_cached_prefix"]:.1f} ms',
        'medians_ms': medians,
        'ratios': {
            'full_over_cached': speedup,
            'full_over_uncached': ratio(medians['full_video_encode'],
                                        medians['conditioning_uncached_prefix']),
            'pixel_frames_full_over_cached': ratio(pixel_frames['full_video_encode'],
                                                   pixel_frames['conditioning_cached_prefix']),
        },
        'pixel_frames_encoded': pixel_frames,
        'max_abs_difference_to_full_encode': float(difference),
    }
