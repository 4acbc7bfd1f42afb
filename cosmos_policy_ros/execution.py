"""The execution model: which actions of a chunk are committed and how the next one takes over.

Time is integer nanoseconds on one clock (the ROS clock in the node, bag time offline, a fake
clock in tests); nothing here reads a clock. A chunk stamped ``t0`` with step period ``p`` has
its action k due at ``t0 + k p`` and runs from then until the next action is due
(docs/stitching.md has the picture and the formulas).

* An inference started at ``start`` with the expected latency ``L`` is ready at
  ``ready = start + L``. The actions of the executing chunk that are due before ``ready``
  (``t0 + k p < ready``) have been executed or started by then: they are *committed*, count
  ``c = clip(ceil((ready - t0) / p), 0, K)``. An action due exactly at ``ready`` is not.
* The new chunk, stamped with its observation ``t1``, *takes over* at its first step not yet
  elapsed at ``ready``: index ``j0 = clip(ceil((ready - t1) / p), 0, K1)``, due at
  ``t1 + j0 p >= ready``. This is the node's time-aligned trajectory
  (``conversions.future_point_indices``).
* Its steps ``j < j0`` fall in the time the old chunk still controls: they are the *known
  prefix* a stitching method may condition on, the old chunk read at ``t1 + j p`` (linear
  interpolation between its steps when the two grids are not aligned; exact when they are).
  The prefix stops where the old chunk has no action (before ``t0`` or after its last step).

Stitching methods (``STITCHING_METHODS``) decide what is executed from the switch on:
``none`` (the new chunk as it is), ``blend`` (a linear cross-fade over ``overlap`` steps,
`blend_weights`), ``inpaint`` (the new chunk was sampled conditioned on the known prefix: the
engine's ``known_actions``; executed like ``none``), ``inpaint+blend``, and ``ramp`` (the first
n steps after the switch on the straight line from the last committed command to the new
chunk's step ``j0 + n``, `ramp_rows`; the window n = min(overlap, max(1, j0)) grows with the
steps that elapsed during the latency). `rewritten_steps` says how many steps from the switch
on a method replaces.

numpy and stdlib only.
"""
from collections import deque
from dataclasses import dataclass
import math
import numbers

import numpy as np

STITCHING_METHODS = ('none', 'blend', 'inpaint', 'inpaint+blend', 'ramp')
BLEND_METHODS = ('blend', 'inpaint+blend')  # cross-fade the rows after the switch


@dataclass(frozen=True)
class ChunkTiming:
    """When the actions of one chunk are due: action k at ``stamp_ns + k * period_ns``.

    count: how many of its actions are meant to be executed (the node's execute_steps).
    """

    stamp_ns: int
    period_ns: int
    count: int

    def __post_init__(self):
        _check_int('stamp_ns', self.stamp_ns)
        _check_int('period_ns', self.period_ns, minimum=1)
        _check_int('count', self.count, minimum=1)

    def due_ns(self, index):
        """Due time of action `index` (any integer; the grid extends both ways)."""
        return self.stamp_ns + index * self.period_ns

    def first_pending(self, now_ns):
        """First index not yet elapsed at `now_ns`: clip(ceil((now - stamp) / p), 0, count)."""
        _check_int('now_ns', now_ns, signed=True)
        return min(max(_ceil_div(now_ns - self.stamp_ns, self.period_ns), 0), self.count)

    def committed(self, ready_ns):
        """Actions due strictly before `ready_ns`: executed or started by then (a count)."""
        return self.first_pending(ready_ns)


@dataclass(frozen=True)
class Takeover:
    """How a new chunk takes over from the executing one.

    ready_ns: when the new chunk is expected to be ready (start + latency).
    committed: actions of the executing chunk committed by then (indices < committed).
    start_index: first index of the new chunk that is executed (j0); equals the new chunk's
        count when it is entirely elapsed on arrival.
    switch_ns: due time of the new chunk's start_index (>= ready_ns).
    known_count: steps j < known_count of the new chunk that the executing chunk covers (the
        known prefix; <= start_index).
    """

    ready_ns: int
    committed: int
    start_index: int
    switch_ns: int
    known_count: int


