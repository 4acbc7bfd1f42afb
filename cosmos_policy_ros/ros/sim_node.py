"""The simulated robot as a ROS 2 node: PlanarReachEnv behind the topics a real robot has.

Publishes (stamps from the sim clock): ``cameras/<camera>/image`` (sensor_msgs/Image rgb8),
``joint_states`` (sensor_msgs/JointState), ``task`` (std_msgs/String, transient local),
``/clock`` (rosgraph_msgs/Clock) and ``sim/episode`` (std_msgs/String, one JSON line per
finished episode). Executes ``action_chunk`` (cosmos_policy_ros/msg/ActionChunk) or
``joint_trajectory`` (trajectory_msgs/JointTrajectory) through the ChunkController
(sim/controller.py): aligned by stamps, elapsed steps dropped, newer replaces older, bad
input refused and counted.

Clock modes:

realtime  sim time follows the wall clock divided by ``slowdown``; /clock every
          ``clock_period``; physics sub-steps at the same period; the cameras at the step
          period. Inference latency costs steps, as on a robot.
lockstep  the sim advances one step period at a time and, at each step where the node may
          start a chunk (``replan_steps``), only once the policy node has dealt with the
          tick: it publishes the observation, waits until the node's
          /diagnostics report having received it (and being idle, with the task of the
          episode), publishes /clock, waits until the node reports that tick done (a chunk
          published and received here, or the tick skipped), then steps the physics.
          Deterministic: the same seeds give the same chunks and outcomes on any machine
          (the node's ``rate`` must be 1 / step_period). Waits are bounded only as failure
          guards (``guard_timeout``).

``command_delay`` (both modes) injects latency between the policy and the robot: a chunk
received at sim time t reaches the controller at the first control step at or after
t + command_delay (as if inference, transport or the controller took that much longer); the
controller then executes it from its first row not yet due. In lockstep that is a
deterministic latency (inference itself takes no sim time there).
"""
import json
import math
import time
from typing import Optional, Sequence

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from trajectory_msgs.msg import JointTrajectory

from cosmos_policy_ros.conversions import image_to_rgb, NS_PER_S as NS, rgb_to_image_fields
from cosmos_policy_ros.conversions import stamp_to_ns
from cosmos_policy_ros.msg import ActionChunk
from cosmos_policy_ros.sim.arm import CAMERAS, JOINT_NAMES, PlanarReachEnv
from cosmos_policy_ros.sim.controller import ChunkController
from cosmos_policy_ros.sim.episode_trace import ChunkRecord, EpisodeTrace
from cosmos_policy_ros.sim.node_settings import SimSettings
from cosmos_policy_ros.sync import DUPLICATE_STAMP

START_TIMEOUT_S = 300.0  # wall seconds the policy node gets to become active
RESEND_PERIOD = 5.0  # seconds before a lockstep wait publishes its message again


class LockstepError(RuntimeError):
    """The policy node did not answer within the guard timeout (or went away)."""


def _diagnostic_values(msg, prefix):
    """{key: value} of every status of `msg` whose name starts with `prefix`: '."""
    values = {}
    for status in msg.status:
        if status.name.startswith(prefix + ': '):
            values.update({kv.key: kv.value for kv in status.values})
    return values


