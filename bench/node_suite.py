"""The node suite: policy_node's own cost, measured from outside through its topics.

    . scripts/setup_env.sh && python bench/run.py --suite node              # ~18 min
    . scripts/setup_env.sh && python bench/run.py --suite node --soak 600 --skip overhead
                                                         # the 10-minute soak: node_soak600.json

The installed ``policy_node`` runs as a subprocess (``--ros-args --params-file``, a namespace of
its own) with the ALOHA configuration (three 480 x 640 rgb8 cameras, 14 joint positions,
rate 25 Hz) on a private loopback ROS graph; this process publishes the observations and reads
the chunks, as a robot would.

  overhead        processes measured interleaved (round-robin blocks), so that load from
                  elsewhere hits them alike; two runs:
                  1. floor              bench/relay_floor.py, the least an rclpy node can do
                                        with the same inputs (FLOORS: single-threaded and
                                        events executor; events with glibc's malloc defaults)
                     overhead_fake      the node with the instant fake policy (its defaults)
                     stage_timing       the same with the debug option stage_timing: per stage
                                        of an observation's trip, from the node's marks and
                                        this process's (stage_timing.py)
                     overhead_fake_small  the node with 96 x 128 images
                     fleet_fake         policy_server serving one robot with the same
                                        parameters (FLEET; --skip fleet: not)
                     (blocks of 0.3 s, every process running)
                  2. variants           the floor again and the node with one setting changed
                                        back, and as it was before issue 26 (VARIANTS); blocks
                                        of 1.5 s while the others are stopped (SIGSTOP): idle,
                                        a 1 kHz timer loads the machine
                  One observation at a time (45-85 ms after the last one's chunk, more than
                  1 / rate): latency = receive time - header stamp; overhead =
                  latency - inference_time (in the message); node overhead = overhead - the
                  time this process spent publishing the observation
  overhead_tiny   the node with the tiny random-weight model (real engine, CPU, stage_timing),
                  while a probe calls its get_parameters service every 10 ms (the round trip,
                  during an inference and idle); then subscription_waits: a subscription
                  callback's wait, from the node's callback mark, during an inference and idle
                  (the callback target's verdict)
  soak            the tiny model, observations replayed open-loop at 4 Hz (a loop of 16
                  distinct observations) for --soak seconds; the node's RSS (/proc) every 2 s

Targets (issue 26): node overhead p50 <= 2 ms and p99 <= 5 ms, or within 1.5x of the floor
where the floor is above that; callback latency p99 <= 5 ms during inference; RSS growth < 1 %
over the soak. Writes <out>/node.json (node_soak<N>.json for a soak-only run) and a row in
SUMMARY.md.
"""
import json
import math
import os
from pathlib import Path
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import harness
import numpy as np
import workloads
import yaml

import cosmos_policy_ros
from cosmos_policy_ros.stage_timing import MARKS, stage_durations, STAGE_NAMES

JOINTS = [f'{side}_{joint}' for side in ('left', 'right') for joint in (
    'waist', 'shoulder', 'elbow', 'forearm_roll', 'wrist_angle', 'wrist_rotate', 'gripper')]
CAMERAS = ('left_wrist', 'right_wrist', 'primary')
TARGETS = {'overhead_p50_ms': 2.0, 'overhead_p99_ms': 5.0,
           'callback_p99_during_inference_ms': 5.0, 'rss_growth_percent': 1.0}
FLOOR_FACTOR = 1.5  # the overhead target where the floor itself is above the absolute one
NS = 1_000_000_000
RATE = 25.0  # Hz: the ALOHA configuration's control rate (config/aloha.yaml)
GAP = (0.045, 0.085)  # s between a chunk and the next observation: more than 1 / RATE
LIVE_BLOCK = 0.3  # s per interleaved block, every process running
# The fleet path: policy_server serving one robot (the same parameters) through its engine.
FLEET = ('fleet_fake',)
HEADLINE_FACTOR = 5 / 3  # the floor and the node get this many times the variants' seconds
IDLE_SECONDS = 5.0  # s of CPU time reading while no observation comes
STOPPED_BLOCK = 1.5  # s per block, the others stopped (each stays under DDS's 20 s lease)
# The relay's runs: executor and arguments (bench/relay_floor.py); the floor is the fastest.
FLOORS = {'single_threaded': ['--executor', 'single_threaded'],
          'events': ['--executor', 'events'],
          'events_glibc_defaults': ['--executor', 'events', '--glibc-defaults']}
