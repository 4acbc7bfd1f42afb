"""The node suite: policy_node's own cost, measured from outside through its topics.

    . scripts/setup_env.sh && python bench/run.py --suite node              # ~4 min
    . scripts/setup_env.sh && python bench/run.py --suite node --soak 600   # the 10-minute soak

The installed ``policy_node`` runs as a subprocess (``--ros-args --params-file``) with the ALOHA
configuration (three 480 x 640 rgb8 cameras, 14 joint positions) on a private loopback ROS
graph; this process publishes the observations and reads the chunks, as a robot would.

  overhead_fake   the instant fake policy (cosmos_policy_ros.testing): one observation at a
                  time (the next after the chunk of the last, 20-60 ms later); per chunk:
                  latency = receive time - header stamp (the observation's), overhead =
                  latency - inference_time (the policy's own time, in the message); node
                  overhead = overhead - the time this process spent publishing the observation
  overhead_fake_small  the same with 96 x 128 images (how much of it is moving the pixels)
  overhead_tiny   the same with the tiny random-weight model (real engine, CPU), while a probe
                  calls the node's get_parameters service every 10 ms: callback latency = its
                  round trip, during an inference and idle
  soak            the tiny model, observations replayed open-loop at 4 Hz (a loop of 16
                  distinct observations) for --soak seconds; the node's RSS (/proc) every 2 s

Targets (issue 12): overhead p50 <= 2 ms and p99 <= 5 ms; callback latency p99 <= 5 ms during
inference; RSS growth < 1 % over the soak. Writes <out>/node.json and a row in SUMMARY.md.
The node ticks at 1000 Hz (its maximum), so waiting for the tick adds at most 1 ms.
"""
import json
import os
from pathlib import Path
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import harness
import numpy as np
import workloads
import yaml

import cosmos_policy_ros

JOINTS = [f'{side}_{joint}' for side in ('left', 'right') for joint in (
    'waist', 'shoulder', 'elbow', 'forearm_roll', 'wrist_angle', 'wrist_rotate', 'gripper')]
CAMERAS = ('left_wrist', 'right_wrist', 'primary')
TARGETS = {'overhead_p50_ms': 2.0, 'overhead_p99_ms': 5.0,
           'callback_p99_during_inference_ms': 5.0, 'rss_growth_percent': 1.0}
NS = 1_000_000_000
RATE = float(os.environ.get('NODE_BENCH_RATE', 1000.0))  # Hz: the node's tick rate


