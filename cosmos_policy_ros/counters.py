"""Counters and timing statistics (thread-safe, time as an argument).

- ``RollingWindow``: the last N samples (latency, skew, age) with nearest-rank percentiles.
- ``RateMeter``: events per second over the last N event times.
- ``ReasonCounts``: counts by (scope, reason), e.g. drops per stream and reason.
- ``Throttle``: one log line per period and key.

The node's own counters and health are in health.py.
"""
import collections
import math
import threading

from cosmos_policy_ros.conversions import NS_PER_S


def nearest_rank(sorted_values, percent):
    """Nearest-rank percentile: the ceil(percent / 100 * n)-th smallest value (1-based).

    percent in (0, 100]; sorted_values ascending and non-empty. p50 of [1, 2, 3, 4] is 2,
    p95 of 1..20 is 19, p100 is the maximum.
    """
    if not sorted_values:
        raise ValueError('nearest_rank needs at least one value.')
    if not 0 < percent <= 100:
        raise ValueError(f'`percent` must be in (0, 100]. Got {percent!r}.')
    rank = max(1, math.ceil(percent / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


class RollingWindow:
    """The last `size` samples of a quantity, with count, percentiles, max and mean."""

    def __init__(self, size=200):
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f'`size` must be a positive integer. Got {size!r}.')
        self._samples = collections.deque(maxlen=size)
        self._lock = threading.Lock()
        self.total = 0  # samples ever added (the window keeps the last `size`)

    def add(self, value):
        with self._lock:
            self._samples.append(float(value))
            self.total += 1

    def summary(self, percents=(50, 95)):
        """{'count', 'max', 'mean', 'last', 'p50', 'p95', ...} over the window; {} when empty."""
        with self._lock:
            samples = list(self._samples)
        if not samples:
            return {}
        ordered = sorted(samples)
        result = {'count': len(samples), 'max': ordered[-1], 'mean': sum(samples) / len(samples),
                  'last': samples[-1]}
        for percent in percents:
            result[f'p{percent:g}'] = nearest_rank(ordered, percent)
        return result

    def clear(self):
        with self._lock:
            self._samples.clear()


class RateMeter:
    """Event rate from the last `size` event times (integer ns, any clock)."""

    def __init__(self, size=50):
        if isinstance(size, bool) or not isinstance(size, int) or size < 2:
            raise ValueError(f'`size` must be an integer >= 2. Got {size!r}.')
        self._times = collections.deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, time_ns):
        with self._lock:
            if self._times and time_ns < self._times[-1]:
                self._times.clear()  # the clock jumped back (bag loop): start over
            self._times.append(int(time_ns))

    def rate(self, now_ns=None, *, max_gap_ns=None):
        """(n - 1) / (t_last - t_first) in Hz over the kept events; 0.0 with fewer than two.

        With now_ns and max_gap_ns, 0.0 also when the last event is older than max_gap_ns.
        """
        with self._lock:
            times = list(self._times)
        if len(times) < 2 or times[-1] == times[0]:
            return 0.0
        if now_ns is not None and max_gap_ns is not None and now_ns - times[-1] > max_gap_ns:
            return 0.0
        return (len(times) - 1) * NS_PER_S / (times[-1] - times[0])

    def clear(self):
        with self._lock:
            self._times.clear()


class ReasonCounts:
    """Counts by (scope, reason); scope is e.g. a stream name, reason a short key."""

    def __init__(self):
        self._counts = collections.Counter()
        self._lock = threading.Lock()

    def add(self, scope, reason, count=1):
        with self._lock:
            self._counts[(scope, reason)] += count

    def get(self, scope, reason):
        with self._lock:
            return self._counts[(scope, reason)]

    def total(self, scope=None):
        """Sum over every reason of `scope` (or of everything)."""
        with self._lock:
            return sum(count for (key, _), count in self._counts.items()
                       if scope is None or key == scope)

    def snapshot(self):
        """{(scope, reason): count}, sorted by key."""
        with self._lock:
            return dict(sorted(self._counts.items()))


class Throttle:
    """At most one `ready(key, now)` True per `period` seconds and key (for log lines)."""

    def __init__(self, period):
        self.period = float(period)
        self._last = {}
        self._lock = threading.Lock()

    def ready(self, key, now):
        with self._lock:
            if now - self._last.get(key, -math.inf) < self.period:
                return False
            self._last[key] = now
            return True