# The node before issue 26 (and this suite's settings then: a 1 kHz timer, so that the wait
# for a tick was at most 1 ms), and the node with one of its defaults changed back.
BEFORE = {'executor': 'multi_threaded', 'tick_on_arrival': False, 'rate': 1000.0,
          'keep_freed_memory': False}
VARIANTS = {
    'before': BEFORE,
    'before_timed': dict(BEFORE, stage_timing=True),
    'multi_threaded': {'executor': 'multi_threaded'},  # the node's default before events
    'single_threaded': {'executor': 'single_threaded'},
    'single_threaded_timed': {'executor': 'single_threaded', 'stage_timing': True},
    'timer_1khz': {'tick_on_arrival': False, 'rate': 1000.0},
    'glibc_defaults': {'keep_freed_memory': False},
}
# This process's marks around the node's (stage_timing.MARKS): the observation's stamp (set
# before publishing it) and the chunk's receipt; the stages ending at the node's first mark
# (the DDS write of the set's last message) and at the receipt.
BENCH_ORDER = ('stamp', *MARKS, 'receipt')
BENCH_NAMES = dict(STAGE_NAMES, source='observation_publish', receipt='chunk_delivery')


# Fast DDS profile for this host: a shared-memory segment that holds the 0.9 MB images of every
# target (the default 512 KB does not hold one, so images went over UDP loopback, where
# fragments were lost under load), and UDP as well for discovery. Used by every process of the
# suite (FASTDDS_DEFAULT_PROFILES_FILE).
FASTDDS_PROFILE = '''<?xml version="1.0" encoding="UTF-8" ?>
<profiles xmlns="http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles">
  <transport_descriptors>
    <transport_descriptor>
      <transport_id>shm_large</transport_id>
      <type>SHM</type>
      <segment_size>134217728</segment_size>
    </transport_descriptor>
    <transport_descriptor>
      <transport_id>udp</transport_id>
      <type>UDPv4</type>
    </transport_descriptor>
  </transport_descriptors>
  <participant profile_name="node_bench" is_default_profile="true">
    <rtps>
      <userTransports>
        <transport_id>shm_large</transport_id>
        <transport_id>udp</transport_id>
      </userTransports>
      <useBuiltinTransports>false</useBuiltinTransports>
    </rtps>
  </participant>
</profiles>
'''


def use_fastdds_profile(directory):
    """Write FASTDDS_PROFILE and point this process (and its children) at it."""
    path = Path(directory) / 'fastdds.xml'
    path.write_text(FASTDDS_PROFILE)
    os.environ['FASTDDS_DEFAULT_PROFILES_FILE'] = str(path)
    os.environ['RMW_FASTRTPS_USE_QOS_FROM_XML'] = '0'
    return path


def node_script(name='policy_node'):
    """The console script colcon installed into <prefix>/lib/cosmos_policy_ros."""
    prefix = Path(cosmos_policy_ros.__file__).resolve().parents[4]
    script = prefix / 'lib' / 'cosmos_policy_ros' / name
    if not script.is_file():
        raise FileNotFoundError(f'{name} is not installed at {script}: run '
                                f'`. scripts/setup_env.sh` first (it builds and installs it)')
    return script


def percentiles(values):
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return {'count': 0}
    return {'count': int(values.size), 'p50': float(np.percentile(values, 50)),
            'p90': float(np.percentile(values, 90)), 'p99': float(np.percentile(values, 99)),
            'max': float(values.max()), 'mean': float(values.mean())}


def rss_growth(samples, warmup_fraction=0.2):
    """RSS growth in percent: the median of the last fifth vs the median of the first fifth
    after `warmup_fraction` of the soak (allocator and caches fill up first), and the slope of
    a least-squares line over the same span in MB per minute. samples: [(seconds, bytes)]."""
    if len(samples) < 10:
        return None
    times = np.array([t for t, _ in samples], dtype=float)
    rss = np.array([r for _, r in samples], dtype=float)
    keep = times >= times[0] + warmup_fraction * (times[-1] - times[0])
    times, rss = times[keep], rss[keep]
    fifth = max(1, len(rss) // 5)
    start, end = float(np.median(rss[:fifth])), float(np.median(rss[-fifth:]))
    slope = float(np.polyfit(times, rss, 1)[0]) * 60 / 1e6 if len(rss) > 1 else 0.0
    return {'start_mb': start / 1e6, 'end_mb': end / 1e6,
            'growth_percent': 100 * (end - start) / start, 'slope_mb_per_minute': slope,
            'span_seconds': float(times[-1] - times[0]), 'samples': int(len(rss))}


def rss_bytes(pid):
    with open(f'/proc/{pid}/status') as stream:
        for line in stream:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f'no VmRSS for pid {pid}')


