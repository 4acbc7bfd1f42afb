"""(e) Image preprocessing per 480 x 640 camera image, per preset (always on the CPU).

The pipeline (flip, pre-resize, JPEG q95 round trip, PIL bicubic 224, center crop 212 ->
bilinear 224) is numpy/Pillow/torch-CPU work that runs once per camera per query.
"""
import workloads

from cosmos_policy_ros.engine.images import (
    center_crop_resize, flip_vertical, ImagePipelineConfig, jpeg_round_trip, preprocess_image,
    resize_bicubic)

NAME = 'images'
TITLE = 'Image preprocessing per 480x640 camera image, per preset (CPU)'
ORDER = 50
PRESETS = ('libero', 'robocasa', 'aloha')


def run(ctx):
    image = workloads.camera_image(480, 640)
    configs = {name: ImagePipelineConfig.preset(name) for name in PRESETS}
    variants = {name: (lambda config=config: preprocess_image(image, config))
                for name, config in configs.items()}
    flipped = flip_vertical(image)
    jpeg = jpeg_round_trip(flipped, 95)
    resized = resize_bicubic(jpeg, 224)
    steps = {
        'step_flip': lambda: flip_vertical(image).copy(),
        'step_jpeg_q95_480x640': lambda: jpeg_round_trip(flipped, 95),
        'step_bicubic_to_224': lambda: resize_bicubic(jpeg, 224),
        'step_crop_212_bilinear_224': lambda: center_crop_resize(resized, 212, 224),
    }
    repetitions = max(ctx.repetitions, 5) * 4  # each call is a few ms: more samples
    medians = ctx.compare({**variants, **steps}, repetitions=repetitions)
    jpeg_share = medians['step_jpeg_q95_480x640'] / medians['libero']
    return {
        'preset': 'libero / robocasa / aloha pipelines, 480x640 input',
        'headline': ', '.join(f'{name} {medians[name]:.1f} ms' for name in PRESETS)
                    + f' per image (JPEG round trip = {jpeg_share:.0%} of libero)',
        'medians_ms': medians,
        'ratios': {'jpeg_share_of_libero': round(jpeg_share, 3),
                   'libero_over_aloha': round(medians['libero'] / medians['aloha'], 2)},
        'notes': 'CPU only, independent of --device and --dtype.',
        'repetitions_used': repetitions,
    }
