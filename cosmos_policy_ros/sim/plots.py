"""Figures of the closed loop: an evaluation's success per episode, the policy's value against the
distance to the goal, a filmstrip of real and predicted frames; the stitching grid's executed
commands per method, and its figures with their intervals."""
from pathlib import Path

import matplotlib
matplotlib.use('Agg')  # noqa: E402 (no display: files only)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

PLOT_JOINT = 0  # shoulder: the joint the stitching figure shows
VALUE_PLOT_EPISODES = 10  # episodes value.png draws (the first ones; the title says how many)


def write_plots(results, out, *, future=None, policy_name='policy'):
    """success.png, value.png (policy), filmstrip.png (policy, first episode with frames)."""
    out = Path(out)
    written = []
    fig, ax = plt.subplots(figsize=(9, 1 + 0.5 * len(results)))
    for row, (name, traces) in enumerate(results.items()):
        for column, trace in enumerate(traces):
            ax.add_patch(plt.Rectangle((column, row), 0.9, 0.8,
                                       color='tab:green' if trace.success else 'tab:red'))
    ax.set_xlim(0, max((len(t) for t in results.values()), default=1))
    ax.set_ylim(0, len(results))
    ax.set_yticks([r + 0.4 for r in range(len(results))], list(results))
    ax.set_xlabel('episode (green: success, red: failure)')
    fig.tight_layout()
    fig.savefig(out / 'success.png', dpi=80)
    plt.close(fig)
    written.append(out / 'success.png')

    traces = results.get(policy_name, [])
    if traces:
        written.append(write_value_plot(out / 'value.png', traces))
        framed = [t for t in traces if t.frames]
        if framed:
            path = out / 'filmstrip.png'
            write_filmstrip(path, framed[0], future or {})
            written.append(path)
    return written


