"""The stitching grid (``cosmos-policy-sim stitching``): every stitching method x injected
latency in the closed loop.

One run measures the grid of docs/stitching.md on the simulated arm: for each injected extra
latency (a fraction of a chunk's execution time, ``execute_steps * step_period`` of the node's
parameter file, rounded to whole steps) and each stitching method, the policy runs through
the real ``policy_node`` (subprocess, ``--params-file config/sim.yaml``) with

    -p stitching:=<method> -p stitching_overlap:=<overlap> -p latency_margin:=<latency>

on the sim node with ``command_delay = latency`` (each chunk reaches the controller that long
after it is published). The node is told the latency it will see (``latency_margin``), as one
calibrates a robot's delay; in lockstep (the default) inference takes no sim time, so the
injected latency is the whole latency and every run is deterministic. The same seeds for every
cell. Metrics per cell (sim/metrics.py, per episode, then pooled):

* boundary jump: at each step whose command comes from another chunk than the step before,
  |a_n - a_{n-1}| divided by the episode's median within-chunk step |a_m - a_{m-1}| (consecutive
  steps of one chunk whose row changed); pooled over every switch of every episode: median,
  mean, 90th percentile, max;
* RMS jerk of the joint positions (third difference / p^3), mean over episodes;
* success rate, and mean time to success over the successful episodes;

each with a 95 % bootstrap interval over episodes, and every method against ``none`` at the
same latency on the same seeds, paired (sim/stitching_figures.py, sim/intervals.py).

Offline on recorded bags (``--offline-episodes N``, 0: skip): N episodes of the scripted
expert on the sim (30 steps each) are recorded as bags (the sim's topics: both cameras,
``joint_states``, ``task``; one message per step) and ``cosmos-policy-replay eval``'s loop
(``evaluation/evaluate.evaluate``, control ticks on bag time, the node's rules) runs the same
model on them for every method and latency (``latency_margin`` = the latency; inference takes no
bag time); ``sim/stitching_offline.py``. Nothing executes the chunks there, so the metrics are
of what a time-aligned controller would execute from the published chunks
(``execution.executed_sequence``: chunk i in charge from stamp + takeover_step * p): boundary
jump / median within-chunk step
(``execution.boundary_jumps``) and RMS jerk of the commands (``execution.jerk``).

Writes ``<out>/stitching_grid.json`` (and ``--bench-json``, a bench/results-style record),
and ``--plot``: the commanded shoulder joint of the first seed per method, switches marked.
"""
import math
import time

import numpy as np

from cosmos_policy_ros.evaluation import records
from cosmos_policy_ros.execution import STITCHING_METHODS
from cosmos_policy_ros.node_config import load_parameter_file
from cosmos_policy_ros.sim import metrics
from cosmos_policy_ros.sim.harness import EpisodeRunner, run_policy
from cosmos_policy_ros.sim.model import model_label, sim_layout
from cosmos_policy_ros.sim.stitching_figures import cell_figures, headline, versus_baseline

DEFAULT_LATENCIES = (0.0, 0.25, 0.5)


DEFAULT_OVERLAP = 2


def latency_steps(fraction, execute_steps):
    """Injected latency in whole steps: round(fraction * execute_steps)."""
    if not (isinstance(fraction, (int, float)) and math.isfinite(fraction) and fraction >= 0):
        raise ValueError(f'a latency fraction must be a number >= 0. Got {fraction!r}.')
    return int(round(fraction * execute_steps))


def episode_record(trace):
    """One EpisodeTrace as sim.stitching_figures' per-episode record."""
    jumps = metrics.boundary_jumps(trace.plans, trace.commands)
    return {'ratios': [r for r in jumps['ratios'] if math.isfinite(r)],
            'jumps': list(jumps['jumps']),
            'jerk': metrics.rms_jerk(np.array(trace.positions), trace.step_period),
            'success': float(trace.success),
            'time': trace.success_step * trace.step_period if trace.success else math.nan}


def cell_metrics(traces):
    """The metrics of one (method, latency) cell from its EpisodeTraces (module docstring):
    every figure of sim.stitching_figures.FIGURES, and `intervals` {figure: [estimate, low,
    high]} (95 % bootstrap over episodes)."""
    episodes = [episode_record(trace) for trace in traces]
    figures = cell_figures(episodes)
    return {
        'episodes': len(traces),
        'successes': int(sum(t.success for t in traces)),
        **{name: interval.estimate for name, interval in figures.items()},
        'switches': sum(len(e['ratios']) for e in episodes),
        'conditioned_chunks': sum(1 for t in traces for c in t.chunks if c.conditioned_steps),
        'blended_chunks': sum(1 for t in traces for c in t.chunks if c.blended_steps),
        'chunks': sum(len(t.chunks) for t in traces),
        'intervals': {name: interval.as_list() for name, interval in figures.items()},
    }


