"""Image pipeline: every step against Pillow or an independent numpy oracle, presets, errors."""
import io

import numpy as np
from PIL import Image
import pytest

from cosmos_policy_ros.engine import images
from cosmos_policy_ros.engine.images import ImagePipelineConfig


# --- independent oracles (written from the definitions, not from the module) ------------------
def _cubic(x, a=-0.5):
    """Keys cubic convolution kernel with a = -0.5 (PIL's BICUBIC)."""
    x = np.abs(x)
    inner = (a + 2) * x ** 3 - (a + 3) * x ** 2 + 1
    outer = a * x ** 3 - 5 * a * x ** 2 + 8 * a * x - 4 * a
    return np.where(x < 1, inner, np.where(x < 2, outer, 0.0))


def _triangle(x):
    return np.maximum(0.0, 1.0 - np.abs(x))


def _resample_weights(n_in, n_out, kernel):
    """(n_out, n_in) weights: output pixel i is centered at (i + 0.5) * n_in / n_out in the input,
    input pixel j at j + 0.5; the kernel is widened by the scale when downscaling, and every
    row is normalized over the pixels inside the image (this is how edges are handled)."""
    scale = n_in / n_out
    stretch = max(scale, 1.0)
    centers = (np.arange(n_out) + 0.5) * scale
    sources = np.arange(n_in) + 0.5
    weights = kernel((sources[None, :] - centers[:, None]) / stretch)
    return weights / weights.sum(axis=1, keepdims=True)


def _bilinear_antialias_oracle(image, size):
    """Exact (float64) separable triangle-filter resampling of (H, W, 3) to (size, size, 3)."""
    wy = _resample_weights(image.shape[0], size, _triangle)
    wx = _resample_weights(image.shape[1], size, _triangle)
    horizontal = np.einsum('xw,hwc->hxc', wx, image.astype(np.float64))
    return np.einsum('yh,hxc->yxc', wy, horizontal)


def _bicubic_oracle(image, size):
    """PIL's two-pass bicubic: horizontal pass rounded to uint8, then the vertical pass."""
    wy = _resample_weights(image.shape[0], size, _cubic)
    wx = _resample_weights(image.shape[1], size, _cubic)
    horizontal = np.einsum('xw,hwc->hxc', wx, image.astype(np.float64))
    horizontal = np.clip(np.round(horizontal), 0, 255)
    return np.clip(np.round(np.einsum('yh,hxc->yxc', wy, horizontal)), 0, 255)


def _assert_rounds_like(actual, exact, tie_band=5e-3):
    """uint8 `actual` is round(exact) except within float32 noise of a .5 tie."""
    actual = actual.astype(np.float64)
    assert np.abs(actual - exact).max() <= 0.5 + tie_band
    decided = np.abs(exact - np.floor(exact) - 0.5) > tie_band
    assert decided.mean() > 0.9  # the comparison below covers most pixels
    np.testing.assert_array_equal(actual[decided], np.round(exact)[decided])


def _pil_jpeg(image, quality):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format='JPEG', quality=quality)
    return np.array(Image.open(io.BytesIO(buffer.getvalue())))