# Fast DDS profile for this host: a shared-memory segment that holds a 0.9 MB image (the default
# 512 KB does not, so images went over UDP loopback, where fragments were lost under load), and
# UDP as well for discovery. Used by the node and by this process (FASTDDS_DEFAULT_PROFILES_FILE).
FASTDDS_PROFILE = '''<?xml version="1.0" encoding="UTF-8" ?>
<profiles xmlns="http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles">
  <transport_descriptors>
    <transport_descriptor>
      <transport_id>shm_large</transport_id>
      <type>SHM</type>
      <segment_size>33554432</segment_size>
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


def node_script():
    """The console script colcon installed into <prefix>/lib/cosmos_policy_ros."""
    prefix = Path(cosmos_policy_ros.__file__).resolve().parents[4]
    script = prefix / 'lib' / 'cosmos_policy_ros' / 'policy_node'
    if not script.is_file():
        raise FileNotFoundError(f'policy_node is not installed at {script}: run '
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
        'dtype': 'float32'}
    if factory:
        values['policy_factory'] = factory
    values.update(changes)
    return values


class _NoAliasDumper(yaml.SafeDumper):
    def ignore_aliases(self, data):
        return True


class Node:
    """policy_node as a subprocess; its output goes to a log file."""

    def __init__(self, params, directory, name):
        path = Path(directory) / f'{name}-params.yaml'
        path.write_text(yaml.dump({'/**': {'ros__parameters': params}}, Dumper=_NoAliasDumper))
        self.log_path = Path(directory) / f'{name}.log'
        self._log = open(self.log_path, 'w')
        env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONUNBUFFERED='1')
        self.process = subprocess.Popen([str(node_script()), '--ros-args', '--params-file',
                                         str(path)], stdout=self._log,
                                        stderr=subprocess.STDOUT, env=env)

    @property
    def pid(self):
        return self.process.pid

    def alive(self):
        return self.process.poll() is None

    def stop(self):
        if self.alive():
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


class Robot:
    """The robot side: publishes observations, receives chunks, probes the node's services."""

    def __init__(self, frames=16, height=480, width=640):
        import rclpy
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.qos import qos_profile_sensor_data
        from rcl_interfaces.srv import GetParameters
        from sensor_msgs.msg import Image, JointState

        from cosmos_policy_ros.msg import ActionChunk
        self._rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node(f'node_bench_{width}', context=self.context)
        self.lock = threading.Lock()
        self.chunks = []  # (receive ns, stamp ns, inference_time s)
        self.node.create_subscription(ActionChunk, 'action_chunk', self._on_chunk, 50)
        # Sensor-data QoS like a camera driver (best effort, depth 5): with reliable images of
        # 0.9 MB, a lost fragment waits for Fast DDS's 3 s heartbeat (seen here).
        self.cameras = {camera: self.node.create_publisher(Image, f'{camera}/image_raw',
                                                           qos_profile_sensor_data)
                        for camera in CAMERAS}
        self.joints = self.node.create_publisher(JointState, 'joint_states',
                                                 qos_profile_sensor_data)
        self.client = self.node.create_client(GetParameters, '/cosmos_policy/get_parameters')
        self._request = GetParameters.Request(names=['rate'])
        # A loop of distinct observations (replay), messages built once, stamps set per publish.
        self.frames = []
        rng = np.random.default_rng(0)
        for index in range(frames):
            images = {}
            for number, camera in enumerate(CAMERAS):
                rgb = workloads.camera_image(height, width, seed=index * 3 + number)
                msg = Image(height=height, width=width, encoding='rgb8', step=width * 3)
                msg.data = rgb.tobytes()
                images[camera] = msg
            joints = JointState(name=list(JOINTS),
                                position=rng.uniform(-0.3, 0.3, len(JOINTS)).tolist())
            self.frames.append((images, joints))
        self.executor = MultiThreadedExecutor(num_threads=2, context=self.context)
        self.executor.add_node(self.node)
        self._spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self._spinner.start()

    def _on_chunk(self, msg):
        received = time.time_ns()
        stamp = msg.header.stamp.sec * NS + msg.header.stamp.nanosec
        with self.lock:
            self.chunks.append((received, stamp, float(msg.inference_time)))

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

    def chunk_for(self, stamp):
        with self.lock:
            for chunk in self.chunks:
                if chunk[1] == stamp:
                    return chunk
        return None

    def wait_chunk(self, stamp, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            chunk = self.chunk_for(stamp)
            if chunk is not None:
                return chunk
            time.sleep(0.0005)
        return None

    def probe(self, timeout=2.0):
        """One get_parameters round trip: (send ns, seconds) or (send ns, None) on timeout."""
        sent = time.time_ns()
        future = self.client.call_async(self._request)
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        if not done.wait(timeout):
            self.client.remove_pending_request(future)
            return sent, None
        return sent, (time.time_ns() - sent) / NS

    def wait_ready(self, node, timeout):
        """Until the node publishes a chunk for a fresh observation (it is configured, active)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not node.alive():
                raise RuntimeError(f'policy_node exited ({node.process.returncode}):\n'
                                   f'{node.tail()}')
            stamp, _ = self.publish(0)
            if self.wait_chunk(stamp, 1.0) is not None:
                return
        raise RuntimeError(f'no chunk from policy_node within {timeout} s:\n{node.tail()}')

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        self._rclpy.try_shutdown(context=self.context)


def closed_loop(robot, node, seconds, *, timeout, probe=False):
    """Observations one at a time; per chunk the latency terms in ms; probe samples if asked."""
    samples, probes, missing = [], [], 0
    stop = threading.Event()

    def prober():
        while not stop.is_set():
            probes.append(robot.probe())
            time.sleep(0.01)
    thread = threading.Thread(target=prober, daemon=True) if probe else None
    if thread:
        thread.start()
    rng = random.Random(0)
    end, index = time.monotonic() + seconds, 1
    while time.monotonic() < end and node.alive():
        stamp, publish_ns = robot.publish(index)
        index += 1
        chunk = robot.wait_chunk(stamp, timeout)
        if chunk is None:
            missing += 1
        else:
            received, _, inference = chunk
            latency = (received - stamp) / 1e6
            samples.append({'stamp': stamp, 'received': received, 'latency_ms': latency,
                            'inference_ms': inference * 1e3, 'publish_ms': publish_ns / 1e6,
                            'overhead_ms': latency - inference * 1e3,
                            'node_overhead_ms': latency - inference * 1e3 - publish_ns / 1e6})
        time.sleep(rng.uniform(0.02, 0.06))  # a random phase against the node's tick
    stop.set()
    if thread:
        thread.join(5)
    return samples, probes, missing


def summarize_overhead(samples, missing):
    return {key: percentiles([s[key] for s in samples])
            for key in ('latency_ms', 'inference_ms', 'publish_ms', 'overhead_ms',
                        'node_overhead_ms')} | {'chunks': len(samples), 'missing': missing}


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


def fake_run(robot, directory, name, seconds):
    """The closed-loop overhead of a node with the instant fake policy."""
    fake = Path(directory) / 'fake.yaml'
    fake.write_text('layout: {preset: aloha}\n')
    node = Node(parameters(fake, 'cosmos_policy_ros.testing:load_fake_policy'), directory,
                name)
    try:
        robot.wait_ready(node, 120)
        samples, _, missing = closed_loop(robot, node, seconds, timeout=1)
    finally:
        node.stop()
    return summarize_overhead(samples, missing)


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
    seconds = 6.0 if quick else 20.0
    result = {'preset': f'ALOHA config, 3 x 480x640 rgb8 + 14 joints, rate 1000 Hz, '
                        f'soak {soak:.0f} s', 'targets': TARGETS, 'sections': {}}
    skip = {name for entry in args.skip for name in entry.split(',') if name}
    profile_dir = tempfile.mkdtemp(prefix='node-bench-')
    if os.environ.get('NODE_BENCH_DDS_PROFILE', '1') == '1':
        use_fastdds_profile(profile_dir)
        result['fastdds_profile'] = 'shared memory segment 32 MiB + UDPv4'
    result['load_average_at_start'] = round(os.getloadavg()[0], 2)
    robot = Robot()
    try:
        with tempfile.TemporaryDirectory() as directory:
            if 'overhead_fake' not in skip:
                result['sections']['overhead_fake'] = fake_run(robot, directory, 'fake',
                                                               seconds)
            if 'overhead_fake_small' not in skip:  # the same with 96 x 128 images: the share
                small = Robot(frames=4, height=96, width=128)  # of moving 2.8 MB of pixels
                try:
                    result['sections']['overhead_fake_small'] = fake_run(
                        small, directory, 'fake_small', seconds)
                finally:
                    small.close()
            if skip >= {'overhead_tiny', 'soak'}:
                return finish(result)
            model = tiny_model(directory)
            node = Node(parameters(model), directory, 'tiny')
            try:
                robot.wait_ready(node, 300)
                if 'overhead_tiny' not in skip:
                    samples, probes, missing = closed_loop(robot, node, seconds * 1.5,
                                                           timeout=30, probe=True)
                    section = summarize_overhead(samples, missing)
                    section['callback'] = split_probes(probes, samples)
                    result['sections']['overhead_tiny'] = section
                if 'soak' not in skip:
                    result['sections']['soak'] = soak_run(robot, node, soak, clock)
            finally:
                node.stop()
    finally:
        robot.close()
        shutil.rmtree(profile_dir, ignore_errors=True)
    return finish(result)


def soak_run(robot, node, seconds, clock):
    """Open-loop replay at 4 Hz for `seconds`; RSS every 2 s; chunks counted."""
    rss, start = [], clock()
    with robot.lock:
        before = len(robot.chunks)
    index, next_publish, next_sample = 0, start, start
    while clock() - start < seconds and node.alive():
        now = clock()
        if now >= next_publish:
            robot.publish(index)
            index += 1
            next_publish += 0.25
        if now >= next_sample:
            rss.append((now - start, rss_bytes(node.pid)))
            next_sample += 2.0
        time.sleep(0.005)
    with robot.lock:
        chunks = len(robot.chunks) - before
    return {'seconds': round(clock() - start, 1), 'observations': index, 'chunks': chunks,
            'rss': rss_growth(rss), 'rss_samples_mb': [(round(t, 1), round(r / 1e6, 2))
                                                       for t, r in rss],
            'node_alive': node.alive()}


def finish(result):
    sections, met = result['sections'], {}
    for name in ('overhead_fake', 'overhead_fake_small', 'overhead_tiny'):
        if name in sections:
            overhead = sections[name]['node_overhead_ms']
            if overhead.get('count'):
                met[f'{name}.overhead_p50_ms'] = (overhead['p50'], TARGETS['overhead_p50_ms'])
                met[f'{name}.overhead_p99_ms'] = (overhead['p99'], TARGETS['overhead_p99_ms'])
    callback = sections.get('overhead_tiny', {}).get('callback', {}).get('during_inference_ms')
    if callback and callback.get('count'):
        met['callback_p99_during_inference_ms'] = (
            callback['p99'], TARGETS['callback_p99_during_inference_ms'])
    growth = (sections.get('soak') or {}).get('rss')
    if growth:
        met['rss_growth_percent'] = (growth['growth_percent'], TARGETS['rss_growth_percent'])
    result['targets_met'] = {name: {'value': round(value, 3), 'target': target,
                                    'met': bool(value <= target)}
                             for name, (value, target) in met.items()}
    parts = [f'{name} {entry["value"]:.3g} ({"met" if entry["met"] else "MISSED"})'
             for name, entry in result['targets_met'].items()]
    result['headline'] = '; '.join(parts) or 'no target measured'
    return result


def main(args):
    import rclpy  # noqa: F401  (fail early, with the message below, where ROS is missing)
    import torch
    ctx = harness.BenchContext(device=torch.device('cpu'), dtype_name='fp32', quick=args.quick,
                               repetitions=1)
    started = time.perf_counter()
    result = run(args)
    result['title'] = 'policy_node overhead, callback latency during inference, RSS soak'
    result['wall_seconds'] = round(time.perf_counter() - started, 1)
    path = harness.write_result('node', ctx, result, args.out)
    harness.write_summary(args.out)
    print(json.dumps(result['targets_met'], indent=1))
    print(f'[node] {result["headline"]}\n[node] -> {path}', flush=True)
    return 0
