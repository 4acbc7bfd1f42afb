"""The policy node's health: its counters, the log lines they call for, and its HealthSnapshot.

The node hands ``NodeHealth`` every tick decision, finished chunk and inference error; it counts
them (``LoopCounters``), says which of them to log (a rejection at most once per
``REJECT_LOG_PERIOD`` per reason and never for ``deactivated``; an inference error once per
distinct text, up to ``MAX_DISTINCT_ERRORS``), keeps the watchdog's clock (the time of the last
published chunk, or of the activation) and builds the ``HealthSnapshot`` that /diagnostics
(ros/diagnostics.py) and the console lines (console_health.py) are made from. Times are
arguments: integer ns on the ROS clock for ticks and the tick rate, steady seconds for the
watchdog and the log throttle. A core module: numpy and stdlib; thread-safe.
"""
import collections
from dataclasses import dataclass, field
import threading
from typing import Mapping, Optional, Tuple

from cosmos_policy_ros.control_loop import DEACTIVATED, RECEIVED
from cosmos_policy_ros.conversions import NS_PER_S
from cosmos_policy_ros.counters import RateMeter, ReasonCounts, RollingWindow, Throttle

MAX_DISTINCT_ERRORS = 100  # distinct inference errors remembered for log-once
REJECT_LOG_PERIOD = 10.0  # seconds between two warnings about the same rejection reason
TICK_GAP_PERIODS = 5  # the tick rate reads 0 once no tick came for this many periods


@dataclass
class HealthSnapshot:
    """Everything the diagnostics report, copied from the node at one instant."""

    node_name: str
    lifecycle_state: str = 'unconfigured'
    model_id: str = ''
    configure_error: str = ''
    seconds_since_chunk: Optional[float] = None  # steady clock; since activation if none yet
    watchdog_timeout: float = 0.0
    chunks_published: int = 0
    inferences: int = 0
    inference_in_flight: bool = False
    inference_errors: int = 0
    last_error: str = ''
    latency: Mapping[str, float] = field(default_factory=dict)  # RollingWindow.summary()
    warmup_latencies: Tuple[float, ...] = ()
    rejected: Mapping[str, int] = field(default_factory=dict)  # reason -> chunks
    clamped_values: int = 0
    trajectories_elapsed: int = 0  # chunks whose trajectory points were all in the past
    num_denoising_steps: int = 0
    num_candidates: int = 0
    streams: Tuple[str, ...] = ()
    input_counts: Mapping[Tuple[str, str], int] = field(default_factory=dict)
    skew: Mapping[str, float] = field(default_factory=dict)
    age: Mapping[str, float] = field(default_factory=dict)
    sync_resets: int = 0
    tick_rate: float = 0.0
    ticks: int = 0
    skipped: Mapping[str, int] = field(default_factory=dict)  # reason -> ticks
    last_skip_detail: str = ''
    task: str = ''
    last_drops: Mapping[str, str] = field(default_factory=dict)  # stream -> 'reason: detail'

    def stored(self, stream):
        """Messages of `stream` that were kept (received and not dropped)."""
        counts = self.input_counts
        return counts.get((stream, RECEIVED), 0) - sum(
            count for (name, reason), count in counts.items()
            if name == stream and reason != RECEIVED)

    def arriving_but_dropped(self):
        """{stream: its last drop} of the streams whose every received message was dropped."""
        return {stream: self.last_drops.get(stream, 'dropped')
                for stream in self.streams
                if self.input_counts.get((stream, RECEIVED), 0) and not self.stored(stream)}


class LoopCounters:
    """What the node's diagnostics count about its control loop (thread-safe).

    tick(now_ns, decision): a tick and its Job (an inference handed to the worker) or Skip.
    finished(result, trajectory_elapsed): a Finished (published or rejected). job_done(): the
    worker is through with a job (after its finished() or error()). error(key): an inference
    error; returns (first time seen, the distinct-error cap just reached). fields():
    HealthSnapshot keyword arguments, all from one copy taken under one lock, so a reader never
    sees a tick counted with its inference not yet in flight, nor an inference over with its
    chunk not yet counted (the lockstep sim relies on it).
    """

    def __init__(self, max_distinct_errors=100, window=200):
        self.max_distinct_errors = max_distinct_errors
        self._lock = threading.Lock()
        self.skipped = ReasonCounts()  # ('tick', reason)
        self.rejected = ReasonCounts()  # ('chunk', reason)
        self.latency, self.skew, self.age = (RollingWindow(window) for _ in range(3))
        self.tick_meter = RateMeter(50)
        self._seen_errors = set()
        self._counts = collections.Counter()
        self._last_error = ''
        self._last_skip_detail = ''

    def tick(self, now_ns, decision):
        self.tick_meter.add(now_ns)
        reason = getattr(decision, 'reason', None)
        with self._lock:
            self._counts['ticks'] += 1
            if reason is None:
                self._counts['inferences'] += 1
            elif decision.detail:
                self._last_skip_detail = f'{reason}: {decision.detail}'
        if reason is not None:
            self.skipped.add('tick', reason)
        else:
            self.skew.add(decision.skew_ns / NS_PER_S)
            self.age.add(decision.age_ns / NS_PER_S)

    def finished(self, result, elapsed, *, trajectory_elapsed=False):
        self.latency.add(elapsed)
        if not result.ok:
            self.rejected.add('chunk', result.reason)
            return
        with self._lock:
            self._counts['chunks_published'] += 1
            self._counts['clamped_values'] += result.clamped
            self._counts['trajectories_elapsed'] += int(trajectory_elapsed)

    def job_done(self):
        with self._lock:
            self._counts['jobs_done'] += 1

    def error(self, key):
        with self._lock:
            self._counts['inference_errors'] += 1
            self._last_error = key[:500]
            seen = self._seen_errors
            first = key not in seen and len(seen) < self.max_distinct_errors
            if first:
                seen.add(key)
            return first, first and len(seen) == self.max_distinct_errors

    def fields(self, now_ns, max_gap_ns):
        with self._lock:
            counts = dict(self._counts)
            last_error, last_skip = self._last_error, self._last_skip_detail
        return dict(
            chunks_published=counts.get('chunks_published', 0),
            inferences=counts.get('inferences', 0),
            inference_in_flight=counts.get('inferences', 0) > counts.get('jobs_done', 0),
            inference_errors=counts.get('inference_errors', 0), last_error=last_error,
            latency=self.latency.summary(),
            rejected={reason: n for (_, reason), n in self.rejected.snapshot().items()},
            clamped_values=counts.get('clamped_values', 0),
            trajectories_elapsed=counts.get('trajectories_elapsed', 0),
            skew=self.skew.summary(), age=self.age.summary(),
            tick_rate=self.tick_meter.rate(now_ns, max_gap_ns=max_gap_ns),
            ticks=counts.get('ticks', 0),
            skipped={reason: n for (_, reason), n in self.skipped.snapshot().items()},
            last_skip_detail=last_skip)