def write_value_plot(path, traces, *, limit=VALUE_PLOT_EPISODES):
    """Two panels over episode time, one per quantity: the policy's value estimate per chunk
    (top) and the distance to the goal (bottom); one colour per episode, named in the legend;
    the first `limit` episodes, and the title says so when there are more."""
    shown = traces[:limit]
    fig, (value_ax, distance_ax) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True)
    for trace in shown:
        steps = np.arange(len(trace.distances)) * trace.step_period
        outcome = 'success' if trace.success else 'fail'
        line, = value_ax.plot([c.step * trace.step_period for c in trace.chunks],
                              [c.value for c in trace.chunks], marker='o', markersize=3,
                              label=f'seed {trace.seed} ({outcome})')
        distance_ax.plot(steps, trace.distances, color=line.get_color())
    subset = (f'all {len(traces)} episodes' if len(shown) == len(traces) else
              f'the first {len(shown)} of {len(traces)} episodes')
    value_ax.set_title(f'policy: {subset}, one colour per episode', fontsize=10)
    value_ax.set_ylabel('predicted value\n(one dot per chunk)')
    distance_ax.set_ylabel('distance to goal')
    distance_ax.set_xlabel('episode time (s)')
    value_ax.legend(fontsize=7, loc='center left', bbox_to_anchor=(1.01, 0.0))
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write_filmstrip(path, trace, future, *, columns=6, camera='primary'):
    """Rows: the real frame at each chunk's observation, the node's predicted future frame for
    that chunk, and the real frame one chunk later. Without predicted frames (the node
    publishes them with publish_future_images: `--future-images`) that row is left out and the
    caption says how to get it."""
    chunks = trace.chunks[:columns]
    if not chunks or not trace.frames:
        return None
    size = max(96, trace.frames[0].shape[0])  # small sim images are scaled up
    horizon = len(chunks[0].actions) if chunks[0].actions is not None else 8
    label_w = 70
    published = any(future.get(chunk.stamp_ns, {}).get(camera) is not None for chunk in chunks)
    rows = ['now'] + (['predicted'] if published else []) + [f'real +{horizon}']
    caption = 14 if published else 28
    canvas = Image.new('RGB', (label_w + len(chunks) * (size + 4),
                               len(rows) * (size + 4) + caption), 'white')
    draw = ImageDraw.Draw(canvas)
    if not published:
        draw.text((2, len(rows) * (size + 4) + 16), 'no predicted frames: run with '
                  '--future-images for that row', fill='black')
    for row, text in enumerate(rows):
        draw.text((2, 14 + row * (size + 4) + size // 2 - 5), text, fill='black')
    blank = np.full((size, size, 3), 255, np.uint8)
    for column, chunk in enumerate(chunks):
        x = label_w + column * (size + 4)
        draw.text((x, 1), f'step {chunk.step}', fill='black')
        later = min(chunk.step + horizon, len(trace.frames) - 1)
        images = [trace.frames[min(chunk.step, len(trace.frames) - 1)]]
        if published:
            predicted = future.get(chunk.stamp_ns, {}).get(camera)
            images.append(predicted if predicted is not None else blank)
        images.append(trace.frames[later])
        for row, image in enumerate(images):
            tile = Image.fromarray(np.asarray(image, np.uint8))
            tile = tile.resize((size, size), Image.NEAREST)
            canvas.paste(tile, (x, 14 + row * (size + 4)))
    canvas.save(path)
    return path


def write_stitching_plot(path, results, *, fraction, seed_index=None, joint=PLOT_JOINT,
                         steps=None):
    """Commanded joint `joint` of one episode per method at latency `fraction`: the executed
    command step by step, each chunk's own rows dotted, switches marked. seed_index None: the
    seed whose shortest episode over the methods is longest (the most switches for all)."""
    methods = [m for (m, f) in results if f == fraction]
    if seed_index is None:
        count = len(results[(methods[0], fraction)])
        seed_index = max(range(count), key=lambda i: min(
            results[(m, fraction)][i].steps for m in methods))
    fig, axes = plt.subplots(len(methods), 1, figsize=(9, 2.2 * len(methods)), sharex=True,
                             squeeze=False)
    for ax, method in zip(axes[:, 0], methods):
        trace = results[(method, fraction)][seed_index]
        n = len(trace.commands) if steps is None else min(steps, len(trace.commands))
        t = np.arange(n) * trace.step_period
        commands = np.array(trace.commands[:n])
        ax.step(t, commands[:, joint], where='post', color='black', lw=1.5, label='executed')
        ax.plot(t, np.array(trace.positions[:n])[:, joint], color='tab:gray', lw=1,
                label='joint position')
        for chunk in trace.chunks:
            rows = np.arange(len(chunk.actions))
            times = (chunk.step + rows) * trace.step_period
            keep = times <= t[-1] + 1e-9
            ax.plot(times[keep], np.asarray(chunk.actions)[keep, joint], ':', lw=1)
        switches = [k for k in range(1, n) if trace.plans[k] != trace.plans[k - 1]
                    and trace.plans[k - 1] != 0]
        for k in switches:
            ax.axvline(k * trace.step_period, color='tab:red', lw=0.6, alpha=0.6)
        ax.set_title(f'{method}: seed {trace.seed} ({"success" if trace.success else "fail"})',
                     fontsize=9)
        ax.set_ylabel('shoulder (rad)')
    axes[0, 0].legend(fontsize=7, loc='best')
    axes[-1, 0].set_xlabel(f'episode time (s); red: switches; dotted: each chunk from its '
                           f'stamp; latency {100 * fraction:.0f} % of a chunk')
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write_interval_plot(path, cells, *, figures=('jump_ratio_p90', 'jump_ratio_max',
                                                 'rms_jerk_mean', 'success_rate')):
    """One panel per figure: each method's estimate and interval per latency.

    cells: the record's cell dicts (method, latency_fraction, intervals {figure: [estimate,
    low, high]}).
    """
    methods = list(dict.fromkeys(c['method'] for c in cells))
    fractions = sorted({c['latency_fraction'] for c in cells})
    fig, axes = plt.subplots(1, len(figures), figsize=(3.6 * len(figures), 3.2), squeeze=False)
    width = 0.8 / max(1, len(methods))
    for ax, figure in zip(axes[0], figures):
        for m, method in enumerate(methods):
            xs, values, errors = [], [], [[], []]
            for f, fraction in enumerate(fractions):
                cell = next((c for c in cells if c['method'] == method
                             and c['latency_fraction'] == fraction), None)
                if cell is None:
                    continue
                estimate, low, high = cell['intervals'][figure]
                if estimate is None or not np.isfinite(estimate):
                    continue
                xs.append(f + (m - (len(methods) - 1) / 2) * width)
                values.append(estimate)
                errors[0].append(estimate - low)
                errors[1].append(high - estimate)
            ax.errorbar(xs, values, yerr=errors, fmt='o', ms=4, capsize=3, label=method)
        ax.set_xticks(range(len(fractions)))
        ax.set_xticklabels([f'{100 * f:.0f} %' for f in fractions])
        ax.set_xlabel('injected latency (of a chunk)')
        ax.set_title(figure, fontsize=9)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle('estimate and 95 % bootstrap interval over episodes', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
