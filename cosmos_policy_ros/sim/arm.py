"""PlanarReachEnv: a planar 3-joint arm that must reach the target the instruction names.

The world is a plane with the arm's base at the origin. Two discs, a red and a blue one, lie at
random positions in the upper half plane; the instruction names one. Their positions are only
visible in the images, so the policy must read them (and the instruction must pick the colour).

Control is absolute joint positions: each `step(command, dt)` moves every joint toward its
commanded position by at most ``max_joint_velocity * dt`` and clips it to its limits. Success
(latched) is the end effector within ``success_radius`` of the named target; the episode ends
on success or after ``episode_timeout`` seconds of sim time. Everything is deterministic given
the seed of `reset`.

Cameras (both square RGB uint8, drawn with Pillow, anti-aliased by 4x supersampling):
    primary  fixed view of the whole workspace
    wrist    a view centred on the end effector that turns with the last link (its direction is
             "up" in the image)

`expert_chunk` is the scripted expert: inverse kinematics for the named target (the last link
points radially outward, elbow clockwise), then a velocity-limited first-order approach toward
that joint configuration, one command per step.
"""
from dataclasses import dataclass
import math

import numpy as np
from PIL import Image, ImageDraw

JOINT_NAMES = ('shoulder', 'elbow', 'wrist')
CAMERAS = ('primary', 'wrist')
TASKS = ('reach the red target', 'reach the blue target')
COLORS = ('red', 'blue')

LINK_LENGTHS = (0.45, 0.35, 0.2)
JOINT_LOWER = np.array([-1.0, -2.8, -2.8])
JOINT_UPPER = np.array([4.0, 2.8, 2.8])
HOME = np.array([math.pi / 2, 0.0, 0.0])

# Target placement (polar, around the base) and drawing.
TARGET_RADIUS_RANGE = (0.5, 0.85)
TARGET_ANGLE_RANGE = (0.35, math.pi - 0.35)
TARGET_MIN_SEPARATION = 0.35
TARGET_DRAW_RADIUS = 0.08
TARGET_RGB = {'red': (215, 40, 40), 'blue': (40, 80, 225)}
BACKGROUND_RGB = (235, 235, 225)
ARM_RGB = (60, 60, 60)
JOINT_RGB = (120, 120, 120)
EFFECTOR_RGB = (40, 170, 60)
# Primary view: world square [-0.95, 0.95] x [-0.55, 1.35] (x right, y up).
PRIMARY_CENTER = (0.0, 0.4)
PRIMARY_SPAN = 1.9
WRIST_SPAN = 0.7  # world units across the wrist image
SUPERSAMPLE = 4

# Expert: fraction of the remaining joint error closed per step, and of the velocity limit used.
EXPERT_GAIN = 0.4
EXPERT_SPEED = 0.9


@dataclass(frozen=True)
class SimConfig:
    image_size: int = 32          # square RGB images, uint8 HxWx3 (the shipped model: 32)
    step_period: float = 0.1      # s per action step (control period of one chunk action)
    max_joint_velocity: float = 2.0   # rad/s toward the commanded position
    episode_timeout: float = 4.0      # s of sim time
    success_radius: float = 0.08      # end effector within this distance of the named target

    def __post_init__(self):
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, int) \
                or self.image_size < 8:
            raise ValueError(f'`image_size` must be an integer >= 8. Got {self.image_size!r}.')
        for field in ('step_period', 'max_joint_velocity', 'episode_timeout', 'success_radius'):
            value = getattr(self, field)
            if not isinstance(value, (int, float)) or isinstance(value, bool) \
                    or not math.isfinite(value) or value <= 0:
                raise ValueError(f'`{field}` must be a positive finite number. Got {value!r}.')


