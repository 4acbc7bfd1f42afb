"""Camera images -> the exact 224 x 224 RGB frames Cosmos Policy was trained on.

The released checkpoints only reach their published success rates when every camera image goes
through the same pipeline as in the reference evaluation (NVlabs/cosmos-policy,
``experiments/robot/cosmos_utils.py: prepare_images_for_model / apply_image_transforms`` and
``datasets/dataset_utils.py: apply_jpeg_compression_np / resize_images``). Per image, in order:

1. vertical flip (``np.flipud``), only for raw robosuite renders (LIBERO, RoboCasa), which come
   out of the simulator upside down; the model was trained on upright images;
2. optional square pre-resize (ALOHA: the client resizes every camera to 256 x 256 with PIL
   bicubic, as the ALOHA training data was);
3. JPEG encode + decode at quality 95 with Pillow's default settings (LIBERO, RoboCasa: the
   training images were stored as JPEG);
4. resize to 224 x 224 with PIL bicubic, skipped when the image is already 224 x 224 (a plain
   resize: non-square images are squashed, not cropped, exactly as the reference does);
5. center crop ``int(224 * sqrt(0.9)) = 212`` and resize back to 224 with torchvision's tensor
   semantics: float32 bilinear with antialias (align_corners False), then round half to even
   and cast to uint8. This is ``torch.nn.functional.interpolate`` exactly as
   ``torchvision.transforms.functional.resize`` calls it on a uint8 tensor, so torchvision is not
   needed. (torch's native uint8 kernel rounds differently: about 20 % of the values differ by 1.)

uint8 (H, W, 3) RGB in, uint8 (224, 224, 3) out, deterministic.
"""
import dataclasses
from dataclasses import dataclass
import io
from typing import Mapping, Optional

import numpy as np
from PIL import Image
import torch
import torch.nn.functional as F

from cosmos_policy_ros.config_files import from_mapping

IMAGE_SIZE = 224  # the square size every released checkpoint was trained on
JPEG_QUALITY = 95  # reference quality of the JPEG round trip
CROP_AREA = 0.9  # area of the train-time RandomResizedCrop; its test-time twin is a center crop


@dataclass(frozen=True)
class ImagePipelineConfig:
    """How camera images are turned into model input frames (one config for all cameras)."""

    flip_vertical: bool = False           # np.flipud first (raw robosuite renders only)
    pre_resize: Optional[int] = None      # square PIL-bicubic resize first (ALOHA: 256)
    jpeg_quality: Optional[int] = None    # JPEG round trip at this quality (None = skip)
    image_size: int = IMAGE_SIZE          # square size of the output frames
    crop_area: Optional[float] = CROP_AREA  # center crop of this area + resize back (None = skip)

    def __post_init__(self):
        if not isinstance(self.flip_vertical, bool):
            raise ValueError(f'`flip_vertical` must be true or false. Got {self.flip_vertical!r}.')
        for field in ('pre_resize', 'jpeg_quality'):
            value = getattr(self, field)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ValueError(f'`{field}` must be an integer or null. Got {value!r}.')
        if self.pre_resize is not None and self.pre_resize < 1:
            raise ValueError(f'`pre_resize` must be a positive size in pixels. '
                             f'Got {self.pre_resize}.')
        if self.jpeg_quality is not None and not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f'`jpeg_quality` must be in [1, 100]. Got {self.jpeg_quality}.')
        if (isinstance(self.image_size, bool) or not isinstance(self.image_size, int)
                or self.image_size < 1):
            raise ValueError(f'`image_size` must be a positive integer. Got {self.image_size!r}.')
        if self.crop_area is not None:
            if isinstance(self.crop_area, bool) or not isinstance(self.crop_area, (int, float)):
                raise ValueError(f'`crop_area` must be a number in (0, 1] or null. '
                                 f'Got {self.crop_area!r}.')
            if not 0.0 < self.crop_area <= 1.0:
                raise ValueError(f'`crop_area` must be in (0, 1]. Got {self.crop_area}.')
            if self.crop_size < 1:
                raise ValueError(f'`crop_area` = {self.crop_area} leaves no pixel of a '
                                 f'{self.image_size} px image.')

    @property
    def crop_size(self):
        """Side of the center crop: int(image_size * sqrt(crop_area)), 212 for 224 and 0.9."""
        if self.crop_area is None:
            return self.image_size
        return int(self.image_size * self.crop_area ** 0.5)

    @classmethod
    def preset(cls, name, **overrides):
        """The reference settings of a released checkpoint: 'libero', 'robocasa' or 'aloha'."""
        try:
            base = IMAGE_PRESETS[name]
        except KeyError:
            raise ValueError(f'unknown image preset {name!r}; choose one of '
                             f'{sorted(IMAGE_PRESETS)}.') from None
        return dataclasses.replace(base, **overrides) if overrides else base

    @classmethod
    def for_layout(cls, layout):
        """The preset named like the layout (libero, robocasa, aloha) at its image size."""
        if layout.name not in IMAGE_PRESETS:
            raise ValueError(f'layout {layout.name!r} has no image-pipeline preset; choose one '
                             f'of {sorted(IMAGE_PRESETS)} (or give the pipeline explicitly).')
        return cls.preset(layout.name, image_size=layout.image_size)

    @classmethod
    def from_dict(cls, data, *, source='images'):
        """Build from a mapping: {'preset': name, ...overrides} or the fields themselves."""
        return from_mapping(cls, data, source=source, preset=cls.preset,
                            optional=[field.name for field in dataclasses.fields(cls)])

    def to_dict(self):
        return dataclasses.asdict(self)


