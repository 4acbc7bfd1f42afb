"""Node-test harness: the installed `policy_node` as a subprocess and a test-side ROS client.

Waits are conditions with deadlines (generous for a loaded 2-core machine), never fixed sleeps.
"""
import gc
import io
from pathlib import Path
import signal
import subprocess
import threading
import time
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

import cosmos_policy_ros

MS = 1_000_000
LIBERO_ACTIONS = ['dx', 'dy', 'dz', 'droll', 'dpitch', 'dyaw', 'gripper']
ALOHA_JOINTS = [f'{side}_{joint}' for side in ('left', 'right') for joint in (
    'waist', 'shoulder', 'elbow', 'forearm_roll', 'wrist_angle', 'wrist_rotate', 'gripper')]


def _inference_threads():
    return {thread for thread in threading.enumerate() if thread.name == 'cosmos_policy_inference'}


@pytest.fixture(autouse=True)
def no_leaked_node_threads():
    """Each ROS test ends what it started: an inference thread left alive fails *this* test,
    and its rclpy objects are collected here, not in the middle of a later test's configure."""
    before = _inference_threads()
    yield
    gc.collect()
    leaked = _inference_threads() - before
    assert not leaked, f'inference thread(s) left running: {sorted(t.name for t in leaked)}'


def node_script():
    """The console script colcon installed into <prefix>/lib/cosmos_policy_ros."""
    prefix = Path(cosmos_policy_ros.__file__).resolve().parents[4]
    script = prefix / 'lib' / 'cosmos_policy_ros' / 'policy_node'
    assert script.is_file(), f'policy_node is not installed at {script}'
    return script


def libero_parameters(**changes):
    """LIBERO-like parameters: wrist raw, primary compressed, gripper joints + eef pose."""
    parameters = {
        'policy_factory': 'cosmos_policy_ros.testing:load_fake_policy',
        'cameras': ['wrist', 'primary'],
        'camera': {'wrist': {'topic': 'wrist/image_raw'},
                   'primary': {'topic': 'primary/image_raw/compressed',
                               'transport': 'compressed'}},
        'proprio_sources': ['gripper', 'eef'],
        'proprio': {'gripper': {'type': 'joint_state', 'joints': ['finger_l', 'finger_r']},
                    'eef': {'type': 'pose', 'topic': 'eef_pose'}},
        'action_names': LIBERO_ACTIONS,
        'task': 'put the bowl on the plate',
        'warmup_iterations': 1,
        'rate': 20.0,
        'num_denoising_steps': 3,
        'sync_tolerance': 0.02,
        'max_observation_age': 2.0,
        'max_publish_age': 5.0,
        'diagnostics_period': 0.2,
        'input_reliability': 'reliable',
    }
    parameters.update(changes)
    return parameters


def aloha_parameters(**changes):
    parameters = {
        'policy_factory': 'cosmos_policy_ros.testing:load_fake_policy',
        'cameras': ['left_wrist', 'right_wrist', 'primary'],
        'proprio_sources': ['arms'],
        'proprio': {'arms': {'type': 'joint_state', 'joints': ALOHA_JOINTS}},
        'action_space': 'joint_position',
        'action_names': ALOHA_JOINTS,
        'step_period': 0.04,
        'task': 'fold the towel',
        'warmup_iterations': 1,
        'rate': 20.0,
        'max_observation_age': 2.0,
        'max_publish_age': 5.0,
        'diagnostics_period': 0.2,
        'input_reliability': 'reliable',
    }
    parameters.update(changes)
    return parameters


class _NoAliasDumper(yaml.SafeDumper):
    """rcl's YAML parser rejects aliases (&id001 / *id001): write every value out."""

    def ignore_aliases(self, data):
        return True


def dump_yaml(data):
    return yaml.dump(data, Dumper=_NoAliasDumper)


@pytest.fixture
def write_setup(tmp_path):
    """write_setup(parameters, fake) -> params file path; `fake` is the fake policy's YAML."""

    def write(parameters, fake):
        fake_path = tmp_path / 'fake_policy.yaml'
        fake_path.write_text(yaml.safe_dump(fake))
        parameters = dict(parameters)
        parameters.setdefault('model_path', str(fake_path))
        params_path = tmp_path / 'params.yaml'
        params_path.write_text(dump_yaml({'/**': {'ros__parameters': parameters}}))
        return params_path

    return write


