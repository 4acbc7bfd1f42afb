"""A small synthetic episode for replay tests and demos, written as a rosbag2 bag.

Deterministic for a seed (the same arguments give a byte-identical bag). For a layout preset
(``cosmos_policy_ros.layout.PRESETS``) the bag holds:

    /<camera>/image_raw             sensor_msgs/Image rgb8 per layout camera (moving shapes), or
    /<camera>/image_raw/compressed  sensor_msgs/CompressedImage jpeg with `compressed`
    /joint_states                   sensor_msgs/JointState: smooth sinusoidal trajectories
    /eef_pose                       geometry_msgs/PoseStamped (LIBERO/RoboCasa only)
    /recorded_actions               the demonstrator's actions:
                                      ALOHA: sensor_msgs/JointState, the commanded positions =
                                        the joint trajectory one control period ahead
                                      LIBERO/RoboCasa: std_msgs/Float64MultiArray, 7-d
                                        end-effector deltas (EE_ACTION_NAMES)
    /task                           std_msgs/String, once at the start, latched

Header stamps equal the log times and start at START_NS (2023-11-14, non-zero on purpose).

With `EpisodeConfig.params_file` (a node parameter file such as config/libero.yaml; what
`cosmos-policy-replay make-sample --preset X` uses, see `preset_params_file`) the topics and
joint names are that file's instead: its camera topics and transports, its joint_state source's
topic and joints, its pose source's topic, `recorded_actions_topic` and `task_topic`, so that the
node (or `eval`) with that file reads the bag as it is.
"""
from dataclasses import dataclass, field
import math
from typing import Mapping, Optional, Tuple

import numpy as np

from cosmos_policy_ros import package_files
from cosmos_policy_ros.bags.reader import read_info
from cosmos_policy_ros.bags.sample_robots import make_motion, Motion, ROBOTS
from cosmos_policy_ros.bags.sample_scene import CameraScene, encode_jpeg, make_scene
from cosmos_policy_ros.bags.storage import BagError
from cosmos_policy_ros.bags.typestore import make_typestore, ns_to_stamp
from cosmos_policy_ros.bags.writer import BagWriter
from cosmos_policy_ros.layout import LatentLayout, PRESETS
from cosmos_policy_ros.node_config import load_parameter_file

START_NS = 1_700_000_000 * 1_000_000_000


TASK_TOPIC = '/task'


JOINT_TOPIC = '/joint_states'


EEF_TOPIC = '/eef_pose'


ACTION_TOPIC = '/recorded_actions'


EEF_FRAME = 'base_link'


JPEG_FORMAT = 'rgb8; jpeg compressed bgr8'  # image_transport's format string


@dataclass(frozen=True)
class EpisodeConfig:
    """What `make-sample` generates. Rates in Hz, duration in seconds."""

    preset: str = 'aloha'
    duration: float = 10.0
    camera_rate: float = 10.0
    joint_rate: float = 50.0
    action_rate: Optional[float] = None  # the preset robot's control rate when None
    image_size: int = 224
    seed: int = 0
    compressed: bool = False
    start_ns: int = START_NS
    params_file: Optional[str] = None  # topics and joint names from this node parameter file

    def __post_init__(self):
        if self.preset not in ROBOTS:
            raise ValueError(f'`preset` must be one of {sorted(ROBOTS)}. Got {self.preset!r}.')
        for name in ('duration', 'camera_rate', 'joint_rate'):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f'`{name}` must be a positive number. Got {value!r}.')
        if self.action_rate is not None and not (
                isinstance(self.action_rate, (int, float)) and math.isfinite(self.action_rate)
                and self.action_rate > 0):
            raise ValueError(f'`action_rate` must be a positive number. Got {self.action_rate!r}.')
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, int) or not (
                16 <= self.image_size <= 1024):
            raise ValueError(f'`image_size` must be an integer in [16, 1024]. '
                             f'Got {self.image_size!r}.')
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not (
                0 <= self.seed < 2**32):
            raise ValueError(f'`seed` must be an integer in [0, 2**32). Got {self.seed!r}.')
        if isinstance(self.start_ns, bool) or not isinstance(self.start_ns, int) or (
                self.start_ns <= 0):
            raise ValueError(f'`start_ns` must be a positive integer. Got {self.start_ns!r}.')

    @property
    def robot(self):
        return ROBOTS[self.preset]

    @property
    def layout(self):
        return PRESETS[self.preset]

    @property
    def control_rate(self):
        return self.action_rate if self.action_rate is not None else self.robot.control_rate


