"""Message -> numpy conversions on duck-typed messages and on rosbags' deserialized dataclasses."""
import array
import io
from types import SimpleNamespace as NS

import numpy as np
from PIL import Image as PILImage
import pytest

from cosmos_policy_ros.conversions import (action_chunk_rows, compressed_image_to_rgb,
                                           ConversionError, future_point_indices, image_to_rgb,
                                           joint_state_values, ns_to_stamp, pose_values,
                                           rgb_to_image_fields, stamp_to_ns)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)  # (H, W, 3)


def raw(pixels, encoding, *, pad=0, data=None, step=None, is_bigendian=0):
    """An Image-like object from (H, W, C) pixels with `pad` bytes of row padding."""
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, width * pixels.shape[2])  # (H, W, C) -> (H, W * C)
    padded = np.concatenate([rows, np.full((height, pad), 0xEE, np.uint8)], axis=1)
    return NS(height=height, width=width, encoding=encoding, is_bigendian=is_bigendian,
              step=padded.shape[1] if step is None else step,
              data=padded.tobytes() if data is None else data)


@pytest.mark.parametrize('encoding,pixels', [
    ('rgb8', RGB),
    ('bgr8', RGB[:, :, ::-1]),
    ('rgba8', np.concatenate([RGB, np.full((5, 7, 1), 9, np.uint8)], axis=2)),
    ('bgra8', np.concatenate([RGB[:, :, ::-1], np.full((5, 7, 1), 9, np.uint8)], axis=2)),
])
@pytest.mark.parametrize('pad', [0, 3])
def test_raw_colour_encodings_give_rgb(encoding, pixels, pad):
    out = image_to_rgb(raw(np.ascontiguousarray(pixels), encoding, pad=pad))
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3)
    np.testing.assert_array_equal(out, RGB)


def test_mono8_is_replicated_and_padding_skipped():
    grey = RGB[:, :, 0:1]
    out = image_to_rgb(raw(np.ascontiguousarray(grey), 'mono8', pad=1))
    np.testing.assert_array_equal(out, np.repeat(grey, 3, axis=2))


@pytest.mark.parametrize('container', [bytes, bytearray, lambda b: array.array('B', b),
                                       lambda b: np.frombuffer(b, np.uint8), list])
def test_data_containers(container):
    msg = raw(RGB, 'rgb8')
    msg.data = container(msg.data)
    np.testing.assert_array_equal(image_to_rgb(msg), RGB)


@pytest.mark.parametrize('container', [bytearray, np.frombuffer])
def test_result_does_not_alias_a_buffer_that_may_be_reused(container):
    buffer = container(bytearray(raw(RGB, 'rgb8').data), *(
        [np.uint8] if container is np.frombuffer else []))
    out = image_to_rgb(raw(RGB, 'rgb8', data=buffer))
    buffer[0] ^= 0xFF
    assert out[0, 0, 0] == RGB[0, 0, 0]


def test_rclpy_array_data_is_viewed_not_copied():
    """rclpy gives each message a new array.array: an unpadded rgb8 image is a view of it (no
    copy on the node's path); padded rows and other encodings are copied as before."""
    msg = raw(RGB, 'rgb8')
    msg.data = array.array('B', msg.data)
    out = image_to_rgb(msg)
    np.testing.assert_array_equal(out, RGB)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))
    assert out.flags.c_contiguous and out.flags.writeable
    for padded in (raw(RGB, 'rgb8', pad=3), raw(RGB[:, :, ::-1].copy(), 'bgr8')):
        padded.data = array.array('B', padded.data)
        copy = image_to_rgb(padded)
        np.testing.assert_array_equal(copy, RGB)
        assert not np.shares_memory(copy, np.frombuffer(padded.data, np.uint8))


def test_big_endian_flag_is_irrelevant_for_8_bit_but_validated():
    np.testing.assert_array_equal(image_to_rgb(raw(RGB, 'rgb8', is_bigendian=1)), RGB)
    with pytest.raises(ConversionError, match='is_bigendian') as error:
        image_to_rgb(raw(RGB, 'rgb8', is_bigendian=2))
    assert error.value.reason == 'size'


@pytest.mark.parametrize('msg,reason,text', [
    (raw(RGB, '16UC1'), 'encoding', "unsupported image encoding '16UC1'"),
    (raw(RGB, 'yuv422'), 'encoding', 'supported'),
    (raw(RGB, 'rgb8', data=raw(RGB, 'rgb8').data[:-1]), 'truncated', '104 bytes'),
    (raw(RGB, 'rgb8', data=raw(RGB, 'rgb8').data + b'x'), 'size', 'more than step'),
    (raw(RGB, 'rgb8', step=20), 'size', 'step 20 is smaller than width x channels = 7 x 3'),
    (NS(height=0, width=7, encoding='rgb8', is_bigendian=0, step=21, data=b''), 'size',
     '0 x 7'),
])
def test_malformed_raw_images(msg, reason, text):
    with pytest.raises(ConversionError, match=text) as error:
        image_to_rgb(msg)
    assert error.value.reason == reason
    assert isinstance(error.value, ValueError)


