"""Configuration of the policy node: every parameter with its default, unit and validation, once.

``NodeConfig`` is a frozen dataclass whose fields are the node's ROS parameters (same names).
Each field carries its description, unit, range, choices and whether it may change while the
node runs (``runtime``) in its metadata; ``cosmos_policy_ros.ros.params`` turns that into
``ParameterDescriptor`` s, and validation here gives errors that name the parameter and the bad
value. Cameras and proprio sources are nested (``camera.<name>.*``, ``proprio.<name>.*``).

ROS-free (numpy only): the offline evaluator builds the same configuration from YAML. Loading
the policy it names is policy_loading.py.
"""
import dataclasses
from dataclasses import dataclass, field
import difflib
import math
import re

from cosmos_policy_ros.config_files import read_yaml
from cosmos_policy_ros.execution import STITCHING_METHODS
from cosmos_policy_ros.interface import SEED_MODULUS
from cosmos_policy_ros.safety import ChunkLimits

DEFAULT_POLICY_FACTORY = 'cosmos_policy_ros.engine.policy:load_policy'
ACTION_SPACES = ('ee_delta', 'joint_position')
REPLAN_MODES = ('every_tick', 'steps_left')
SEED_MODES = ('stamp', 'fixed')
LIMIT_MODES = ('reject', 'clamp')
RELIABILITIES = ('best_effort', 'reliable')
TRANSPORTS = ('raw', 'compressed')
PROPRIO_TYPES = ('joint_state', 'pose')
JOINT_FIELDS = ('position', 'velocity', 'effort')
QUATERNION_ORDERS = ('xyzw', 'wxyz')
EXECUTORS = ('events', 'single_threaded', 'multi_threaded')
POSE_WIDTH = 7  # x, y, z and a quaternion

_NAME = re.compile(r'^[a-z][a-z0-9_]*$')
FACTORY_PATTERN = re.compile(r'^[A-Za-z_][\w.]*:[A-Za-z_]\w*$')


def param(default, description, *, unit='', low=None, high=None, low_exclusive=False,
          choices=None, runtime=False, kind=None):
    """A config field that is also a ROS parameter (metadata read by validation and params.py).

    kind: 'str', 'int', 'float', 'bool', 'str_list' or 'float_list'; inferred from the default
    when omitted (tuples must say which list they are).
    """
    if kind is None:
        kind = {bool: 'bool', int: 'int', float: 'float', str: 'str'}[type(default)]
    metadata = {'description': description, 'unit': unit, 'low': low, 'high': high,
                'low_exclusive': low_exclusive, 'choices': choices, 'runtime': runtime,
                'kind': kind}
    return field(default=default, metadata=metadata)


def check_value(name, value, meta):
    """Coerce `value` to a parameter's kind and check its range/choices; returns the value.

    meta: the metadata of a `param` field. Raises ValueError naming `name`.
    """
    kind = meta['kind']
    if kind in ('str_list', 'float_list'):
        if value is None:
            value = ()
        if isinstance(value, (str, bytes)) or not hasattr(value, '__iter__'):
            raise ValueError(f'`{name}` must be a list. Got {value!r}.')
        item_kind = kind[:-len('_list')]
        items = tuple(check_value(f'{name}[{i}]', item, dict(meta, kind=item_kind))
                      for i, item in enumerate(value))
        return items
    if kind == 'bool':
        if not isinstance(value, bool):
            raise ValueError(f'`{name}` must be true or false. Got {value!r}.')
        return value
    if kind == 'str':
        if not isinstance(value, str):
            raise ValueError(f'`{name}` must be a string. Got {value!r}.')
        if meta['choices'] is not None and value not in meta['choices']:
            raise ValueError(f'`{name}` must be one of {list(meta["choices"])}. Got {value!r}.')
        return value
    if kind == 'int':
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f'`{name}` must be an integer. Got {value!r}.')
    elif kind == 'float':
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f'`{name}` must be a number. Got {value!r}.')
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f'`{name}` must be finite. Got {value!r}.')
    else:  # pragma: no cover - a programming error in the field table
        raise AssertionError(f'unknown parameter kind {kind!r} of {name}')
    low, high, unit = meta['low'], meta['high'], meta['unit']
    unit = f' {unit}' if unit else ''
    if low is not None and (value <= low if meta['low_exclusive'] else value < low):
        relation = '>' if meta['low_exclusive'] else '>='
        raise ValueError(f'`{name}` must be {relation} {low}{unit}. Got {value!r}.')
    if high is not None and value > high:
        raise ValueError(f'`{name}` must be <= {high}{unit}. Got {value!r}.')
    return value


