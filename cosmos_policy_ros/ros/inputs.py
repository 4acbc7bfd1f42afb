"""Input subscriptions: hand each message to the control loop, log its drops (throttled).

One subscription per camera (Image or CompressedImage), per proprio source (JointState or
PoseStamped) and for the task (std_msgs/String, transient local). After a message is stored,
`on_stored()` (the node's arrival tick) is called, if given. With `marks` (an InputMarks: the
debug option stage_timing) each stored message's input marks are recorded there, with the DDS
source and reception times where `message_info` (the executor passes rclpy's MessageInfo);
without, the callbacks take no time reading.
"""
import dataclasses
import functools
import time

from geometry_msgs.msg import PoseStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy)
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import String

from cosmos_policy_ros.conversions import stamp_to_ns
from cosmos_policy_ros.counters import Throttle

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
    """The node's input subscriptions: each message goes to `loop.receive` (a ControlLoop).

    on_task(text): called with each task message. Drops are counted by the loop and logged
    here, throttled per stream and reason.
    """

    def __init__(self, node, config, loop, *, on_task, on_stored=None, marks=None,
                 message_info=True):
        self._node = node
        self._receive = loop.receive
        self._on_stored = on_stored
        self._marks = marks
        self._drop_log = Throttle(LOG_PERIOD)
        self.subscriptions = []
        qos = input_qos(config)
        # One mutually exclusive group per subscription: streams are converted in parallel
        # (multi-threaded executor), but the messages of one stream reach the sync buffer in
        # the order they arrived (its settled-member rule relies on that), and task messages
        # apply in order.
        for stream in loop.streams:
            if marks is None:
                callback = functools.partial(self._on_message, stream)
            elif message_info:
                callback = functools.partial(self._on_timed_message, *_timed(stream))
            else:
                callback = functools.partial(self._on_timed_message, *_timed(stream),
                                             info=None)
            self.subscriptions.append(node.create_subscription(
                MESSAGE_TYPES[stream.msg_type], stream.topic, callback, qos,
                callback_group=MutuallyExclusiveCallbackGroup()))
        self.subscriptions.append(node.create_subscription(
            String, config.task_topic, lambda msg: on_task(msg.data), TASK_QOS,
            callback_group=MutuallyExclusiveCallbackGroup()))

    def _on_message(self, stream, msg):
        reason, detail = self._receive(stream, msg)
        if not reason:
            if self._on_stored is not None:
                self._on_stored()
            return
        self._dropped(stream, reason, detail)

    def _on_timed_message(self, stream, converted, msg, info):
        """_on_message taking the input marks (info: rclpy's MessageInfo with the DDS times)."""
        callback = time.time_ns()
        reason, detail = self._receive(stream, msg)
        if reason:
            self._dropped(stream, reason, detail)
            return
        marks = {'callback': callback, 'converted': converted[0], 'stored': time.time_ns()}
        if info is not None:
            marks.update(source=info['source_timestamp'], received=info['received_timestamp'])
        self._marks.record(stream.name, stamp_to_ns(msg.header.stamp), marks)
        if self._on_stored is not None:
            self._on_stored()

    def _dropped(self, stream, reason, detail):
        if not self._drop_log.ready((stream.name, reason), time.monotonic()):
            return
        self._node.get_logger().warning(
            f'dropped a message on {stream.topic} ({stream.name}): {reason}: {detail} '
            f'(counted in /diagnostics; warnings for it are throttled to one per '
            f'{LOG_PERIOD:g} s)')

    def destroy(self):
        for subscription in self.subscriptions:
            self._node.destroy_subscription(subscription)
        self.subscriptions.clear()


def _timed(stream):
    """(a copy of `stream` whose conversion notes when it ended, [that time in ns])."""
    converted = [0]  # one stream's callbacks never overlap (their own exclusive group)

    def convert(msg):
        payload = stream.convert(msg)
        converted[0] = time.time_ns()
        return payload
    return dataclasses.replace(stream, convert=convert), converted
