"""The robots behind the layout presets, for sample episodes: joints, action space, control
rate and task (``ROBOTS``), and their motion as smooth random functions of time (sums of
sinusoids; end-effector poses as quaternions in ROS x, y, z, w order)."""
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

EE_ACTION_NAMES = ('dx', 'dy', 'dz', 'droll', 'dpitch', 'dyaw', 'gripper')


FINGER_OPEN_WIDTH = 0.08  # metres between the fingers of a Panda gripper, fully open


_ALOHA_JOINTS = ('waist', 'shoulder', 'elbow', 'forearm_roll', 'wrist_angle', 'wrist_rotate',
                 'gripper')


@dataclass(frozen=True)
class RobotSpec:
    """The robot behind a layout preset: joints, action space, control rate and task."""

    joint_names: Tuple[str, ...]
    action_kind: str  # 'joint_position' (ALOHA) or 'eef_delta' (LIBERO, RoboCasa)
    control_rate: float  # Hz of the recorded actions
    task: str

    @property
    def has_eef_pose(self):
        return self.action_kind == 'eef_delta'

    @property
    def action_names(self):
        return self.joint_names if self.action_kind == 'joint_position' else EE_ACTION_NAMES


ROBOTS = {
    # ALOHA: two 6-DoF ViperX arms with grippers; the policy runs at 25 Hz (reference §7).
    'aloha': RobotSpec(tuple(f'{side}_{joint}' for side in ('left', 'right')
                             for joint in _ALOHA_JOINTS),
                       'joint_position', 25.0, 'put the red cube into the bowl'),
    # LIBERO and RoboCasa: a Panda arm; proprio = finger qpos (2) + eef pose (3 + 4).
    'libero': RobotSpec(('panda_finger_joint1', 'panda_finger_joint2'), 'eef_delta', 20.0,
                        'put the black bowl on the plate'),
    'robocasa': RobotSpec(('panda_finger_joint1', 'panda_finger_joint2'), 'eef_delta', 20.0,
                          'open the microwave door'),
}


@dataclass(frozen=True)
class Sinusoids:
    """x_j(t) = center_j + sum_h amplitude_jh * sin(2 pi frequency_jh t + phase_jh)."""

    center: np.ndarray     # (J,)
    amplitude: np.ndarray  # (J, H)
    frequency: np.ndarray  # (J, H) Hz
    phase: np.ndarray      # (J, H) rad

    def value(self, t):
        """(N,) seconds -> (N, J) values."""
        angle = 2 * np.pi * self.frequency[None] * t[:, None, None] + self.phase[None]  # (N,J,H)
        return self.center[None] + np.sum(self.amplitude[None] * np.sin(angle), axis=2)

    def derivative(self, t):
        """(N,) seconds -> (N, J) time derivatives."""
        omega = 2 * np.pi * self.frequency
        angle = omega[None] * t[:, None, None] + self.phase[None]  # (N, J, H)
        return np.sum((self.amplitude * omega)[None] * np.cos(angle), axis=2)


def random_sinusoids(rng, center, amplitude, frequency, harmonics=2):
    count = len(center)
    return Sinusoids(
        center=np.asarray(center, dtype=np.float64),
        amplitude=rng.uniform(*amplitude, size=(count, harmonics)) / harmonics,
        frequency=rng.uniform(*frequency, size=(count, harmonics)),
        phase=rng.uniform(0, 2 * np.pi, size=(count, harmonics)))


def quaternion_multiply(a, b):
    """Hamilton product of (..., 4) quaternions in ROS (x, y, z, w) order."""
    ax, ay, az, aw = np.moveaxis(a, -1, 0)
    bx, by, bz, bw = np.moveaxis(b, -1, 0)
    return np.stack([aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw,
                     aw * bw - ax * bx - ay * by - az * bz], axis=-1)


def quaternion_from_rpy(roll, pitch, yaw):
    """(N,) fixed-axis roll, pitch, yaw (R = Rz(yaw) Ry(pitch) Rx(roll)) -> (N, 4) x, y, z, w."""
    cr, sr = np.cos(roll / 2), np.sin(roll / 2)
    cp, sp = np.cos(pitch / 2), np.sin(pitch / 2)
    cy, sy = np.cos(yaw / 2), np.sin(yaw / 2)
    return np.stack([sr * cp * cy - cr * sp * sy,
                     cr * sp * cy + sr * cp * sy,
                     cr * cp * sy - sr * sp * cy,
                     cr * cp * cy + sr * sp * sy], axis=-1)