def _validate_fields(instance):
    """Run check_value over every parameter field of a dataclass, storing coerced values."""
    for item in dataclasses.fields(instance):
        if 'kind' not in item.metadata:
            continue
        name = instance.PREFIX + item.name
        value = check_value(name, getattr(instance, item.name), item.metadata)
        object.__setattr__(instance, item.name, value)


def parameter_fields(cls):
    """The parameter fields of a config dataclass: (name, default, metadata) tuples."""
    return [(item.name, item.default, item.metadata) for item in dataclasses.fields(cls)
            if 'kind' in item.metadata]


@dataclass(frozen=True)
class CameraConfig:
    """One camera stream; its parameters are `camera.<name>.<field>`."""

    GROUP = 'camera'

    name: str
    topic: str = param('', 'Image topic; empty: <name>/image_raw (raw) or '
                           '<name>/image_raw/compressed (compressed)')
    transport: str = param('raw', 'raw: sensor_msgs/Image, compressed: '
                                  'sensor_msgs/CompressedImage (jpeg or png)',
                           choices=TRANSPORTS)

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f'`cameras` entries must be lower-case identifiers. '
                             f'Got {self.name!r}.')
        _validate_fields(self)
        if not self.topic:
            suffix = '/compressed' if self.transport == 'compressed' else ''
            object.__setattr__(self, 'topic', f'{self.name}/image_raw{suffix}')

    @property
    def PREFIX(self):
        return f'{self.GROUP}.{self.name}.'


@dataclass(frozen=True)
class ProprioSourceConfig:
    """One proprio stream; its parameters are `proprio.<name>.<field>`.

    joint_state: values of `joints` (in this order) from one field of sensor_msgs/JointState.
    pose: geometry_msgs/PoseStamped as x, y, z and the quaternion in `quaternion_order`
    (robosuite's robot0_eef_quat, used by LIBERO and RoboCasa, is x, y, z, w).
    """

    GROUP = 'proprio'

    name: str
    type: str = param('joint_state', 'joint_state (sensor_msgs/JointState) or pose '
                                     '(geometry_msgs/PoseStamped)', choices=PROPRIO_TYPES)
    topic: str = param('', 'Topic; empty: joint_states for joint_state, <name>/pose for pose')
    field: str = param('position', 'JointState field to read (joint_state only)',
                       choices=JOINT_FIELDS)
    joints: tuple = param((), 'Joint names, in proprio order (joint_state only)',
                          kind='str_list')
    quaternion_order: str = param('xyzw', 'Quaternion order in the proprio vector (pose only)',
                                  choices=QUATERNION_ORDERS)

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(f'`proprio_sources` entries must be lower-case identifiers. '
                             f'Got {self.name!r}.')
        _validate_fields(self)
        if not self.topic:
            topic = 'joint_states' if self.type == 'joint_state' else f'{self.name}/pose'
            object.__setattr__(self, 'topic', topic)
        if self.type == 'joint_state':
            if not self.joints:
                raise ValueError(f'`{self.PREFIX}joints` must list at least one joint name '
                                 f'for a joint_state source.')
            if len(set(self.joints)) != len(self.joints):
                raise ValueError(f'`{self.PREFIX}joints` must not repeat names. '
                                 f'Got {list(self.joints)}.')
        elif self.joints:
            raise ValueError(f'`{self.PREFIX}joints` is only used by joint_state sources; '
                             f'{self.name!r} is a pose source.')

    @property
    def PREFIX(self):
        return f'{self.GROUP}.{self.name}.'

    @property
    def width(self):
        """Number of proprio values this source contributes."""
        return len(self.joints) if self.type == 'joint_state' else POSE_WIDTH

    @property
    def labels(self):
        """One label per contributed value, e.g. 'arm.position.elbow' or 'eef.qw'."""
        if self.type == 'joint_state':
            return tuple(f'{self.name}.{self.field}.{joint}' for joint in self.joints)
        quaternion = ('qx', 'qy', 'qz', 'qw') if self.quaternion_order == 'xyzw' else (
            'qw', 'qx', 'qy', 'qz')
        return tuple(f'{self.name}.{axis}' for axis in ('x', 'y', 'z') + quaternion)