def plan_takeover(executing, new, start_ns, latency_ns):
    """The Takeover of chunk `new` (a ChunkTiming) over `executing` (ChunkTiming or None).

    start_ns: when the new inference starts; latency_ns: its expected latency (>= 0), e.g.
    `LatencyEstimator.estimate_ns()` plus any injected delay. The two chunks must share the
    step period. Without an executing chunk nothing is committed or known.
    """
    if not isinstance(new, ChunkTiming):
        raise TypeError(f'`new` must be a ChunkTiming, got {type(new).__name__}.')
    _check_int('start_ns', start_ns, signed=True)
    _check_int('latency_ns', latency_ns)
    ready = start_ns + latency_ns
    start_index = new.first_pending(ready)
    switch = new.due_ns(start_index)
    if executing is None:
        return Takeover(ready, 0, start_index, switch, 0)
    if not isinstance(executing, ChunkTiming):
        raise TypeError(f'`executing` must be a ChunkTiming or None, got '
                        f'{type(executing).__name__}.')
    if executing.period_ns != new.period_ns:
        raise ValueError(f'the chunks must share the step period; got {executing.period_ns} ns '
                         f'and {new.period_ns} ns.')
    known = 0
    last_ns = executing.due_ns(executing.count - 1)
    while (known < start_index and executing.stamp_ns <= new.due_ns(known) <= last_ns):
        known += 1
    return Takeover(ready, executing.committed(ready), start_index, switch, known)


def actions_at(actions, timing, times_ns):
    """The executing chunk's commanded action at each time (linear between its steps).

    actions: (K, d) chunk (at least timing.count rows; only those are used); times_ns: (M,)
    integer times. Before its first step the first action, after its last executed step the
    last one (the robot holds it). Returns (M, d) float64.
    """
    actions = _chunk(actions, 'actions')
    if actions.shape[0] < timing.count:
        raise ValueError(f'the chunk has {actions.shape[0]} actions but {timing.count} are '
                         f'executed.')
    times = np.asarray(times_ns, dtype=np.int64).reshape(-1)
    position = (times - timing.stamp_ns) / timing.period_ns  # fractional step index
    position = np.clip(position, 0, timing.count - 1)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, timing.count - 1)
    frac = (position - low)[:, None]
    return (1 - frac) * actions[low] + frac * actions[high]


def known_prefix(actions, executing, new, takeover):
    """(known_count, d) float64: the executing chunk's actions at the new chunk's steps j <
    takeover.known_count (what the robot will have been commanded there)."""
    times = [new.due_ns(j) for j in range(takeover.known_count)]
    return actions_at(actions, executing, times)


def blend_weights(overlap):
    """(w_old, w_new): (overlap,) float64 each, for the steps i = 0..overlap-1 from the switch.

    w_new[i] = (i + 1) / (overlap + 1), w_old = 1 - w_new: the samples of the continuous
    ramp w(s) = clip(s / (overlap + 1), 0, 1) at s = i + 1, where s counts steps from the last
    old-only step (w = 0 there, w = 1 at s = overlap + 1, the first new-only step).
    """
    _check_int('overlap', overlap)
    new = (np.arange(overlap, dtype=np.float64) + 1) / (overlap + 1)
    return 1.0 - new, new


def blend_ramp(s, overlap):
    """The continuous blending weight of the new chunk at (real) step offset s (see above)."""
    _check_int('overlap', overlap)
    return np.clip(np.asarray(s, dtype=np.float64) / (overlap + 1), 0.0, 1.0)


def ramp_rows(last, target, steps):
    """(steps, d) float64: the points i = 1 .. steps of the straight line from `last` to
    `target` in steps + 1 equal steps, ``last + i / (steps + 1) (target - last)``."""
    _check_int('steps', steps)
    last, target = np.asarray(last, np.float64), np.asarray(target, np.float64)
    fractions = (np.arange(steps, dtype=np.float64) + 1) / (steps + 1)
    return last + fractions[:, None] * (target - last)


def rewritten_steps(method, overlap, executing, takeover, new):
    """How many steps from the switch on `stitch` replaces (the ActionChunk's blended_steps):
    min(overlap, K - j0) for the blend methods; for ramp the latency-aware window
    min(overlap, max(1, j0), K - 1 - j0) (as many steps as elapsed before the takeover, at
    least one, at most `overlap`; the step it ramps to is the new chunk's own); 0 for the
    others, without an executing chunk, or when that chunk committed nothing before the
    switch."""
    _check_int('overlap', overlap)
    left = new.count - takeover.start_index
    if executing is None or left <= 0:
        return 0
    if method in BLEND_METHODS:
        return min(overlap, left)
    if method == 'ramp' and executing.committed(takeover.switch_ns) > 0:
        return min(overlap, max(1, takeover.start_index), left - 1)
    return 0