IMAGE_PRESETS = {
    # run_libero_eval.py: flip_images, use_jpeg_compression, trained_with_image_aug all True;
    # renders are 256 x 256 (env_img_res), so step 4 really resizes.
    'libero': ImagePipelineConfig(flip_vertical=True, jpeg_quality=JPEG_QUALITY),
    # run_robocasa_eval.py: the same flags; renders are already 224 x 224.
    'robocasa': ImagePipelineConfig(flip_vertical=True, jpeg_quality=JPEG_QUALITY),
    # aloha/deploy.py: flip_images False, use_jpeg_compression False, trained_with_image_aug True;
    # the client (aloha_utils.py) resizes every camera to 256 x 256 bicubic, then to 224.
    'aloha': ImagePipelineConfig(pre_resize=256),
}


# --- the steps ---------------------------------------------------------------------------------
def check_image(image, camera='image'):
    """Validate one camera image: a uint8 RGB numpy array (H, W, 3). Returns it unchanged."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f'camera {camera!r}: expected a numpy array (H, W, 3) of uint8 RGB, '
                        f'got {type(image).__name__}.')
    if image.dtype != np.uint8:
        raise TypeError(f'camera {camera!r}: expected dtype uint8 (0..255 RGB), got '
                        f'{image.dtype}. Convert float images with '
                        f'np.clip(image * 255, 0, 255).round().astype(np.uint8).')
    if image.ndim != 3 or image.shape[2] != 3:
        hint = ''
        if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
            hint = ' Grayscale images are not supported: the model was trained on RGB.'
        elif image.ndim == 3 and image.shape[2] == 4:
            hint = ' Drop the alpha channel: image[..., :3].'
        elif image.ndim == 3 and image.shape[0] == 3:
            hint = ' This looks channels-first: use image.transpose(1, 2, 0).'
        raise ValueError(f'camera {camera!r}: expected shape (H, W, 3), got '
                         f'{tuple(image.shape)}.{hint}')
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f'camera {camera!r}: empty image of shape {tuple(image.shape)}.')
    return image


def flip_vertical(image):
    """Upside down: (H, W, 3) -> (H, W, 3), row i becomes row H-1-i (np.flipud, a view)."""
    return np.flipud(image)


def jpeg_round_trip(image, quality=JPEG_QUALITY):
    """Encode as JPEG with Pillow (default subsampling) and decode again. (H, W, 3) uint8."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format='JPEG', quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert('RGB'))


def resize_bicubic(image, size):
    """PIL bicubic resize to (size, size, 3); returned as is when already that size."""
    if image.shape[:2] == (size, size):
        return image
    resized = Image.fromarray(image).resize((size, size), resample=Image.Resampling.BICUBIC)
    return np.asarray(resized)