def encode(pixels, codec, mode='RGB'):
    stream = io.BytesIO()
    image = PILImage.fromarray(pixels).convert(mode)
    options = {'quality': 100, 'subsampling': 0} if codec == 'JPEG' else {}  # 4:4:4 chroma
    image.save(stream, format=codec, **options)
    return stream.getvalue()


_X, _Y = np.meshgrid(np.linspace(0, 255, 16), np.linspace(30, 200, 12))  # (12, 16) each
SMOOTH = np.stack([_X, _Y, np.full((12, 16), 90.0)], axis=2).astype(np.uint8)  # (12, 16, 3)


@pytest.mark.parametrize('fmt', ['png', 'rgb8; png compressed bgr8', 'bgr8; png compressed bgr8',
                                 '', 'PNG'])
def test_png_is_lossless(fmt):
    out = compressed_image_to_rgb(NS(format=fmt, data=encode(SMOOTH, 'PNG')))
    np.testing.assert_array_equal(out, SMOOTH)


@pytest.mark.parametrize('fmt', ['jpeg', 'rgb8; jpeg compressed bgr8', 'jpg', ''])
def test_jpeg_decodes_to_rgb_within_codec_error(fmt):
    data = np.frombuffer(encode(SMOOTH, 'JPEG'), np.uint8)
    out = compressed_image_to_rgb(NS(format=fmt, data=data))
    assert out.shape == (12, 16, 3) and out.dtype == np.uint8
    # Quality 100, no chroma subsampling: a few levels of error; swapped R and B would be far.
    assert np.abs(out.astype(int) - SMOOTH).max() <= 4
    assert np.abs(out.astype(int) - SMOOTH[:, :, ::-1]).max() > 100


def test_grey_and_alpha_compressed_images_become_rgb():
    grey = compressed_image_to_rgb(NS(format='mono8; png compressed mono8',
                                      data=encode(SMOOTH, 'PNG', mode='L')))
    assert grey.shape == (12, 16, 3)
    assert (grey[:, :, 0] == grey[:, :, 2]).all()
    rgba = compressed_image_to_rgb(NS(format='png', data=encode(SMOOTH, 'PNG', mode='RGBA')))
    np.testing.assert_array_equal(rgba, SMOOTH)


@pytest.mark.parametrize('fmt,data,reason', [
    ('16UC1; compressedDepth png', b'whatever', 'format'),
    ('h264', b'whatever', 'format'),
    ('jpeg', b'', 'truncated'),
    ('jpeg', b'\xff\xd8\xff\xe0 not really a jpeg', 'decode'),
    ('png', encode(SMOOTH, 'PNG')[:60], 'decode'),
    ('jpeg', encode(SMOOTH, 'PNG'), 'format'),  # says jpeg, is png
])
def test_malformed_compressed_images(fmt, data, reason):
    with pytest.raises(ConversionError) as error:
        compressed_image_to_rgb(NS(format=fmt, data=data))
    assert error.value.reason == reason, str(error.value)


def test_sixteen_bit_png_is_rejected():
    stream = io.BytesIO()
    PILImage.fromarray(np.full((4, 4), 4000, np.uint16)).save(stream, format='PNG')
    with pytest.raises(ConversionError, match='16-bit') as error:
        compressed_image_to_rgb(NS(format='png', data=stream.getvalue()))
    assert error.value.reason == 'encoding'


def test_rgb_to_image_fields_round_trips():
    fields = rgb_to_image_fields(RGB)
    assert fields['encoding'] == 'rgb8' and fields['step'] == 21
    np.testing.assert_array_equal(image_to_rgb(NS(**fields)), RGB)
    with pytest.raises(ValueError, match='uint8'):
        rgb_to_image_fields(RGB.astype(np.float32))


def joint_state(names, position=(), velocity=(), effort=()):
    return NS(name=list(names), position=list(position), velocity=list(velocity),
              effort=list(effort))


def test_joint_state_values_are_picked_by_name_in_configured_order():
    msg = joint_state(['b', 'a', 'c'], position=[2.0, 1.0, 3.0], velocity=[20.0, 10.0, 30.0])
    np.testing.assert_array_equal(joint_state_values(msg, ['a', 'c']), [1.0, 3.0])
    np.testing.assert_array_equal(joint_state_values(msg, ['c', 'b'], 'velocity'), [30.0, 20.0])


