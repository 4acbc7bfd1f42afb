"""Offline evaluation metrics: predicted action chunks against the recorded action stream.

Pure functions over numpy arrays (no ROS, no bag access). Times are integer nanoseconds.

Matching. A chunk computed from the observation stamped ``t`` has actions a_0 .. a_{K-1};
action k is the one the policy wants executed at ``t + k * step_period`` (k = 0 is the action
for the observation's own time step). Only the executed part, the first ``executed`` actions of
each chunk, is compared. Each target time is paired with the recorded action stream:

* ``nearest``: the recorded action with the nearest stamp (ties go to the earlier one);
* ``linear``: the recorded actions linearly interpolated at the target time, per dimension
  (clamped to the first/last recorded value at the ends).

Either way a target only counts when a recorded stamp lies within ``tolerance_s`` of it
(default: half the median recorded period), so targets in gaps of the recording or beyond its
ends are reported as unmatched instead of being compared with a stale action.
"""
import csv
from dataclasses import dataclass
import json
import math
from pathlib import Path

import numpy as np

METHODS = ('nearest', 'linear')


@dataclass(frozen=True)
class ActionMatch:
    """P predicted actions (the executed parts of M chunks) paired with recorded actions."""

    tick: np.ndarray         # (P,) int: index of the chunk
    step: np.ndarray         # (P,) int: index k of the action in its chunk
    target_ns: np.ndarray    # (P,) int64: chunk stamp + k * step_period
    predicted: np.ndarray    # (P, d) float64
    recorded: np.ndarray     # (P, d) float64, NaN where unmatched
    matched: np.ndarray      # (P,) bool
    num_ticks: int           # M
    method: str
    tolerance_s: float

    @property
    def error(self):
        """(P, d) predicted - recorded (NaN where unmatched)."""
        return self.predicted - self.recorded


def _as_stamps(name, stamps):
    stamps = np.asarray(stamps)
    if stamps.ndim != 1:
        raise ValueError(f'`{name}` must be a 1-D array of integer nanoseconds. '
                         f'Got shape {stamps.shape}.')
    if stamps.size and not np.issubdtype(stamps.dtype, np.integer):
        raise ValueError(f'`{name}` must hold integer nanoseconds. Got dtype {stamps.dtype}.')
    return stamps.astype(np.int64)


def _per_chunk(name, value, count, dtype):
    array = np.asarray(value, dtype=dtype)
    if array.ndim == 0:
        return np.full(count, array, dtype=dtype)
    if array.shape != (count,):
        raise ValueError(f'`{name}` must be a scalar or have one entry per chunk ({count},). '
                         f'Got shape {array.shape}.')
    return array


