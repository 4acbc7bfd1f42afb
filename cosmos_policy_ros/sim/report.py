"""The closed-loop evaluation's results: per-controller summaries (success, time to success,
jerk, boundary jumps, value Spearman, latency), summary.json, episodes.csv, ticks.csv, the
console table and lines, and the bench/results record."""
import csv
import json
import math
from pathlib import Path

import numpy as np

from cosmos_policy_ros.conversions import NS_PER_S as NS
from cosmos_policy_ros.evaluation import records
from cosmos_policy_ros.evaluation.metrics import json_safe
from cosmos_policy_ros.sim.metrics import spearman


def summarize(traces, gamma):
    episodes = [trace.summary(gamma) for trace in traces]
    values = [v for e in episodes for v in e['values']]
    returns = [r for e in episodes for r in e['returns']]

    def mean(key, only_success=False):
        items = [e[key] for e in episodes if (e['success'] or not only_success)
                 and isinstance(e[key], float) and math.isfinite(e[key])]
        return float(np.mean(items)) if items else math.nan

    latencies = [latency for trace in traces for latency in
                 (c.inference_time for c in trace.chunks) if math.isfinite(latency)]
    refused = {}
    for e in episodes:
        for reason, count in e['refused'].items():
            refused[reason] = refused.get(reason, 0) + count
    return {
        'episodes': len(episodes),
        'success_rate': float(np.mean([e['success'] for e in episodes])) if episodes else 0.0,
        'time_to_success_mean': mean('time_to_success', True),
        'rms_jerk_mean': mean('rms_jerk'),
        'boundary_jump_ratio_mean': mean('boundary_jump_ratio_mean'),
        'boundary_jump_ratio_max': max((e['boundary_jump_ratio_max'] for e in episodes
                                        if math.isfinite(e['boundary_jump_ratio_max'])),
                                       default=math.nan),
        'value_spearman': spearman(values, returns) if values else math.nan,
        'value_ticks': int(sum(math.isfinite(v) for v in values)),
        'latency_mean': float(np.mean(latencies)) if latencies else math.nan,
        'latency_p95': float(np.percentile(latencies, 95)) if latencies else math.nan,
        'refused': refused,
        'per_episode': [{k: v for k, v in e.items() if k not in ('values', 'returns')}
                        for e in episodes],
    }