class NodeHealth:
    """The node's health from one configure to the next (module docstring).

    warmup_latencies: those of the configure that made it (reported as they are).
    """

    def __init__(self, warmup_latencies=(), *, max_distinct_errors=MAX_DISTINCT_ERRORS,
                 reject_log_period=REJECT_LOG_PERIOD):
        self.counters = LoopCounters(max_distinct_errors)
        self.warmup_latencies = tuple(warmup_latencies)
        self._reject_log = Throttle(reject_log_period)
        self._last_chunk = None  # steady time of the last published chunk, or of activation

    def activated(self, now):
        """The loop started at steady time `now`: the watchdog counts from here."""
        self._last_chunk = now

    def tick(self, now_ns, decision):
        """A control tick at `now_ns` and its decision (a Job or a Skip)."""
        self.counters.tick(now_ns, decision)

    def finished(self, finished, elapsed, now, *, trajectory_elapsed=False):
        """A Finished at steady time `now`; returns the warning to log about it, or None.

        elapsed: the inference's seconds. trajectory_elapsed: every point of its trajectory
        was already past (nothing published on joint_trajectory).
        """
        self.counters.finished(finished, elapsed, trajectory_elapsed=trajectory_elapsed)
        if finished.ok:
            self._last_chunk = now
            return None
        if finished.reason == DEACTIVATED or not self._reject_log.ready(finished.reason, now):
            return None  # a lifecycle transition discards chunks by design
        return (f'chunk not published: {finished.reason}: {finished.detail} (counted in '
                f'/diagnostics; throttled to one warning per {self._reject_log.period:g} s)')

    def job_done(self):
        """The inference worker is through with the job of a tick (ok, rejected or failed)."""
        self.counters.job_done()

    def error(self, error):
        """An inference raised `error`; returns the error lines to log (maybe none)."""
        key = f'{type(error).__name__}: {error}'
        first, cap_reached = self.counters.error(key)
        lines = []
        if first:
            lines.append(f'inference failed (logged once per distinct error, counted in '
                         f'/diagnostics): {key}')
        if cap_reached:
            lines.append(f'{self.counters.max_distinct_errors} distinct inference errors: '
                         f'further new ones are only counted in /diagnostics')
        return lines

    def snapshot(self, now_ns, now, *, node_name, lifecycle_state, configure_error='',
                 loop=None):
        """The HealthSnapshot at ROS time `now_ns` and steady time `now`.

        loop: the ControlLoop (None when not configured). The inference counts and whether one
        is in flight come from the counters (tick, job_done), not from the worker: one
        consistent copy with the tick and chunk counts.
        """
        config = loop.config if loop is not None else None
        since = None
        if lifecycle_state == 'active' and self._last_chunk is not None:
            since = now - self._last_chunk
        period_ns = round(NS_PER_S / config.rate) if config else NS_PER_S
        return HealthSnapshot(
            node_name=node_name, lifecycle_state=lifecycle_state,
            model_id=loop.model_id if loop else '', configure_error=configure_error,
            seconds_since_chunk=since,
            watchdog_timeout=config.watchdog_timeout if config else 0.0,
            warmup_latencies=self.warmup_latencies,
            num_denoising_steps=config.num_denoising_steps if config else 0,
            num_candidates=config.num_candidates if config else 0,
            streams=config.stream_names if config else (),
            input_counts=loop.input_counts.snapshot() if loop else {},
            sync_resets=loop.buffer.resets if loop else 0, task=loop.task if loop else '',
            last_drops=dict(loop.last_drops) if loop else {},
            **self.counters.fields(now_ns, max_gap_ns=TICK_GAP_PERIODS * period_ns))
