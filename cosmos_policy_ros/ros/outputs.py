"""Output messages of the policy node, built from a PolicyOutput and its provenance."""
from builtin_interfaces.msg import Duration, Time
import numpy as np
from sensor_msgs.msg import Image
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from cosmos_policy_ros.conversions import ns_to_stamp, rgb_to_image_fields
from cosmos_policy_ros.msg import ActionChunk, ValueEstimate


def time_msg(ns):
    """Integer nanoseconds -> builtin_interfaces/Time."""
    sec, nanosec = ns_to_stamp(ns)
    return Time(sec=sec, nanosec=nanosec)


def duration_msg(ns):
    sec, nanosec = ns_to_stamp(ns)
    return Duration(sec=sec, nanosec=nanosec)


def action_chunk_msg(*, stamp_ns, frame_id, action_names, actions, step_period, value,
                     source_names, source_stamps_ns, seed, num_denoising_steps, inference_time,
                     model_id):
    """ActionChunk; actions (K, d) float32 are flattened row-major (timestep-major)."""
    actions = np.asarray(actions, dtype=np.float32)
    horizon, action_dim = actions.shape
    msg = ActionChunk()
    msg.header.stamp = time_msg(stamp_ns)
    msg.header.frame_id = frame_id
    msg.action_names = list(action_names)
    msg.horizon = horizon
    msg.action_dim = action_dim
    msg.step_period = float(step_period)
    msg.actions = actions.reshape(-1)  # (K, d) -> (K * d,)
    msg.value = float(value)
    msg.source_names = list(source_names)
    msg.source_stamps = [time_msg(ns) for ns in source_stamps_ns]
    msg.seed = int(seed)
    msg.num_denoising_steps = int(num_denoising_steps)
    msg.inference_time = float(inference_time)
    msg.model_id = model_id
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
