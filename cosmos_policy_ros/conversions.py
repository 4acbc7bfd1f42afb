"""ROS messages to numpy, without a ROS graph: used by the node and by the offline evaluator.

Duck-typed over message objects: rclpy messages and the dataclasses ``rosbags`` deserializes
have the same field names (header.stamp.sec/nanosec, height, width, encoding, is_bigendian,
step, data, name/position/velocity/effort, pose.position.x, ...). ``data`` may be bytes,
array.array, a list or a numpy uint8 array.

Every malformed message raises ``ConversionError``, whose ``reason`` is a short key the node
counts drops by (encoding, size, truncated, format, decode, missing_joint, missing_field,
non_finite, quaternion) and whose message says what is wrong. numpy only at module level;
Pillow is imported when a compressed image is decoded.
"""
import array
import io

import numpy as np

NS_PER_S = 1_000_000_000

# Raw encodings: channels per pixel and the channel index of R, G and B.
_RAW_ENCODINGS = {
    'rgb8': (3, (0, 1, 2)),
    'bgr8': (3, (2, 1, 0)),
    'rgba8': (4, (0, 1, 2)),
    'bgra8': (4, (2, 1, 0)),
    'mono8': (1, (0, 0, 0)),
}
_CODECS = {'jpeg': 'JPEG', 'jpg': 'JPEG', 'png': 'PNG'}


class ConversionError(ValueError):
    """A message that cannot be converted; `reason` is the key drops are counted by."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


def stamp_to_ns(stamp):
    """builtin_interfaces/Time (sec, nanosec) -> integer nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def ns_to_stamp(ns):
    """Integer nanoseconds -> (sec, nanosec) as builtin_interfaces/Time holds them."""
    ns = int(ns)
    return ns // NS_PER_S, ns % NS_PER_S


def _bytes_view(data):
    """A flat uint8 view of a message's data field without copying where possible."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else None
    try:
        return np.frombuffer(memoryview(data).cast('B'), dtype=np.uint8)
    except TypeError:  # a plain list of ints
        array = np.asarray(data)
        if array.ndim != 1 or (array.size and (array.min() < 0 or array.max() > 255)):
            return None
        return array.astype(np.uint8)


def image_to_rgb(msg):
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) -> uint8 RGB (H, W, 3).

    Honours row padding (`step` > width * channels); alpha is dropped, mono8 is replicated to
    three channels. An unpadded rgb8 image whose data is an ``array.array`` (how rclpy hands a
    message's bytes over: a new array per message, which nothing else writes) is returned as a
    view of it, without a copy (copying 0.9 MB per camera image took ~0.05 ms and evicted the
    caches on the node's path); every other result is a new array (e.g. rosbags' data may be
    a view of a buffer that is reused).
    """
    encoding = str(msg.encoding).strip().lower()
    if encoding not in _RAW_ENCODINGS:
        raise ConversionError('encoding', f'unsupported image encoding {msg.encoding!r}; '
                                          f'supported: {sorted(_RAW_ENCODINGS)}')
    channels, rgb = _RAW_ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if int(msg.is_bigendian) not in (0, 1):
        raise ConversionError('size', f'is_bigendian must be 0 or 1. Got {msg.is_bigendian}')
    if height <= 0 or width <= 0:
        raise ConversionError('size', f'image is {height} x {width} pixels')
    if step < width * channels:
        raise ConversionError('size', f'step {step} is smaller than width x channels = '
                                      f'{width} x {channels} for {encoding}')
    data = _bytes_view(msg.data)
    if data is None:
        raise ConversionError('size', 'image data is not a byte buffer')
    if data.size < step * height:
        raise ConversionError('truncated', f'image data has {data.size} bytes, step x height '
                                           f'= {step} x {height} = {step * height} expected')
    if data.size > step * height:
        raise ConversionError('size', f'image data has {data.size} bytes, more than step x '
                                      f'height = {step * height}')
    rows = data.reshape(height, step)  # (H * step,) -> (H, step)
    pixels = rows[:, :width * channels].reshape(height, width, channels)  # -> (H, W, C)
    if channels == 3 and rgb == (0, 1, 2):
        if type(msg.data) is array.array and pixels.flags.c_contiguous:
            return pixels  # the message's own buffer (see above)
        return np.array(pixels, order='C')  # a copy: the message buffer may be reused
    out = np.empty((height, width, 3), np.uint8)  # (H, W, C) -> (H, W, 3) RGB, channel-wise
    for target, source in enumerate(rgb):  # (three strided copies beat fancy indexing)
        out[:, :, target] = pixels[:, :, source]
    return out


def _codec(fmt):
    """The codec a CompressedImage `format` names ('JPEG', 'PNG'), or '' when it names none.

    image_transport writes e.g. 'rgb8; jpeg compressed bgr8', 'bgr8; png compressed bgr8';
    older publishers write 'jpeg' or 'png'. compressedDepth and video codecs are rejected.
    """
    text = str(fmt).strip().lower()
    if 'compresseddepth' in text:
        raise ConversionError('format', f'compressedDepth images are not supported (format '
                                        f'{fmt!r})')
    words = text.replace(';', ' ').split()
    codecs = {_CODECS[word] for word in words if word in _CODECS}
    if len(codecs) > 1:
        raise ConversionError('format', f'ambiguous compressed image format {fmt!r}')
    if not codecs and words:
        raise ConversionError('format', f'unsupported compressed image format {fmt!r}; '
                                        f'jpeg and png are supported')
    return codecs.pop() if codecs else ''