def match_actions(chunk_stamps_ns, chunks, step_period, recorded_stamps_ns, recorded, *,
                  executed=None, method='nearest', tolerance_s=None):
    """Pair the executed part of every chunk with the recorded actions.

    chunk_stamps_ns: (M,) observation stamps. chunks: (M, K, d) predicted actions.
    step_period: seconds between actions of a chunk, scalar or (M,).
    recorded_stamps_ns: (N,) stamps of the recorded actions. recorded: (N, d).
    executed: actions of each chunk that were executed: None (all K), int, or (M,) ints.
    method: 'nearest' or 'linear' (see the module docstring). tolerance_s: maximal distance
    from a target time to the nearest recorded stamp (default half the median period).
    Returns an ActionMatch.
    """
    if method not in METHODS:
        raise ValueError(f'`method` must be one of {METHODS}. Got {method!r}.')
    chunk_stamps_ns = _as_stamps('chunk_stamps_ns', chunk_stamps_ns)
    recorded_stamps_ns = _as_stamps('recorded_stamps_ns', recorded_stamps_ns)
    chunks = np.asarray(chunks, dtype=np.float64)
    recorded = np.asarray(recorded, dtype=np.float64)
    if chunks.ndim != 3 or chunks.shape[0] != chunk_stamps_ns.size:
        raise ValueError(f'`chunks` must have shape (M, K, d) with M = {chunk_stamps_ns.size} '
                         f'chunk stamps. Got {chunks.shape}.')
    count, horizon, dim = chunks.shape
    if recorded.ndim != 2 or recorded.shape[0] != recorded_stamps_ns.size:
        raise ValueError(f'`recorded` must have shape (N, d) with N = '
                         f'{recorded_stamps_ns.size} recorded stamps. Got {recorded.shape}.')
    if recorded.shape[1] != dim:
        raise ValueError(f'predicted actions have {dim} dimensions but recorded actions have '
                         f'{recorded.shape[1]}.')
    if recorded_stamps_ns.size == 0:
        raise ValueError('`recorded` is empty: there is nothing to compare with.')
    periods = _per_chunk('step_period', step_period, count, np.float64)
    if not np.all(np.isfinite(periods) & (periods > 0)):
        raise ValueError(f'`step_period` must be positive seconds. Got {periods[:5]}...')
    steps = _per_chunk('executed', horizon if executed is None else executed, count, np.int64)
    if np.any((steps < 0) | (steps > horizon)):
        raise ValueError(f'`executed` must be in [0, K = {horizon}]. Got {steps}.')

    order = np.argsort(recorded_stamps_ns, kind='stable')
    times, values = recorded_stamps_ns[order], recorded[order]
    if tolerance_s is None:
        gaps = np.diff(times)
        tolerance_s = 0.5 * float(np.median(gaps)) / 1e9 if gaps.size else 0.0
    if not tolerance_s >= 0:
        raise ValueError(f'`tolerance_s` must be >= 0. Got {tolerance_s}.')

    # Flatten the executed part of every chunk: P = sum(steps) target times.
    tick = np.repeat(np.arange(count), steps)
    step = np.concatenate([np.arange(n) for n in steps]) if count else np.zeros(0, np.int64)
    offsets_ns = np.round(step * periods[tick] * 1e9).astype(np.int64)
    target_ns = chunk_stamps_ns[tick] + offsets_ns
    predicted = chunks[tick, step]  # (P, d)

    # Nearest recorded stamp of every target (ties to the earlier sample).
    origin = times[0]
    time_rel = (times - origin).astype(np.float64)
    target_rel = (target_ns - origin).astype(np.float64)
    right = np.clip(np.searchsorted(time_rel, target_rel, side='left'), 0, times.size - 1)
    left = np.clip(right - 1, 0, times.size - 1)
    use_left = np.abs(target_rel - time_rel[left]) <= np.abs(time_rel[right] - target_rel)
    nearest = np.where(use_left, left, right)
    distance_s = np.abs(target_rel - time_rel[nearest]) / 1e9
    matched = distance_s <= tolerance_s + 1e-12

    if method == 'nearest':
        paired = values[nearest]
    else:
        paired = np.stack([np.interp(target_rel, time_rel, values[:, j])
                           for j in range(dim)], axis=1) if dim else values[nearest]
    paired = np.where(matched[:, None], paired, np.nan)
    return ActionMatch(tick=tick, step=step, target_ns=target_ns, predicted=predicted,
                       recorded=paired, matched=matched, num_ticks=count, method=method,
                       tolerance_s=float(tolerance_s))


@dataclass(frozen=True)
class ActionErrors:
    """Per-dimension errors over the matched pairs."""

    mae: np.ndarray    # (d,) mean absolute error
    rmse: np.ndarray   # (d,) root mean squared error
    count: int         # matched pairs used

    @property
    def mean_mae(self):
        return float(np.mean(self.mae)) if self.mae.size else math.nan

    @property
    def mean_rmse(self):
        return float(np.mean(self.rmse)) if self.rmse.size else math.nan


def action_errors(match):
    """Per-dimension MAE and RMSE of predicted - recorded over the matched pairs."""
    error = match.error[match.matched]  # (P', d)
    if error.shape[0] == 0:
        nan = np.full(match.predicted.shape[1], np.nan)
        return ActionErrors(mae=nan, rmse=nan.copy(), count=0)
    return ActionErrors(mae=np.mean(np.abs(error), axis=0),
                        rmse=np.sqrt(np.mean(error * error, axis=0)), count=error.shape[0])


def tick_errors(match):
    """Per chunk: (M,) MAE and (M,) RMSE over its matched actions and all dims, (M,) count.

    A chunk without matched actions gets NaN errors and count 0.
    """
    count = np.bincount(match.tick[match.matched], minlength=match.num_ticks)
    absolute = np.abs(match.error)  # (P, d)
    abs_sum = np.bincount(match.tick, weights=np.nansum(absolute, axis=1),
                          minlength=match.num_ticks)
    sq_sum = np.bincount(match.tick, weights=np.nansum(absolute * absolute, axis=1),
                         minlength=match.num_ticks)
    dim = match.predicted.shape[1]
    with np.errstate(invalid='ignore', divide='ignore'):
        values = np.maximum(count * dim, 1)
        mae = np.where(count > 0, abs_sum / values, np.nan)
        rmse = np.where(count > 0, np.sqrt(sq_sum / values), np.nan)
    return mae, rmse, count


