"""PNG plots for offline evaluation: predicted vs recorded actions, value, latency histogram,
predicted future camera frames next to the real ones.

matplotlib's object API with the Agg canvas (no pyplot, no global backend switch, no display
needed). Every function writes one PNG of exactly width_px x height_px pixels and returns its
path. Times on the x axes are seconds since ``origin_ns`` (default: the earliest stamp given).
"""
import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
import numpy as np

from cosmos_policy_ros.evaluation.metrics import latency_statistics, relative_seconds

DPI = 100
RECORDED_COLOR = 'black'
EXECUTED_COLORS = ('tab:blue', 'tab:orange')  # alternate between consecutive chunks
PLANNED_COLOR = 'tab:gray'
MAX_CHUNK_NUMBERS = 40  # chunks numbered on the plot up to this many (beyond: legend only)
Y_MARGIN = 0.15  # of the recorded range, above and below


def value_limits(recorded, predicted):
    """(low, high, outside): y limits of one action dimension and how many predicted values
    lie outside them. The limits follow the recorded actions (plus Y_MARGIN of their range)
    so that a wild prediction cannot squash them; without finite recorded values, the
    predicted ones."""
    recorded = np.asarray(recorded, dtype=np.float64).reshape(-1)
    predicted = np.asarray(predicted, dtype=np.float64).reshape(-1)
    reference = recorded[np.isfinite(recorded)]
    if reference.size == 0:
        reference = predicted[np.isfinite(predicted)]
    if reference.size == 0:
        return -1.0, 1.0, 0
    low, high = float(reference.min()), float(reference.max())
    margin = Y_MARGIN * (high - low) if high > low else max(abs(high) * 0.1, 0.1)
    low, high = low - margin, high + margin
    finite = predicted[np.isfinite(predicted)]
    return low, high, int(np.count_nonzero((finite < low) | (finite > high)))