class SimRobotNode:
    """The sim node (a plain rclpy Node inside, created in `context`)."""

    def __init__(self, env, settings: SimSettings = SimSettings(), *, context=None,
                 node_name='planar_reach_sim', joint_names: Sequence[str] = (),
                 cameras: Sequence[str] = (), recorder=None, namespace=None, executor=None,
                 diagnostics=True):
        """recorder: an EpisodeRecorder (one bag per episode: rollouts), or None; namespace: of
        the node and its topics (one arm of a fleet); executor: one to share with other sims
        (default: its own); diagnostics: subscribe to /diagnostics itself (false: whoever drives
        several sims routes the messages to `on_diagnostics`)."""
        self.env = env
        self.settings = settings
        self.recorder = recorder
        self.joint_names = tuple(joint_names)
        self.cameras = tuple(cameras)
        self.node = rclpy.create_node(node_name, context=context, namespace=namespace)
        self.executor = executor or SingleThreadedExecutor(context=context)
        self._own_executor = executor is None
        self.executor.add_node(self.node)
        reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                              reliability=ReliabilityPolicy.RELIABLE,
                              durability=DurabilityPolicy.VOLATILE)
        latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                             reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._image_pub = {name: self.node.create_publisher(Image, f'cameras/{name}/image',
                                                            reliable)
                           for name in self.cameras}
        self._joint_pub = self.node.create_publisher(JointState, 'joint_states', reliable)
        self._task_pub = self.node.create_publisher(String, 'task', latched)
        self._clock_pub = self.node.create_publisher(Clock, '/clock', reliable)
        self._episode_pub = self.node.create_publisher(String, 'sim/episode', reliable)
        self.controller = ChunkController(self.joint_names)
        self.chunks_received = 0  # every chunk message, accepted or refused
        self.trajectories_received = 0
        self.future = {}  # stamp ns -> {camera: image}
        self._pending = []  # (msg metadata) of chunks accepted during the current step
        self._delayed = []  # (due ns, msg) of chunks received, not yet given to the controller
        if settings.command_source == 'action_chunk':
            self._chunk_sub = self.node.create_subscription(ActionChunk, 'action_chunk',
                                                            self._on_chunk, reliable)
        else:
            self.node.create_subscription(JointTrajectory, 'joint_trajectory',
                                          self._on_trajectory, reliable)
            # Chunk messages are still counted for the lockstep handshake.
            self._chunk_sub = self.node.create_subscription(ActionChunk, 'action_chunk',
                                                            self._count_chunk, reliable)
        if settings.future_images:
            for name in self.cameras:
                self.node.create_subscription(
                    Image, f'future/{name}/image',
                    lambda msg, name=name: self._on_future(name, msg), reliable)
        self._diag = {}
        self._diag_count = 0
        if diagnostics:
            self.node.create_subscription(DiagnosticArray, '/diagnostics', self.on_diagnostics,
                                          QoSProfile(depth=50))
        self.now_ns = 0  # the sim clock (last published /clock)
        self.obs_sent = 0  # observations published (a resend repeats one: not counted)
        self.clock_ticks = 0
        self._ticks_base = None
        self._refused_before = {}
        self._record_frames = False
        self.episodes = []

    # --- inputs ---------------------------------------------------------------------------------
    def _count_chunk(self, msg):
        self.chunks_received += 1

    def _on_chunk(self, msg):
        self.chunks_received += 1
        self._record('/action_chunk', self.now_ns, msg)
        if self.settings.command_delay > 0:
            self._delayed.append((self.now_ns + round(self.settings.command_delay * NS), msg))
        else:
            self._offer_chunk(msg, self.now_ns)

    def _deliver(self, now_ns):
        """Offer the delayed chunks due at `now_ns` to the controller (command_delay)."""
        due = [msg for when, msg in self._delayed if when <= now_ns]
        self._delayed = [(when, msg) for when, msg in self._delayed if when > now_ns]
        for msg in due:
            self._offer_chunk(msg, now_ns)

    def _offer_chunk(self, msg, now_ns):
        stamp = stamp_to_ns(msg.header.stamp)
        reason, _ = self.controller.offer_chunk(
            stamp_ns=stamp, action_names=list(msg.action_names), horizon=msg.horizon,
            action_dim=msg.action_dim, step_period=msg.step_period,
            actions=np.asarray(msg.actions), now_ns=now_ns, value=float(msg.value))
        if not reason:
            self._pending.append((stamp, self.controller.plans[-1].positions, float(msg.value),
                                  float(msg.inference_time), int(msg.seed),
                                  dict(stitching=msg.stitching,
                                       conditioned_steps=int(msg.conditioned_steps),
                                       takeover_step=int(msg.takeover_step),
                                       blended_steps=int(msg.blended_steps))))

    def _on_trajectory(self, msg):
        self.trajectories_received += 1
        points = [(point.time_from_start.sec * NS + point.time_from_start.nanosec,
                   list(point.positions)) for point in msg.points]
        stamp = stamp_to_ns(msg.header.stamp)
        reason, _ = self.controller.offer_trajectory(
            stamp_ns=stamp, joint_names=list(msg.joint_names), points=points,
            now_ns=self.now_ns)
        if not reason:
            self._pending.append((stamp, self.controller.plans[-1].positions, math.nan,
                                  math.nan, 0, {}))

    def _on_future(self, camera, msg):

        try:
            rgb = image_to_rgb(msg)
        except ValueError:
            return
        self.future.setdefault(stamp_to_ns(msg.header.stamp), {})[camera] = rgb

    def on_diagnostics(self, msg):
        values = _diagnostic_values(msg, self.settings.policy_node)
        if values:
            self._diag = values
            self._diag_count += 1

    # --- outputs --------------------------------------------------------------------------------
    def _stamp(self, header, ns):
        header.stamp.sec, header.stamp.nanosec = divmod(int(ns), NS)

    def publish_clock(self, ns):
        msg = Clock()
        msg.clock.sec, msg.clock.nanosec = divmod(int(ns), NS)
        self.now_ns = int(ns)
        self._clock_pub.publish(msg)

    def _record(self, topic, ns, msg):
        if self.recorder is not None:
            self.recorder.record(topic, ns, msg)

    def publish_observation(self, ns, images=None, resend=False):

        images = self.env.render() if images is None else images
        for name in self.cameras:
            msg = Image()
            self._stamp(msg.header, ns)
            msg.header.frame_id = f'{name}_camera'
            for key, value in rgb_to_image_fields(images[name]).items():
                setattr(msg, key, value)
            self._image_pub[name].publish(msg)
            if not resend:
                self._record(f'/cameras/{name}/image', ns, msg)
        joints = JointState()
        self._stamp(joints.header, ns)
        joints.name = list(self.joint_names)
        joints.position = [float(v) for v in self.env.joint_positions()]
        self._joint_pub.publish(joints)
        if not resend:
            self._record('/joint_states', ns, joints)
            self.obs_sent += 1
        return images

    def inputs_matched(self):
        """Whether the policy node is matched on every camera and joint topic and on its
        chunks: an observation published now reaches it, and its chunk reaches this sim."""
        publishers = [*self._image_pub.values(), self._joint_pub]
        return (all(publisher.get_subscription_count() > 0 for publisher in publishers)
                and self._chunk_sub.get_publisher_count() > 0)

    def publish_task(self, text):
        self._task_pub.publish(String(data=text))

    # --- lockstep handshake ---------------------------------------------------------------------
    @property
    def diagnostics(self):
        """The last /diagnostics key-values of the policy node ({} before the first)."""
        return self._diag

    def spin(self, seconds):
        self.executor.spin_once(timeout_sec=seconds)

    def _idle(self, values):
        try:
            return (values.get('inference_in_flight') == 'false'
                    and int(values.get('chunks_published', -1)) == self.chunks_received)
        except ValueError:
            return False

    def _wait(self, condition, what, resend=None):
        """Spin until condition(diagnostic values) holds; LockstepError after guard_timeout."""
        deadline = time.monotonic() + self.settings.guard_timeout
        resend_at = time.monotonic() + RESEND_PERIOD
        seen = -1
        while True:
            if self._diag_count != seen:
                seen = self._diag_count
                if self._diag and condition(self._diag):
                    return
            now = time.monotonic()
            if now > deadline:
                raise LockstepError(
                    f'lockstep: the policy node {self.settings.policy_node} did not report '
                    f'{what} within {self.settings.guard_timeout:g} s (last diagnostics: '
                    f'{dict(self._diag)})')
            if resend is not None and now > resend_at:
                resend()
                resend_at = now + RESEND_PERIOD
            self.spin(0.05)

    def policy_ready(self):
        """Whether the policy node reports being active and is matched on every input and on
        its chunks (inputs_matched): an observation published before its subscriptions match
        never reaches it."""
        return self._diag.get('lifecycle_state') == 'active' and self.inputs_matched()

    def wait_for_policy(self):
        """Wait until the policy node is active and subscribed (policy_ready)."""
        self._wait(lambda v: self.policy_ready(), 'being active and subscribed')

    def _received_all(self, values, task):
        """Whether the node has every observation published (each stamp of a stream counted
        once: a resend that arrives beside its original is dropped there as a duplicate
        stamp, and one whose original was lost takes its place), the task, and is idle."""
        streams = [key.removeprefix('received.') for key in values
                   if key.startswith('received.')]
        try:
            counts = [int(values[f'received.{stream}'])
                      - int(values.get(f'dropped.{stream}.{DUPLICATE_STAMP}', 0))
                      for stream in streams]
        except ValueError:
            return False
        return (bool(counts) and min(counts) >= self.obs_sent and values.get('task') == task
                and self._idle(values))

    # --- episodes -------------------------------------------------------------------------------
    def _start_ns(self, seed, config):
        slot = self.settings.episode_slot or config.episode_timeout + 2.0
        period_ns = round(config.step_period * NS)
        slot_ns = period_ns * math.ceil(slot * NS / period_ns)
        start = (int(seed) + 1) * slot_ns
        if start <= self.now_ns:  # seeds not increasing: keep the clock monotonic
            start = period_ns * math.ceil((self.now_ns + slot_ns) / period_ns)
        return start

    def run_episode(self, seed, *, record_frames: Optional[bool] = None):
        """Run one episode to success or timeout; returns its EpisodeTrace."""
        env, settings = self.env, self.settings
        period_ns = round(env.config.step_period * NS)
        trace = self.begin_episode(seed, self._start_ns(seed, env.config),
                                   record_frames=record_frames)
        start_ns = trace.start_ns
        lockstep = settings.mode == 'lockstep'
        if lockstep and self._ticks_base is None:
            self._wait(lambda v: 'ticks' in v and self._idle(v), 'its tick count')
            self._ticks_base = int(self._diag['ticks'])
        wall_origin = time.monotonic()
        sub_ns = round(settings.clock_period * NS)
        step = 0
        while not env.done:
            now_ns = start_ns + step * period_ns
            images = self.observe(trace, now_ns)
            if lockstep:
                if self._decision_due(step, trace):
                    self._wait(lambda v: self._received_all(v, env.task),
                               f'receiving observation {self.obs_sent} (task {env.task!r})',
                               resend=lambda: self.publish_observation(now_ns, images,
                                                                       resend=True))
                    self.publish_clock(now_ns)
                    self.clock_ticks += 1
                    expected = self._ticks_base + self.clock_ticks
                    self._wait(lambda v: int(v.get('ticks', -1)) >= expected and self._idle(v),
                               f'tick {expected} done',
                               resend=lambda: self.publish_clock(now_ns))
                self.advance(trace, step, now_ns, env.config.step_period)
            else:
                for sub in range(0, period_ns, sub_ns):
                    t = now_ns + sub
                    self.publish_clock(t)
                    due = wall_origin + (t - start_ns) / NS * settings.slowdown
                    while True:
                        left = due - time.monotonic()
                        if left <= 0:
                            break
                        self.spin(min(left, 0.005))
                    self.advance(trace, step, t, min(sub_ns, period_ns - sub) / NS,
                                 record=sub == 0)
                    if env.done:
                        break
            step += 1
            if env.success and trace.success_step is None:
                trace.success_step = step
        return self.end_episode(trace, step)

    # --- the pieces of an episode (run_episode; a fleet driver runs several sims with them) ---
    def begin_episode(self, seed, start_ns, *, record_frames: Optional[bool] = None):
        """Reset the arm for `seed`, publish its task (and open its bag when recording
        rollouts); the new EpisodeTrace from `start_ns`."""
        env = self.env
        env.reset(seed)
        self.controller.reset(env.joint_positions())
        self._refused_before = dict(self.controller.refused)
        self._pending = []
        self._delayed = []
        self._record_frames = (self.settings.record_frames if record_frames is None
                               else record_frames)
        trace = EpisodeTrace(seed=int(seed), task=env.task, start_ns=start_ns,
                             step_period=env.config.step_period)
        self.publish_task(env.task)
        if self.recorder is not None:
            self._start_recording(seed, start_ns, env.task)
        return trace

    def observe(self, trace, now_ns):
        """Render the cameras, keep the primary frame when recording frames, publish the
        observation stamped `now_ns`; returns the images."""
        images = self.env.render()
        if self._record_frames:
            trace.frames.append(images['primary'])
        self.publish_observation(now_ns, images)
        return images

    def advance(self, trace, step, now_ns, dt, *, record=True):
        """One control step at `now_ns`: chunks due reach the controller, its command moves
        the arm for `dt` seconds; `record` the step in the trace (once per step period)."""
        self._deliver(now_ns)
        self._take_pending(trace, step, now_ns)
        applied = self.controller.command(now_ns)
        if record:
            trace.record_step(self.env.joint_positions(), self.env.distance_to_goal(), applied)
        self.env.step(applied.command, dt)
        return applied

    def end_episode(self, trace, steps):
        """Close the episode after `steps` steps: refusals, the sim/episode line (and the
        outcome in its bag); the trace."""
        before = self._refused_before
        trace.steps = steps
        trace.refused = {reason: count - before.get(reason, 0)
                         for reason, count in self.controller.refused.items()
                         if count > before.get(reason, 0)}
        self.now_ns = max(self.now_ns, trace.start_ns + steps * round(trace.step_period * NS))
        summary = {'seed': trace.seed, 'task': trace.task, 'success': trace.success,
                   'steps': trace.steps, 'chunks': len(trace.chunks), 'refused': trace.refused}
        self._episode_pub.publish(String(data=json.dumps(summary)))
        if self.recorder is not None:
            self._record('/episode_outcome', self.now_ns, String(data=json.dumps(summary)))
            self.recorder.finish()
        self.episodes.append(trace)
        return trace

    def _start_recording(self, seed, start_ns, task):
        """Open the episode's bag: the node's inputs, its chunks and the outcome."""
        topics = {f'/cameras/{name}/image': 'sensor_msgs/msg/Image' for name in self.cameras}
        topics.update({'/joint_states': 'sensor_msgs/msg/JointState',
                       '/task': 'std_msgs/msg/String',
                       '/action_chunk': 'cosmos_policy_ros/msg/ActionChunk',
                       '/episode_outcome': 'std_msgs/msg/String'})
        self.recorder.start(f'episode_{int(seed):06d}', topics, latched=('/task',))
        self._record('/task', start_ns, String(data=task))

    def _decision_due(self, step, trace):
        """Lockstep: whether the policy node may start a chunk at this step (then /clock is
        published and the sim waits for the node); see SimSettings.replan_steps."""
        every = self.settings.replan_steps
        # The newest chunk received, delivered or still delayed (command_delay).
        steps = [chunk.step for chunk in trace.chunks[-1:]] + [
            (stamp_to_ns(msg.header.stamp) - trace.start_ns) // round(trace.step_period * NS)
            for _, msg in self._delayed]
        if every <= 0 or not steps:
            return True
        return step - max(steps) >= every

    def _take_pending(self, trace, step, now_ns):
        for stamp, actions, value, latency, seed, stitching in self._pending:
            trace.chunks.append(ChunkRecord(
                stamp_ns=stamp, step=int((stamp - trace.start_ns) // round(
                    trace.step_period * NS)), actions=actions, value=value,
                inference_time=latency, arrival_delay=(now_ns - stamp) / NS, seed=seed,
                **stitching))
        self._pending = []

    def close(self):
        if self.recorder is not None:
            self.recorder.abort()  # an unfinished episode's bag keeps what it has, no outcome
        if self._own_executor:
            self.executor.shutdown()
        else:
            self.executor.remove_node(self.node)
        self.node.destroy_node()


