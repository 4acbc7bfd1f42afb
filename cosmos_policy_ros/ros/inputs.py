"""Input subscriptions: convert each message once, hand it to the sync buffer, count drops.

One subscription per camera (Image or CompressedImage), per proprio source (JointState or
PoseStamped) and for the task (std_msgs/String, transient local). Nothing else happens here.
"""
import functools
import threading
import time

from geometry_msgs.msg import PoseStamped
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy)
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String

from cosmos_policy_ros.conversions import (compressed_image_to_rgb, ConversionError,
                                           image_to_rgb, joint_state_values, pose_values,
                                           stamp_to_ns)
from cosmos_policy_ros.sync import ZERO_STAMP

RECEIVED = 'received'
LOG_PERIOD = 10.0  # seconds between two warnings about the same stream and reason


def input_qos(config):
    """QoS of the camera and proprio subscriptions (sensor data by default)."""
    reliability = (ReliabilityPolicy.RELIABLE if config.input_reliability == 'reliable'
                   else ReliabilityPolicy.BEST_EFFORT)
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=config.input_depth,
                      reliability=reliability, durability=DurabilityPolicy.VOLATILE)


TASK_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


class InputStreams:
    """The node's input subscriptions.

    add(stream, stamp_ns, payload) -> '' or a drop reason: stores into the sync buffer.
    counts: ReasonCounts, scope = stream name, reason = 'received' or the drop reason.
    on_task(text): called with each task message.
    """

    def __init__(self, node, config, *, add, counts, on_task, callback_group):
        self._node = node
        self._add = add
        self._counts = counts
        self._logged = {}
        self._log_lock = threading.Lock()
        self.subscriptions = []
        qos = input_qos(config)
        for camera in config.cameras:
            if camera.transport == 'compressed':
                kind, convert = CompressedImage, compressed_image_to_rgb
            else:
                kind, convert = Image, image_to_rgb
            self._subscribe(kind, camera.topic, camera.name, convert, qos, callback_group)
        for source in config.proprio_sources:
            if source.type == 'joint_state':
                kind = JointState
                convert = functools.partial(joint_state_values, joints=source.joints,
                                            field=source.field)
            else:
                kind = PoseStamped
                convert = functools.partial(pose_values,
                                            quaternion_order=source.quaternion_order)
            self._subscribe(kind, source.topic, source.name, convert, qos, callback_group)
        self.subscriptions.append(node.create_subscription(
            String, config.task_topic, lambda msg: on_task(msg.data), TASK_QOS,
            callback_group=callback_group))

    def _subscribe(self, kind, topic, stream, convert, qos, callback_group):
        callback = functools.partial(self._on_message, stream, topic, convert)
        self.subscriptions.append(self._node.create_subscription(
            kind, topic, callback, qos, callback_group=callback_group))

    def _on_message(self, stream, topic, convert, msg):
        self._counts.add(stream, RECEIVED)
        stamp_ns = stamp_to_ns(msg.header.stamp)
        if stamp_ns <= 0:
            self._drop(stream, topic, ZERO_STAMP, 'header stamp is zero (unset)')
            return
        try:
            payload = convert(msg)
        except ConversionError as error:
            self._drop(stream, topic, error.reason, str(error))
            return
        reason = self._add(stream, stamp_ns, payload)
        if reason:
            self._drop(stream, topic, reason, f'stamp {stamp_ns / 1e9:.6f} s')

    def _drop(self, stream, topic, reason, detail):
        self._counts.add(stream, reason)
        now = time.monotonic()
        key = (stream, reason)
        with self._log_lock:
            if now - self._logged.get(key, -LOG_PERIOD) < LOG_PERIOD:
                return
            self._logged[key] = now
        self._node.get_logger().warning(
            f'dropped a message on {topic} ({stream}): {reason}: {detail} '
            f'(counted in /diagnostics; warnings for it are throttled to one per '
            f'{LOG_PERIOD:g} s)')

    def destroy(self):
        for subscription in self.subscriptions:
            self._node.destroy_subscription(subscription)
        self.subscriptions.clear()
