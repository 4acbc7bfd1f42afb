"""One episode bag -> its steps, observed by the node's own rules (datasets/, no rclpy).

The bag's messages go, in log-time order, into the node's own ``ControlLoop``
(control_loop.py), built from the node's configuration file: the same topics, conversions,
sync buffer (reference stream, closest member, settle rule, ``sync_tolerance``,
``max_observation_age``) and tick, so a step's observation is what ``policy_node`` would have
been given, as ``cosmos-policy-replay eval`` runs it (tools/evaluate.py, bag time = ROS time).

Steps are ``step_period`` apart, as the rows of a chunk are: every reference-stream frame gets
the grid index ``k = round((s - s0) / step_period)`` (``s`` its header stamp, ``s0`` the first
reference frame's); the first frame of an index makes step k, later ones on the same index are
surplus frames (a camera faster than the control rate; counted). Step k's observation is the
loop's tick for that frame, at bag time ``max(s + sync_tolerance, its log time)`` (once every
stream within tolerance is in), seeing every message logged up to then. Its action comes from
the action topic (actions.py). An index with no frame, a tick that gives no observation (the
sync query's reason: skew, stale, missing, ...) and a step without an action are skipped steps,
counted by reason; nothing is dropped silently.

Memory: the sync buffer (``buffer_size`` frames per camera) and the steps waiting for their
action (a recorded stream decides within ``sync_tolerance`` + 1 s of bag time), whatever the
episode's length. Every error is a ``BagError`` naming the bag, the topic and the reason.
"""
from collections import Counter
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from cosmos_policy_ros.bags.reader import BagReader, read_info
from cosmos_policy_ros.bags.storage import BagError
from cosmos_policy_ros.control_loop import ControlLoop, NO_TASK, RECEIVED, Skip
from cosmos_policy_ros.conversions import NS_PER_S, stamp_to_ns
from cosmos_policy_ros.datasets.actions import action_source, NO_ACTION, PENDING
from cosmos_policy_ros.datasets.outcomes import outcome_of_message, OUTCOME_TOPIC
from cosmos_policy_ros.evaluation.offline_node import absolute_topic, check_topics
from cosmos_policy_ros.layout import LatentLayout

NO_FRAME = 'no_frame'  # a step index without a reference frame


@dataclass(frozen=True)
class Step:
    """One exported step: the node's observation at a reference frame and its action."""

    index: int                        # k: step_period units after the first reference frame
    reference_ns: int                 # header stamp of the reference frame
    stamps: Mapping[str, int]         # stream -> header stamp of the observation's members
    images: Mapping[str, np.ndarray]  # camera -> uint8 (H, W, 3) as converted by the node
    proprio: np.ndarray               # (D,) float64, proprio sources concatenated
    action: np.ndarray                # (d,) float64
    action_stamp_ns: int = 0          # stamp of the message the action came from


class _Recording:
    """The policy slot of the ControlLoop: a layout to bind the config to, never inferred."""

    model_id = 'cosmos-policy-dataset'

    def __init__(self, layout):
        self.layout = layout

    def reset(self):
        pass

    def infer(self, *args, **kwargs):  # pragma: no cover - the exporter never completes a job
        raise RuntimeError('the exporter does not run a policy')


def binding_layout(config, action_dim):
    """A LatentLayout that config binds to (cameras, proprio and action sizes of the config)."""
    chunk = max(1, config.execute_steps, config.replan_threshold + 1)
    return LatentLayout('export', config.camera_names, chunk_size=chunk, action_dim=action_dim,
                        proprio_dim=config.proprio_dim)