def compressed_image_to_rgb(msg):
    """sensor_msgs/CompressedImage (jpeg or png) -> uint8 RGB (H, W, 3).

    The colours are those of the encoded file (image_transport encodes bgr8 data with OpenCV,
    which stores true colours), whatever encodings the `format` string mentions. Grey, palette
    and alpha images become RGB; 16-bit images are rejected.
    """
    from PIL import Image  # lazy: the core layer imports numpy only

    codec = _codec(msg.format)
    data = _bytes_view(msg.data)
    if data is None or data.size == 0:
        raise ConversionError('truncated', 'compressed image has no data')
    try:
        with Image.open(io.BytesIO(data.tobytes())) as image:
            if image.format not in ('JPEG', 'PNG'):
                raise ConversionError('format', f'data is {image.format}, not jpeg or png')
            if codec and image.format != codec:
                raise ConversionError('format', f'format {msg.format!r} says {codec.lower()} '
                                                f'but the data is {image.format.lower()}')
            if image.mode not in ('RGB', 'RGBA', 'L', 'LA', 'P', 'CMYK', 'YCbCr', '1'):
                raise ConversionError('encoding', f'unsupported {image.format.lower()} pixel '
                                                  f'mode {image.mode!r} (16-bit or float)')
            rgb = np.asarray(image.convert('RGB'), dtype=np.uint8)
    except ConversionError:
        raise
    except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError, ...
        raise ConversionError('decode', f'cannot decode compressed image: {error}') from None
    return rgb


def rgb_to_image_fields(rgb):
    """uint8 RGB (H, W, 3) -> dict(height, width, encoding, is_bigendian, step, data) of an Image.

    data is bytes, row-major without padding; assign the fields to a sensor_msgs/Image.
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f'expected a uint8 (H, W, 3) image. Got {rgb.dtype} {rgb.shape}.')
    height, width, _ = rgb.shape
    return {'height': height, 'width': width, 'encoding': 'rgb8', 'is_bigendian': 0,
            'step': 3 * width, 'data': np.ascontiguousarray(rgb).tobytes()}


def joint_state_values(msg, joints, field='position'):
    """Values of `joints` (in this order) from one field of a sensor_msgs/JointState -> (n,).

    field: 'position', 'velocity' or 'effort'. Joints may appear in any order in the message.
    """
    if field not in ('position', 'velocity', 'effort'):
        raise ValueError(f'`field` must be position, velocity or effort. Got {field!r}.')
    names = list(msg.name)
    values = np.asarray(getattr(msg, field), dtype=np.float64).reshape(-1)
    if values.size != len(names):
        raise ConversionError('missing_field', f'JointState has {len(names)} names but '
                                               f'{values.size} {field} values')
    index = {name: i for i, name in enumerate(names)}
    missing = [joint for joint in joints if joint not in index]
    if missing:
        raise ConversionError('missing_joint', f'JointState lacks joint(s) {missing}')
    picked = values[[index[joint] for joint in joints]]
    if not np.all(np.isfinite(picked)):
        bad = [joint for joint, value in zip(joints, picked) if not np.isfinite(value)]
        raise ConversionError('non_finite', f'JointState {field} of {bad} is not finite')
    return picked


def pose_values(msg, quaternion_order='xyzw'):
    """geometry_msgs/PoseStamped (or Pose) -> (7,) x, y, z and the quaternion.

    quaternion_order 'xyzw' (robosuite's robot0_eef_quat, LIBERO and RoboCasa proprio) or
    'wxyz'. The quaternion must have unit norm within 1e-2.
    """
    pose = getattr(msg, 'pose', msg)
    p, q = pose.position, pose.orientation
    if quaternion_order == 'xyzw':
        quaternion = (q.x, q.y, q.z, q.w)
    elif quaternion_order == 'wxyz':
        quaternion = (q.w, q.x, q.y, q.z)
    else:
        raise ValueError(f'`quaternion_order` must be xyzw or wxyz. Got {quaternion_order!r}.')
    values = np.array((p.x, p.y, p.z) + quaternion, dtype=np.float64)
    if not np.all(np.isfinite(values)):
        raise ConversionError('non_finite', f'pose has non-finite values {values.tolist()}')
    norm = float(np.linalg.norm(values[3:]))
    if abs(norm - 1.0) > 1e-2:
        raise ConversionError('quaternion', f'pose orientation has norm {norm:.4f}, not 1')
    return values


def action_chunk_rows(msg):
    """cosmos_policy_ros/ActionChunk -> its actions as a (horizon, action_dim) float64 array
    (the flat `actions` field is row-major: step by step)."""
    horizon, dim = int(msg.horizon), int(msg.action_dim)
    values = np.asarray(msg.actions, dtype=np.float64)
    if values.size != horizon * dim:
        raise ConversionError('size', f'{values.size} action values, not horizon x action_dim '
                                      f'= {horizon} x {dim}')
    return values.reshape(horizon, dim)  # (K*d,) -> (K, d)


def future_point_indices(stamp_ns, step_period_ns, count, now_ns):
    """Indices k < count of the actions at stamp + k * step_period that are not yet past now.

    The chunk's k-th action is due at `stamp_ns + k * step_period_ns`; points due before
    `now_ns` are dropped from a time-aligned trajectory.
    """
    if step_period_ns <= 0:
        raise ValueError(f'`step_period_ns` must be positive. Got {step_period_ns!r}.')
    elapsed = now_ns - stamp_ns
    first = 0 if elapsed <= 0 else -(-elapsed // step_period_ns)  # ceil(elapsed / period)
    return range(min(first, count), count)