def run_sim_episodes(seeds, settings, *, env=None, on_episode=None, policy=None,
                     context=None, wait_for_policy=True, recorder=None):
    """Episodes through the sim node on the ROS graph; returns (traces, future images, last
    diagnostics of the policy node): the episode runner of sim/harness.py. policy: a
    PolicyProcess to watch; wait_for_policy: first wait until the policy node reports being
    active and is subscribed to every input (policy_ready); recorder: an EpisodeRecorder
    (ros/episode_recorder.py) writing each episode as a rollout bag, or None."""
    own = context is None
    if own:
        context = rclpy.Context()
        rclpy.init(args=[], context=context)
    sim = SimRobotNode(env if env is not None else PlanarReachEnv(), settings, context=context,
                       joint_names=JOINT_NAMES, cameras=CAMERAS, recorder=recorder)
    traces = []
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while wait_for_policy and not sim.policy_ready():
            if policy is not None:
                policy.check()
            if time.monotonic() > deadline:
                raise RuntimeError('policy_node did not become active and subscribed in time')
            sim.spin(0.1)
        for seed in seeds:
            if policy is not None:
                policy.check()
            trace = sim.run_episode(seed)
            traces.append(trace)
            if on_episode is not None:
                on_episode(trace)
        return traces, dict(sim.future), dict(sim.diagnostics)
    finally:
        sim.close()
        if own:
            rclpy.try_shutdown(context=context)