class EpisodeBag:
    """The steps of one bag (``steps()``, a generator), then what was counted on the way.

    config: the node's NodeConfig; action_topic: the topic of the actions (absolute);
    action_dim: their width when the config names none (action_names). task: overrides the
    bag's task topic. After ``steps()`` ran: task, outcome (an outcomes.Outcome or None),
    skipped (reason -> steps), surplus_frames, dropped ('<stream>.<reason>' -> messages),
    steps (yielded), start_ns / end_ns (log times).
    """

    def __init__(self, path, config, *, action_topic, action_dim, task=None,
                 outcome_topic=OUTCOME_TOPIC, progress=None, typestore=None):
        self.path = path
        self.label = str(path)
        self.config = config
        self.info = read_info(path)  # opens it once: a bag that cannot be read fails here
        self.loop = ControlLoop(_Recording(binding_layout(
            config, len(config.action_names) or action_dim)), config)
        self.action_names = self.loop.binding.action_names
        self.action_topic = absolute_topic(action_topic)
        self.task_topic = absolute_topic(config.task_topic)
        self.outcome_topic = absolute_topic(outcome_topic)
        self.fixed_task = task
        self.progress = progress  # called with the bag seconds read since the last call
        self.typestore = typestore
        self.streams = {}
        for stream in self.loop.streams:
            self.streams.setdefault(absolute_topic(stream.topic), []).append(stream)
        self.step_period = config.step_period
        self.stream_names = config.stream_names
        self.proprio_labels = config.proprio_labels
        self.duration_s = self.info.duration_ns / NS_PER_S
        self.period_ns = round(config.step_period * NS_PER_S)
        self.tolerance_ns = round(config.sync_tolerance * NS_PER_S)
        self.task = task
        self.outcome = None
        self.skipped = Counter()
        self.surplus_frames = 0
        self.dropped = Counter()
        self.steps_made = 0
        self.start_ns = self.end_ns = 0
        self._first_drop = {}  # stream -> (reason, detail) of its first dropped message

    def _fail(self, topic, reason):
        raise BagError(f'bag {self.path}: topic {topic}: {reason}')

    def steps(self):
        """Yield the episode's Steps in order (see the module docstring)."""
        with BagReader(self.path, typestore=self.typestore) as reader:
            info = reader.info
            if info.message_count == 0:
                raise BagError(f'bag {self.path}: empty bag (no messages)')
            check_topics(info, self.streams, self.action_topic)
            actions = self._action_source(info)
            self.start_ns, self.end_ns = info.start_ns, info.end_ns
            wanted = [*self.streams, self.action_topic]
            if self.fixed_task is None:
                if self.task_topic not in info.topics and not self.config.task:
                    self._fail(self.task_topic, 'no task: the bag has no task topic and the '
                                                'config sets no `task`; pass --task')
                wanted += [self.task_topic] if self.task_topic in info.topics else []
            if self.outcome_topic in info.topics:
                wanted.append(self.outcome_topic)
            self.loop.set_task(self.fixed_task or self.config.task)
            yield from self._run(reader, wanted, actions, info)
        self._check_streams(actions)

    def _action_source(self, info):
        msgtype = info.topics[self.action_topic].msgtype
        try:
            return action_source(msgtype, self.action_topic, self.action_names,
                                 tolerance_ns=self.tolerance_ns, hold_ns=self.period_ns)
        except ValueError as error:
            raise BagError(f'bag {self.path}: {error}') from None

    def _run(self, reader, wanted, actions, info):
        reference = self.config.reference
        first_ns = None  # s0: the first reference frame's stamp
        last_index = -1
        ticks = []  # (bag time, reference stamp, index), in time order
        waiting = []  # Steps whose action is not decided yet, in order
        last_log = info.start_ns

        def run_ticks(until_ns):
            while ticks and ticks[0][0] < until_ns:
                now, stamp, index = ticks.pop(0)
                job = self.loop.tick(now, replan=False, reference_ns=stamp)
                if isinstance(job, Skip):
                    self.skipped[job.reason] += 1
                    continue
                observation = job.observation
                waiting.append(Step(index, stamp, dict(job.stamps), dict(observation.images),
                                    np.asarray(observation.proprio, np.float64), None))

        def decided(now_ns, final=False):
            while waiting:
                result = actions.resolve(waiting[0].reference_ns, now_ns, final)
                if result is PENDING:
                    return
                step = waiting.pop(0)
                row, action_ns, reason = result
                actions.forget_before(step.reference_ns)
                if row is None:
                    self.skipped[reason] += 1
                    continue
                self.steps_made += 1
                yield Step(step.index, step.reference_ns, step.stamps, step.images,
                           step.proprio, np.array(row, dtype=np.float64), action_ns)

        for item in reader.messages(wanted):
            run_ticks(item.stamp_ns)
            yield from decided(item.stamp_ns)
            topic = item.topic
            if topic == self.action_topic:
                try:
                    actions.add(item)
                except ValueError as error:
                    raise BagError(f'bag {self.path}: {error}') from None
            elif topic == self.task_topic and topic not in self.streams:
                self._task(item)
            elif topic == self.outcome_topic and topic not in self.streams:
                try:
                    self.outcome = outcome_of_message(
                        item.message, item.msgtype, f'topic {topic} of bag {self.path}')
                except ValueError as error:
                    raise BagError(str(error)) from None
            if topic in self.streams:
                for stream in self.streams[topic]:
                    reason, detail = self.loop.receive(stream, item.message)
                    if reason:
                        self._first_drop.setdefault(stream.name, (reason, detail))
                    if stream.name != reference or reason:
                        continue
                    stamp = stamp_to_ns(item.message.header.stamp)
                    if first_ns is None:
                        first_ns = stamp
                    index = round((stamp - first_ns) / self.period_ns)
                    if index <= last_index:
                        self.surplus_frames += 1
                        continue
                    if index > last_index + 1:
                        self.skipped[NO_FRAME] += index - last_index - 1
                    last_index = index
                    ticks.append((max(stamp + self.tolerance_ns, item.stamp_ns), stamp, index))
                    ticks.sort()
            if self.progress is not None:
                self.progress((item.stamp_ns - last_log) / NS_PER_S)
                last_log = item.stamp_ns
        run_ticks(float('inf'))
        yield from decided(info.end_ns, final=True)

    def _task(self, item):
        text = str(item.message.data)
        if self.task and text != self.task:
            self._fail(self.task_topic, f'the task changed during the episode ({self.task!r} '
                                        f'-> {text!r}); export one task per bag')
        self.task = text
        self.loop.set_task(text)

    def _check_streams(self, actions):
        """After the bag: a stream none of whose messages was usable, or no step at all."""
        counts = self.loop.input_counts.snapshot()
        for (stream, reason), count in counts.items():
            if reason != RECEIVED:
                self.dropped[f'{stream}.{reason}'] += count
        for reason, count in actions.dropped.items():
            self.dropped[f'actions.{reason}'] += count
        for stream in self.loop.streams:
            received = counts.get((stream.name, RECEIVED), 0)
            kept = received - sum(count for (name, reason), count in counts.items()
                                  if name == stream.name and reason != RECEIVED)
            if received and not kept:
                reason, detail = self._first_drop[stream.name]
                self._fail(absolute_topic(stream.topic),
                           f'every message of stream {stream.name!r} was dropped '
                           f'({received} x {reason}: {detail})')
        if actions.count and not actions.count - sum(actions.dropped.values()):
            self._fail(self.action_topic, f'every action message was dropped '
                                          f'({dict(actions.dropped)})')
        if self.steps_made == 0:
            if not self.skipped:
                self._fail(absolute_topic(self._reference_topic()),
                           'no step: the reference stream has no usable frame')
            reason, count = self.skipped.most_common(1)[0]
            explain = {NO_TASK: 'no task was ever set', NO_ACTION: 'no action at any step'}
            self._fail(self._reason_topic(reason),
                       f'no step: the streams never synchronize ({count} x {reason}'
                       f'{": " + explain[reason] if reason in explain else ""}; '
                       f'sync_tolerance {self.config.sync_tolerance:g} s, '
                       f'max_observation_age {self.config.max_observation_age:g} s)')

    def camera_origin(self, camera):
        """Where a camera's frames come from, for messages: 'bag PATH: topic TOPIC'."""
        topic = next((stream.topic for stream in self.loop.streams if stream.name == camera),
                     None)
        return f'bag {self.path}' + (f': topic {absolute_topic(topic)}' if topic else '')

    def _reference_topic(self):
        return next(stream.topic for stream in self.loop.streams
                    if stream.name == self.config.reference)

    def _reason_topic(self, reason):
        if reason == NO_ACTION:
            return self.action_topic
        if reason == NO_TASK:
            return self.task_topic
        return absolute_topic(self._reference_topic())

    def summary(self):
        """What the manifest keeps of this episode's counts."""
        return {'skipped_steps': dict(sorted(self.skipped.items())),
                'surplus_frames': self.surplus_frames,
                'dropped_messages': dict(sorted(self.dropped.items()))}