def parameters(model_path, factory=None, **changes):
    values = {
        'model_path': str(model_path),
        'cameras': list(CAMERAS),
        'proprio_sources': ['arms'],
        'proprio': {'arms': {'type': 'joint_state', 'joints': JOINTS}},
        'action_space': 'joint_position', 'action_names': JOINTS, 'step_period': 0.04,
        'task': 'put the red cube into the bowl', 'warmup_iterations': 1,
        'rate': RATE, 'num_denoising_steps': 5, 'sync_tolerance': 0.05,
        'max_observation_age': 5.0, 'max_publish_age': 30.0, 'watchdog_timeout': 0.0,
        'diagnostics_period': 1.0, 'input_reliability': 'best_effort', 'device': 'cpu',
        'dtype': 'float32',
        'executor': 'events'}  # the node's default (the fastest), set for the record
    if factory:
        values['policy_factory'] = factory
    values.update(changes)
    return values


class _NoAliasDumper(yaml.SafeDumper):
    def ignore_aliases(self, data):
        return True


class Process:
    """A benchmark subprocess in its own ROS namespace; its output goes to a log file."""

    def __init__(self, command, directory, name):
        self.name = name
        self.log_path = Path(directory) / f'{name}.log'
        self._log = open(self.log_path, 'w')
        env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
        self.process = subprocess.Popen(
            [*command, '--ros-args', '-r', f'__ns:=/{name}'], stdout=self._log,
            stderr=subprocess.STDOUT, env=env)

    @property
    def pid(self):
        return self.process.pid

    def alive(self):
        return self.process.poll() is None

    def pause(self):
        if self.alive():
            self.process.send_signal(signal.SIGSTOP)

    def resume(self):
        if self.alive():
            self.process.send_signal(signal.SIGCONT)

    def stop(self):
        if self.alive():
            self.resume()
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._log.close()
        return self.process.returncode

    def tail(self, lines=20):
        return '\n'.join(self.log_path.read_text().splitlines()[-lines:])


def start_node(params, directory, name):
    """policy_node with these parameters, in namespace /<name>."""
    path = Path(directory) / f'{name}-params.yaml'
    path.write_text(yaml.dump({'/**': {'ros__parameters': params}}, Dumper=_NoAliasDumper))
    return Process([str(node_script()), '--ros-args', '--params-file', str(path)], directory,
                   name)


def start_server(params, directory, name):
    """policy_server serving one robot, `name` (its namespace), with these node parameters:
    the model settings in the fleet file's server section, the rest the robot's; one request
    per batch (no batch window), so the engine adds only its hand-off."""
    from cosmos_policy_ros.fleet.config import SHARED_PARAMETERS
    robot = Path(directory) / f'{name}-robot.yaml'
    robot.write_text(yaml.dump({'/**': {'ros__parameters': {
        key: value for key, value in params.items() if key not in SHARED_PARAMETERS}}},
        Dumper=_NoAliasDumper))
    fleet = Path(directory) / f'{name}-fleet.yaml'
    server = {key: params[key] for key in SHARED_PARAMETERS if key in params}
    fleet.write_text(yaml.dump({'server': dict(server, max_batch=1, batch_window=0.0),
                                'robots': {name: {'config': str(robot)}}}))
    return Process([str(node_script('policy_server')), '--ros-args', '-p',
                    f'fleet_file:={fleet}'], directory, f'{name}_server')


def start_relay(arguments, directory, name):
    """bench/relay_floor.py with these arguments, in namespace /<name>."""
    script = Path(__file__).resolve().parent / 'relay_floor.py'
    return Process([sys.executable, str(script), *arguments], directory, name)