@pytest.mark.parametrize('msg,joints,field,reason,text', [
    (joint_state(['a'], [1.0]), ['a', 'b'], 'position', 'missing_joint', "\\['b'\\]"),
    (joint_state(['a', 'b'], [1.0, 2.0]), ['a'], 'velocity', 'missing_field',
     '2 names but 0 velocity'),
    (joint_state(['a', 'b'], [1.0, float('nan')]), ['b'], 'position', 'non_finite', "'b'"),
    (joint_state(['a'], [float('inf')]), ['a'], 'position', 'non_finite', 'not finite'),
])
def test_malformed_joint_states(msg, joints, field, reason, text):
    with pytest.raises(ConversionError, match=text) as error:
        joint_state_values(msg, joints, field)
    assert error.value.reason == reason


def pose(x=0.1, y=0.2, z=0.3, q=(0.0, 0.0, 0.6, 0.8)):
    qx, qy, qz, qw = q
    return NS(header=None, pose=NS(position=NS(x=x, y=y, z=z),
                                   orientation=NS(x=qx, y=qy, z=qz, w=qw)))


def test_pose_values_in_both_quaternion_orders():
    np.testing.assert_allclose(pose_values(pose()), [0.1, 0.2, 0.3, 0.0, 0.0, 0.6, 0.8])
    np.testing.assert_allclose(pose_values(pose(), 'wxyz'), [0.1, 0.2, 0.3, 0.8, 0.0, 0.0, 0.6])
    with pytest.raises(ConversionError, match='norm 0.0000') as error:
        pose_values(pose(q=(0, 0, 0, 0)))
    assert error.value.reason == 'quaternion'
    with pytest.raises(ConversionError) as error:
        pose_values(pose(x=float('nan')))
    assert error.value.reason == 'non_finite'


def test_stamps_round_trip():
    stamp = NS(sec=1_700_000_000, nanosec=999_999_999)
    ns = stamp_to_ns(stamp)
    assert ns == 1_700_000_000_999_999_999
    assert ns_to_stamp(ns) == (1_700_000_000, 999_999_999)


def test_future_point_indices():
    ms = 1_000_000
    # Actions due at 0, 40, 80, ... ms after the stamp; now is 100 ms after it: 0-80 are past.
    assert list(future_point_indices(1000 * ms, 40 * ms, 5, 1100 * ms)) == [3, 4]
    assert list(future_point_indices(1000 * ms, 40 * ms, 5, 1080 * ms)) == [2, 3, 4]  # due now
    assert list(future_point_indices(1000 * ms, 40 * ms, 5, 900 * ms)) == [0, 1, 2, 3, 4]
    assert list(future_point_indices(1000 * ms, 40 * ms, 5, 2000 * ms)) == []


def test_rosbags_messages_convert_like_rclpy_ones():
    typestore_module = pytest.importorskip('rosbags.typesys')
    store = typestore_module.get_typestore(typestore_module.Stores.ROS2_KILTED)
    Image = store.types['sensor_msgs/msg/Image']
    Header = store.types['std_msgs/msg/Header']
    Time = store.types['builtin_interfaces/msg/Time']
    JointState = store.types['sensor_msgs/msg/JointState']
    padded = raw(RGB[:, :, ::-1].copy(), 'bgr8', pad=2)
    header = Header(stamp=Time(sec=5, nanosec=6), frame_id='cam')
    msg = Image(header=header, height=padded.height, width=padded.width, encoding='bgr8',
                is_bigendian=0, step=padded.step, data=np.frombuffer(padded.data, np.uint8))
    # Round trip through CDR so `data` is what a bag reader hands over.
    back = store.deserialize_cdr(store.serialize_cdr(msg, Image.__msgtype__), Image.__msgtype__)
    np.testing.assert_array_equal(image_to_rgb(back), RGB)
    assert stamp_to_ns(back.header.stamp) == 5_000_000_006
    joints = JointState(header=header, name=['a', 'b'], position=np.array([1.0, 2.0]),
                        velocity=np.array([]), effort=np.array([]))
    np.testing.assert_array_equal(joint_state_values(joints, ['b', 'a']), [2.0, 1.0])


def test_an_action_chunk_is_read_step_by_step_and_a_wrong_size_is_refused():
    flat = array.array('d', [0.0, 1.0, 2.0, 10.0, 11.0, 12.0])  # 2 steps x 3 joints, row-major
    rows = action_chunk_rows(NS(horizon=2, action_dim=3, actions=flat))
    np.testing.assert_array_equal(rows, [[0.0, 1.0, 2.0], [10.0, 11.0, 12.0]])
    assert rows.dtype == np.float64
    with pytest.raises(ConversionError, match='6 action values, not horizon x action_dim = 3 x 3'):
        action_chunk_rows(NS(horizon=3, action_dim=3, actions=flat))