def camera_topic(camera, compressed=False):
    """Topic of a camera in the sample bag without a params_file, e.g. '/primary/image_raw'."""
    return f'/{camera}/image_raw' + ('/compressed' if compressed else '')


@dataclass(frozen=True)
class BagNames:
    """Topics (absolute) and joint names of the sample bag."""

    camera_topics: Mapping[str, str]  # camera -> topic
    compressed: Tuple[str, ...]       # cameras written as CompressedImage
    joint_topic: str
    joint_names: Tuple[str, ...]
    eef_topic: str
    action_topic: str
    task_topic: str


def _absolute(topic):
    return '/' + topic.lstrip('/')


def bag_names(config):
    """The BagNames of an EpisodeConfig: the fixed defaults, or its params_file's names."""
    robot, cameras = config.robot, config.layout.cameras
    if config.params_file is None:
        return BagNames({camera: camera_topic(camera, config.compressed) for camera in cameras},
                        cameras if config.compressed else (), JOINT_TOPIC, robot.joint_names,
                        EEF_TOPIC, ACTION_TOPIC, TASK_TOPIC)
    source = config.params_file
    node = load_parameter_file(source, overrides={'model_path': 'unused'})  # topics only
    by_name = {camera.name: camera for camera in node.cameras}
    missing = [camera for camera in cameras if camera not in by_name]
    if missing:
        raise ValueError(f'{source}: no camera {missing} (the {config.preset} layout has '
                         f'{list(cameras)})')
    topics, compressed = {}, []
    for camera in cameras:
        entry = by_name[camera]
        topic = _absolute(entry.topic)
        if entry.transport == 'compressed' or config.compressed:
            compressed.append(camera)
            if entry.transport != 'compressed':
                topic += '/compressed'  # image_transport's compressed sibling of a raw topic
        topics[camera] = topic
    joint_sources = [p for p in node.proprio_sources if p.type == 'joint_state']
    if not joint_sources or len(joint_sources[0].joints) != len(robot.joint_names):
        raise ValueError(f'{source}: the {config.preset} sample needs a joint_state proprio '
                         f'source with {len(robot.joint_names)} joints')
    eef_topic = EEF_TOPIC
    if robot.has_eef_pose:
        poses = [p for p in node.proprio_sources if p.type == 'pose']
        if not poses:
            raise ValueError(f'{source}: the {config.preset} sample needs a pose proprio source')
        eef_topic = _absolute(poses[0].topic)
    return BagNames(topics, tuple(compressed), _absolute(joint_sources[0].topic),
                    tuple(joint_sources[0].joints), eef_topic,
                    _absolute(node.recorded_actions_topic or ACTION_TOPIC),
                    _absolute(node.task_topic))


def preset_params_file(preset):
    """config/<preset>.yaml of the installed package, or of the source checkout."""
    return str(package_files.config_file(f'{preset}.yaml'))


def sample_stamps(start_ns, rate, duration):
    """(N,) int64 stamps start_ns + round(i * 1e9 / rate) for every i with i / rate < duration."""
    count = int(math.ceil(duration * rate - 1e-9))
    index = np.arange(count, dtype=np.int64)
    return start_ns + np.round(index * (1e9 / rate)).astype(np.int64)