def _scene(height, width, seed=0):
    """A camera-like image: smooth gradients, a few edges and some noise, not symmetric."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    red = 255 * (y / height)
    green = 127 + 100 * np.sin(x / 17.0) * np.cos(y / 23.0)
    blue = np.where((x > width // 3) & (y < height // 2), 220.0, 40.0)
    image = np.stack([red, green, blue], axis=-1) + rng.normal(0, 6, (height, width, 3))
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _noise(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# --- presets and config ------------------------------------------------------------------------
@pytest.mark.parametrize('name, flip, pre_resize, quality', [
    ('libero', True, None, 95),     # run_libero_eval.py: flip, JPEG, renders at 256
    ('robocasa', True, None, 95),   # run_robocasa_eval.py: flip, JPEG, renders at 224
    ('aloha', False, 256, None),    # deploy.py + aloha_utils.py: no flip/JPEG, client 256 first
])
def test_presets_have_the_reference_values(name, flip, pre_resize, quality):
    config = ImagePipelineConfig.preset(name)
    assert config.flip_vertical is flip
    assert config.pre_resize == pre_resize
    assert config.jpeg_quality == quality
    assert config.image_size == 224
    assert config.crop_area == 0.9  # trained_with_image_aug True for all three
    # 224 * sqrt(0.9) = 212.505..., truncated like int() in the reference.
    assert config.crop_size == 212


def test_preset_overrides_and_from_dict():
    upright = ImagePipelineConfig.preset('libero', flip_vertical=False)
    assert not upright.flip_vertical and upright.jpeg_quality == 95
    assert ImagePipelineConfig.from_dict({'preset': 'libero', 'flip_vertical': False}) == upright
    custom = ImagePipelineConfig.from_dict({'jpeg_quality': 90, 'crop_area': None})
    assert custom.crop_size == 224 and custom.jpeg_quality == 90
    assert ImagePipelineConfig.from_dict(custom.to_dict()) == custom
    with pytest.raises(ValueError, match='unknown image preset'):
        ImagePipelineConfig.preset('bridge')
    with pytest.raises(ValueError, match=r"cam.yaml: unknown key\(s\) \['quality'\]"):
        ImagePipelineConfig.from_dict({'quality': 95}, source='cam.yaml')


@pytest.mark.parametrize('change, message', [
    ({'flip_vertical': 1}, '`flip_vertical` must be true or false. Got 1'),
    ({'pre_resize': 0}, '`pre_resize` must be a positive size'),
    ({'pre_resize': 256.0}, '`pre_resize` must be an integer or null. Got 256.0'),
    ({'jpeg_quality': 101}, r'`jpeg_quality` must be in \[1, 100\]. Got 101'),
    ({'jpeg_quality': True}, '`jpeg_quality` must be an integer or null. Got True'),
    ({'image_size': 0}, '`image_size` must be a positive integer. Got 0'),
    ({'crop_area': 1.5}, r'`crop_area` must be in \(0, 1\]. Got 1.5'),
    ({'crop_area': 0.0}, r'`crop_area` must be in \(0, 1\]. Got 0.0'),
    ({'crop_area': '0.9'}, '`crop_area` must be a number'),
    ({'crop_area': 1e-6, 'image_size': 16}, 'leaves no pixel'),
])
def test_config_errors_name_the_field_and_value(change, message):
    with pytest.raises(ValueError, match=message):
        ImagePipelineConfig(**change)


# --- the steps ---------------------------------------------------------------------------------
def test_flip_is_a_vertical_mirror():
    image = _noise(5, 4)
    flipped = images.flip_vertical(image)
    for row in range(5):
        np.testing.assert_array_equal(flipped[row], image[4 - row])


def test_jpeg_round_trip_is_pillow_quality_95():
    image = _scene(256, 256)
    result = images.jpeg_round_trip(image, 95)
    np.testing.assert_array_equal(result, _pil_jpeg(image, 95))
    assert result.dtype == np.uint8 and result.shape == image.shape
    error_95 = np.abs(result.astype(int) - image.astype(int)).mean()
    error_50 = np.abs(_pil_jpeg(image, 50).astype(int) - image.astype(int)).mean()
    assert 0 < error_95 < error_50  # lossy, and less so than at quality 50


@pytest.mark.parametrize('shape', [(256, 256), (480, 640), (150, 200)])
def test_bicubic_resize_is_pil_bicubic(shape):
    image = _noise(*shape, seed=1)
    result = images.resize_bicubic(image, 224)
    # The reference call: PIL's default filter.
    np.testing.assert_array_equal(result, np.asarray(Image.fromarray(image).resize((224, 224))))
    # An independent float implementation of the same filter agrees to PIL's fixed-point noise.
    difference = np.abs(result.astype(np.float64) - _bicubic_oracle(image, 224))
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3


def test_bicubic_resize_skips_images_of_the_target_size():
    image = _noise(224, 224)
    assert images.resize_bicubic(image, 224) is image


def test_center_crop_offsets_hand_checked():
    # (224 - 212) / 2 = 6 exactly; torchvision rounds half to even: 6.5 -> 6, 7.5 -> 8.
    assert images.center_crop_offsets(224, 224, 212) == (6, 6)
    assert images.center_crop_offsets(225, 227, 212) == (6, 8)
    assert images.center_crop_offsets(212, 212, 212) == (0, 0)
    with pytest.raises(ValueError, match='does not fit'):
        images.center_crop_offsets(200, 224, 212)


def test_crop_box_is_rows_and_columns_6_to_217():
    # White frame outside the 212 x 212 box starting at (6, 6), black inside: any off-by-one
    # in the box would let white leak into the (upsampled) output.
    image = np.full((224, 224, 3), 255, np.uint8)
    image[6:218, 6:218] = 0
    assert images.center_crop_resize(image, 212, 224).max() == 0
    # The box is the largest one: one more black row is not needed on either side.
    shifted = np.full((224, 224, 3), 255, np.uint8)
    shifted[7:219, 6:218] = 0
    assert images.center_crop_resize(shifted, 212, 224).max() > 0


def test_upsampling_212_to_224_is_the_triangle_filter():
    image = _noise(212, 212, seed=2)
    exact = _bilinear_antialias_oracle(image, 224)
    _assert_rounds_like(images.resize_bilinear_antialias(image, 224), exact)


def test_antialias_has_no_effect_when_upsampling():
    # Plain half-pixel bilinear with clamped edges equals the normalized triangle filter for
    # 212 -> 224: a check of the oracle itself against a second, separate formula.
    image = _noise(212, 212, seed=3).astype(np.float64)
    source = np.clip((np.arange(224) + 0.5) * 212 / 224 - 0.5, 0, 211)
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, 211)
    frac = source - low
    rows = image[low] * (1 - frac)[:, None, None] + image[high] * frac[:, None, None]
    plain = rows[:, low] * (1 - frac)[None, :, None] + rows[:, high] * frac[None, :, None]
    np.testing.assert_allclose(plain, _bilinear_antialias_oracle(image, 224), atol=1e-9)


@pytest.mark.parametrize('shape', [(256, 256), (480, 640), (300, 230)])
def test_downscaling_widens_the_triangle_filter(shape):
    image = _noise(*shape, seed=4)
    exact = _bilinear_antialias_oracle(image, 224)
    result = images.resize_bilinear_antialias(image, 224)
    _assert_rounds_like(result, exact)
    # Without the widening (plain bilinear) the 480 -> 224 result would be measurably different.
    if shape == (480, 640):
        narrow_y = _resample_weights(480, 224, lambda x: _triangle(x * 480 / 224))
        narrow_x = _resample_weights(640, 224, lambda x: _triangle(x * 640 / 224))
        horizontal = np.einsum('xw,hwc->hxc', narrow_x, image.astype(np.float64))
        plain = np.einsum('yh,hxc->yxc', narrow_y, horizontal)
        assert np.abs(plain - exact).mean() > 5


def test_batched_resize_equals_single_images():
    batch = np.stack([_noise(212, 212, seed=s) for s in range(3)])
    together = images.resize_bilinear_antialias(batch, 224)
    assert together.shape == (3, 224, 224, 3) and together.dtype == np.uint8
    for index in range(3):
        np.testing.assert_array_equal(together[index],
                                      images.resize_bilinear_antialias(batch[index], 224))


# --- the pipeline ------------------------------------------------------------------------------
def _reference_chain(image, flip, pre_resize, quality):
    """The reference steps, each from Pillow/numpy, and the exact crop-resize oracle."""
    if flip:
        image = image[::-1]
    if pre_resize is not None:
        image = np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize(
            (pre_resize, pre_resize), Image.Resampling.BICUBIC))
    if quality is not None:
        image = _pil_jpeg(np.ascontiguousarray(image), quality)
    if image.shape[:2] != (224, 224):
        image = np.asarray(Image.fromarray(np.ascontiguousarray(image)).resize((224, 224)))
    return _bilinear_antialias_oracle(image[6:218, 6:218], 224)


@pytest.mark.parametrize('preset, shape', [
    ('libero', (256, 256)), ('robocasa', (224, 224)), ('aloha', (480, 640)),
    ('libero', (480, 640)),
])
def test_pipeline_equals_the_reference_chain(preset, shape):
    config = ImagePipelineConfig.preset(preset)
    image = _scene(*shape, seed=5)
    result = images.preprocess_image(image, config, camera='primary')
    assert result.shape == (224, 224, 3) and result.dtype == np.uint8
    assert result.flags.c_contiguous and result.flags.writeable
    exact = _reference_chain(image, config.flip_vertical, config.pre_resize, config.jpeg_quality)
    _assert_rounds_like(result, exact)


def test_pipeline_is_deterministic_and_leaves_the_input_alone():
    config = ImagePipelineConfig.preset('libero')
    image = _scene(480, 640)
    original = image.copy()
    first = images.preprocess_image(image, config)
    second = images.preprocess_image(image, config)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(image, original)
    assert not np.shares_memory(first, image)


def test_flip_on_equals_flip_off_on_a_flipped_image():
    image = _scene(256, 256, seed=6)
    flip = ImagePipelineConfig.preset('libero')
    upright = ImagePipelineConfig.preset('libero', flip_vertical=False)
    flipped_input = np.ascontiguousarray(image[::-1])
    np.testing.assert_array_equal(images.preprocess_image(image, flip),
                                  images.preprocess_image(flipped_input, upright))
    assert not np.array_equal(images.preprocess_image(image, flip),
                              images.preprocess_image(image, upright))


def test_aloha_pre_resize_is_a_no_op_for_256_images():
    config = ImagePipelineConfig.preset('aloha')
    image = _scene(256, 256, seed=7)
    direct = ImagePipelineConfig.preset('aloha', pre_resize=None)
    np.testing.assert_array_equal(images.preprocess_image(image, config),
                                  images.preprocess_image(image, direct))
    # ... but not for camera-sized images: 480 x 640 -> 256 -> 224 is not 480 x 640 -> 224.
    camera = _scene(480, 640, seed=7)
    assert not np.array_equal(images.preprocess_image(camera, config),
                              images.preprocess_image(camera, direct))


def test_no_crop_gives_the_resized_image():
    config = ImagePipelineConfig(crop_area=None)
    image = _noise(300, 400)
    result = images.preprocess_image(image, config)
    np.testing.assert_array_equal(result, np.asarray(Image.fromarray(image).resize((224, 224))))
    already = _noise(224, 224)
    assert not np.shares_memory(images.preprocess_image(already, config), already)


def test_custom_image_size():
    config = ImagePipelineConfig(image_size=64)  # crop int(64 * sqrt(0.9)) = 60
    assert config.crop_size == 60
    result = images.preprocess_image(_noise(100, 120), config)
    assert result.shape == (64, 64, 3)


def test_batch_helper_equals_single_images_in_camera_order():
    config = ImagePipelineConfig.preset('robocasa')
    cameras = {'wrist': _scene(224, 224, 1), 'primary': _scene(480, 640, 2),
               'secondary': _scene(256, 256, 3)}
    order = ('primary', 'wrist', 'secondary')
    frames = images.preprocess_images(cameras, config, cameras=order)
    assert frames.shape == (3, 224, 224, 3) and frames.dtype == np.uint8
    for index, camera in enumerate(order):
        np.testing.assert_array_equal(frames[index],
                                      images.preprocess_image(cameras[camera], config))
    default_order = images.preprocess_images(cameras, config)
    np.testing.assert_array_equal(default_order[0], frames[1])  # mapping order: wrist first


def test_batch_helper_names_missing_and_unexpected_cameras():
    config = ImagePipelineConfig.preset('libero')
    with pytest.raises(ValueError, match=r"missing image for camera\(s\) \['wrist'\]"):
        images.preprocess_images({'primary': _noise(8, 8)}, config, cameras=('wrist', 'primary'))
    with pytest.raises(ValueError, match=r"unexpected camera\(s\) \['depth'\]"):
        images.preprocess_images({'primary': _noise(8, 8), 'depth': _noise(8, 8)}, config,
                                 cameras=('primary',))
    with pytest.raises(TypeError, match="camera 'wrist'.*dtype uint8"):
        images.preprocess_images({'wrist': np.zeros((8, 8, 3), np.float32)}, config)


@pytest.mark.parametrize('image, error, message', [
    ([[0, 0, 0]], TypeError, "camera 'front': expected a numpy array"),
    (np.zeros((8, 8, 3), np.float32), TypeError, "camera 'front': expected dtype uint8.*float32"),
    (np.zeros((8, 8), np.uint8), ValueError, r'\(8, 8\). Grayscale'),
    (np.zeros((8, 8, 4), np.uint8), ValueError, 'alpha channel'),
    (np.zeros((3, 8, 8), np.uint8), ValueError, 'channels-first'),
    (np.zeros((0, 8, 3), np.uint8), ValueError, 'empty image'),
])
def test_bad_images_are_refused_with_the_camera_name(image, error, message):
    with pytest.raises(error, match=message):
        images.preprocess_image(image, ImagePipelineConfig.preset('libero'), camera='front')