def center_crop_offsets(height, width, crop_size):
    """(top, left) of torchvision's center crop: round((H - crop) / 2), half to even."""
    if crop_size > height or crop_size > width:
        raise ValueError(f'crop of {crop_size} px does not fit a {height} x {width} image.')
    return int(round((height - crop_size) / 2.0)), int(round((width - crop_size) / 2.0))


def resize_bilinear_antialias(images, size):
    """torchvision ``resize(uint8 tensor, [size, size], antialias=True)`` on numpy images.

    images: uint8 (N, H, W, 3) or (H, W, 3). Returns uint8 (N, size, size, 3) or (size, size, 3):
    float32 bilinear interpolation with a triangle filter widened by the scale factor when
    downscaling (antialias), half-pixel centers, then round half to even.
    """
    single = images.ndim == 3
    array = np.ascontiguousarray(images[None] if single else images)
    if not array.flags.writeable:  # torch.from_numpy wants writable memory (arrays from PIL)
        array = array.copy()
    batch = torch.from_numpy(array)
    batch = batch.permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
    resized = F.interpolate(batch.to(torch.float32), size=[size, size], mode='bilinear',
                            align_corners=False, antialias=True)
    resized = resized.round().to(torch.uint8).permute(0, 2, 3, 1)  # (N, C, S, S) -> (N, S, S, C)
    resized = resized.contiguous().numpy()
    return resized[0] if single else resized


def center_crop_resize(images, crop_size, size):
    """Center crop crop_size x crop_size, then antialiased bilinear back to size x size.

    images: uint8 (N, H, W, 3) or (H, W, 3) -> uint8 (N, size, size, 3) or (size, size, 3).
    """
    height, width = images.shape[-3:-1]
    top, left = center_crop_offsets(height, width, crop_size)
    cropped = images[..., top:top + crop_size, left:left + crop_size, :]
    return resize_bilinear_antialias(cropped, size)


# --- the pipeline ------------------------------------------------------------------------------
def _before_crop(image, config, camera):
    """Steps 1-4 on one image: (H, W, 3) -> (image_size, image_size, 3) uint8."""
    image = check_image(image, camera)
    if config.flip_vertical:
        image = flip_vertical(image)
    if config.pre_resize is not None:
        image = resize_bicubic(image, config.pre_resize)
    if config.jpeg_quality is not None:
        image = jpeg_round_trip(image, config.jpeg_quality)
    return resize_bicubic(image, config.image_size)


def preprocess_image(image, config, camera='image'):
    """One camera image -> model frame.

    image: uint8 RGB (H, W, 3), any size. Returns a new uint8 array
    (config.image_size, config.image_size, 3) that never aliases the input.
    camera: the name used in error messages.
    """
    image = _before_crop(image, config, camera)
    if config.crop_area is None:
        return np.array(image, copy=True, order='C')
    return center_crop_resize(image, config.crop_size, config.image_size)


def preprocess_images(images, config, cameras=None):
    """Several cameras at once -> (N, S, S, 3) uint8 frames in `cameras` order.

    images: camera name -> uint8 RGB (H, W, 3); sizes may differ between cameras.
    cameras: the order of the output (e.g. ``layout.cameras``); every listed camera must be
    present and no other camera may be given. Default: the order of `images`.
    The crop-and-resize step runs as one batched call; the result equals per-image
    `preprocess_image` exactly.
    """
    if not isinstance(images, Mapping):
        raise TypeError(f'images must map camera names to arrays, got {type(images).__name__}.')
    cameras = tuple(images) if cameras is None else tuple(cameras)
    if not cameras:
        raise ValueError('no camera images given.')
    missing = [camera for camera in cameras if camera not in images]
    if missing:
        raise ValueError(f'missing image for camera(s) {missing}; got images for '
                         f'{sorted(images)}.')
    unexpected = sorted(set(images) - set(cameras))
    if unexpected:
        raise ValueError(f'unexpected camera(s) {unexpected}; expected exactly {list(cameras)}.')
    frames = np.stack([_before_crop(images[camera], config, camera) for camera in cameras])
    if config.crop_area is None:
        return frames
    return center_crop_resize(frames, config.crop_size, config.image_size)