class OutputProcess:
    """A subprocess whose stdout and stderr are collected in the background."""

    def __init__(self, command, env, **popen):
        self.started = time.monotonic()
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, **popen)
        self._lines = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.process.stdout:
            self._lines.append(line)

    @property
    def output(self):
        return ''.join(self._lines)

    def alive(self):
        return self.process.poll() is None

    def wait(self, timeout):
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._reader.join(5)
        return code


class NodeProcess(OutputProcess):
    """policy_node running as its own process."""

    def __init__(self, params_file, env, *args):
        super().__init__(
            [str(node_script()), '--ros-args', '--params-file', str(params_file), *args], env)

    def stop(self, signum=signal.SIGINT, timeout=30):
        """Send `signum`, wait for the exit code (None if it had to be killed)."""
        if self.alive():
            self.process.send_signal(signum)
        code = self.wait(timeout)
        if code is None:
            self.process.kill()
            self.wait(10)
        return code


@pytest.fixture
def start_node(ros_env):
    processes = []

    def start(params_file, *args):
        process = NodeProcess(params_file, ros_env, *args)
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.stop(signal.SIGKILL if process.alive() else signal.SIGINT, timeout=10)


def diagnostics_values(msg):
    """DiagnosticArray -> {part: (level, message, {key: value})}, part as in '<node>: part'."""
    result = {}
    for status in msg.status:
        part = status.name.split(': ', 1)[-1]
        level = status.level if isinstance(status.level, int) else ord(status.level)
        result[part] = (level, status.message, {kv.key: kv.value for kv in status.values})
    return result


