"""The action of each exported step, from a bag's action messages (datasets/, numpy only).

A step is the observation the node would build for one reference frame (steps.py); its action
is decided by its reference stamp ``s`` from one of two sources, fed the bag's messages of the
action topic in log-time order:

``RecordedActions``: a recorded command stream, sensor_msgs/JointState (header stamps, the
  config's ``action_names`` picked by name) or std_msgs/Float64MultiArray / Float32MultiArray
  (log times, every value). The action is the message closest to ``s`` (the newer on a tie, as
  the sync buffer picks its members) if it lies within ``sync_tolerance``; else the last one
  before ``s`` if it is at most one ``step_period`` older (the command still in force, e.g. at
  the episode's last state, after its final command); else there is none (``no_action``).
``ExecutedChunks``: the node's cosmos_policy_ros/ActionChunk output (rollouts of a deployed
  policy). The action is the row the robot executes at ``s``: of the newest chunk received by
  then (log time <= s), row ``round((s - chunk stamp) / chunk step_period)`` when that is a row
  of the chunk; else none (before the first chunk, or after a chunk ran out).

``resolve(s, now_ns, final)`` answers ``PENDING`` while later messages could still change the
answer (a stream is decided once a message stamped after ``s + tolerance`` came, or the bag
time passed ``s + tolerance + WAIT_NS``; chunks once the bag time passed ``s``), else
``(row float64 (d,), stamp of its message, '')`` or ``(None, 0, reason)``. A malformed message
(non-finite values) is dropped and counted in ``dropped``; a message that cannot fit the
configuration (other names or widths) raises ``ValueError`` naming the topic and log time.
"""
import bisect
from collections import Counter

import numpy as np

from cosmos_policy_ros.conversions import (action_chunk_rows, ConversionError, NS_PER_S,
                                           stamp_to_ns)

PENDING = object()  # resolve(): not decided yet
NO_ACTION = 'no_action'
NON_FINITE = 'non_finite'
WAIT_NS = NS_PER_S  # how long (bag time) a recorded stream may lag behind a step's stamp
JOINT_STATE = 'sensor_msgs/msg/JointState'
ARRAY_TYPES = ('std_msgs/msg/Float64MultiArray', 'std_msgs/msg/Float32MultiArray')
CHUNK_TYPE = 'cosmos_policy_ros/msg/ActionChunk'


def action_source(msgtype, topic, names, *, tolerance_ns, hold_ns):
    """The source for an action topic of `msgtype`; ValueError for a type it cannot read."""
    if msgtype == CHUNK_TYPE:
        return ExecutedChunks(topic, names)
    if msgtype == JOINT_STATE or msgtype in ARRAY_TYPES:
        return RecordedActions(topic, names, joint_state=msgtype == JOINT_STATE,
                               tolerance_ns=tolerance_ns, hold_ns=hold_ns)
    raise ValueError(f'topic {topic} is {msgtype}; actions are read from '
                     f'{[JOINT_STATE, *ARRAY_TYPES, CHUNK_TYPE]}.')


