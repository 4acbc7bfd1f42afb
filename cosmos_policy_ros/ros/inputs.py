"""Input subscriptions: convert each message once, hand it to the sync buffer, count drops.

One subscription per camera (Image or CompressedImage), per proprio source (JointState or
PoseStamped) and for the task (std_msgs/String, transient local). Nothing else happens here.
"""
import functools
import threading
import time

from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy)
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String

from cosmos_policy_ros.ingest import input_streams

RECEIVED = 'received'
MESSAGE_TYPES = {'sensor_msgs/msg/Image': Image,
                 'sensor_msgs/msg/CompressedImage': CompressedImage,
                 'sensor_msgs/msg/JointState': JointState,
                 'geometry_msgs/msg/PoseStamped': PoseStamped}
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

    def __init__(self, node, config, *, add, counts, on_task):
        self._node = node
        self._buffer = _Adder(add)
        self._counts = counts
        self._logged = {}
        self._log_lock = threading.Lock()
        self.subscriptions = []
        qos = input_qos(config)
        # One mutually exclusive group per subscription: streams are converted in parallel,
        # but the messages of one stream reach the sync buffer in the order they arrived (its
        # settled-member rule relies on that), and task messages apply in order.
        for stream in input_streams(config):
            callback = functools.partial(self._on_message, stream)
            self.subscriptions.append(node.create_subscription(
                MESSAGE_TYPES[stream.msg_type], stream.topic, callback, qos,
                callback_group=MutuallyExclusiveCallbackGroup()))
        self.subscriptions.append(node.create_subscription(
            String, config.task_topic, lambda msg: on_task(msg.data), TASK_QOS,
            callback_group=MutuallyExclusiveCallbackGroup()))

    def _on_message(self, stream, msg):
        self._counts.add(stream.name, RECEIVED)
        reason, detail = stream.ingest(msg, self._buffer)
        if reason:
            self._drop(stream, reason, detail)

    def _drop(self, stream, reason, detail):
        self._counts.add(stream.name, reason)
        now = time.monotonic()
        key = (stream.name, reason)
        with self._log_lock:
            if now - self._logged.get(key, -LOG_PERIOD) < LOG_PERIOD:
                return
            self._logged[key] = now
        self._node.get_logger().warning(
            f'dropped a message on {stream.topic} ({stream.name}): {reason}: {detail} '
            f'(counted in /diagnostics; warnings for it are throttled to one per '
            f'{LOG_PERIOD:g} s)')

    def destroy(self):
        for subscription in self.subscriptions:
            self._node.destroy_subscription(subscription)
        self.subscriptions.clear()


class _Adder:
    """The node's locked `add` seen as a sync buffer by InputStream.ingest."""

    def __init__(self, add):
        self.add = add
