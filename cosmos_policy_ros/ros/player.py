"""Live replay of a rosbag2 bag onto the ROS graph, with /clock, and optional recording.

The player publishes every message of a bag on its topic (possibly remapped) as the serialized
CDR stored in the bag (``Publisher.publish(bytes)``: no conversion per message), paced by the
bag's log times divided by a rate factor. Before each message, and every 10 ms of bag time in
between, it publishes ``/clock`` (rosgraph_msgs/Clock) with the bag time, so a node with
``use_sim_time:=true`` sees exactly the clock it saw when the bag was recorded.

With ``record`` it also subscribes (raw) to the given output topics of the node under test and
writes what arrives into a new rosbag2 bag, with the bag time at arrival as log time (with
``loop``, pass n adds n window lengths, so the recording's log times keep increasing). That bag
is closed properly on the normal end, on errors and on SIGINT/SIGTERM.

QoS. Publishers are reliable, volatile, keep-all (a reliable publisher also serves best-effort
subscribers such as sensor-data QoS). Keep-all lets DDS retransmit whatever a reliable
subscriber missed, so nothing is lost even at rates the subscriber cannot keep up with (a
keep-last queue of 100 lost joint states at 20x here); at the end the player waits up to
FLUSH_TIMEOUT_S for every reliable subscriber to acknowledge. Topics the bag recorded as
transient-local (e.g. /task), or named in ``latch``, are published transient-local with depth
1, so a node that subscribes to them latched gets the last message even when it starts later;
when the window starts after such a message, the last one before the window is published at
the start. /clock is reliable, keep-last 10 (rclpy's time source subscribes best effort).

Lockstep (``lockstep`` = a step of S seconds of bag time, the node's control period 1/rate):
instead of wall-clock pacing, the bag is played one step at a time. A step publishes the
messages of (t, t + S], waits until reliable subscribers acknowledged them, advances /clock to
t + S (so the node's control timer ticks once) and then waits, up to ``lockstep_timeout`` wall
seconds, for the node's answer: one more message on ``lockstep_topic`` (action_chunk). The node
is never busy when its next tick comes, so it answers the same observations however fast the
machine is. A step without an answer (the tick found nothing to do, or the node is slower than
the timeout) is reported once per step and counted in the summary. Lockstep needs a node that
infers at every tick (``replan_mode: every_tick``); with steps_left replanning, ticks without a
new chunk each wait out the timeout.

The pacing (``schedule``, ``Pacer``, ``run_schedule``, ``lockstep_steps``) and the options
(``PlayConfig``) are pure and live in ``bags/playback.py``; this module is the rclpy side.
"""
import importlib
import math
import sys
import time
from typing import Callable

import rclpy
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rosgraph_msgs.msg import Clock

from cosmos_policy_ros.bags.playback import (
    CLOCK_PERIOD_NS, lockstep_steps, Pacer, PlayConfig, run_schedule, schedule)
from cosmos_policy_ros.bags.reader import BagReader, window_ns
from cosmos_policy_ros.bags.storage import BagError
from cosmos_policy_ros.bags.typestore import make_typestore
from cosmos_policy_ros.bags.writer import BagWriter
from cosmos_policy_ros.conversions import ns_to_stamp

CLOCK_TOPIC = '/clock'


RECORD_DEPTH = 100


PROGRESS_PERIOD_S = 0.5


FLUSH_TIMEOUT_S = 5.0  # wall seconds to wait for reliable subscribers at the end


EXIT_NOTHING_RECORDED = 1  # --record, and not one message arrived on any record topic


EXIT_NO_SUBSCRIBERS = 3  # --wait-for-subscribers ran out of --wait-timeout


DISCOVERY_PERIOD_S = 0.2  # how often the recorder looks for new publishers