@dataclass(frozen=True)
class NodeConfig:
    """Everything the policy node is configured with (field name = ROS parameter name)."""

    PREFIX = ''

    # --- the policy ------------------------------------------------------------------------
    model_path: str = param('', 'Model directory (or file) given to the policy factory')
    policy_factory: str = param(DEFAULT_POLICY_FACTORY,
                                "'module:function' called as function(model_path, device=..., "
                                'dtype=...) and returning a Policy')
    device: str = param('auto', "Device passed to the policy factory ('auto', 'cpu', 'cuda', "
                                "'cuda:1', ...)")
    dtype: str = param('auto', "Weight dtype passed to the policy factory ('auto', 'bfloat16', "
                               "'float32', ...)")
    compile_network: bool = param(
        False, 'torch.compile the network (the first warm-up inference compiles: seconds to '
               'minutes); passed to the policy factory as acceleration')
    cuda_graphs: bool = param(
        False, 'Replay captured CUDA graphs of the network (CUDA only); passed to the policy '
               'factory as acceleration')
    attention_backend: str = param(
        '', "diffusers attention backend ('' = PyTorch SDPA's own choice; e.g. _native_flash, "
            'flash, xformers); passed to the policy factory as acceleration')
    python_switch_interval: float = param(
        1e-4, "Python's thread switch interval (sys.setswitchinterval, process-wide): the "
              'inference thread waits up to this long for the GIL after every torch op while '
              'callbacks run; the Python default 5 ms made a CPU inference 25x slower here',
        unit='s', low=1e-6, high=0.1)
    executor: str = param(
        'events', "The rclpy executor policy_node spins: events (rclpy's EventsExecutor, one "
                  'thread, dispatch in C++: the fastest here, docs/performance.md section 8), '
                  'single_threaded, or multi_threaded (4 threads); inference has its own '
                  "thread in each. A fleet server's robots share the server's (default events)",
        choices=EXECUTORS)
    keep_freed_memory: bool = param(
        True, 'glibc (process-wide, applied at configure): serve allocations up to 32 MiB (camera '
              'images) from the heap and keep up to 64 MiB of freed memory for reuse, so that '
              'each image does not map and fault in fresh pages (allocator.py); false: glibc '
              'defaults')
    warmup_iterations: int = param(2, 'Inferences on a synthetic observation during configure',
                                   low=0, high=100)
    max_warmup_latency: float = param(
        0.0, 'Configure fails when the median warm-up latency (first iteration excluded) '
             'exceeds this; 0 disables the check', unit='s', low=0.0, high=3600.0)

    # --- inputs ----------------------------------------------------------------------------
    cameras: tuple = ()  # CameraConfig per camera (parameter `cameras` lists the names)
    proprio_sources: tuple = ()  # ProprioSourceConfig per source, in proprio order
    task: str = param('', 'Task instruction; a message on task_topic replaces it',
                      runtime=True)
    task_topic: str = param('task', 'std_msgs/String topic with the task (transient local)')
    reference_stream: str = param('', 'Stream whose stamp anchors synchronization; empty: '
                                      "'primary' if it is a camera, else the first camera")
    sync_tolerance: float = param(0.05, 'Largest stamp difference from the reference stream',
                                  unit='s', low=0.0, high=10.0, runtime=True)
    max_observation_age: float = param(
        0.25, 'Oldest acceptable member of an observation when it is taken (ROS clock)',
        unit='s', low=0.0, low_exclusive=True, high=3600.0, runtime=True)
    buffer_size: int = param(16, 'Messages kept per camera stream', low=1, high=1000)
    proprio_buffer_size: int = param(256, 'Messages kept per proprio stream (joint states '
                                          'often come at hundreds of Hz)', low=1, high=100000)
    input_reliability: str = param('best_effort', 'Reliability QoS of the input subscriptions',
                                   choices=RELIABILITIES)
    input_depth: int = param(5, 'History depth QoS of the input subscriptions', low=1,
                             high=1000)

    # --- control loop ------------------------------------------------------------------------
    rate: float = param(10.0, 'Control loop tick rate (ROS clock)', unit='Hz', low=0.0,
                        low_exclusive=True, high=1000.0, runtime=True)
    tick_on_arrival: bool = param(
        True, 'Also tick when a message is stored, so that a complete synchronized set starts '
              'its inference at once instead of at the next timer tick; none starts within '
              '1 / rate of the last start all the same, and a set stamped after the clock '
              'waits for the timer')
    replan_mode: str = param('every_tick', 'every_tick: infer at every tick when idle; '
                                           'steps_left: infer when the executing chunk has at '
                                           'most replan_threshold steps left',
                             choices=REPLAN_MODES, runtime=True)
    replan_threshold: int = param(0, 'Steps left of the executing chunk that trigger a replan '
                                     '(steps_left mode)', unit='steps', low=0, high=100000,
                                  runtime=True)
    execute_steps: int = param(0, 'Actions of each chunk meant to be executed (trajectory '
                                  'length, replan bookkeeping); 0: the whole chunk',
                               unit='steps', low=0, high=100000, runtime=True)
    step_period: float = param(0.05, 'Time between consecutive actions of a chunk', unit='s',
                               low=0.0, low_exclusive=True, high=60.0)
    stitching: str = param(
        'none', 'How a new chunk takes over from the executing one (docs/stitching.md): none: '
                'hard switch; blend: cross-fade over stitching_overlap steps; inpaint: sample it '
                "knowing the executing chunk's commands up to the takeover; inpaint+blend: both; "
                'ramp: the first steps after the takeover (as many as elapsed during the '
                'latency, at least 1, at most stitching_overlap) on the straight line from the '
                "last committed command to the new chunk's next step",
        choices=STITCHING_METHODS, runtime=True)
    stitching_overlap: int = param(2, 'Steps of the cross-fade (blend methods), at most '
                                      'those of the ramp',
                                   unit='steps', low=0, high=100000, runtime=True)
    latency_margin: float = param(
        0.0, 'Added to the measured inference latency (90th percentile of the last 20, ROS '
             'clock) where the takeover of a new chunk is planned: delays after publishing '
             '(transport, the controller)', unit='s', low=0.0, high=60.0, runtime=True)
    num_denoising_steps: int = param(5, 'Network evaluations of the denoising sampler',
                                     low=1, high=1000, runtime=True)
    num_candidates: int = param(1, 'Best-of-N planning candidates (1: no planning)', low=1,
                                high=64, runtime=True)
    seed_mode: str = param('stamp', 'stamp: seed = (seed + reference stamp in ns) mod 2**32; '
                                    'fixed: seed for every chunk', choices=SEED_MODES,
                           runtime=True)
    seed: int = param(0, 'Base seed of the diffusion noise', low=0, high=SEED_MODULUS - 1,
                      runtime=True)

    # --- outputs -----------------------------------------------------------------------------
    action_space: str = param('ee_delta', 'ee_delta: end-effector deltas (chunks only); '
                                          'joint_position: absolute joint positions',
                              choices=ACTION_SPACES)
    action_names: tuple = param((), 'One name per action dimension (joint names for '
                                    'joint_position); empty: action_0, action_1, ...',
                                kind='str_list')
    frame_id: str = param('', 'frame_id of the published headers')
    publish_joint_trajectory: bool = param(
        False, 'Publish trajectory_msgs/JointTrajectory (joint_position action space only)')
    publish_future_images: bool = param(
        False, 'Publish predicted future images on future/<camera>/image')
    output_depth: int = param(10, 'History depth QoS of the outputs (reliable)', low=1,
                              high=1000)
    diagnostics_period: float = param(1.0, 'Period of /diagnostics', unit='s', low=0.0,
                                      low_exclusive=True, high=60.0)
    stage_timing: bool = param(
        False, "Debug: publish with each chunk the wall-clock times of its observation's trip "
               'through the node on ~/stage_times (StageTimes; docs/performance.md section 8)')

    # --- safety ------------------------------------------------------------------------------
    action_lower_limits: tuple = param((), 'Per-dimension lower limits of the actions; empty: '
                                           'none', kind='float_list', runtime=True)
    action_upper_limits: tuple = param((), 'Per-dimension upper limits of the actions; empty: '
                                           'none', kind='float_list', runtime=True)
    limit_mode: str = param('reject', 'reject: drop a chunk outside the limits; clamp: clamp '
                                      'it into them', choices=LIMIT_MODES, runtime=True)
    max_first_step_jump: float = param(
        0.0, 'Largest |first action - current joint position| (joint_position only); 0: off',
        unit='action units', low=0.0, high=1e6, runtime=True)
    max_publish_age: float = param(
        1.0, 'Drop a chunk whose observation is older than this when it is ready', unit='s',
        low=0.0, low_exclusive=True, high=3600.0, runtime=True)
    watchdog_timeout: float = param(
        5.0, 'Diagnostics ERROR when active and no chunk was published for this long; 0: off',
        unit='s', low=0.0, high=3600.0, runtime=True)

    # --- offline evaluation ------------------------------------------------------------------
    recorded_actions_topic: str = param(
        '', 'Topic of the demonstrator actions in a bag (JointState or Float64MultiArray), '
            'compared with the chunks by cosmos-policy-replay eval; the node ignores it')

    def __post_init__(self):
        _validate_fields(self)
        object.__setattr__(self, 'cameras', tuple(self.cameras))
        object.__setattr__(self, 'proprio_sources', tuple(self.proprio_sources))
        if not self.model_path:
            raise ValueError('`model_path` must be set (the model directory given to the '
                             'policy factory).')
        if not FACTORY_PATTERN.match(self.policy_factory):
            raise ValueError(f"`policy_factory` must look like 'package.module:function'. "
                             f'Got {self.policy_factory!r}.')
        if not self.cameras:
            raise ValueError('`cameras` must name at least one camera.')
        for item, kind in ((self.cameras, CameraConfig),
                           (self.proprio_sources, ProprioSourceConfig)):
            for entry in item:
                if not isinstance(entry, kind):
                    raise ValueError(f'expected {kind.__name__} entries. Got {entry!r}.')
        names = self.stream_names
        if len(set(names)) != len(names):
            raise ValueError(f'camera and proprio source names must be unique (they name the '
                             f'input streams). Got {list(names)}.')
        if self.reference_stream and self.reference_stream not in names:
            raise ValueError(f'`reference_stream` must be one of the streams {list(names)}. '
                             f'Got {self.reference_stream!r}.')
        if len(set(self.action_names)) != len(self.action_names):
            raise ValueError(f'`action_names` must be unique. Got {list(self.action_names)}.')
        lower, upper = self.action_lower_limits, self.action_upper_limits
        if lower and upper:
            if len(lower) != len(upper):
                raise ValueError(f'`action_lower_limits` ({len(lower)} values) and '
                                 f'`action_upper_limits` ({len(upper)} values) must have the '
                                 f'same length.')
            bad = [i for i, (lo, hi) in enumerate(zip(lower, upper)) if lo > hi]
            if bad:
                raise ValueError(f'`action_lower_limits` must not exceed '
                                 f'`action_upper_limits`; dimension(s) {bad} do.')
        if self.action_space != 'joint_position':
            if self.publish_joint_trajectory:
                raise ValueError(
                    f'`publish_joint_trajectory` needs `action_space` joint_position (absolute '
                    f'joint positions); {self.action_space!r} actions are published as '
                    f'ActionChunk only.')
            if self.max_first_step_jump > 0:
                raise ValueError(
                    f'`max_first_step_jump` compares actions with joint positions and needs '
                    f'`action_space` joint_position. Got {self.action_space!r}.')

    # --- derived values ----------------------------------------------------------------------
    @property
    def camera_names(self):
        return tuple(camera.name for camera in self.cameras)

    @property
    def proprio_names(self):
        return tuple(source.name for source in self.proprio_sources)

    @property
    def stream_names(self):
        """Every input stream: cameras, then proprio sources."""
        return self.camera_names + self.proprio_names

    @property
    def reference(self):
        """The stream synchronization is anchored on."""
        if self.reference_stream:
            return self.reference_stream
        return 'primary' if 'primary' in self.camera_names else self.camera_names[0]

    @property
    def proprio_dim(self):
        return sum(source.width for source in self.proprio_sources)

    @property
    def proprio_labels(self):
        return tuple(label for source in self.proprio_sources for label in source.labels)

    def seed_for(self, stamp_ns):
        """Seed of the chunk computed from the observation with reference stamp `stamp_ns`."""
        return derive_seed(self.seed_mode, self.seed, stamp_ns)

    def acceleration(self):
        """The factory's `acceleration` argument, or None when every speed-up is off."""
        if not (self.compile_network or self.cuda_graphs or self.attention_backend):
            return None
        return {'compile': self.compile_network, 'cuda_graphs': self.cuda_graphs,
                'attention_backend': self.attention_backend or None}

    def chunk_limits(self):
        """The ChunkLimits the safety check applies to every chunk."""
        return ChunkLimits(lower=self.action_lower_limits or None,
                           upper=self.action_upper_limits or None, mode=self.limit_mode,
                           max_first_step_jump=self.max_first_step_jump)

    def replace(self, **changes):
        """A validated copy with `changes` applied (raises ValueError naming the parameter)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def runtime_parameters(cls):
        """Names of the parameters that may change while the node runs."""
        return tuple(name for name, _, meta in parameter_fields(cls) if meta['runtime'])


def derive_seed(mode, seed, stamp_ns):
    """The diffusion seed of an observation: deterministic, so a replayed bag gives the same chunk.

    mode 'fixed': `seed`; mode 'stamp': (seed + stamp_ns) mod 2**32, stamp_ns being the
    reference stream's header stamp in integer nanoseconds.
    """
    if mode == 'fixed':
        return int(seed) % SEED_MODULUS
    if mode == 'stamp':
        return (int(seed) + int(stamp_ns)) % SEED_MODULUS
    raise ValueError(f'`seed_mode` must be one of {list(SEED_MODES)}. Got {mode!r}.')


@dataclass(frozen=True)
class LayoutBinding:
    """How a NodeConfig maps onto a policy's layout (see bind_layout)."""

    action_names: tuple  # one per action dimension
    horizon: int  # K, actions per chunk
    execute_steps: int  # actions meant to be executed (<= horizon)
    jump_indices: tuple  # proprio index of each action dimension (jump check), or ()