class Target:
    """The robot side of one process: publishers, chunks and stage times by stamp."""

    def __init__(self, node, name, frames, stage_times):
        from rcl_interfaces.srv import GetParameters
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image, JointState

        from cosmos_policy_ros.msg import ActionChunk, StageTimes
        self.name = name
        self.frames = frames
        self.lock = threading.Lock()
        self.chunks = {}  # stamp ns -> (receive ns, inference_time s)
        self.stages = {}  # stamp ns -> {mark: ns} (stage_timing)
        self.arrived = threading.Condition(self.lock)
        node.create_subscription(ActionChunk, f'/{name}/action_chunk', self._on_chunk, 50)
        if stage_times:
            node.create_subscription(StageTimes, f'/{name}/cosmos_policy/stage_times',
                                     self._on_stage_times, 50)
        # Best effort like a camera driver: with reliable images of 0.9 MB, a lost fragment
        # waited for Fast DDS's 3 s heartbeat (seen here). Keep last 1: a writer's history
        # stays in its shared-memory segment, and sixteen targets' histories of 5 did not fit
        # (the samples left over UDP and observations were lost).
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                         reliability=ReliabilityPolicy.BEST_EFFORT,
                         durability=DurabilityPolicy.VOLATILE)
        self.cameras = {camera: node.create_publisher(Image, f'/{name}/{camera}/image_raw', qos)
                        for camera in CAMERAS}
        self.joints = node.create_publisher(JointState, f'/{name}/joint_states', qos)
        self.client = node.create_client(GetParameters, f'/{name}/cosmos_policy/get_parameters')
        self.request = GetParameters.Request(names=['rate'])

    def _on_chunk(self, msg):
        received = time.time_ns()
        stamp = msg.header.stamp.sec * NS + msg.header.stamp.nanosec
        with self.lock:
            self.chunks[stamp] = (received, float(msg.inference_time))
            self.arrived.notify_all()

    def _on_stage_times(self, msg):
        stamp = msg.header.stamp.sec * NS + msg.header.stamp.nanosec
        with self.lock:
            self.stages[stamp] = dict(zip(msg.marks, msg.times_ns))
            self.arrived.notify_all()

    def publish(self, index):
        """Publish observation `index` (mod the loop) stamped now; (stamp ns, publish ns)."""
        images, joints = self.frames[index % len(self.frames)]
        stamp = time.time_ns()
        sec, nanosec = divmod(stamp, NS)
        for msg in (joints, *images.values()):
            msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
        self.joints.publish(joints)
        for camera, msg in images.items():
            self.cameras[camera].publish(msg)
        return stamp, time.time_ns() - stamp

    def wait(self, table, stamp, timeout):
        """The entry of `stamp` in self.chunks or self.stages, or None after `timeout` s."""
        with self.lock:
            self.arrived.wait_for(lambda: stamp in table, timeout)
            return table.get(stamp)

    def probe(self, timeout=2.0):
        """One get_parameters round trip: (send ns, seconds) or (send ns, None) on timeout."""
        sent = time.time_ns()
        future = self.client.call_async(self.request)
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        if not done.wait(timeout):
            self.client.remove_pending_request(future)
            return sent, None
        return sent, (time.time_ns() - sent) / NS


def make_frames(count, height, width):
    """A loop of distinct observations (replay): messages built once, stamps set per publish."""
    from sensor_msgs.msg import Image, JointState
    frames = []
    rng = np.random.default_rng(0)
    for index in range(count):
        images = {}
        for number, camera in enumerate(CAMERAS):
            rgb = workloads.camera_image(height, width, seed=index * 3 + number)
            msg = Image(height=height, width=width, encoding='rgb8', step=width * 3)
            msg.data = rgb.tobytes()
            images[camera] = msg
        joints = JointState(name=list(JOINTS),
                            position=rng.uniform(-0.3, 0.3, len(JOINTS)).tolist())
        frames.append((images, joints))
    return frames


