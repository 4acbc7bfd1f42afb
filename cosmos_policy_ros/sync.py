"""Observation synchronization on header stamps: one bounded buffer per input stream.

Every stream (camera or proprio source) keeps its newest messages as (stamp in integer ns,
payload), sorted by stamp. ``SyncBuffer.query(now_ns)`` returns the newest complete set whose
members lie within ``tolerance_ns`` of the reference stream's stamp and whose oldest member is at
most ``max_age_ns`` older than ``now_ns``, or the reason there is none. Time is always an
argument (the node passes its ROS clock, the offline evaluator the bag's time), never read here.

Each member is the stream's message closest to the reference stamp, taken only once it is
settled: the stream already has a message stamped at or after the reference (with in-order
delivery nothing closer can still come), or ``tolerance_ns`` has passed since the reference
stamp (stop waiting). So a set does not depend on which of its messages happened to arrive
first, and a replayed bag gives the same sets live and offline.

Not thread-safe by itself: the node serializes calls with a lock.
"""
import bisect
from dataclasses import dataclass, field
from typing import Mapping, Optional

import numpy as np

from cosmos_policy_ros.conversions import NS_PER_S
from cosmos_policy_ros.interface import Observation

# Reasons `add` drops a message / `query` finds no observation (diagnostics count them).
ZERO_STAMP = 'zero_stamp'
DUPLICATE_STAMP = 'duplicate_stamp'
TOO_OLD = 'too_old'
MISSING = 'missing'
SKEW = 'skew'
STALE = 'stale'
FUTURE = 'future'
NOT_NEW = 'not_new'
UNSETTLED = 'unsettled'


@dataclass(frozen=True)
class SyncResult:
    """Outcome of a query: a synchronized set (`ok`) or the reason there is none.

    stamps / payloads: stream name -> header stamp (ns) / converted payload of the set.
    reference_stamp_ns: stamp of the reference stream's member.
    skew_ns: largest |stamp - reference stamp| in the set; age_ns: now - oldest stamp.
    reason: '' when ok, else one of missing, skew, unsettled, stale, future, not_new; detail
    says more.
    """

    reason: str = ''
    detail: str = ''
    stamps: Mapping[str, int] = field(default_factory=dict)
    payloads: Mapping[str, object] = field(default_factory=dict)
    reference_stamp_ns: int = 0
    skew_ns: int = 0
    age_ns: int = 0

    @property
    def ok(self):
        return not self.reason

    @property
    def oldest_stamp_ns(self):
        return min(self.stamps.values())


class _Ring:
    """Entries of one stream sorted by stamp, at most `capacity` of them (the newest)."""

    def __init__(self, capacity):
        self.capacity = capacity
        self.stamps = []
        self.payloads = []

    def insert(self, stamp_ns, payload):
        """Insert in stamp order; returns '' or the reason the message was not kept."""
        index = bisect.bisect_left(self.stamps, stamp_ns)
        if index < len(self.stamps) and self.stamps[index] == stamp_ns:
            self.payloads[index] = payload  # the later arrival replaces the earlier one
            return DUPLICATE_STAMP
        if len(self.stamps) == self.capacity and index == 0:
            return TOO_OLD  # older than everything kept in a full ring
        self.stamps.insert(index, stamp_ns)
        self.payloads.insert(index, payload)
        if len(self.stamps) > self.capacity:
            del self.stamps[0], self.payloads[0]
        return ''

    def closest(self, stamp_ns):
        """Index of the entry nearest to stamp_ns (the newer one on a tie); ring not empty."""
        index = bisect.bisect_left(self.stamps, stamp_ns)
        if index == len(self.stamps):
            return index - 1
        if index > 0 and stamp_ns - self.stamps[index - 1] < self.stamps[index] - stamp_ns:
            return index - 1
        return index

    def clear(self):
        self.stamps.clear()
        self.payloads.clear()