class Client:
    """Test-side node: publishes inputs, records outputs, spins until conditions hold."""

    def __init__(self, context, *, trajectory=False, future_cameras=(), namespace=None):
        # Imported here: collecting this directory must work without rclpy (tests skip).
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseStamped
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import CompressedImage, Image, JointState
        from std_msgs.msg import String
        from trajectory_msgs.msg import JointTrajectory

        from cosmos_policy_ros.msg import ActionChunk, ValueEstimate

        self.context = context
        # namespace: a robot's (relative topics then are that robot's, e.g. /arm_1/task).
        self.node = rclpy.create_node('node_test_client', context=context, namespace=namespace)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.chunks, self.values, self.diagnostics = [], [], []
        self.trajectories, self.future = [], {}
        self.received_at = []  # monotonic receive time of each chunk
        node = self.node

        def on_chunk(msg):
            self.chunks.append(msg)
            self.received_at.append(time.monotonic())

        node.create_subscription(ActionChunk, 'action_chunk', on_chunk, 10)
        node.create_subscription(ValueEstimate, 'value', self.values.append, 10)
        node.create_subscription(DiagnosticArray, '/diagnostics', self.diagnostics.append, 50)
        if trajectory:
            node.create_subscription(JointTrajectory, 'joint_trajectory',
                                     self.trajectories.append, 10)
        for camera in future_cameras:
            self.future[camera] = []
            node.create_subscription(Image, f'future/{camera}/image',
                                     self.future[camera].append, 10)
        self._types = {'image': Image, 'compressed': CompressedImage, 'joints': JointState,
                       'pose': PoseStamped}
        self._publishers = {}
        self._String = String
        self._Clock = Clock
        task_qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                              durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._task_publisher = node.create_publisher(String, 'task', task_qos)
        self._clock_publisher = node.create_publisher(Clock, '/clock', 10)

    def publisher(self, kind, topic):
        key = (kind, topic)
        if key not in self._publishers:
            self._publishers[key] = self.node.create_publisher(self._types[kind], topic, 10)
        return self._publishers[key]

    @staticmethod
    def stamp(msg, stamp_ns):
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 1_000_000_000)

    def image(self, topic, stamp_ns, rgb, *, encoding='rgb8', data=None, step=None):
        msg = self._types['image']()
        self.stamp(msg, stamp_ns)
        pixels = np.ascontiguousarray(rgb[:, :, ::-1] if encoding == 'bgr8' else rgb)
        msg.height, msg.width = pixels.shape[:2]
        msg.encoding = encoding
        msg.step = pixels.shape[1] * 3 if step is None else step
        msg.data = pixels.tobytes() if data is None else data
        self.publisher('image', topic).publish(msg)

    def jpeg(self, topic, stamp_ns, rgb, *, fmt='rgb8; jpeg compressed bgr8'):
        from PIL import Image as PILImage

        stream = io.BytesIO()
        PILImage.fromarray(rgb).save(stream, format='JPEG', quality=95)
        msg = self._types['compressed']()
        self.stamp(msg, stamp_ns)
        msg.format = fmt
        msg.data = stream.getvalue()
        self.publisher('compressed', topic).publish(msg)

    def joints(self, topic, stamp_ns, names, positions):
        msg = self._types['joints']()
        self.stamp(msg, stamp_ns)
        msg.name = list(names)
        msg.position = [float(value) for value in positions]
        self.publisher('joints', topic).publish(msg)

    def pose(self, topic, stamp_ns, position, quaternion_xyzw):
        msg = self._types['pose']()
        self.stamp(msg, stamp_ns)
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = map(float, position)
        (msg.pose.orientation.x, msg.pose.orientation.y, msg.pose.orientation.z,
         msg.pose.orientation.w) = map(float, quaternion_xyzw)
        self.publisher('pose', topic).publish(msg)

    def task(self, text):
        self._task_publisher.publish(self._String(data=text))

    def clock(self, stamp_ns):
        msg = self._Clock()
        msg.clock.sec, msg.clock.nanosec = divmod(int(stamp_ns), 1_000_000_000)
        self._clock_publisher.publish(msg)

    def spin_until(self, condition, timeout, *, every=None, period=0.05, process=None):
        """Spin until condition() is true; call every() each `period` s (e.g. to publish).

        Returns False on timeout (or if `process` exited).
        """
        deadline = time.monotonic() + timeout
        next_call = 0.0
        while time.monotonic() < deadline:
            if condition():
                return True
            if process is not None and not process.alive():
                return bool(condition())
            now = time.monotonic()
            if every is not None and now >= next_call:
                every()
                next_call = now + period
            self.executor.spin_once(timeout_sec=min(period, 0.02))
        return bool(condition())

    def call(self, service_type, name, request, timeout=30.0, retry_every=2.0):
        """Call a service; resend when no answer comes (a response can be lost while the
        server's side of a new client is still being matched). Idempotent requests only."""
        service = self.node.create_client(service_type, name)
        try:
            deadline = time.monotonic() + timeout
            assert self.spin_until(service.service_is_ready, timeout), f'{name} not available'
            while time.monotonic() < deadline:
                future = service.call_async(request)
                if self.spin_until(future.done, min(retry_every, deadline - time.monotonic())):
                    return future.result()
            raise AssertionError(f'no answer from {name} within {timeout} s')
        finally:
            self.node.destroy_client(service)

    def latest_diagnostics(self, node=None):
        """The newest /diagnostics statuses (of the node named `node`, when given)."""
        for msg in reversed(self.diagnostics):
            if node is None or any(status.name.startswith(node + ': ')
                                   for status in msg.status):
                return diagnostics_values(msg)
        return {}

    def diagnostic(self, part, key, default=None, node=None):
        values = self.latest_diagnostics(node).get(part, (None, None, {}))[2]
        return values.get(key, default)

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()


@pytest.fixture
def client_factory(ros_context):
    clients = []

    def make(**kwargs):
        client = Client(ros_context, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def now_ns():
    """The node's ROS clock without use_sim_time is the system clock."""
    return time.time_ns()


def pid_running(pid):
    """Whether process `pid` exists and has not ended (an unreaped zombie has ended)."""
    try:
        with open(f'/proc/{pid}/stat') as stat:
            return stat.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except (FileNotFoundError, ProcessLookupError):
        return False


def wait_until_ended(pid, timeout):
    """Wait (polling, a failure guard) until process `pid` has ended; whether it did."""
    deadline = time.monotonic() + timeout
    while pid_running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling period
    return not pid_running(pid)


@pytest.fixture
def harness():
    """The helpers of this file for test modules (which cannot import conftest)."""
    return SimpleNamespace(MS=MS, LIBERO_ACTIONS=LIBERO_ACTIONS, ALOHA_JOINTS=ALOHA_JOINTS,
                           libero_parameters=libero_parameters,
                           aloha_parameters=aloha_parameters, now_ns=now_ns,
                           diagnostics_values=diagnostics_values, node_script=node_script,
                           OutputProcess=OutputProcess, pid_running=pid_running,
                           wait_until_ended=wait_until_ended)