def value_statistics(values):
    """Summary of a value series (NaN entries, e.g. from models without a value, ignored)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return {'count': 0, 'mean': None, 'min': None, 'max': None, 'first': None,
                'last': None}
    return {'count': int(finite.size), 'mean': float(np.mean(finite)),
            'min': float(np.min(finite)), 'max': float(np.max(finite)),
            'first': float(finite[0]), 'last': float(finite[-1])}


def latency_statistics(latencies_s):
    """mean, p50, p95 (linear-interpolated percentiles) and max of finite latencies in s."""
    latencies = np.asarray(latencies_s, dtype=np.float64).reshape(-1)
    finite = latencies[np.isfinite(latencies)]
    if finite.size == 0:
        return {'count': 0, 'mean': None, 'p50': None, 'p95': None, 'max': None}
    return {'count': int(finite.size), 'mean': float(np.mean(finite)),
            'p50': float(np.percentile(finite, 50)), 'p95': float(np.percentile(finite, 95)),
            'max': float(np.max(finite))}


def relative_seconds(stamps_ns, origin_ns):
    """(N,) integer ns -> float seconds since origin_ns (exact integer difference first)."""
    return (np.asarray(stamps_ns, dtype=np.int64) - np.int64(origin_ns)) / 1e9


def summarize(match, *, action_names=None, values=None, latencies_s=None):
    """The metrics summary as a JSON-ready dict.

    action_names: d names (default 'a0', 'a1', ...). values: (M,) value per chunk.
    latencies_s: latency per chunk in seconds (e.g. ActionChunk.inference_time).
    """
    errors = action_errors(match)
    dim = match.predicted.shape[1]
    names = list(action_names) if action_names is not None else [f'a{j}' for j in range(dim)]
    if len(names) != dim:
        raise ValueError(f'`action_names` has {len(names)} names for {dim} action dimensions.')
    summary = {
        'ticks': int(match.num_ticks),
        'compared_actions': int(errors.count),
        'unmatched_actions': int(np.count_nonzero(~match.matched)),
        'match': {'method': match.method, 'tolerance_s': match.tolerance_s},
        'mae_mean': _number(errors.mean_mae),
        'rmse_mean': _number(errors.mean_rmse),
        'per_dimension': {name: {'mae': _number(mae), 'rmse': _number(rmse)}
                          for name, mae, rmse in zip(names, errors.mae, errors.rmse)},
    }
    if values is not None:
        summary['value'] = value_statistics(values)
    if latencies_s is not None:
        summary['latency_s'] = latency_statistics(latencies_s)
    return summary


def tick_table(chunk_stamps_ns, match, *, values=None, latencies_s=None, origin_ns=None):
    """Per-chunk results as columns (name -> (M,) array) for ``write_csv``.

    Columns: tick, stamp_ns, time_s (since origin_ns, default the first stamp), value,
    latency_s, mae, rmse, compared (matched actions of the chunk).
    """
    stamps = _as_stamps('chunk_stamps_ns', chunk_stamps_ns)
    if stamps.size != match.num_ticks:
        raise ValueError(f'{stamps.size} chunk stamps for a match of {match.num_ticks} chunks.')
    if origin_ns is None:
        origin_ns = int(stamps[0]) if stamps.size else 0
    mae, rmse, count = tick_errors(match)
    nan = np.full(stamps.size, np.nan)
    values = nan if values is None else _column('values', values, stamps.size)
    latencies = nan if latencies_s is None else _column('latencies_s', latencies_s, stamps.size)
    return {
        'tick': np.arange(stamps.size),
        'stamp_ns': stamps,
        'time_s': relative_seconds(stamps, origin_ns),
        'value': values,
        'latency_s': latencies,
        'mae': mae,
        'rmse': rmse,
        'compared': count,
    }


def _column(name, data, size):
    data = np.asarray(data, dtype=np.float64).reshape(-1)
    if data.size != size:
        raise ValueError(f'`{name}` has {data.size} entries for {size} chunks.')
    return data


def _number(value):
    value = float(value)
    return value if math.isfinite(value) else None


def json_safe(value):
    """`value` with numpy scalars and arrays as Python values and non-finite floats as None (JSON
    null); dict keys as strings."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return _number(value)
    return value


def write_json(path, data):
    """Write `data` (dicts, lists, numpy values) as strict JSON: NaN and inf become null."""
    path = Path(path)
    path.write_text(json.dumps(json_safe(data), indent=2, allow_nan=False) + '\n')
    return path


def write_csv(path, columns):
    """Write equal-length columns (name -> 1-D array) as CSV; floats keep 9 significant digits.

    NaN is written as 'nan' (read back by numpy and pandas as NaN).
    """
    arrays = {name: np.asarray(data).reshape(-1) for name, data in columns.items()}
    lengths = {name: array.size for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f'CSV columns must have equal lengths. Got {lengths}.')
    path = Path(path)
    with path.open('w', newline='') as stream:
        writer = csv.writer(stream)
        writer.writerow(list(arrays))
        for row in zip(*arrays.values()):
            writer.writerow([_csv_cell(cell) for cell in row])
    return path


def _csv_cell(cell):
    if isinstance(cell, (np.floating, float)):
        return 'nan' if math.isnan(cell) else f'{float(cell):.9g}'
    if isinstance(cell, np.generic):
        return cell.item()
    return cell