class SyncBuffer:
    """Bounded per-stream buffers and the synchronized query over them.

    streams: names of every input stream; reference: the one sets are anchored on.
    capacity: messages kept per stream (an int, or a mapping stream -> int).
    tolerance_ns: largest |stamp - reference stamp|.
    max_age_ns: oldest acceptable member relative to `now_ns` at query time.
    jump_back_ns: a stamp older than its stream's newest by more than this, or `now_ns` going
    back by more than this, is a time jump (a bag loop): every message stamped more than
    jump_back_ns after the new time (the old timeline) is discarded; `resets` counts it.
    """

    def __init__(self, streams, reference, *, capacity=16, tolerance_ns=50_000_000,
                 max_age_ns=250_000_000, jump_back_ns=NS_PER_S):
        streams = tuple(streams)
        if not streams or len(set(streams)) != len(streams):
            raise ValueError(f'`streams` must be unique and non-empty. Got {list(streams)}.')
        if reference not in streams:
            raise ValueError(f'reference stream {reference!r} is not one of {list(streams)}.')
        capacities = dict(capacity) if isinstance(capacity, dict) else {
            name: capacity for name in streams}
        if set(capacities) != set(streams):
            raise ValueError(f'`capacity` must give every stream {list(streams)}. '
                             f'Got {sorted(capacities)}.')
        for name, value in capacities.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f'`capacity` of {name!r} must be a positive integer. '
                                 f'Got {value!r}.')
        if jump_back_ns <= 0:
            raise ValueError(f'`jump_back_ns` must be positive. Got {jump_back_ns!r}.')
        self.streams = streams
        self.reference = reference
        self.jump_back_ns = int(jump_back_ns)
        self.set_limits(tolerance_ns, max_age_ns)
        self._rings = {name: _Ring(capacities[name]) for name in streams}
        self._last_now_ns = None
        self._used_ns = 0  # reference stamp of the last set handed to the policy
        self.resets = 0  # backwards time jumps that discarded messages

    def set_limits(self, tolerance_ns, max_age_ns):
        """Change the tolerance and the age limit (runtime parameters)."""
        if tolerance_ns < 0:
            raise ValueError(f'`tolerance_ns` must be >= 0. Got {tolerance_ns!r}.')
        if max_age_ns <= 0:
            raise ValueError(f'`max_age_ns` must be positive. Got {max_age_ns!r}.')
        self.tolerance_ns = int(tolerance_ns)
        self.max_age_ns = int(max_age_ns)

    def add(self, stream, stamp_ns, payload):
        """Store one message; returns '' or why it was dropped (zero_stamp, too_old).

        A duplicate stamp replaces the earlier payload and returns duplicate_stamp.
        """
        ring = self._ring(stream)
        stamp_ns = int(stamp_ns)
        if stamp_ns <= 0:
            return ZERO_STAMP
        if ring.stamps and stamp_ns < ring.stamps[-1] - self.jump_back_ns:
            self._forget_after(stamp_ns + self.jump_back_ns)
        return ring.insert(stamp_ns, payload)

    def empty_streams(self):
        """The streams that hold no message (a query then says missing)."""
        return [name for name in self.streams if not self._rings[name].stamps]

    def query(self, now_ns, reference_ns=None):
        """The newest synchronized set at time `now_ns`, or the reason there is none.

        A set whose reference stamp is not later than the last one passed to `mark_used` gives
        reason not_new (one observation is never used twice), or stale once it is too old.
        reference_ns: consider only the reference message with this stamp (the offline
        evaluator's one-chunk-per-frame mode) instead of the newest one.
        """
        now_ns = self._observe_clock(now_ns)
        empty = self.empty_streams()
        if empty:
            return SyncResult(MISSING, f'no message yet from {", ".join(empty)}')
        reference = self._rings[self.reference]
        if reference_ns is None:
            candidates = reversed(reference.stamps)
        elif int(reference_ns) in reference.stamps:
            candidates = [int(reference_ns)]
        else:
            return SyncResult(MISSING, f'no {self.reference} message stamped {int(reference_ns)}')
        failure = None  # why the newest reference frame has no set
        for reference_ns in candidates:
            members, worst = self._members(reference_ns)
            if members is None:
                if failure is None:
                    name, skew = worst
                    failure = SyncResult(SKEW, f'{name} is {skew / NS_PER_S:.3f} s from '
                                               f'{self.reference} (sync_tolerance '
                                               f'{self.tolerance_ns / NS_PER_S:.3f} s)')
                continue
            waiting = self._unsettled(reference_ns, now_ns)
            if waiting:
                if failure is None:
                    failure = SyncResult(UNSETTLED, f'waiting for {", ".join(waiting)} at or '
                                                    f'after the reference stamp')
                continue
            stamps = {name: stamp for name, (stamp, _) in members.items()}
            oldest, newest = min(stamps.values()), max(stamps.values())
            if now_ns - oldest > self.max_age_ns:
                age = (now_ns - oldest) / NS_PER_S
                return SyncResult(STALE, f'newest synchronized set is {age:.3f} s old '
                                         f'(max_observation_age '
                                         f'{self.max_age_ns / NS_PER_S:.3f} s); with a bag, '
                                         f'is use_sim_time set?')
            if reference_ns <= self._used_ns:
                return SyncResult(NOT_NEW, 'no observation newer than the last one used')
            if newest - now_ns > self.max_age_ns:
                ahead = (newest - now_ns) / NS_PER_S
                return SyncResult(FUTURE, f'stamps are {ahead:.3f} s ahead of the clock; are '
                                          f'the clocks synchronized?')
            return SyncResult(
                stamps=stamps,
                payloads={name: payload for name, (_, payload) in members.items()},
                reference_stamp_ns=reference_ns,
                skew_ns=max(abs(stamp - reference_ns) for stamp in stamps.values()),
                age_ns=now_ns - oldest)
        return failure

    def has_new_reference(self, now_ns):
        """False when a query at `now_ns` cannot give a set: the reference stream holds no
        message newer than the last set used (every candidate would be not_new, or fail
        before). Notes the clock as `query` does, so calling this instead of a query changes
        nothing else; a cheap test for the ticks on every arriving message."""
        self._observe_clock(now_ns)
        stamps = self._rings[self.reference].stamps
        return bool(stamps) and stamps[-1] > self._used_ns

    def select(self, stamps):
        """The set made of exactly these messages: {stream: stamp_ns} for every stream.

        For re-running a decision recorded elsewhere (an ActionChunk's source stamps); reason
        missing (naming the stream and stamp) while one of them is not in the buffer.
        """
        if set(stamps) != set(self.streams):
            raise ValueError(f'select() needs a stamp for every stream {list(self.streams)}; '
                             f'got {sorted(stamps)}.')
        payloads = {}
        for name, stamp in stamps.items():
            ring = self._rings[name]
            index = bisect.bisect_left(ring.stamps, int(stamp))
            if index == len(ring.stamps) or ring.stamps[index] != int(stamp):
                return SyncResult(MISSING, f'no {name} message stamped {int(stamp)}')
            payloads[name] = ring.payloads[index]
        reference_ns = int(stamps[self.reference])
        return SyncResult(stamps={name: int(stamp) for name, stamp in stamps.items()},
                          payloads=payloads, reference_stamp_ns=reference_ns,
                          skew_ns=max(abs(int(s) - reference_ns) for s in stamps.values()),
                          age_ns=0)

    def mark_used(self, reference_stamp_ns):
        """Remember that the set with this reference stamp was used (see query)."""
        self._used_ns = max(self._used_ns, int(reference_stamp_ns))

    def newest(self, stream):
        """(stamp_ns, payload) of the newest message of `stream`, or None."""
        ring = self._ring(stream)
        if not ring.stamps:
            return None
        return ring.stamps[-1], ring.payloads[-1]

    def __len__(self):
        return sum(len(ring.stamps) for ring in self._rings.values())

    def clear(self):
        """Forget every message and the last used set."""
        for ring in self._rings.values():
            ring.clear()
        self._used_ns = 0

    def _observe_clock(self, now_ns):
        """A query's time: `now_ns` going back by more than jump_back_ns is a time jump."""
        now_ns = int(now_ns)
        if self._last_now_ns is not None and now_ns < self._last_now_ns - self.jump_back_ns:
            self._forget_after(now_ns + self.jump_back_ns)
        self._last_now_ns = now_ns
        return now_ns

    def _forget_after(self, limit_ns):
        """Drop every entry stamped after limit_ns (the timeline before a jump back)."""
        dropped = 0
        for ring in self._rings.values():
            keep = bisect.bisect_right(ring.stamps, limit_ns)
            dropped += len(ring.stamps) - keep
            del ring.stamps[keep:], ring.payloads[keep:]
        if dropped:
            self.resets += 1
        if self._used_ns > limit_ns:
            self._used_ns = 0

    def _members(self, reference_ns):
        """Closest entry of every stream to reference_ns, or (None, (worst stream, skew))."""
        members = {}
        worst = (None, -1)
        for name in self.streams:
            ring = self._rings[name]
            index = ring.closest(reference_ns)
            skew = abs(ring.stamps[index] - reference_ns)
            if skew > worst[1]:
                worst = (name, skew)
            members[name] = (ring.stamps[index], ring.payloads[index])
        if worst[1] > self.tolerance_ns:
            return None, worst
        return members, worst

    def _unsettled(self, reference_ns, now_ns):
        """Streams whose closest message to reference_ns could still change (see the module)."""
        if now_ns - reference_ns >= self.tolerance_ns:
            return []
        return [name for name in self.streams
                if self._rings[name].stamps[-1] < reference_ns]

    def _ring(self, stream):
        try:
            return self._rings[stream]
        except KeyError:
            raise ValueError(f'unknown stream {stream!r}; streams are '
                             f'{list(self.streams)}.') from None


def observation_from_set(result, cameras, proprio_sources, *, instruction=None, seed=0,
                         text_embedding=None):
    """Assemble the policy's Observation from a synchronized set.

    cameras: camera stream names (payloads are uint8 (H, W, 3)); proprio_sources: proprio
    stream names in proprio order (payloads are (n_i,) vectors, concatenated into (D,)).
    """
    if not result.ok:
        raise ValueError(f'cannot build an observation from a failed query: {result.reason}')
    images = {name: result.payloads[name] for name in cameras}
    parts = [np.asarray(result.payloads[name], dtype=np.float64).reshape(-1)
             for name in proprio_sources]
    proprio = np.concatenate(parts) if parts else np.zeros(0)
    return Observation(images=images, proprio=proprio, instruction=instruction,
                       text_embedding=text_embedding, seed=int(seed))


def current_proprio(buffer, proprio_sources) -> Optional[np.ndarray]:
    """The proprio vector (D,) from the newest message of every source (not synchronized)."""
    parts = []
    for name in proprio_sources:
        entry = buffer.newest(name)
        if entry is None:
            return None
        parts.append(np.asarray(entry[1], dtype=np.float64).reshape(-1))
    return np.concatenate(parts) if parts else np.zeros(0)