def bind_layout(config, layout):
    """Check `config` against a policy's layout and resolve what depends on both.

    layout: a LatentLayout (cameras, chunk_size, action_dim, proprio_dim).
    Raises ValueError naming the parameter when they disagree.
    """
    if set(config.camera_names) != set(layout.cameras):
        raise ValueError(f'`cameras` {list(config.camera_names)} must be the cameras of the '
                         f'model layout {layout.name!r}: {list(layout.cameras)}.')
    if config.proprio_dim != layout.proprio_dim:
        widths = {source.name: source.width for source in config.proprio_sources}
        raise ValueError(f'`proprio_sources` give {config.proprio_dim} values {widths}, but '
                         f'layout {layout.name!r} expects proprio_dim = {layout.proprio_dim}.')
    names = config.action_names or tuple(f'action_{i}' for i in range(layout.action_dim))
    if len(names) != layout.action_dim:
        raise ValueError(f'`action_names` has {len(names)} names, but layout {layout.name!r} '
                         f'predicts action_dim = {layout.action_dim} values per action.')
    for limits in ('action_lower_limits', 'action_upper_limits'):
        values = getattr(config, limits)
        if values and len(values) != layout.action_dim:
            raise ValueError(f'`{limits}` has {len(values)} values; it needs one per action '
                             f'dimension ({layout.action_dim}) or none.')
    if config.execute_steps > layout.chunk_size:
        raise ValueError(f'`execute_steps` = {config.execute_steps} exceeds the chunk size '
                         f'{layout.chunk_size} of layout {layout.name!r}.')
    if config.replan_threshold >= (config.execute_steps or layout.chunk_size) and (
            config.replan_mode == 'steps_left'):
        raise ValueError(f'`replan_threshold` = {config.replan_threshold} must be smaller than '
                         f'the executed steps ({config.execute_steps or layout.chunk_size}).')
    jump_indices = ()
    if config.max_first_step_jump > 0:
        positions = {}
        offset = 0
        for source in config.proprio_sources:
            if source.type == 'joint_state' and source.field == 'position':
                for i, joint in enumerate(source.joints):
                    positions.setdefault(joint, offset + i)
            offset += source.width
        missing = [name for name in names if name not in positions]
        if missing:
            raise ValueError(f'`max_first_step_jump` needs the current position of every '
                             f'action; `action_names` {missing} are not joints of a '
                             f'joint_state proprio source with field position.')
        jump_indices = tuple(positions[name] for name in names)
    return LayoutBinding(action_names=tuple(names), horizon=layout.chunk_size,
                         execute_steps=config.execute_steps or layout.chunk_size,
                         jump_indices=jump_indices)


