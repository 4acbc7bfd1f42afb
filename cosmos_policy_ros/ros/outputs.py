"""Output messages and publishers of the policy node, built from a control_loop.Chunk."""
import array
import time

from builtin_interfaces.msg import Duration, Time
import numpy as np
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from cosmos_policy_ros.conversions import ns_to_stamp, rgb_to_image_fields
from cosmos_policy_ros.msg import ActionChunk, StageTimes, ValueEstimate
from cosmos_policy_ros.ros.action_chunk_wire import action_chunk_bytes


def time_msg(ns):
    """Integer nanoseconds -> builtin_interfaces/Time."""
    sec, nanosec = ns_to_stamp(ns)
    return Time(sec=sec, nanosec=nanosec)


def duration_msg(ns):
    sec, nanosec = ns_to_stamp(ns)
    return Duration(sec=sec, nanosec=nanosec)


def action_chunk_msg(*, stamp_ns, frame_id, action_names, actions, step_period, value,
                     source_names, source_stamps_ns, seed, num_denoising_steps, inference_time,
                     model_id, stitching='none', conditioned_steps=0, takeover_step=0,
                     blended_steps=0, expected_latency=0.0):
    """ActionChunk; actions (K, d) float32 are flattened row-major (timestep-major). The node
    publishes the same message as bytes (action_chunk_wire.action_chunk_bytes)."""
    actions = np.asarray(actions, dtype=np.float32)
    horizon, action_dim = actions.shape
    msg = ActionChunk()
    msg.header.stamp = time_msg(stamp_ns)
    msg.header.frame_id = frame_id
    msg.action_names = list(action_names)
    msg.horizon = horizon
    msg.action_dim = action_dim
    msg.step_period = float(step_period)
    # (K, d) -> (K * d,) as an array.array: rclpy would convert a numpy array value by value.
    msg.actions = array.array('f', actions.reshape(-1).tobytes())
    msg.value = float(value)
    msg.source_names = list(source_names)
    msg.source_stamps = [time_msg(ns) for ns in source_stamps_ns]
    msg.seed = int(seed)
    msg.num_denoising_steps = int(num_denoising_steps)
    msg.inference_time = float(inference_time)
    msg.model_id = model_id
    msg.stitching = stitching
    msg.conditioned_steps = int(conditioned_steps)
    msg.takeover_step = int(takeover_step)
    msg.blended_steps = int(blended_steps)
    msg.expected_latency = float(expected_latency)
    return msg


def value_msg(*, stamp_ns, frame_id, value, candidate_values, selected_candidate, model_id):
    msg = ValueEstimate()
    msg.header.stamp = time_msg(stamp_ns)
    msg.header.frame_id = frame_id
    msg.value = float(value)
    msg.candidate_values = [float(v) for v in candidate_values]
    msg.selected_candidate = int(selected_candidate)
    msg.model_id = model_id
    return msg


def joint_trajectory_msg(*, stamp_ns, frame_id, joint_names, actions, step_period_ns, indices):
    """JointTrajectory of the chunk rows `indices`: header stamp = observation stamp, row k at
    time_from_start = k * step_period (rows already in the past are left out by the caller)."""
    msg = JointTrajectory()
    msg.header.stamp = time_msg(stamp_ns)
    msg.header.frame_id = frame_id
    msg.joint_names = list(joint_names)
    actions = np.asarray(actions, dtype=np.float64)
    for k in indices:
        point = JointTrajectoryPoint()
        point.positions = actions[k].tolist()
        point.time_from_start = duration_msg(k * step_period_ns)
        msg.points.append(point)
    return msg


def image_msg(*, stamp_ns, frame_id, rgb):
    """sensor_msgs/Image rgb8 of a uint8 (H, W, 3) array."""
    msg = Image()
    msg.header.stamp = time_msg(stamp_ns)
    msg.header.frame_id = frame_id
    for name, value in rgb_to_image_fields(rgb).items():
        setattr(msg, name, value)
    return msg


def stage_times_msg(*, stamp_ns, frame_id, last_stream, marks):
    """StageTimes of one chunk: marks {name: ns}, in the order given."""
    msg = StageTimes()
    msg.header.stamp = time_msg(stamp_ns)
    msg.header.frame_id = frame_id
    msg.last_stream = last_stream
    msg.marks = list(marks)
    msg.times_ns = [int(ns) for ns in marks.values()]
    return msg


def output_qos(config):
    """QoS of every output: reliable, volatile, `output_depth` deep."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=config.output_depth,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


class ChunkPublishers:
    """The node's lifecycle publishers: action_chunk, value, [joint_trajectory], [future/*],
    [~/stage_times] (stage_timing)."""

    def __init__(self, node, config):
        self._node = node
        qos = output_qos(config)
        create = node.create_lifecycle_publisher
        self._chunk = create(ActionChunk, 'action_chunk', qos)
        self._value = create(ValueEstimate, 'value', qos)
        self._trajectory = (create(JointTrajectory, 'joint_trajectory', qos)
                            if config.publish_joint_trajectory else None)
        self._future = {name: create(Image, f'future/{name}/image', qos)
                        for name in config.camera_names} if config.publish_future_images else {}
        self._stage_times = (create(StageTimes, '~/stage_times', qos) if config.stage_timing
                             else None)

    def publish(self, chunk, marks=None):
        """Publish a chunk on every output; True when its trajectory points were all past.

        marks: None, or a dict that gets the 'built' and 'published' marks of the ActionChunk.
        """
        data = action_chunk_bytes(**chunk.action_chunk_fields())  # rclpy sends bytes as they are
        if marks is None:
            self._chunk.publish(data)
        else:
            marks['built'] = time.time_ns()
            self._chunk.publish(data)
            marks['published'] = time.time_ns()
        self._value.publish(value_msg(**chunk.value_fields()))
        elapsed = self._trajectory is not None and not len(chunk.trajectory_indices)
        if self._trajectory is not None and not elapsed:
            self._trajectory.publish(joint_trajectory_msg(
                stamp_ns=chunk.stamp_ns, frame_id=chunk.frame_id,
                joint_names=chunk.action_names, actions=chunk.actions,
                step_period_ns=chunk.step_period_ns, indices=chunk.trajectory_indices))
        for name, image in (chunk.future_images or {}).items():
            if name in self._future:
                self._future[name].publish(image_msg(stamp_ns=chunk.stamp_ns,
                                                     frame_id=chunk.frame_id, rgb=image))
        return elapsed

    def publish_stage_times(self, chunk, last_stream, marks):
        """The chunk's StageTimes on ~/stage_times (only with stage_timing)."""
        self._stage_times.publish(stage_times_msg(stamp_ns=chunk.stamp_ns,
                                                  frame_id=chunk.frame_id,
                                                  last_stream=last_stream, marks=marks))

    def destroy(self):
        for publisher in (self._chunk, self._value, self._trajectory, *self._future.values(),
                          self._stage_times):
            if publisher is not None:
                self._node.destroy_lifecycle_publisher(publisher)