class Robot:
    """The robot side: one rclpy node in this process with a Target per process measured.

    It receives on rclpy's EventsExecutor (dispatch in C++: the least this process adds to
    every latency, the floor's and the node's alike), spun in slices like policy_node's.
    """

    def __init__(self):
        import rclpy
        from rclpy.experimental import EventsExecutor
        self._rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node('node_bench', context=self.context)
        self.targets = {}
        self._frames = {}
        self.executor = EventsExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._spinner = threading.Thread(target=self._spin, daemon=True)
        self._spinner.start()

    def _spin(self):
        while not self._stop.is_set() and self.context.ok():
            self.executor.spin_once(timeout_sec=0.2)

    def add(self, name, *, height=480, width=640, frames=16, stage_times=False):
        if (height, width) not in self._frames:
            self._frames[height, width] = make_frames(frames, height, width)
        target = Target(self.node, name, self._frames[height, width], stage_times)
        self.targets[name] = target
        return target

    def wait_ready(self, target, process, timeout):
        """Until the process answers a fresh observation (a node: configured and active)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not process.alive():
                raise RuntimeError(f'{process.name} exited ({process.process.returncode}):\n'
                                   f'{process.tail()}')
            stamp, _ = target.publish(0)
            if target.wait(target.chunks, stamp, 1.0) is not None:
                return
        raise RuntimeError(f'no chunk from {process.name} within {timeout} s:\n'
                           f'{process.tail()}')

    def close(self):
        self._stop.set()
        self._spinner.join(5)
        self.executor.shutdown()
        self.node.destroy_node()
        self._rclpy.try_shutdown(context=self.context)


def stage_ms(marks, stamp, receipt):
    """{stage: ms} of one observation, from the stamp to the chunk's receipt (they add up to
    its latency)."""
    ns = stage_durations(dict(marks, stamp=stamp, receipt=receipt), BENCH_ORDER, BENCH_NAMES)
    return {name: value / 1e6 for name, value in ns.items()}


def closed_loop(target, process, seconds, *, timeout, rng, probe=False, stage_times=False,
                start_index=1):
    """Observations one at a time for `seconds`; per chunk the latency terms in ms (and the
    stages with stage_times); probe samples if asked. Returns (samples, probes, missing)."""
    samples, probes, missing = [], [], 0
    stop = threading.Event()

    def prober():
        while not stop.is_set():
            probes.append(target.probe())
            time.sleep(0.01)
    thread = threading.Thread(target=prober, daemon=True) if probe else None
    if thread:
        thread.start()
    end, index = time.monotonic() + seconds, start_index
    while time.monotonic() < end and process.alive():
        time.sleep(rng.uniform(*GAP))  # after the last chunk, a random phase against the tick
        stamp, publish_ns = target.publish(index)
        index += 1
        chunk = target.wait(target.chunks, stamp, timeout)
        if chunk is None:
            missing += 1
        else:
            received, inference = chunk
            latency = (received - stamp) / 1e6
            sample = {'stamp': stamp, 'received': received, 'latency_ms': latency,
                      'inference_ms': inference * 1e3, 'publish_ms': publish_ns / 1e6,
                      'overhead_ms': latency - inference * 1e3,
                      'node_overhead_ms': latency - inference * 1e3 - publish_ns / 1e6}
            if stage_times:
                marks = target.wait(target.stages, stamp, 1.0)
                if marks is not None and set(MARKS[2:]) <= set(marks):
                    sample['stages_ms'] = stage_ms(marks, stamp, received)
            samples.append(sample)
    stop.set()
    if thread:
        thread.join(5)
    return samples, probes, missing


def summarize_overhead(samples, missing):
    result = {key: percentiles([s[key] for s in samples])
              for key in ('latency_ms', 'inference_ms', 'publish_ms', 'overhead_ms',
                          'node_overhead_ms')} | {'chunks': len(samples), 'missing': missing}
    staged = [s['stages_ms'] for s in samples if 'stages_ms' in s]
    if staged:
        result['stages_ms'] = breakdown(staged)
    return result


def breakdown(staged):
    """Per stage: percentiles and the share of the mean latency (the stages add up to it)."""
    names = list(staged[0])
    total = sum(float(np.mean([s[name] for s in staged])) for name in names)
    result = {}
    for name in names:
        stats = percentiles([s[name] for s in staged])
        stats['share_of_mean'] = stats['mean'] / total if total else 0.0
        result[name] = stats
    return result


def interleave(targets, processes, seconds, *, timeout, stage_times=(), stop_others=False):
    """Closed-loop samples of every process, round-robin in blocks, for about `seconds` each.

    stop_others: blocks of STOPPED_BLOCK seconds while the other processes are stopped
    (SIGSTOP), so that idle work (a 1 kHz timer) of one does not load the others; a resumed
    process first catches up (warm_up). Else blocks of LIVE_BLOCK seconds with every process
    running (a stopped process's DDS peers now and then stalled for about 100 ms after its
    resume). Returns {name: (samples, missing)}.
    """
    block = STOPPED_BLOCK if stop_others else LIVE_BLOCK
    names = list(processes)
    results = {name: ([], 0) for name in names}
    rng = random.Random(0)
    if stop_others:
        for process in processes.values():
            process.pause()
    try:
        rounds = max(1, math.ceil(seconds / block))
        for number in range(rounds):
            shift = number % len(names)
            for name in names[shift:] + names[:shift]:  # no process always follows another
                process, target = processes[name], targets[name]
                if stop_others:
                    process.resume()
                try:
                    if stop_others:
                        warm_up(target, timeout)
                    samples, _, missing = closed_loop(
                        target, process, block, timeout=timeout, rng=rng,
                        stage_times=name in stage_times, start_index=1 + number * 1000)
                finally:
                    if stop_others:
                        process.pause()
                kept, lost = results[name]
                results[name] = (kept + samples, lost + missing)
    finally:
        for process in processes.values():
            process.resume()
    return results


def warm_up(target, timeout, tries=3, settle=0.3):
    """After a resume: observations until one is answered, then `settle` s (a stopped 1 kHz
    timer fires its missed ticks at once on the EventsExecutor); none is counted."""
    for _ in range(tries):
        stamp, _ = target.publish(0)
        if target.wait(target.chunks, stamp, timeout) is not None:
            break
    time.sleep(settle)


def cpu_seconds(pid):
    """User + system CPU time of a process so far (/proc/<pid>/stat)."""
    with open(f'/proc/{pid}/stat') as stream:
        fields = stream.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def idle_cpu(processes, seconds=IDLE_SECONDS):
    """{name: percent of one core} each process uses while it gets no observation."""
    before = {name: cpu_seconds(process.pid) for name, process in processes.items()}
    time.sleep(seconds)
    return {name: round(100 * (cpu_seconds(process.pid) - before[name]) / seconds, 1)
            for name, process in processes.items()}


def split_probes(probes, samples):
    """Probe round trips (ms) sent during an inference (the chunk's [publish - inference_time,
    receive] span) and while idle; timed-out probes are counted."""
    spans = [(s['received'] - s['inference_ms'] * 1e6, s['received']) for s in samples]
    during, idle, lost = [], [], 0
    for sent, seconds in probes:
        if seconds is None:
            lost += 1
            continue
        inside = any(start <= sent <= end for start, end in spans)
        (during if inside else idle).append(seconds * 1e3)
    return {'during_inference_ms': percentiles(during), 'idle_ms': percentiles(idle),
            'timed_out': lost}


def subscription_waits(target, process, seconds, *, timeout, rng):
    """How long a subscription callback waits, during an inference and idle (ms): an
    observation starts an inference (arrival tick), a second one follows 10-100 ms later,
    while it runs; the chunk of each (the second's is the next job: latest wins) carries the
    node's `callback` mark (stage_timing) of the set's last message. wait = callback - stamp -
    the time this process spent publishing the set (one host clock): DDS delivery and the
    executor's dispatch, in the node, while its inference thread computes."""
    during, idle, missing, index = [], [], 0, 100_000
    end = time.monotonic() + seconds
    while time.monotonic() < end and process.alive():
        time.sleep(rng.uniform(*GAP))
        sent = [target.publish(index)]
        time.sleep(rng.uniform(0.01, 0.1))
        sent.append(target.publish(index + 1))
        index += 2
        chunks = [target.wait(target.chunks, stamp, timeout) for stamp, _ in sent]
        if None in chunks:
            missing += 1
            continue
        received, inference = chunks[0]
        for (stamp, publish_ns), kind in zip(sent, ('idle', 'during')):
            marks = target.wait(target.stages, stamp, 1.0)
            if marks is None or 'callback' not in marks:
                missing += 1
                continue
            wait = (marks['callback'] - stamp - publish_ns) / 1e6
            if kind == 'idle':
                idle.append(wait)
            elif received - inference * NS <= stamp <= received:  # sent while it ran
                during.append(wait)
    return {'during_inference_ms': percentiles(during), 'idle_ms': percentiles(idle),
            'missing': missing}


def measure(robot, directory, nodes, floors, seconds, *, stop_others=False):
    """Interleave the relay runs `floors` (names of FLOORS) and the fake-policy nodes `nodes`
    ({name: parameter changes}); {name: overhead summary}, floors as 'floor_<name>'."""
    fake = Path(directory) / 'fake.yaml'
    fake.write_text('layout: {preset: aloha}\n')
    factory = 'cosmos_policy_ros.testing:load_fake_policy'
    processes, targets, timed = {}, {}, []
    try:
        for floor in floors:
            name = f'floor_{floor}'
            processes[name] = start_relay(FLOORS[floor], directory, name)
            targets[name] = robot.add(name)
        for name, changes in nodes.items():
            start = start_server if name in FLEET else start_node
            processes[name] = start(parameters(fake, factory, **changes), directory, name)
            small = name == 'overhead_fake_small'
            targets[name] = robot.add(name, height=96 if small else 480,
                                      width=128 if small else 640, frames=4 if small else 16,
                                      stage_times=changes.get('stage_timing', False))
            if changes.get('stage_timing'):
                timed.append(name)
        for name, process in processes.items():
            robot.wait_ready(targets[name], process, 180)
        idle = idle_cpu(processes)
        results = interleave(targets, processes, seconds, timeout=1.0, stage_times=timed,
                             stop_others=stop_others)
        rss = {name: rss_bytes(process.pid) / 1e6 for name, process in processes.items()}
    finally:
        for process in processes.values():
            process.stop()
    return {name: dict(summarize_overhead(*results[name]), rss_mb=round(rss[name], 1),
                       idle_cpu_percent=idle[name]) for name in processes}


def overhead_run(robot, directory, seconds, skip, quick):
    """The interleaved runs: the floor with the node and its stage breakdown, every process
    running; then the floor with the variants, the others stopped during each block (the
    variants with a 1 kHz timer would load the machine while idle)."""
    floors = list(FLOORS)[:1] if quick else list(FLOORS)
    nodes = {'overhead_fake': {}, 'stage_timing': {'stage_timing': True}}
    if 'fleet' not in skip:
        nodes.update({name: {} for name in FLEET})
    if 'overhead_fake_small' not in skip and not quick:
        nodes['overhead_fake_small'] = {}
    summary = measure(robot, directory, nodes, floors, seconds * HEADLINE_FACTOR)
    sections = {'floor': {floor: summary[f'floor_{floor}'] for floor in floors}}
    sections.update({name: summary[name] for name in nodes})
    if 'variants' not in skip and not quick:
        summary = measure(robot, directory, VARIANTS, floors, seconds, stop_others=True)
        variants = {'floor': {floor: summary[f'floor_{floor}'] for floor in floors}}
        variants.update({name: dict(summary[name], parameters=VARIANTS[name])
                         for name in VARIANTS})
        sections['variants'] = variants
    return sections


def tiny_model(directory):
    from cosmos_policy_ros.engine.synthetic_checkpoints import write_synthetic_model
    from cosmos_policy_ros.layout import LatentLayout
    from cosmos_policy_ros.engine.conversion import convert, find_released_files
    layout = LatentLayout.from_dict({'preset': 'aloha', 'image_size': 64})
    released = Path(directory) / 'released'
    write_synthetic_model(released, layout, size='tiny', seed=0, dtype='fp32')
    files = find_released_files(released)
    out = Path(directory) / 'model'
    convert(checkpoint=files['checkpoint'], tokenizer=files['tokenizer'],
            statistics=files['statistics'], t5_embeddings=files['t5_embeddings'], out=out,
            layout=layout, dit_preset='tiny', vae_preset='tiny', log=lambda *_: None)
    return out


def run(args, clock=time.monotonic):
    soak = 120.0 if args.soak is None else float(args.soak)
    quick = args.quick
    seconds = 6.0 if quick else 24.0
    result = {'preset': f'ALOHA config, 3 x 480x640 rgb8 + 14 joints, rate {RATE:g} Hz, '
                        f'soak {soak:.0f} s', 'targets': TARGETS, 'sections': {}}
    skip = {name for entry in args.skip for name in entry.split(',') if name}
    if 'overhead_fake' in skip:  # the old name of the interleaved section
        skip.add('overhead')
    profile_dir = tempfile.mkdtemp(prefix='node-bench-')
    if os.environ.get('NODE_BENCH_DDS_PROFILE', '1') == '1':
        use_fastdds_profile(profile_dir)
        result['fastdds_profile'] = 'shared memory segment 128 MiB + UDPv4'
    result['load_average_at_start'] = [round(value, 2) for value in os.getloadavg()]
    robot = Robot()
    try:
        with tempfile.TemporaryDirectory() as directory:
            if 'overhead' not in skip:
                result['sections'].update(overhead_run(robot, directory, seconds, skip, quick))
                result['load_average_after_overhead'] = [round(value, 2)
                                                         for value in os.getloadavg()]
            if skip >= {'overhead_tiny', 'soak'}:
                return finish(result)
            model = tiny_model(directory)
            # stage_timing: the subscription probe reads its callback marks (after the chunk's
            # publish: no term of the overhead).
            node = start_node(parameters(model, stage_timing=True), directory, 'tiny')
            target = robot.add('tiny', stage_times=True)
            try:
                robot.wait_ready(target, node, 300)
                if 'overhead_tiny' not in skip:
                    samples, probes, missing = closed_loop(
                        target, node, seconds * 1.5, timeout=30, rng=random.Random(0),
                        probe=True)
                    section = summarize_overhead(samples, missing)
                    section['callback'] = split_probes(probes, samples)
                    section['callback']['subscription'] = subscription_waits(
                        target, node, seconds * 3, timeout=30, rng=random.Random(1))
                    result['sections']['overhead_tiny'] = section
                if 'soak' not in skip:
                    result['sections']['soak'] = soak_run(target, node, soak, clock)
            finally:
                node.stop()
    finally:
        robot.close()
        shutil.rmtree(profile_dir, ignore_errors=True)
    result['load_average_at_end'] = [round(value, 2) for value in os.getloadavg()]
    return finish(result)


def soak_run(target, node, seconds, clock):
    """Open-loop replay at 4 Hz for `seconds`; RSS every 2 s; chunks counted."""
    rss, start = [], clock()
    with target.lock:
        before = len(target.chunks)
    index, next_publish, next_sample = 0, start, start
    while clock() - start < seconds and node.alive():
        now = clock()
        if now >= next_publish:
            target.publish(index)
            index += 1
            next_publish += 0.25
        if now >= next_sample:
            rss.append((now - start, rss_bytes(node.pid)))
            next_sample += 2.0
        time.sleep(0.005)
    with target.lock:
        chunks = len(target.chunks) - before
    return {'seconds': round(clock() - start, 1), 'observations': index, 'chunks': chunks,
            'rss': rss_growth(rss), 'rss_samples_mb': [(round(t, 1), round(r / 1e6, 2))
                                                       for t, r in rss],
            'node_alive': node.alive()}


def floor_of(sections):
    """(executor, node overhead stats) of the relay with the lowest p50, or None."""
    floors = {name: section['node_overhead_ms'] for name, section in
              sections.get('floor', {}).items() if section['node_overhead_ms'].get('count')}
    if not floors:
        return None
    return min(floors.items(), key=lambda item: item[1]['p50'])


def finish(result):
    sections, met = result['sections'], {}
    floor = floor_of(sections)
    for name in ('overhead_fake', 'overhead_fake_small', *FLEET, 'overhead_tiny'):
        if name in sections:
            overhead = sections[name]['node_overhead_ms']
            if overhead.get('count'):
                for key in ('p50', 'p99'):
                    met[f'{name}.overhead_{key}_ms'] = (overhead[key],
                                                        TARGETS[f'overhead_{key}_ms'])
    # The target's callback: a subscription's (what the issue names); the service round trip
    # beside it is an upper bound (two more transports and this process's dispatch).
    callback = sections.get('overhead_tiny', {}).get('callback', {}).get(
        'subscription', {}).get('during_inference_ms')
    if callback and callback.get('count'):
        met['callback_p99_during_inference_ms'] = (
            callback['p99'], TARGETS['callback_p99_during_inference_ms'])
    growth = (sections.get('soak') or {}).get('rss')
    if growth:
        met['rss_growth_percent'] = (growth['growth_percent'], TARGETS['rss_growth_percent'])
    verdicts = {}
    for name, (value, target) in met.items():
        entry = {'value': round(value, 3), 'target': target, 'met': bool(value <= target)}
        if floor is not None and name.split('.')[0] in ('overhead_fake', *FLEET):
            key = name.split('_')[-2]  # p50 or p99
            floor_value = floor[1][key]
            entry['floor'] = {'relay_executor': floor[0], 'value': round(floor_value, 3)}
            entry['ratio_to_floor'] = round(value / floor_value, 2)
            if floor_value > target:  # the floor itself misses: within FLOOR_FACTOR of it
                entry['met'] = bool(value <= FLOOR_FACTOR * floor_value)
        verdicts[name] = entry
    result['targets_met'] = verdicts
    parts = [f'{name} {entry["value"]:.3g} ({"met" if entry["met"] else "MISSED"})'
             for name, entry in verdicts.items()]
    if floor is not None:
        parts.append(f'rclpy floor ({floor[0]} relay) p50 {floor[1]["p50"]:.3g} / p99 '
                     f'{floor[1]["p99"]:.3g} ms')
    result['headline'] = '; '.join(parts) or 'no target measured'
    return result


def main(args):
    import rclpy  # noqa: F401  (fail early, with the message below, where ROS is missing)
    import torch
    ctx = harness.BenchContext(device=torch.device('cpu'), dtype_name='fp32', quick=args.quick,
                               repetitions=1)
    started = time.perf_counter()
    result = run(args)
    name = 'node'
    result['title'] = 'policy_node overhead vs the rclpy floor, stages, callback latency, RSS'
    if set(result['sections']) == {'soak'}:  # a soak on its own: its own record
        name = f'node_soak{int(args.soak or 120)}'
        result['title'] = (f'policy_node RSS over a {(args.soak or 120) / 60:g}-minute soak '
                           f'(tiny model, replay at 4 Hz)')
    result['wall_seconds'] = round(time.perf_counter() - started, 1)
    path = harness.write_result(name, ctx, result, args.out)
    harness.write_summary(args.out)
    print(json.dumps(result['targets_met'], indent=1))
    print(f'[node] {result["headline"]}\n[node] -> {path}', flush=True)
    return 0