def run_grid(model, config_path, seeds, out, *, runner: EpisodeRunner,
             methods=STITCHING_METHODS, fractions=DEFAULT_LATENCIES, overlap=DEFAULT_OVERLAP,
             mode='lockstep', printer=print):
    """{(method, fraction): [EpisodeTrace]} and the grid's settings."""
    config = load_parameter_file(config_path, overrides={'model_path': '-'})
    execute = config.execute_steps or sim_layout().chunk_size
    period = config.step_period
    results = {}
    for fraction in fractions:
        steps = latency_steps(fraction, execute)
        latency = steps * period
        for method in methods:
            started = time.monotonic()
            traces, _ = run_policy(
                model, config_path, seeds, out, runner=runner, mode=mode,
                command_delay=latency,
                overrides=[f'stitching:={method}', f'stitching_overlap:={overlap}',
                           f'latency_margin:={latency!r}'],
                log_name=f'policy_node_{method}_{steps}.log')
            results[(method, fraction)] = traces
            cell = cell_metrics(traces)
            printer(f'  latency {100 * fraction:3.0f} % ({steps} steps)  {method:14s} '
                    f'success {cell["successes"]:2d}/{cell["episodes"]}  jump/step '
                    f'median {cell["jump_ratio_median"]:5.2f} max '
                    f'{cell["jump_ratio_max"]:5.2f}  jerk {cell["rms_jerk_mean"]:7.1f}  '
                    f'({time.monotonic() - started:.0f} s)')
    settings = {'execute_steps': execute, 'step_period': period, 'overlap': overlap,
                'mode': mode}
    return results, settings


def grid_record(results, settings, *, seeds, model, description, command):
    """The JSON record of a grid (bench/results style)."""
    cells = []
    for (method, fraction), traces in results.items():
        steps = latency_steps(fraction, settings['execute_steps'])
        cells.append(dict(method=method, latency_fraction=fraction, latency_steps=steps,
                          latency_s=steps * settings['step_period'], **cell_metrics(traces)))
    episodes = {key: [episode_record(t) for t in traces] for key, traces in results.items()}
    for cell in cells:
        baseline = episodes.get(('none', cell['latency_fraction']))
        if cell['method'] != 'none' and baseline is not None:
            cell['vs_none'] = {name: interval.as_list() for name, interval in versus_baseline(
                episodes[(cell['method'], cell['latency_fraction'])], baseline).items()}
    return {
        'name': 'stitching_closed_loop', 'status': 'ok',
        'title': 'Stitching methods x injected latency in the closed loop (policy_node on the '
                 'simulated arm)',
        'device': 'cpu', 'dtype': 'float32',
        'preset': (f'planar_reach, {settings["mode"]}, {len(seeds)} episodes per cell from seed '
                   f'{seeds[0]}, overlap {settings["overlap"]}, execute_steps '
                   f'{settings["execute_steps"]} x {settings["step_period"]:g} s'),
        'headline': headline(cells),
        **records.provenance(),
        'command': command, 'model': model_label(model), 'model_description': description,
        'seeds': list(seeds), 'settings': settings, 'cells': cells,
    }


def format_grid(record):
    lines = [f'  {"latency":>8s} {"method":14s} {"success":>8s} {"t_succ":>7s} '
             f'{"jump med":>8s} {"p90":>6s} {"max":>6s} {"jerk":>8s}']

    def fmt(value, spec):
        return format(value, spec) if value is not None and math.isfinite(value) else '-'

    for c in record['cells']:
        lines.append(f'  {100 * c["latency_fraction"]:7.0f}% {c["method"]:14s} '
                     f'{c["successes"]:3d}/{c["episodes"]:<4d} '
                     f'{fmt(c["time_to_success_mean"], "6.2f")}s '
                     f'{fmt(c["jump_ratio_median"], "8.2f")} {fmt(c["jump_ratio_p90"], "6.2f")} '
                     f'{fmt(c["jump_ratio_max"], "6.2f")} {fmt(c["rms_jerk_mean"], "8.1f")}')
    return '\n'.join(lines)