def stitch(method, old_actions, executing, new_actions, new, takeover, *, overlap=0):
    """The actions executed from the switch on: (count - start_index, d) float64.

    method: one of STITCHING_METHODS. old_actions: the executing chunk (K, d) with its
    ChunkTiming `executing` (or None: nothing to stitch to, the new chunk as it is);
    new_actions: the new chunk (with `inpaint`, the chunk sampled with the known prefix) with
    its ChunkTiming `new`; takeover: `plan_takeover(executing, new, ...)`. overlap: the steps
    of the cross-fade or of the ramp.

    * none / inpaint: ``new[j]`` for j >= j0;
    * blend / inpaint+blend: ``w_old[i] old(t1 + (j0 + i) p) + w_new[i] new[j0 + i]`` for
      the first `overlap` steps (old held at its last action past its end), then ``new[j]``;
    * ramp: with n = `rewritten_steps` (min(overlap, max(1, j0), K - 1 - j0)) and ``last =
      old[c - 1]`` the last command committed at the switch (c = old.committed(switch)),
      steps j0 .. j0 + n - 1 on the straight line from ``last`` to ``new[j0 + n]``
      (`ramp_rows`), then ``new[j]``.
    """
    if method not in STITCHING_METHODS:
        raise ValueError(f'unknown stitching method {method!r}; choose one of '
                         f'{list(STITCHING_METHODS)}.')
    _check_int('overlap', overlap)
    new_actions = _chunk(new_actions, 'new_actions')
    if new_actions.shape[0] < new.count:
        raise ValueError(f'the new chunk has {new_actions.shape[0]} actions but {new.count} are '
                         f'executed.')
    executed = new_actions[takeover.start_index:new.count].copy()
    steps = rewritten_steps(method, overlap, executing, takeover, new)
    if steps == 0:
        return executed
    if method == 'ramp':
        old_actions = _chunk(old_actions, 'old_actions')
        last = old_actions[executing.committed(takeover.switch_ns) - 1]
        executed[:steps] = ramp_rows(last, executed[steps], steps)
        return executed
    w_old, w_new = blend_weights(overlap)
    times = [new.due_ns(takeover.start_index + i) for i in range(steps)]
    old = actions_at(old_actions, executing, times)
    executed[:steps] = w_old[:steps, None] * old + w_new[:steps, None] * executed[:steps]
    return executed


class LatencyEstimator:
    """Running percentile of the last `window` measured inference latencies (in seconds).

    estimate_ns() is the expected latency an execution plan uses: `initial` seconds before
    any measurement, then the `percentile` q (0..100) of the window by numpy's 'higher'
    method: one of the measured values, never below it, the sorted window's element
    ceil(q / 100 * (n - 1)). Computed here without numpy: the node asks for it at every
    inference start, and np.percentile costs ~0.1 ms there (a cold call between two
    observations).
    """

    def __init__(self, *, window=20, percentile=90.0, initial=0.0):
        _check_int('window', window, minimum=1)
        if not _real(percentile) or not 0 <= percentile <= 100:
            raise ValueError(f'`percentile` must be a number in [0, 100]. Got {percentile!r}.')
        if not _real(initial) or not math.isfinite(initial) or initial < 0:
            raise ValueError(f'`initial` must be a finite number >= 0. Got {initial!r}.')
        self.percentile = float(percentile)
        self.initial = float(initial)
        self._fraction = self.percentile / 100
        self._samples = deque(maxlen=window)

    def add(self, seconds):
        if not (type(seconds) is float or _real(seconds)) or not 0 <= seconds < math.inf:
            raise ValueError(f'a latency must be a finite number of seconds >= 0. Got '
                             f'{seconds!r}.')
        self._samples.append(float(seconds))

    def __len__(self):
        return len(self._samples)

    def estimate(self):
        """Expected latency in seconds."""
        samples = self._samples
        if not samples:
            return self.initial
        return sorted(samples)[math.ceil(self._fraction * (len(samples) - 1))]

    def estimate_ns(self):
        return round(self.estimate() * 1e9)