def chunk_legend_labels(count):
    """The legend labels of the two alternating chunk colours, e.g. 'chunks 1, 3, 5, ...'."""
    labels = []
    for first in (1, 2):
        numbers = list(range(first, count + 1, 2))
        if not numbers:
            continue
        shown = ', '.join(map(str, numbers[:3])) + (', ...' if len(numbers) > 3 else '')
        labels.append(f'chunk{"s" if len(numbers) > 1 else ""} {shown} (executed)')
    return labels


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
    drawn solid in two alternating colours (consecutive chunks; numbered at their start on the
    first row when there are at most MAX_CHUNK_NUMBERS); the rest of each chunk is drawn
    dotted. The y axes follow the recorded actions (value_limits); predicted values beyond
    them are counted on the plot. height_px defaults to 140 px per row.
    """
    figure = actions_figure(recorded_stamps_ns, recorded, chunk_stamps_ns, chunks, step_period,
                            executed=executed, action_names=action_names, origin_ns=origin_ns,
                            width_px=width_px, height_px=height_px, title=title)
    return _save(figure, path)


def actions_figure(recorded_stamps_ns, recorded, chunk_stamps_ns, chunks, step_period, *,
                   executed=None, action_names=None, origin_ns=None, width_px=1200,
                   height_px=None, title='Predicted vs recorded actions'):
    """The matplotlib Figure of plot_actions (same arguments, without the path)."""
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
                                               linewidths=1.4))
        low, high, outside = value_limits(recorded[:, j], chunks[:, :, j])
        axis.set_ylim(low, high)
        if recorded_t.size or chunk_t.size:
            times = np.concatenate([recorded_t, chunk_t.reshape(-1)])
            axis.set_xlim(float(times.min()), float(times.max()))
        if outside:
            axis.text(0.01, 0.97, f'{outside} predicted values beyond the recorded range '
                                  '(not shown)', transform=axis.transAxes, fontsize=6,
                      va='top', color='tab:red')
        if j == 0 and count <= MAX_CHUNK_NUMBERS:  # number the chunks where they start
            for i in range(count):
                axis.annotate(str(i + 1), (chunk_t[i, 0], high), xytext=(0, -2),
                              textcoords='offset points', ha='center', va='top', fontsize=6,
                              color=EXECUTED_COLORS[i % 2], annotation_clip=False)
        axis.set_ylabel(names[j], fontsize=8)
        axis.tick_params(labelsize=7)
        axis.grid(True, alpha=0.3)
    for j in range(dim, rows * columns):  # empty cell of an odd dimension count
        axes[j // columns][j % columns].set_visible(False)
    for column in range(columns):
        axes[-1][column].set_xlabel('time [s]', fontsize=8)
    # Legend: recorded, the two colours of consecutive chunks, the not-executed rest.
    handles, labels = axes[0][0].get_legend_handles_labels()
    for color, label in zip(EXECUTED_COLORS, chunk_legend_labels(count)):
        handles.append(Line2D([], [], color=color, linewidth=1.4))
        labels.append(label)
    axes[0][0].legend(handles, labels, fontsize=7, loc='lower right')
    figure.suptitle(title, fontsize=10)
    return figure


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


def nearest_frame_indices(frame_stamps_ns, target_stamps_ns, *, tolerance_ns=None):
    """For every target stamp, the index of the nearest frame stamp (ties: the earlier), or -1
    when none lies within tolerance_ns (None: any distance)."""
    frames = np.asarray(frame_stamps_ns, dtype=np.int64).reshape(-1)
    targets = np.asarray(target_stamps_ns, dtype=np.int64).reshape(-1)
    if frames.size == 0:
        return np.full(targets.shape, -1, dtype=np.int64)
    order = np.argsort(frames, kind='stable')
    ordered = frames[order]
    right = np.clip(np.searchsorted(ordered, targets, side='left'), 0, ordered.size - 1)
    left = np.clip(right - 1, 0, ordered.size - 1)
    pick = np.where(np.abs(targets - ordered[left]) <= np.abs(ordered[right] - targets),
                    left, right)
    result = order[pick]
    if tolerance_ns is not None:
        result = np.where(np.abs(frames[result] - targets) <= tolerance_ns, result, -1)
    return result.astype(np.int64)


def plot_future_frames(path, rows, *, cell_px=180, title='Predicted future frames vs real'):
    """A grid with one row per prediction: the predicted frame, the real camera frame at the
    time it predicts, and their absolute difference.

    rows: sequence of (label, predicted, real): label a short text (e.g. 'primary, t=2.4 s'),
    predicted and real uint8 (H, W, 3) RGB (real None: no real frame at that time). Images of
    different sizes are shown at their own aspect; the difference needs equal shapes.
    """
    rows = list(rows)
    if not rows:
        raise ValueError('`rows` is empty: no predicted frame to show.')
    for label, predicted, real in rows:
        for name, image in (('predicted', predicted), ('real', real)):
            if image is None and name == 'real':
                continue
            image = np.asarray(image)
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f'{label}: the {name} frame must be uint8 (H, W, 3). Got '
                                 f'{image.dtype} {image.shape}.')
    if isinstance(cell_px, bool) or not isinstance(cell_px, int) or not 32 <= cell_px <= 2000:
        raise ValueError(f'`cell_px` must be an integer in [32, 2000]. Got {cell_px!r}.')
    figure = _figure(3 * cell_px, 40 + cell_px * len(rows))
    axes = figure.subplots(len(rows), 3, squeeze=False)
    for r, (label, predicted, real) in enumerate(rows):
        predicted = np.asarray(predicted)
        cells = [(predicted, f'predicted: {label}'), (real, 'real')]
        if real is not None and np.asarray(real).shape == predicted.shape:
            difference = np.abs(predicted.astype(np.int16) - np.asarray(real, np.int16))
            cells.append((difference.astype(np.uint8), '|predicted - real|'))
        else:
            cells.append((None, '|predicted - real|'))
        for c, (image, caption) in enumerate(cells):
            axis = axes[r][c]
            axis.set_xticks([])
            axis.set_yticks([])
            if image is None:
                axis.text(0.5, 0.5, 'no real frame' if c == 1 else 'n/a', ha='center',
                          va='center', transform=axis.transAxes, fontsize=8)
            else:
                axis.imshow(np.asarray(image), interpolation='nearest')
            axis.set_title(caption, fontsize=7)
    figure.suptitle(title, fontsize=10)
    return _save(figure, path)