def flatten_parameters(mapping, prefix=''):
    """{'camera': {'wrist': {'topic': 'x'}}} -> {'camera.wrist.topic': 'x'} (as ROS does)."""
    flat = {}
    for key, value in mapping.items():
        name = f'{prefix}{key}'
        if isinstance(value, dict):
            flat.update(flatten_parameters(value, name + '.'))
        else:
            flat[name] = value
    return flat


def names_list(name, value):
    """The names of list parameter `name` (`cameras`, `proprio_sources`) as a tuple; None is
    none. ValueError when it is not a list of strings (`cameras: primary` is a string)."""
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(
            isinstance(item, str) for item in value):
        example = f', e.g. [{value}]' if isinstance(value, str) else ''
        raise ValueError(f'`{name}` must be a list of names{example}. Got {value!r}.')
    return tuple(value)


def known_parameter_names(cameras=(), proprio_sources=()):
    """Every parameter name a node with these camera and proprio source names has."""
    names = {name for name, _, _ in parameter_fields(NodeConfig)}
    names |= {'cameras', 'proprio_sources', 'autostart', 'use_sim_time'}
    for kind, entries in ((CameraConfig, cameras), (ProprioSourceConfig, proprio_sources)):
        names |= {f'{kind.GROUP}.{entry}.{field}' for entry in entries
                  for field, _, _ in parameter_fields(kind)}
    return names


