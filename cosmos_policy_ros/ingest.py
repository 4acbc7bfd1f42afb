"""What the node does with input messages and control ticks, shared with the offline evaluator.

The node (on live topics) and ``cosmos-policy-replay eval`` (on a bag, without a ROS graph) run
exactly this code, so a bag gives the same observations, the same seeds and the same chunks in
both:

* ``input_streams(config)``: one InputStream per camera and proprio source (topic, message
  type, the conversion of its message to a payload); ``make_sync_buffer(config)``;
* ``InputStream.ingest(msg, buffer)``: header stamp, conversion, hand-off to the sync buffer;
  returns '' or the reason the message was dropped;
* ``replan_due(now_ns, executing, config)``: whether a tick may start a new chunk.

Messages are duck-typed (rclpy messages and rosbags' deserialized ones have the same fields).
numpy only.
"""
from dataclasses import dataclass
import functools
from typing import Callable, Optional, Tuple

from cosmos_policy_ros.conversions import (compressed_image_to_rgb, ConversionError,
                                           image_to_rgb, joint_state_values, NS_PER_S,
                                           pose_values, stamp_to_ns)
from cosmos_policy_ros.sync import SyncBuffer, ZERO_STAMP

NS = NS_PER_S
BAG_LOOP_MARGIN_NS = NS  # a clock this far behind the executing chunk's stamp went back


@dataclass(frozen=True)
class InputStream:
    """One input stream: where it comes from and how its messages become payloads."""

    name: str            # stream name in the sync buffer (camera or proprio source name)
    topic: str
    msg_type: str        # ROS type name, e.g. 'sensor_msgs/msg/Image'
    convert: Callable    # message -> payload (uint8 (H, W, 3) image or float64 (n,) vector)

    def ingest(self, msg, buffer):
        """Convert `msg` and add it to `buffer`.

        Returns (reason, detail): reason is '' when the message was stored, else why it was
        dropped; detail explains it for a log line.
        """
        stamp_ns = stamp_to_ns(msg.header.stamp)
        if stamp_ns <= 0:
            return ZERO_STAMP, 'header stamp is zero (unset)'
        try:
            payload = self.convert(msg)
        except ConversionError as error:
            return error.reason, str(error)
        reason = buffer.add(self.name, stamp_ns, payload)
        return reason, (f'stamp {stamp_ns / NS:.6f} s' if reason else '')


def input_streams(config):
    """The InputStreams of a NodeConfig: cameras first, then proprio sources, in order."""
    streams = []
    for camera in config.cameras:
        if camera.transport == 'compressed':
            streams.append(InputStream(camera.name, camera.topic,
                                       'sensor_msgs/msg/CompressedImage',
                                       compressed_image_to_rgb))
        else:
            streams.append(InputStream(camera.name, camera.topic, 'sensor_msgs/msg/Image',
                                       image_to_rgb))
    for source in config.proprio_sources:
        if source.type == 'joint_state':
            convert = functools.partial(joint_state_values, joints=source.joints,
                                        field=source.field)
            streams.append(InputStream(source.name, source.topic,
                                       'sensor_msgs/msg/JointState', convert))
        else:
            convert = functools.partial(pose_values, quaternion_order=source.quaternion_order)
            streams.append(InputStream(source.name, source.topic,
                                       'geometry_msgs/msg/PoseStamped', convert))
    return streams


def make_sync_buffer(config):
    """The sync buffer of a NodeConfig: every input stream, anchored on the reference."""
    capacity = {name: config.buffer_size for name in config.camera_names}
    capacity.update({name: config.proprio_buffer_size for name in config.proprio_names})
    return SyncBuffer(config.stream_names, config.reference, capacity=capacity,
                      tolerance_ns=round(config.sync_tolerance * NS),
                      max_age_ns=round(config.max_observation_age * NS))


def replan_due(now_ns, executing: Optional[Tuple[int, int]], config):
    """Whether a control tick at `now_ns` may start a new chunk.

    executing: (reference stamp ns, executed steps) of the last published chunk, or None.
    Mode every_tick: always. Mode steps_left: when at most `replan_threshold` of its executed
    steps remain (step k runs at stamp + k * step_period), or when the clock jumped more than
    a second behind its stamp (a bag loop: that chunk is not executing).
    """
    if config.replan_mode == 'every_tick' or executing is None:
        return True
    stamp_ns, steps = executing
    if now_ns < stamp_ns - BAG_LOOP_MARGIN_NS:
        return True
    elapsed = max(0, now_ns - stamp_ns) // round(config.step_period * NS)
    return steps - elapsed <= config.replan_threshold