def forward_kinematics(q):
    """(4, 2) positions of the base, elbow, wrist and end effector for joint positions q (3,)."""
    q = np.asarray(q, dtype=np.float64)
    points = [np.zeros(2)]
    angle = 0.0
    for length, joint in zip(LINK_LENGTHS, q):
        angle += joint
        points.append(points[-1] + length * np.array([math.cos(angle), math.sin(angle)]))
    return np.array(points)


def inverse_kinematics(target):
    """Joint positions (3,) putting the end effector on `target` (2,), last link radial.

    The wrist joint sits LINK_LENGTHS[2] before the target on the ray from the base; the first
    two links reach it with the elbow bent clockwise. Unreachable points are approached along
    the ray (the cosine of the elbow angle is clipped). The result is clipped to the limits.
    """
    x, y = float(target[0]), float(target[1])
    heading = math.atan2(y, x)
    reach = math.hypot(x, y) - LINK_LENGTHS[2]
    wx, wy = reach * math.cos(heading), reach * math.sin(heading)
    l1, l2 = LINK_LENGTHS[0], LINK_LENGTHS[1]
    cos_elbow = (wx * wx + wy * wy - l1 * l1 - l2 * l2) / (2 * l1 * l2)
    elbow = -math.acos(min(1.0, max(-1.0, cos_elbow)))
    shoulder = math.atan2(wy, wx) - math.atan2(l2 * math.sin(elbow), l1 + l2 * math.cos(elbow))
    wrist = heading - shoulder - elbow
    return np.clip(np.array([shoulder, elbow, wrist]), JOINT_LOWER, JOINT_UPPER)