# Types of the node's outputs, for record topics that have not been seen on the graph yet.
KNOWN_OUTPUT_TYPES = {
    'action_chunk': 'cosmos_policy_ros/msg/ActionChunk',
    'value': 'cosmos_policy_ros/msg/ValueEstimate',
    'diagnostics': 'diagnostic_msgs/msg/DiagnosticArray',
    'joint_trajectory': 'trajectory_msgs/msg/JointTrajectory',
}


def message_class(msgtype, topic):
    """The rclpy message class of 'pkg/msg/Name'; BagError naming the topic if unavailable."""
    package, _, name = msgtype.rpartition('/')
    module_name = package.replace('/', '.')
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError):
        raise BagError(f'cannot publish topic {topic!r}: message type {msgtype!r} is not '
                       f'installed for rclpy (no module {module_name}.{name})') from None


class Progress:
    """A one-line progress report, rewritten in place on a terminal."""

    def __init__(self, stream=None, clock=time.monotonic):
        self.stream = stream if stream is not None else sys.stderr  # the one current at the call
        self.clock = clock
        self.tty = hasattr(stream, 'isatty') and stream.isatty()
        self._last = -math.inf
        self._printed = False

    def update(self, text, *, force=False):
        now = self.clock()
        period = PROGRESS_PERIOD_S if self.tty else 5.0
        if not force and now - self._last < period:
            return
        self._last = now
        self.stream.write(('\r' + text + '\033[K') if self.tty else text + '\n')
        self.stream.flush()
        self._printed = True

    def finish(self):
        if self._printed and self.tty:
            self.stream.write('\n')
            self.stream.flush()


class Recorder:
    """Raw subscriptions to the node's outputs, written into a new bag (log time = bag time)."""

    def __init__(self, node, config, now_ns: Callable[[], int], log):
        self.node = node
        self.now_ns = now_ns
        self.log = log
        self.writer = BagWriter(config.record, storage=config.record_storage,
                                typestore=make_typestore())
        self.writer.open()
        self.pending = [node.resolve_topic_name(topic) for topic in config.record_topics]
        self.subscriptions = {}  # topic -> (subscription, message class, best_effort)
        self._next_check = -math.inf
        self.discover()

    def discover(self, *, final=False):
        """Subscribe to the record topics that have publishers (their type, their reliability).

        final: also subscribe, reliable, to topics without publishers yet whose type is known
        (KNOWN_OUTPUT_TYPES); called when playback starts, so no output is missed. A reliable
        subscription is remade best effort when a best-effort publisher shows up later. Looks at
        the graph at most every DISCOVERY_PERIOD_S unless final.
        """
        now = time.monotonic()
        if not final and now < self._next_check:
            return
        self._next_check = now + DISCOVERY_PERIOD_S
        graph = dict(self.node.get_topic_names_and_types()) if self.pending else {}
        for topic in list(self.pending):
            types = graph.get(topic, [])
            if len(types) == 1 and self.node.count_publishers(topic):
                msgtype = types[0]
            elif final:
                msgtype = KNOWN_OUTPUT_TYPES.get(topic.rsplit('/', 1)[-1])
            else:
                msgtype = None
            if msgtype is None:
                continue
            self.writer.add_topic(topic, msgtype)
            self._subscribe(topic, message_class(msgtype, topic))
            self.log(f'recording {topic} ({msgtype})')
            self.pending.remove(topic)
        for topic, (subscription, cls, best_effort) in list(self.subscriptions.items()):
            if not best_effort and self._best_effort_publishers(topic):
                self.node.destroy_subscription(subscription)
                self._subscribe(topic, cls)
                self.log(f'recording {topic} best effort, as its publisher offers')

    def _best_effort_publishers(self, topic):
        return any(info.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
                   for info in self.node.get_publishers_info_by_topic(topic))

    def _subscribe(self, topic, cls):
        """A raw subscription to `topic`: best effort if a publisher is, else reliable."""
        best_effort = self._best_effort_publishers(topic)
        qos = QoSProfile(depth=RECORD_DEPTH, reliability=ReliabilityPolicy.BEST_EFFORT
                         if best_effort else ReliabilityPolicy.RELIABLE)

        def store(data, topic=topic):
            self.writer.write_raw(topic, self.now_ns(), data)

        subscription = self.node.create_subscription(cls, topic, store, qos, raw=True)
        self.subscriptions[topic] = (subscription, cls, best_effort)

    def close(self):
        for topic in self.pending:
            self.log(f'warning: never saw a publisher of {topic}; nothing recorded from it')
        self.writer.close()
        return dict(self.writer.counts)