class RecordedActions:
    """A recorded command stream (see the module docstring); names: the action names."""

    def __init__(self, topic, names, *, joint_state, tolerance_ns, hold_ns):
        self.topic, self.names, self.joint_state = topic, tuple(names), joint_state
        self.tolerance_ns, self.hold_ns = int(tolerance_ns), int(hold_ns)
        self.stamps, self.rows = [], []
        self.dropped = Counter()
        self.count = 0

    def add(self, item):
        """One BagMessage of the topic; '' or the reason it was dropped."""
        message = item.message
        where = f'topic {self.topic}: the message at log time {item.stamp_ns}'
        if self.joint_state:
            index = {name: i for i, name in enumerate(message.name)}
            missing = [name for name in self.names if name not in index]
            if missing:
                raise ValueError(f"{where} lacks joint(s) {missing} of the config's "
                                 f'action_names {list(self.names)}')
            values = np.asarray(message.position, dtype=np.float64)
            if values.size != len(message.name):
                raise ValueError(f'{where} has {len(message.name)} names but {values.size} '
                                 f'positions')
            row, stamp = values[[index[name] for name in self.names]], stamp_to_ns(
                message.header.stamp)
        else:
            row, stamp = np.asarray(message.data, dtype=np.float64), item.stamp_ns
            if row.size != len(self.names):
                raise ValueError(f'{where} has {row.size} values; the config has '
                                 f'{len(self.names)} actions ({list(self.names)})')
        self.count += 1
        if not np.all(np.isfinite(row)):
            self.dropped[NON_FINITE] += 1
            return NON_FINITE
        index = bisect.bisect_right(self.stamps, stamp)
        self.stamps.insert(index, stamp)
        self.rows.insert(index, row)
        return ''

    def resolve(self, stamp_ns, now_ns, final=False):
        settled = final or now_ns > stamp_ns + self.tolerance_ns + WAIT_NS or (
            self.stamps and self.stamps[-1] > stamp_ns + self.tolerance_ns)
        if not settled:
            return PENDING
        index = bisect.bisect_left(self.stamps, stamp_ns)
        candidates = [i for i in (index - 1, index) if 0 <= i < len(self.stamps)]
        if candidates:
            # The closest; on a tie the newer one (index), as _Ring.closest picks.
            best = min(candidates, key=lambda i: (abs(self.stamps[i] - stamp_ns), -i))
            if abs(self.stamps[best] - stamp_ns) <= self.tolerance_ns:
                return self.rows[best], self.stamps[best], ''
            before = bisect.bisect_right(self.stamps, stamp_ns) - 1  # the last one <= s
            if before >= 0 and stamp_ns - self.stamps[before] <= self.hold_ns:
                return self.rows[before], self.stamps[before], ''
        return None, 0, NO_ACTION

    def forget_before(self, stamp_ns):
        """Drop the messages no step at or after `stamp_ns` can use."""
        keep = bisect.bisect_left(self.stamps, stamp_ns - max(self.tolerance_ns, self.hold_ns))
        keep = max(0, keep - 1)
        del self.stamps[:keep], self.rows[:keep]


class ExecutedChunks:
    """The node's ActionChunks: the row executed at each stamp (see the module docstring)."""

    def __init__(self, topic, names):
        self.topic, self.names = topic, tuple(names)
        self.chunks = []  # (log ns, stamp ns, period ns, (K, d) float64), in log order
        self.dropped = Counter()
        self.count = 0

    def add(self, item):
        message = item.message
        where = f'topic {self.topic}: the ActionChunk at log time {item.stamp_ns}'
        horizon, dim = int(message.horizon), int(message.action_dim)
        if dim != len(self.names):
            raise ValueError(f'{where} has action_dim {dim}; the config has {len(self.names)} '
                             f'actions ({list(self.names)})')
        if list(message.action_names) and tuple(message.action_names) != self.names:
            raise ValueError(f'{where} names its actions {list(message.action_names)}; the '
                             f"config's action_names are {list(self.names)}")
        try:
            rows = action_chunk_rows(message)
        except ConversionError as error:
            raise ValueError(f'{where} has {error}') from None
        self.count += 1
        period_ns = round(float(message.step_period) * NS_PER_S)
        if not np.all(np.isfinite(rows)) or period_ns <= 0 or horizon < 1:
            self.dropped[NON_FINITE] += 1
            return NON_FINITE
        self.chunks.append((item.stamp_ns, stamp_to_ns(message.header.stamp), period_ns,
                            rows))
        return ''

    def resolve(self, stamp_ns, now_ns, final=False):
        if not final and now_ns <= stamp_ns:
            return PENDING
        received = [chunk for chunk in self.chunks if chunk[0] <= stamp_ns]
        if not received:
            return None, 0, NO_ACTION
        _, chunk_ns, period_ns, rows = received[-1]
        row = round((stamp_ns - chunk_ns) / period_ns)
        if not 0 <= row < len(rows):
            return None, 0, NO_ACTION
        return rows[row], chunk_ns, ''

    def forget_before(self, stamp_ns):
        """Keep the newest chunk received before `stamp_ns` and every later one."""
        older = [i for i, chunk in enumerate(self.chunks) if chunk[0] <= stamp_ns]
        if len(older) > 1:
            del self.chunks[:older[-1]]
