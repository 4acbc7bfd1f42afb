"""PNG plots for offline evaluation: predicted vs recorded actions, value, latency histogram.

matplotlib's object API with the Agg canvas (no pyplot, no global backend switch, no display
needed). Every function writes one PNG of exactly width_px x height_px pixels and returns its
path. Times on the x axes are seconds since ``origin_ns`` (default: the earliest stamp given).
"""
import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
import numpy as np

from cosmos_policy_ros.tools.metrics import latency_statistics, relative_seconds

DPI = 100
RECORDED_COLOR = 'black'
EXECUTED_COLORS = ('tab:blue', 'tab:orange')  # alternate between consecutive chunks
PLANNED_COLOR = 'tab:gray'


def _figure(width_px, height_px):
    for name, value in (('width_px', width_px), ('height_px', height_px)):
        if isinstance(value, bool) or not isinstance(value, int) or not 64 <= value <= 10000:
            raise ValueError(f'`{name}` must be an integer in [64, 10000]. Got {value!r}.')
    figure = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, layout='constrained')
    FigureCanvasAgg(figure)
    return figure


def _save(figure, path):
    path = Path(path)
    figure.savefig(path, dpi=DPI, format='png')
    return path


def plot_actions(path, recorded_stamps_ns, recorded, chunk_stamps_ns, chunks, step_period, *,
                 executed=None, action_names=None, origin_ns=None, width_px=1200,
                 height_px=None, title='Predicted vs recorded actions'):
    """One subplot per action dimension: the recorded stream and every predicted chunk.

    recorded_stamps_ns (N,), recorded (N, d); chunk_stamps_ns (M,), chunks (M, K, d);
    step_period: seconds, scalar or (M,); executed: executed actions per chunk (None: all K),
    drawn solid; the rest of each chunk is drawn dotted. height_px defaults to 140 px per row.
    """
    recorded = np.asarray(recorded, dtype=np.float64)
    chunks = np.asarray(chunks, dtype=np.float64)
    recorded_stamps_ns = np.asarray(recorded_stamps_ns, dtype=np.int64)
    chunk_stamps_ns = np.asarray(chunk_stamps_ns, dtype=np.int64)
    if recorded.ndim != 2 or chunks.ndim != 3 or recorded.shape[1] != chunks.shape[2]:
        raise ValueError(f'expected recorded (N, d) and chunks (M, K, d) with the same d. '
                         f'Got {recorded.shape} and {chunks.shape}.')
    count, horizon, dim = chunks.shape
    names = list(action_names) if action_names is not None else [f'a{j}' for j in range(dim)]
    if len(names) != dim:
        raise ValueError(f'`action_names` has {len(names)} names for {dim} action dimensions.')
    periods = np.broadcast_to(np.asarray(step_period, dtype=np.float64), (count,))
    steps = np.broadcast_to(np.asarray(horizon if executed is None else executed), (count,))
    if origin_ns is None:
        firsts = [s.min() for s in (recorded_stamps_ns, chunk_stamps_ns) if s.size]
        origin_ns = int(min(firsts)) if firsts else 0
    recorded_t = relative_seconds(recorded_stamps_ns, origin_ns)
    # (M, K) time of every predicted action.
    chunk_t = (relative_seconds(chunk_stamps_ns, origin_ns)[:, None]
               + np.arange(horizon)[None, :] * periods[:, None])

    columns = 1 if dim <= 4 else 2
    rows = math.ceil(dim / columns)
    height_px = height_px if height_px is not None else 80 + 140 * rows
    figure = _figure(width_px, height_px)
    axes = figure.subplots(rows, columns, squeeze=False, sharex=True)
    for j in range(dim):
        axis = axes[j // columns][j % columns]
        axis.plot(recorded_t, recorded[:, j], color=RECORDED_COLOR, linewidth=1.2,
                  label='recorded')
        executed_lines, executed_colors, planned_lines = [], [], []
        for i in range(count):
            points = np.stack([chunk_t[i], chunks[i, :, j]], axis=1)  # (K, 2) x, y
            n = int(steps[i])
            if n > 1:
                executed_lines.append(points[:n])
                executed_colors.append(EXECUTED_COLORS[i % 2])
            elif n == 1:
                axis.plot(points[0, 0], points[0, 1], '.', color=EXECUTED_COLORS[i % 2])
            if n < horizon:
                planned_lines.append(points[max(n - 1, 0):])
        if planned_lines:
            axis.add_collection(LineCollection(planned_lines, colors=PLANNED_COLOR,
                                               linewidths=0.8, linestyles='dotted',
                                               label='predicted (not executed)'))
        if executed_lines:
            axis.add_collection(LineCollection(executed_lines, colors=executed_colors,
                                               linewidths=1.4, label='predicted (executed)'))
        axis.autoscale_view()
        axis.set_ylabel(names[j], fontsize=8)
        axis.tick_params(labelsize=7)
        axis.grid(True, alpha=0.3)
    for j in range(dim, rows * columns):  # empty cell of an odd dimension count
        axes[j // columns][j % columns].set_visible(False)
    for column in range(columns):
        axes[-1][column].set_xlabel('time [s]', fontsize=8)
    axes[0][0].legend(fontsize=7, loc='upper right')
    figure.suptitle(title, fontsize=10)
    return _save(figure, path)


def plot_value(path, stamps_ns, values, *, origin_ns=None, width_px=900, height_px=400,
               title="Predicted value V(s')"):
    """The value of every chunk over time (NaN values leave gaps)."""
    stamps_ns = np.asarray(stamps_ns, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    if stamps_ns.shape != values.shape or values.ndim != 1:
        raise ValueError(f'`stamps_ns` and `values` must be 1-D of equal length. Got '
                         f'{stamps_ns.shape} and {values.shape}.')
    if origin_ns is None:
        origin_ns = int(stamps_ns.min()) if stamps_ns.size else 0
    figure = _figure(width_px, height_px)
    axis = figure.subplots()
    axis.plot(relative_seconds(stamps_ns, origin_ns), values, marker='.', linewidth=1.2)
    axis.set_ylim(-0.05, 1.05)
    axis.set_xlabel('time [s]')
    axis.set_ylabel('value')
    axis.grid(True, alpha=0.3)
    axis.set_title(title)
    return _save(figure, path)


def plot_latency_histogram(path, latencies_s, *, bins=30, width_px=900, height_px=400,
                           title='Inference latency'):
    """Histogram of latencies (shown in ms) with the p50 and p95 marked."""
    latencies = np.asarray(latencies_s, dtype=np.float64).reshape(-1)
    finite = latencies[np.isfinite(latencies)] * 1e3
    stats = latency_statistics(latencies)
    figure = _figure(width_px, height_px)
    axis = figure.subplots()
    if finite.size:
        axis.hist(finite, bins=bins, color='tab:blue', alpha=0.8)
        for key, style in (('p50', '--'), ('p95', ':')):
            value = stats[key] * 1e3
            axis.axvline(value, color='black', linestyle=style, label=f'{key} {value:.1f} ms')
        axis.legend()
    else:
        axis.text(0.5, 0.5, 'no latencies', ha='center', va='center', transform=axis.transAxes)
    axis.set_xlabel('latency [ms]')
    axis.set_ylabel('chunks')
    axis.grid(True, alpha=0.3)
    axis.set_title(f'{title} (n = {stats["count"]})')
    return _save(figure, path)