class Player:
    """Publishes a bag on a private rclpy context (see the module docstring)."""

    def __init__(self, config: PlayConfig, *, out=None, err=None,
                 clock=time.monotonic):
        self.config = config
        self.out = out if out is not None else sys.stdout  # the one current at the call
        self.clock = clock
        self.progress = Progress(err, clock)
        self.bag = BagReader(config.bag).open()
        try:
            self._plan()
        except BaseException:
            self.bag.close()
            raise
        self.context = None
        self.node = None
        self.recorder = None
        self.sim_ns = self.window[0]
        self.loop_offset_ns = 0  # window lengths of the passes before this one (with loop)
        self.published = 0
        self.clock_ticks = 0
        self.answers = 0  # lockstep: messages received on lockstep_topic
        self.steps = 0  # lockstep: steps played
        self.unanswered = 0  # lockstep: steps whose answer did not come in time

    def _plan(self):
        """Topics, window and latched messages; validates everything before ROS starts."""
        info = self.bag.info
        topics = list(self.config.topics) if self.config.topics is not None else sorted(
            info.topics)
        self.bag.check_topics(topics)
        if self.config.clock and CLOCK_TOPIC in topics:
            if self.config.topics is not None:
                raise BagError(f'bag {self.bag.path} has its own {CLOCK_TOPIC}: play it with '
                               f'--no-clock, or leave it out of --topics')
            topics.remove(CLOCK_TOPIC)  # the player publishes /clock itself
            self.log(f'not replaying the recorded {CLOCK_TOPIC}: the player publishes it')
        self.bag.check_topics(list(self.config.remaps))
        self.bag.check_topics(list(self.config.latch))
        self.topics = topics
        start_ns, end_ns = window_ns(info, self.config.start, self.config.end)
        first = info.start_ns if start_ns is None else start_ns
        last = info.end_ns + 1 if end_ns is None else end_ns
        self.window = (first, last)
        self.latched = {t for t in topics if info.topics[t].latched or t in self.config.latch}
        # The last message of every latched topic before the window: published at its start.
        self.carried = {}
        if self.latched and first > info.start_ns:
            for message in self.bag.messages(sorted(self.latched), start_ns=info.start_ns,
                                             end_ns=first, raw=True):
                self.carried[message.topic] = message
        # Messages to publish per pass (known from the metadata when there is no window).
        whole = start_ns is None and end_ns is None
        self.count = sum(info.topics[t].count for t in topics) if whole else None

    def output_topic(self, topic):
        return self.config.remaps.get(topic, topic)

    def log(self, text):
        self.out.write(f'[play] {text}\n')
        self.out.flush()

    # --- set-up ---
    def start_ros(self, context):

        self.context = context
        self.node = rclpy.create_node('cosmos_policy_replay', context=self.context,
                                      start_parameter_services=False)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.publishers = {}
        for topic in self.topics:
            msgtype = self.bag.info.topics[topic].msgtype
            latched = topic in self.latched
            if latched:
                qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.TRANSIENT_LOCAL)
            else:
                qos = QoSProfile(history=HistoryPolicy.KEEP_ALL,
                                 reliability=ReliabilityPolicy.RELIABLE,
                                 durability=DurabilityPolicy.VOLATILE)
            self.publishers[topic] = self.node.create_publisher(
                message_class(msgtype, topic), self.output_topic(topic), qos)
        if self.config.clock:
            self.clock_message = Clock()
            self.clock_publisher = self.node.create_publisher(
                Clock, CLOCK_TOPIC, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
        self.last_clock_ns = None
        if self.config.record is not None:
            self.recorder = Recorder(self.node, self.config, self.record_time_ns, self.log)
        if self.config.lockstep is not None:
            self._subscribe_answers()

    def _subscribe_answers(self):
        """Count the node's answers (raw: nothing is deserialized) on lockstep_topic."""
        topic = self.node.resolve_topic_name(self.config.lockstep_topic)
        types = dict(self.node.get_topic_names_and_types()).get(topic, [])
        msgtype = types[0] if len(types) == 1 else KNOWN_OUTPUT_TYPES.get(
            topic.rsplit('/', 1)[-1])
        if msgtype is None:
            raise ValueError(f'--lockstep-topic {topic}: no publisher on the graph yet and not '
                             f'one of the known outputs ({", ".join(KNOWN_OUTPUT_TYPES)})')

        def answered(_data):
            self.answers += 1

        self.answer_topic = topic
        self.node.create_subscription(
            message_class(msgtype, topic), topic, answered,
            QoSProfile(depth=RECORD_DEPTH, reliability=ReliabilityPolicy.RELIABLE), raw=True)

    def spin(self, seconds):
        """Handle callbacks (recording) for up to `seconds` of wall time."""
        self.executor.spin_once(timeout_sec=max(0.0, min(seconds, 0.05)))

    def spin_for(self, seconds):
        deadline = self.clock() + seconds
        while self.clock() < deadline:
            self.spin(deadline - self.clock())
            if self.recorder is not None:
                self.recorder.discover()

    def wait_for_subscribers(self):
        """Wait until every played topic has a subscriber; the topics still missing one after
        wait_timeout seconds (empty: all there)."""
        last_report = -math.inf
        deadline = self.clock() + self.config.wait_timeout
        while True:
            missing = [self.output_topic(t) for t, p in self.publishers.items()
                       if p.get_subscription_count() == 0]
            if not missing or self.clock() >= deadline or not self.context.ok():
                return missing
            if self.clock() - last_report > 5.0:
                self.log(f'waiting for subscribers on {", ".join(missing)}')
                last_report = self.clock()
            self.spin(0.05)

    def flush(self, timeout):
        """Wait (handling callbacks) until reliable subscribers acknowledged everything.

        Without it, messages still in flight when the player exits would be lost for
        subscribers that lag behind (e.g. at --rate inf). Returns the unacknowledged topics.
        """
        publishers = dict(self.publishers)
        if self.config.clock:
            publishers[CLOCK_TOPIC] = self.clock_publisher
        deadline = self.clock() + timeout
        while True:
            pending = [topic for topic, publisher in publishers.items()
                       if not publisher.wait_for_all_acked(Duration(seconds=0))]
            if not pending or self.clock() >= deadline:
                return [self.output_topic(topic) for topic in pending]
            self.spin(0.01)

    # --- playback ---
    def publish_clock(self, sim_ns):
        if not self.config.clock or sim_ns == self.last_clock_ns:
            return
        stamp = self.clock_message.clock
        stamp.sec, stamp.nanosec = ns_to_stamp(sim_ns)
        self.clock_publisher.publish(self.clock_message)
        self.last_clock_ns = sim_ns
        self.clock_ticks += 1

    def emit(self, event):
        self.sim_ns = event.sim_ns
        self.publish_clock(event.sim_ns)
        if event.message is not None:
            self.publishers[event.message.topic].publish(event.message.message)
            self.published += 1
        self.progress.update(self.status())

    def status(self):
        first, last = self.window
        done = (self.sim_ns - first) / 1e9
        total = (last - first) / 1e9
        rate = ('lockstep' if self.config.lockstep is not None else
                'max' if math.isinf(self.config.rate) else f'x{self.config.rate:g}')
        return (f'[play] {self.published} msgs  bag time {done:7.2f} / {total:.2f} s  '
                f'({rate})')

    def record_time_ns(self):
        """Log time of a recorded message: the bag time, unwrapped across loop passes."""
        return self.sim_ns + self.loop_offset_ns

    def play_once(self):
        first, last = self.window
        self.sim_ns = first
        self.publish_clock(first)
        for message in self.carried.values():
            self.publishers[message.topic].publish(message.message)
            self.published += 1
        messages = self.bag.messages(self.topics, start_ns=first, end_ns=last, raw=True)
        pacer = Pacer(self.config.rate, self.clock)
        pacer.start(first)

        def wait(seconds):
            self.spin(seconds)
            if self.recorder is not None:
                self.recorder.discover()

        if self.config.lockstep is not None:
            return self.play_lockstep(messages, first, last)
        period = CLOCK_PERIOD_NS if self.config.clock else None
        run_schedule(schedule(messages, clock_period_ns=period, origin_ns=first), pacer, wait,
                     self.emit, should_stop=lambda: not self.context.ok())

    def play_lockstep(self, messages, first, last):
        """One step at a time: its messages, their delivery, /clock, the node's answer."""
        step_ns = max(1, round(self.config.lockstep * 1e9))
        timeout = self.config.lockstep_timeout
        for clock_ns, batch, full in lockstep_steps(messages, first, last, step_ns):
            if not self.context.ok():
                return
            for message in batch:
                self.sim_ns = message.stamp_ns
                self.publishers[message.topic].publish(message.message)
                self.published += 1
            # The step's messages are in the node's queues before its clock moves on.
            self.flush(timeout)
            answers = self.answers
            self.sim_ns = clock_ns
            self.publish_clock(clock_ns)
            if not full:  # the window's end, short of a tick: no answer to wait for
                continue
            self.steps += 1
            deadline = self.clock() + timeout
            while self.answers == answers and self.clock() < deadline and self.context.ok():
                self.spin(deadline - self.clock())
                if self.recorder is not None:
                    self.recorder.discover()
            if self.answers == answers and self.context.ok():
                self.unanswered += 1
                self.log(f'lockstep: no answer on {self.answer_topic} within {timeout:g} s '
                         f'for the step ending at bag time '
                         f'{(clock_ns - self.bag.info.start_ns) / 1e9:.3f} s; going on')
            self.progress.update(self.status())

    def run(self, context):
        """On an initialized rclpy Context: publish the window (repeatedly with loop), record."""
        self.start_ros(context)
        first, last = self.window
        window = (f'{self.count} messages' if self.count is not None else
                  f'window {(first - self.bag.info.start_ns) / 1e9:g} s to '
                  f'{(last - self.bag.info.start_ns) / 1e9:g} s')
        self.log(f'{self.bag.path}: {len(self.topics)} topics, {window}, rate '
                 f'{self.config.rate:g}' + (', publishing /clock' if self.config.clock else ''))
        for topic in self.topics:
            if self.output_topic(topic) != topic:
                self.log(f'remap {topic} -> {self.output_topic(topic)}')
        self.spin_for(self.config.delay)
        if self.config.wait_for_subscribers:
            missing = self.wait_for_subscribers()
            if missing:
                self.log(f'error: no subscriber on {", ".join(missing)} after '
                         f'{self.config.wait_timeout:g} s (--wait-timeout); is the node running, '
                         f'in this ROS_DOMAIN_ID, subscribed to these topic names?')
                return EXIT_NO_SUBSCRIBERS
        if self.recorder is not None:
            self.recorder.discover(final=True)
        started = self.clock()
        loops = 0
        while self.context.ok():
            self.play_once()
            loops += 1
            if not self.config.loop:
                break
            self.loop_offset_ns += self.window[1] - self.window[0]  # the next pass continues
        unacknowledged = self.flush(FLUSH_TIMEOUT_S) if self.context.ok() else []
        elapsed = self.clock() - started
        if unacknowledged:
            self.log(f'warning: subscribers of {", ".join(unacknowledged)} did not acknowledge '
                     f'every message within {FLUSH_TIMEOUT_S:g} s')
        self.progress.update(self.status(), force=True)
        self.progress.finish()
        rate = self.published / elapsed if elapsed > 0 else math.inf
        self.log(f'published {self.published} messages ({loops} pass'
                 f'{"es" if loops != 1 else ""}) in {elapsed:.2f} s ({rate:.0f} msg/s), '
                 f'{self.clock_ticks} /clock messages')
        if self.config.lockstep is not None:
            self.log(f'lockstep: {self.steps} steps of {self.config.lockstep:g} s, '
                     f'{self.steps - self.unanswered} answered on {self.answer_topic}'
                     + (f', {self.unanswered} not within {self.config.lockstep_timeout:g} s'
                        if self.unanswered else ''))
        if self.recorder is not None and self.config.tail > 0 and self.context.ok():
            self.spin_for(self.config.tail)
        return 0

    def close(self):
        """Close the recording (flushes it) and the bag, destroy the node. Idempotent.

        Returns the number of messages recorded (None without a recording)."""
        recorder, self.recorder = self.recorder, None
        recorded = None
        try:
            if recorder is not None:
                counts = recorder.close()
                recorded = sum(counts.values())
                summary = ', '.join(f'{t} {n}' for t, n in counts.items()) or 'nothing'
                self.log(f'recorded {summary} into {self.config.record}')
        finally:
            self.bag.close()
            if self.node is not None:
                self.executor.shutdown(timeout_sec=0.1)
                self.node.destroy_node()
                self.node = None
        return recorded


def play(config: PlayConfig, *, out=None, err=None):
    """Run the player until the window ends (or forever with loop); returns an exit code.

    SIGINT/SIGTERM end it cleanly with exit code 0 (rclpy's handlers shut the context down;
    the recording is closed properly). Errors in the bag or options raise BagError/ValueError.
    Exit code EXIT_NOTHING_RECORDED (1) when a recording got not one message (nothing
    answered: a warning says what to check), EXIT_NO_SUBSCRIBERS (3) when
    wait_for_subscribers timed out (nothing was played).
    """

    player = Player(config, out=out, err=err)  # bag and option errors surface before ROS starts
    context = rclpy.Context()
    # args=[]: never parse our own command line (FROM:=TO would become a global rcl remap).
    rclpy.init(args=[], context=context, signal_handler_options=SignalHandlerOptions.ALL)
    code = 0
    interrupted = False
    try:
        code = player.run(context)
        if not context.ok():  # a signal shut the context down between two rclpy calls
            interrupted = True
            player.progress.finish()
            player.log('interrupted')
    except (KeyboardInterrupt, ExternalShutdownException):
        interrupted = True
        player.progress.finish()
        player.log('interrupted')
    except Exception:
        if not context.ok():
            interrupted = True
            player.progress.finish()  # a publish raced with the shutdown of a signal
            player.log('interrupted')
        else:
            raise
    finally:
        try:
            recorded = player.close()
        finally:
            rclpy.try_shutdown(context=context)
    if code == 0 and recorded == 0 and not interrupted:
        player.log(f'WARNING: nothing was recorded: no message arrived on '
                   f'{", ".join(config.record_topics)} while playing (is the node running and '
                   f'active, on this ROS_DOMAIN_ID, with use_sim_time:=true, subscribed to the '
                   f'played topics?); exit code {EXIT_NOTHING_RECORDED}')
        code = EXIT_NOTHING_RECORDED
    return code