class PlanarReachEnv:
    """The planar reach task; see the module docstring."""

    def __init__(self, config=None):
        self.config = SimConfig() if config is None else config
        if not isinstance(self.config, SimConfig):
            raise TypeError(f'`config` must be a SimConfig, got {type(self.config).__name__}.')
        self._q = HOME.copy()
        self.targets = {color: np.zeros(2) for color in COLORS}
        self.goal_color = COLORS[0]
        self.task = TASKS[0]
        self.time = 0.0
        self.steps = 0
        self.success = False
        self.seed = None
        self._reset_called = False

    # --- episode ---------------------------------------------------------------------------------
    def reset(self, seed):
        """Start an episode: target positions, named colour and a start pose from `seed`."""
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f'`seed` must be a non-negative integer. Got {seed!r}.')
        rng = np.random.RandomState(int(seed) % 2**32)
        positions = []
        while len(positions) < len(COLORS):
            radius = rng.uniform(*TARGET_RADIUS_RANGE)
            angle = rng.uniform(*TARGET_ANGLE_RANGE)
            point = radius * np.array([math.cos(angle), math.sin(angle)])
            if all(np.linalg.norm(point - other) >= TARGET_MIN_SEPARATION for other in positions):
                positions.append(point)
        self.targets = dict(zip(COLORS, positions))
        index = int(rng.randint(len(COLORS)))
        self.goal_color = COLORS[index]
        self.task = TASKS[index]
        self._q = np.clip(HOME + rng.uniform(-0.4, 0.4, size=3), JOINT_LOWER, JOINT_UPPER)
        self.time = 0.0
        self.steps = 0
        self.success = False
        self.seed = int(seed)
        self._reset_called = True
        self._check_success()

    @property
    def done(self):
        """Success, or the episode timed out."""
        return self.success or self.time >= self.config.episode_timeout - 1e-9

    @property
    def goal(self):
        """(2,) position of the named target."""
        return self.targets[self.goal_color].copy()

    def joint_positions(self):
        return self._q.copy()

    def end_effector(self):
        return forward_kinematics(self._q)[-1]

    def distance_to_goal(self):
        return float(np.linalg.norm(self.end_effector() - self.targets[self.goal_color]))

    def step(self, command, dt):
        """Move toward the absolute joint command (3,) for dt seconds (velocity-limited)."""
        if not self._reset_called:
            raise RuntimeError('call reset(seed) before step().')
        command = np.asarray(command, dtype=np.float64)
        if command.shape != (len(JOINT_NAMES),):
            raise ValueError(f'`command` must have shape ({len(JOINT_NAMES)},), got '
                             f'{command.shape}.')
        if not np.isfinite(command).all():
            raise ValueError(f'`command` must be finite, got {command.tolist()}.')
        if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not math.isfinite(dt) \
                or dt <= 0:
            raise ValueError(f'`dt` must be a positive finite number. Got {dt!r}.')
        limit = self.config.max_joint_velocity * dt
        self._q = np.clip(self._q + np.clip(command - self._q, -limit, limit),
                          JOINT_LOWER, JOINT_UPPER)
        self.time += dt
        self.steps += 1
        self._check_success()

    def _check_success(self):
        if self.distance_to_goal() <= self.config.success_radius:
            self.success = True

    # --- rendering -------------------------------------------------------------------------------
    def render(self):
        """{'primary': (S, S, 3) uint8, 'wrist': (S, S, 3) uint8} of the current state."""
        points = forward_kinematics(self._q)
        heading = float(np.sum(self._q))  # direction of the last link
        # Wrist camera: centred on the end effector; the link direction is "up" in the image.
        wrist_up = np.array([math.cos(heading), math.sin(heading)])
        return {
            'primary': self._draw(points, np.array(PRIMARY_CENTER), np.array([0.0, 1.0]),
                                  PRIMARY_SPAN),
            'wrist': self._draw(points, points[-1] + 0.15 * wrist_up, wrist_up, WRIST_SPAN),
        }

    def _draw(self, points, center, up, span):
        size = self.config.image_size * SUPERSAMPLE
        scale = size / span
        right = np.array([up[1], -up[0]])

        def pixel(point):
            offset = np.asarray(point) - center
            return (size / 2 + scale * float(offset @ right),
                    size / 2 - scale * float(offset @ up))

        image = Image.new('RGB', (size, size), BACKGROUND_RGB)
        draw = ImageDraw.Draw(image)

        def disc(point, radius, color):
            u, v = pixel(point)
            r = radius * scale
            draw.ellipse((u - r, v - r, u + r, v + r), fill=color)

        for color in COLORS:
            disc(self.targets[color], TARGET_DRAW_RADIUS, TARGET_RGB[color])
        width = max(1, int(round(0.045 * scale)))
        for start, end in zip(points[:-1], points[1:]):
            draw.line((pixel(start), pixel(end)), fill=ARM_RGB, width=width)
        for point in points[:-1]:
            disc(point, 0.03, JOINT_RGB)
        disc(points[-1], 0.035, EFFECTOR_RGB)
        small = image.resize((self.config.image_size,) * 2, Image.BOX)
        return np.asarray(small, dtype=np.uint8).copy()


def expert_chunk(env, horizon, step_period, aim=None):
    """(horizon, 3) absolute joint targets of the scripted expert from the env's current state.

    Target: inverse_kinematics of the named target (or of the point `aim`, (2,), when given).
    Each command closes EXPERT_GAIN of the
    remaining joint error, at most EXPERT_SPEED of the velocity limit per step, so the chunk is
    smooth and executes exactly as planned. Memoryless: replanning mid-chunk continues it.
    """
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f'`horizon` must be a positive integer. Got {horizon!r}.')
    if not isinstance(step_period, (int, float)) or isinstance(step_period, bool) \
            or not math.isfinite(step_period) or step_period <= 0:
        raise ValueError(f'`step_period` must be a positive finite number. Got {step_period!r}.')
    goal_q = inverse_kinematics(env.goal if aim is None else aim)
    limit = EXPERT_SPEED * env.config.max_joint_velocity * step_period
    q = env.joint_positions()
    chunk = np.empty((horizon, len(JOINT_NAMES)))
    for k in range(horizon):
        q = q + np.clip(EXPERT_GAIN * (goal_q - q), -limit, limit)
        chunk[k] = q
    return chunk