def rotation_vector(q):
    """(N, 4) unit quaternions (x, y, z, w) -> (N, 3) axis * angle, angle in [0, pi]."""
    q = q * np.where(q[:, 3:4] < 0, -1.0, 1.0)  # the same rotation with w >= 0
    xyz = q[:, :3]
    sin_half = np.linalg.norm(xyz, axis=1)
    angle = 2 * np.arctan2(sin_half, q[:, 3])
    # angle / sin(angle / 2) -> 2 as the angle -> 0.
    scale = np.where(sin_half > 1e-12, angle / np.maximum(sin_half, 1e-300), 2.0)
    return xyz * scale[:, None]


@dataclass(frozen=True)
class Motion:
    """The robot's trajectory as functions of time in seconds since the episode start."""

    robot: RobotSpec
    joints: Sinusoids                # ALOHA joints, or the finger width (J = 1) for a Panda
    eef_position: Optional[Sinusoids]     # (3,) metres in EEF_FRAME
    eef_angles: Optional[Sinusoids]       # (3,) roll, pitch, yaw offsets from pointing down

    def joint_state(self, t):
        """(N,) -> positions (N, J), velocities (N, J) in the robot's joint order."""
        if self.robot.action_kind == 'joint_position':
            return self.joints.value(t), self.joints.derivative(t)
        width, speed = self.joints.value(t), self.joints.derivative(t)  # (N, 1)
        # Panda fingers move symmetrically: finger1 = +w/2, finger2 = -w/2 (robosuite qpos).
        return (np.concatenate([width / 2, -width / 2], axis=1),
                np.concatenate([speed / 2, -speed / 2], axis=1))

    def finger_width(self, t):
        return self.joints.value(t)[:, 0]

    def eef_pose(self, t):
        """(N,) -> positions (N, 3), orientations (N, 4) as x, y, z, w (unit norm)."""
        angles = self.eef_angles.value(t)  # (N, 3)
        down = np.array([1.0, 0.0, 0.0, 0.0])  # rotation by pi about x: the gripper points down
        offset = quaternion_from_rpy(angles[:, 0], angles[:, 1], angles[:, 2])
        return self.eef_position.value(t), quaternion_multiply(offset, down[None])

    def actions(self, t, period):
        """(N,) action times, control period in s -> (N, d) recorded demonstrator actions.

        joint_position: the joint positions commanded for one period ahead, q(t + period).
        eef_delta: [p(t+T) - p(t), rotation vector of R(t+T) R(t)^T (base frame), gripper],
        gripper -1 (open) or +1 (close) for the finger width at t + T below half open.
        """
        if self.robot.action_kind == 'joint_position':
            return self.joints.value(t + period)
        position, orientation = self.eef_pose(t)
        position_next, orientation_next = self.eef_pose(t + period)
        inverse = orientation * np.array([-1.0, -1.0, -1.0, 1.0])  # conjugate of a unit quat
        relative = quaternion_multiply(orientation_next, inverse)  # R(t+T) R(t)^T
        closing = self.finger_width(t + period) < FINGER_OPEN_WIDTH / 2
        gripper = np.where(closing, 1.0, -1.0)[:, None]
        return np.concatenate([position_next - position, rotation_vector(relative), gripper],
                              axis=1)


def make_motion(robot, rng):
    """Random smooth trajectories for `robot` (frequencies 0.05-0.3 Hz)."""
    if robot.action_kind == 'joint_position':
        count = len(robot.joint_names)
        center = rng.uniform(-0.6, 0.6, size=count)
        grippers = [i for i, name in enumerate(robot.joint_names) if name.endswith('gripper')]
        center[grippers] = 0.5  # normalized gripper position, 0 closed .. 1 open
        joints = random_sinusoids(rng, center, (0.2, 0.6), (0.05, 0.3))
        return Motion(robot, joints, None, None)
    half = FINGER_OPEN_WIDTH / 2
    # One harmonic of amplitude half about half: the width stays in [0, FINGER_OPEN_WIDTH].
    width = Sinusoids(center=np.array([half]), amplitude=np.array([[half]]),
                      frequency=rng.uniform(0.12, 0.2, size=(1, 1)),
                      phase=rng.uniform(0, 2 * np.pi, size=(1, 1)))
    position = random_sinusoids(rng, [0.45, 0.0, 0.25], (0.05, 0.15), (0.05, 0.25))
    angles = random_sinusoids(rng, [0.0, 0.0, 0.0], (0.1, 0.4), (0.05, 0.2))
    return Motion(robot, width, position, angles)