def write_report(results, out, *, gamma, meta):
    """results: {controller: [EpisodeTrace]} -> summary.json, episodes.csv, ticks.csv."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {'meta': meta, 'gamma': gamma,
               'controllers': {name: summarize(traces, gamma) for name, traces in
                               results.items()}}
    (out / 'summary.json').write_text(json.dumps(json_safe(summary), indent=2) + '\n')
    fields = ['controller', 'seed', 'task', 'success', 'steps', 'time_to_success',
              'final_distance', 'rms_jerk', 'chunks', 'boundary_jump_ratio_mean',
              'boundary_jump_ratio_max', 'latency_mean', 'latency_max']
    with open(out / 'episodes.csv', 'w', newline='') as stream:
        writer = csv.writer(stream)
        writer.writerow(fields)
        for name, data in summary['controllers'].items():
            for episode in data['per_episode']:
                writer.writerow([name] + [episode[key] for key in fields[1:]])
    with open(out / 'ticks.csv', 'w', newline='') as stream:
        writer = csv.writer(stream)
        writer.writerow(['controller', 'seed', 'step', 'stamp_s', 'value', 'true_return',
                         'distance_to_goal', 'inference_time', 'arrival_delay', 'seed_noise'])
        for name, traces in results.items():
            for trace in traces:
                episode = trace.summary(gamma)
                for chunk, true_return in zip(trace.chunks, episode['returns']):
                    distance = trace.distances[min(chunk.step, len(trace.distances) - 1)] \
                        if trace.distances else math.nan
                    writer.writerow([name, trace.seed, chunk.step, chunk.stamp_ns / NS,
                                     chunk.value, true_return, distance,
                                     chunk.inference_time, chunk.arrival_delay, chunk.seed])
    return summary


# The console table's columns: (heading, unit or how it is computed, summary key, format).
TABLE_COLUMNS = (
    ('success', 'episodes', 'success_rate', '.0%'),
    ('time to success', 's, mean', 'time_to_success_mean', '.2f'),
    ('RMS jerk', 'rad/s^3', 'rms_jerk_mean', '.1f'),
    ('boundary jump', 'in-chunk steps', 'boundary_jump_ratio_mean', '.2f'),
    ('value vs return', 'Spearman', 'value_spearman', '.2f'),
    ('latency', 's, mean', 'latency_mean', '.3f'),
)
CONTROLLER_WIDTH = 16


def format_table(summary):
    """The console table: two heading lines (each column's name in words, then its unit or how
    it is computed), a row per controller; '-' where a value does not exist (no success, no
    value estimate)."""
    widths = [max(len(name), len(unit) + 2) + 2 for name, unit, _, _ in TABLE_COLUMNS]
    names = ''.join(f'{name:>{width}s}' for (name, _, _, _), width in zip(TABLE_COLUMNS, widths))
    units = ''.join(f'{"(" + unit + ")":>{width}s}'
                    for (_, unit, _, _), width in zip(TABLE_COLUMNS, widths))
    lines = ['  ' + f'{"controller":{CONTROLLER_WIDTH}s}' + names,
             '  ' + ' ' * CONTROLLER_WIDTH + units]
    for name, data in summary['controllers'].items():
        cells = []
        for (_, _, key, spec), width in zip(TABLE_COLUMNS, widths):
            value = data[key]
            text = format(value, spec) if value is not None and math.isfinite(value) else '-'
            cells.append(f'{text:>{width}s}')
        lines.append(f'  {name:{CONTROLLER_WIDTH}s}' + ''.join(cells))
    return '\n'.join(lines)


def episode_line(name, trace):
    outcome = (f'success in {trace.success_step * trace.step_period:4.1f} s' if trace.success
               else 'timeout         ')
    values = [c.value for c in trace.chunks if math.isfinite(c.value)]
    value = f'  value {values[0]:.2f} -> {values[-1]:.2f}' if values else ''
    refused = f'  refused {trace.refused}' if trace.refused else ''
    return (f'  {name:8s} seed {trace.seed:6d}  {trace.task:22s}  {outcome}  '
            f'{len(trace.chunks):2d} chunks{value}{refused}')


def bench_headline(summary):
    """One line of the controllers' success rates and the policy's value correlation."""
    controllers = summary['controllers']
    parts = [f'{name} {100 * data["success_rate"]:.0f}%' for name, data in controllers.items()]
    policy = controllers.get('policy', {})
    if policy:
        rho = policy.get('value_spearman')
        parts.append('value Spearman ' + (f'{rho:.2f}' if rho is not None and math.isfinite(rho)
                                          else '-'))
    return 'success: ' + ', '.join(parts)


def write_bench_record(path, summary, request):
    """A bench/results-style JSON of an eval (bench/harness.py's summary reads its fields);
    request: the EvalRequest (sim/harness.py) that made it."""
    record = {
        'name': Path(path).stem, 'status': 'ok',
        'title': 'Closed loop on the simulated arm: the policy through policy_node vs baselines',
        'device': 'cpu', 'dtype': 'float32',
        'preset': f'planar_reach, {request.mode}, {request.episodes} episodes from seed '
                  f'{request.first_seed}' + (f', {request.realtime_episodes} real-time'
                                             if request.realtime_episodes else ''),
        'headline': bench_headline(summary),
        **records.provenance(),
        'summary': {name: {k: v for k, v in data.items() if k != 'per_episode'}
                    for name, data in summary['controllers'].items()},
        'meta': summary['meta'],
    }
    Path(path).write_text(json.dumps(json_safe(record), indent=2) + '\n')