# --- what a controller executes from published chunks ------------------------------------------
def executed_sequence(stamps_ns, chunks, period_ns, takeover_steps):
    """The commands a time-aligned controller executes from a sequence of published chunks.

    stamps_ns: (M,) increasing chunk stamps t_i; chunks: (M, K, d) the published actions;
    period_ns: the step period p; takeover_steps: (M,) each chunk's takeover index j_i (the
    ActionChunk's takeover_step). Chunk i takes over at its switch s_i = t_i + j_i p and is in
    charge until the next switch; on the grid t_n = s_0 + n p (n = 0 .. N-1, up to the last
    chunk's end t_{M-1} + (K - 1) p) the command is row clip(floor((t_n - t_i) / p), 0, K - 1)
    of the chunk in charge (the sim controller's rule: the latest row due, the last row held).
    A switch earlier than the previous chunk's is moved to it, and at equal switches the newer
    chunk is in charge (the older one never is). A chunk with j_i >= K is entirely elapsed when
    it is ready and never in charge (the controller refuses it as stale).

    Returns (executed (N, d) float64, chunk_ids (N,) int: the index i in charge, switch_rows
    (S,) int: rows n >= 1 where the chunk in charge changes), the inputs of `boundary_jumps` and
    `jerk`.
    """
    stamps = np.asarray(stamps_ns, dtype=np.int64).reshape(-1)
    chunks = np.asarray(chunks, dtype=np.float64)
    takeover = np.asarray(takeover_steps, dtype=np.int64).reshape(-1)
    _check_int('period_ns', period_ns, minimum=1)
    if chunks.ndim != 3 or len(chunks) != len(stamps) or len(takeover) != len(stamps) \
            or len(stamps) == 0:
        raise ValueError(f'need M >= 1 stamps, (M, K, d) chunks and M takeover steps; got '
                         f'{stamps.shape}, {chunks.shape}, {takeover.shape}.')
    if np.any(np.diff(stamps) <= 0):
        raise ValueError('chunk stamps must increase.')
    horizon = chunks.shape[1]
    index = np.flatnonzero(takeover < horizon)  # the chunks that ever take charge
    if len(index) == 0:
        raise ValueError('every chunk is entirely elapsed at its takeover.')
    stamps, chunks = stamps[index], chunks[index]
    switches = np.maximum.accumulate(stamps + np.maximum(takeover[index], 0) * period_ns)
    end = stamps[-1] + (horizon - 1) * period_ns
    times = switches[0] + period_ns * np.arange((end - switches[0]) // period_ns + 1)
    # The chunk in charge at t: the last i with s_i <= t (ties: the newer chunk).
    in_charge = np.searchsorted(switches, times, side='right') - 1
    rows = np.clip((times - stamps[in_charge]) // period_ns, 0, horizon - 1)
    executed = chunks[in_charge, rows]
    switch_rows = np.flatnonzero(np.diff(in_charge) != 0) + 1
    return executed, index[in_charge], switch_rows


# --- smoothness metrics ------------------------------------------------------------------------
def boundary_jumps(executed, switch_indices, chunk_ids):
    """Action jumps at chunk switches relative to the median within-chunk step.

    executed: (N, d) executed actions on the step grid; chunk_ids: (N,) which chunk each
    row came from; switch_indices: rows n where a new chunk starts (n - 1 is the old one).
    Returns (jumps (S,), median_step): jumps[s] = |a[n] - a[n-1]| / median over rows m with
    chunk_ids[m] == chunk_ids[m-1] of |a[m] - a[m-1]| (Euclidean norms).
    """
    executed = _chunk(executed, 'executed')
    ids = np.asarray(chunk_ids).reshape(-1)
    if ids.shape[0] != executed.shape[0]:
        raise ValueError(f'chunk_ids has {ids.shape[0]} entries for {executed.shape[0]} rows.')
    steps = np.linalg.norm(np.diff(executed, axis=0), axis=1)  # steps[m-1] = |a[m] - a[m-1]|
    within = steps[ids[1:] == ids[:-1]]
    if within.size == 0:
        raise ValueError('no within-chunk steps to normalize the jumps with.')
    median = float(np.median(within))
    switches = np.asarray(switch_indices, dtype=np.int64).reshape(-1)
    if np.any(switches < 1) or np.any(switches >= executed.shape[0]):
        raise ValueError('switch indices must be in [1, N).')
    jumps = steps[switches - 1] / median if median > 0 else np.full(len(switches), math.inf)
    return jumps, median


def jerk(executed, period_s):
    """Per-row Euclidean norm of the third finite difference / period^3: (N - 3,) float64."""
    executed = _chunk(executed, 'executed')
    if not _real(period_s) or not period_s > 0:
        raise ValueError(f'`period_s` must be > 0. Got {period_s!r}.')
    return np.linalg.norm(np.diff(executed, n=3, axis=0), axis=1) / period_s ** 3


# --- helpers -----------------------------------------------------------------------------------
def _ceil_div(a, b):
    return -(-a // b)


def _check_int(name, value, *, minimum=0, signed=False):
    if type(value) is not int and (  # the common case without the ABC's isinstance
            isinstance(value, bool) or not isinstance(value, numbers.Integral)):
        raise ValueError(f'`{name}` must be an integer. Got {value!r}.')
    if not signed and value < minimum:
        raise ValueError(f'`{name}` must be >= {minimum}. Got {value!r}.')


def _real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _chunk(actions, name):
    array = np.asarray(actions, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f'`{name}` must be a (K, d) array, got shape {array.shape}.')
    if not np.isfinite(array).all():
        raise ValueError(f'`{name}` has non-finite values.')
    return array