def unknown_parameters_error(unknown, known):
    """The message for parameter names no parameter has: each with the closest known name."""
    parts = []
    for name in sorted(unknown):
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        parts.append(f"'{name}' (did you mean '{close[0]}'?)" if close else f"'{name}'")
    return (f'unknown parameter(s) {", ".join(parts)}: a typo? a camera or proprio source '
            f'not listed in `cameras` / `proprio_sources`?')


def config_from_parameters(parameters, *, source='parameters'):
    """A NodeConfig from a ros__parameters mapping (nested as in YAML, or dotted keys).

    The offline evaluator reads the node's parameter file with this (see
    load_parameter_file); unknown names raise ValueError naming them and the closest known
    name.
    """
    flat = flatten_parameters(dict(parameters))
    nested, listed = {}, {}
    for kind, key in ((CameraConfig, 'cameras'), (ProprioSourceConfig, 'proprio_sources')):
        try:
            listed[key] = names_list(key, flat.get(key))
        except ValueError as error:
            raise ValueError(f'{source}: {error}') from None
        entries = []
        for name in listed[key]:
            prefix = f'{kind.GROUP}.{name}.'
            fields = {field: flat[prefix + field] for field, _, _ in parameter_fields(kind)
                      if prefix + field in flat}
            try:
                entries.append(kind(name, **fields))
            except ValueError as error:
                raise ValueError(f'{source}: {error}') from None
        nested[key] = tuple(entries)
    known = known_parameter_names(listed['cameras'], listed['proprio_sources'])
    unknown = sorted(set(flat) - known)
    if unknown:
        raise ValueError(f'{source}: {unknown_parameters_error(unknown, known)}')
    values = {name: flat[name] for name, _, _ in parameter_fields(NodeConfig) if name in flat}
    try:
        return NodeConfig(**nested, **values)
    except (ValueError, TypeError) as error:
        raise ValueError(f'{source}: {error}') from None