@dataclass(frozen=True)
class Episode:
    """A generated episode: stamps (int64 ns) and arrays; images are rendered on demand."""

    config: EpisodeConfig
    motion: Motion
    scenes: Tuple[CameraScene, ...]  # one per layout camera, in layout order
    camera_stamps_ns: np.ndarray     # (F,)
    joint_stamps_ns: np.ndarray      # (J,)
    action_stamps_ns: np.ndarray     # (A,)
    cameras: Tuple[str, ...] = field(default=())
    names: Optional[BagNames] = None  # topics and joint names (bag_names(config))

    def seconds(self, stamps_ns):
        return (np.asarray(stamps_ns) - self.config.start_ns) / 1e9

    def image(self, camera, frame):
        """Frame `frame` of `camera`: (S, S, 3) uint8 RGB."""
        scene = self.scenes[self.cameras.index(camera)]
        return scene.render(self.seconds(self.camera_stamps_ns[frame]), self.config.image_size)

    def joint_state(self):
        """positions (J, n), velocities (J, n) at joint_stamps_ns."""
        return self.motion.joint_state(self.seconds(self.joint_stamps_ns))

    def eef_pose(self):
        """positions (J, 3), orientations (J, 4) x, y, z, w at joint_stamps_ns (eef robots)."""
        return self.motion.eef_pose(self.seconds(self.joint_stamps_ns))

    def actions(self):
        """(A, d) recorded actions at action_stamps_ns, columns named by action_names."""
        return self.motion.actions(self.seconds(self.action_stamps_ns),
                                   1.0 / self.config.control_rate)

    @property
    def action_names(self):
        if self.config.robot.action_kind == 'joint_position' and self.names is not None:
            return self.names.joint_names
        return self.config.robot.action_names

    def topics(self):
        """topic -> message type, in the order the bag declares them."""
        names = self.names
        topics = {names.task_topic: 'std_msgs/msg/String'}
        for camera in self.cameras:
            topics[names.camera_topics[camera]] = (
                'sensor_msgs/msg/CompressedImage' if camera in names.compressed
                else 'sensor_msgs/msg/Image')
        topics[names.joint_topic] = 'sensor_msgs/msg/JointState'
        if self.config.robot.has_eef_pose:
            topics[names.eef_topic] = 'geometry_msgs/msg/PoseStamped'
        topics[names.action_topic] = ('sensor_msgs/msg/JointState'
                                      if self.config.robot.action_kind == 'joint_position'
                                      else 'std_msgs/msg/Float64MultiArray')
        return topics


def make_episode(config):
    """Generate the episode of `config` (numpy RandomState(seed): deterministic)."""
    rng = np.random.RandomState(config.seed)
    layout = LatentLayout.preset(config.preset)
    motion = make_motion(config.robot, rng)
    scenes = tuple(make_scene(rng, index) for index in range(layout.num_cameras))
    return Episode(
        config=config, motion=motion, scenes=scenes, cameras=layout.cameras,
        names=bag_names(config),
        camera_stamps_ns=sample_stamps(config.start_ns, config.camera_rate, config.duration),
        joint_stamps_ns=sample_stamps(config.start_ns, config.joint_rate, config.duration),
        action_stamps_ns=sample_stamps(config.start_ns, config.control_rate, config.duration))