def read_parameter_file(path, *, node_name='cosmos_policy'):
    """The parameters (dotted names) a ROS parameter file gives the node `node_name`, as rcl
    would apply them.

    Sections: `/**`, then `<node_name>` or `/<namespace>/<node_name>` (later ones win);
    `qos_overrides.*` entries are for rcl, not the node, and are skipped.
    """
    data = read_yaml(path, 'parameter file')
    sections = [key for key in (data if isinstance(data, dict) else {})
                if key == '/**' or key.strip('/').split('/')[-1] == node_name]
    sections.sort(key=lambda key: key != '/**')  # the wildcard first, node sections over it
    parameters = {}
    for key in sections:
        section = data[key]
        if isinstance(section, dict) and isinstance(section.get('ros__parameters'), dict):
            parameters.update(flatten_parameters(section['ros__parameters']))
    if not parameters:
        raise ValueError(f'{path}: no `/**` or `{node_name}` section with ros__parameters.')
    return {name: value for name, value in parameters.items()
            if not name.startswith('qos_overrides.')}


def load_parameter_file(path, *, node_name='cosmos_policy', overrides=None):
    """The NodeConfig of a ROS parameter file, as rcl would apply it to the node.

    overrides: extra parameters (dotted names) applied on top, e.g. {'model_path': ...}.
    """
    parameters = read_parameter_file(path, node_name=node_name)
    parameters.update(overrides or {})
    return config_from_parameters(parameters, source=str(path))


def config_parameters(config):
    """{parameter name: value} of a NodeConfig: every field, the camera and proprio source
    lists and their nested parameters (derived defaults filled in, lists as tuples)."""
    values = {name: getattr(config, name) for name, _, _ in parameter_fields(NodeConfig)}
    values['cameras'] = config.camera_names
    values['proprio_sources'] = config.proprio_names
    for entry in config.cameras + config.proprio_sources:
        for field_name, _, _ in parameter_fields(type(entry)):
            values[entry.PREFIX + field_name] = getattr(entry, field_name)
    return values