def episode_messages(episode, typestore):
    """Yield (topic, stamp_ns, message) of `episode` in log-time order (typestore messages)."""
    types = typestore.types
    header_type = types['std_msgs/msg/Header']

    def header(stamp_ns, frame_id=''):
        return header_type(stamp=ns_to_stamp(stamp_ns, typestore), frame_id=frame_id)

    config = episode.config
    events = [(episode.config.start_ns, 0, 'task', 0)]
    events += [(int(s), 1 + c, 'camera', (c, i)) for i, s in enumerate(episode.camera_stamps_ns)
               for c in range(len(episode.cameras))]
    offset = 1 + len(episode.cameras)
    events += [(int(s), offset, 'joint', i) for i, s in enumerate(episode.joint_stamps_ns)]
    events += [(int(s), offset + 1, 'action', i) for i, s in enumerate(episode.action_stamps_ns)]
    events.sort(key=lambda event: (event[0], event[1]))

    positions, velocities = episode.joint_state()
    if config.robot.has_eef_pose:
        eef_position, eef_orientation = episode.eef_pose()
    actions = episode.actions()
    bag = episode.names
    names = list(bag.joint_names)
    topics = episode.topics()
    for stamp_ns, _, kind, index in events:
        if kind == 'task':
            yield bag.task_topic, stamp_ns, types['std_msgs/msg/String'](data=config.robot.task)
        elif kind == 'camera':
            camera_index, frame = index
            camera = episode.cameras[camera_index]
            image = episode.image(camera, frame)
            frame_header = header(stamp_ns, f'{camera}_optical_frame')
            if camera in bag.compressed:
                message = types['sensor_msgs/msg/CompressedImage'](
                    header=frame_header, format=JPEG_FORMAT,
                    data=np.frombuffer(encode_jpeg(image), dtype=np.uint8))
            else:
                height, width, channels = image.shape
                message = types['sensor_msgs/msg/Image'](
                    header=frame_header, height=height, width=width, encoding='rgb8',
                    is_bigendian=0, step=width * channels, data=image.reshape(-1))  # (H*W*3,)
            yield bag.camera_topics[camera], stamp_ns, message
        elif kind == 'joint':
            yield bag.joint_topic, stamp_ns, types['sensor_msgs/msg/JointState'](
                header=header(stamp_ns), name=names, position=positions[index],
                velocity=velocities[index], effort=np.zeros(0))
            if config.robot.has_eef_pose:
                position = types['geometry_msgs/msg/Point'](*eef_position[index])
                orientation = types['geometry_msgs/msg/Quaternion'](*eef_orientation[index])
                yield bag.eef_topic, stamp_ns, types['geometry_msgs/msg/PoseStamped'](
                    header=header(stamp_ns, EEF_FRAME),
                    pose=types['geometry_msgs/msg/Pose'](position=position,
                                                         orientation=orientation))
        elif topics[bag.action_topic] == 'sensor_msgs/msg/JointState':
            yield bag.action_topic, stamp_ns, types['sensor_msgs/msg/JointState'](
                header=header(stamp_ns), name=names, position=actions[index],
                velocity=np.zeros(0), effort=np.zeros(0))
        else:
            dim = types['std_msgs/msg/MultiArrayDimension'](
                label='action', size=actions.shape[1], stride=actions.shape[1])
            layout = types['std_msgs/msg/MultiArrayLayout'](dim=[dim], data_offset=0)
            yield bag.action_topic, stamp_ns, types['std_msgs/msg/Float64MultiArray'](
                layout=layout, data=actions[index])


def write_episode(episode, path, *, storage='mcap', compression='zstd', typestore=None):
    """Write `episode` as a new bag at `path`; returns its BagInfo.

    compression: 'zstd' (mcap: chunk compression; sqlite3: per-message, as `ros2 bag record
    --compression-mode message` writes) or 'none'.
    """
    typestore = typestore if typestore is not None else make_typestore()
    with BagWriter(path, storage=storage, typestore=typestore,
                   compression=compression) as bag:
        for topic, msgtype in episode.topics().items():
            bag.add_topic(topic, msgtype, latched=topic == episode.names.task_topic)
        for topic, stamp_ns, message in episode_messages(episode, typestore):
            bag.write(topic, stamp_ns, message)
    return read_info(path)


def make_sample(path, config=None, *, storage='mcap', compression='zstd'):
    """Generate and write the sample episode of `config` (default EpisodeConfig()) to `path`."""
    config = config if config is not None else EpisodeConfig()
    if storage not in ('mcap', 'sqlite3'):
        raise BagError(f'`storage` must be mcap or sqlite3. Got {storage!r}.')
    return write_episode(make_episode(config), path, storage=storage, compression=compression)
