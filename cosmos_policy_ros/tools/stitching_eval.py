"""``cosmos-policy-sim stitching``: every stitching method x injected latency in the closed loop.

One run measures the grid of docs/stitching.md on the simulated arm: for each injected extra
latency (a fraction of a chunk's execution time, ``execute_steps * step_period`` of the node's
parameter file, rounded to whole steps) and each stitching method, the policy runs through
the real ``policy_node`` (subprocess, ``--params-file config/sim.yaml``) with

    -p stitching:=<method> -p stitching_overlap:=<overlap> -p latency_margin:=<latency>

on the sim node with ``command_delay = latency`` (each chunk reaches the controller that long
after it is published). The node is told the latency it will see (``latency_margin``), as one
calibrates a robot's delay; in lockstep (the default) inference takes no sim time, so the
injected latency is the whole latency and every run is deterministic. The same seeds for every
cell. Metrics per cell (tools/sim_metrics.py, per episode, then pooled):

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
(``tools/evaluate.evaluate``, control ticks on bag time, the node's rules) runs the same model
on them for every method and latency (``latency_margin`` = the latency; inference takes no bag
time). Nothing executes the chunks there, so the metrics are of what a time-aligned controller
would execute from the published chunks (``execution.executed_sequence``: chunk i in charge
from stamp + takeover_step * p): boundary jump / median within-chunk step
(``execution.boundary_jumps``) and RMS jerk of the commands (``execution.jerk``).

Writes ``<out>/stitching_grid.json`` (and ``--bench-json``, a bench/results-style record),
and ``--plot``: the commanded shoulder joint of the first seed per method, switches marked.
"""
import argparse
import json
import math
import os
from pathlib import Path
import shutil
import time

import numpy as np

from cosmos_policy_ros.execution import STITCHING_METHODS
from cosmos_policy_ros.sim.model import model_label

DEFAULT_LATENCIES = (0.0, 0.25, 0.5)
DEFAULT_OVERLAP = 2
PLOT_JOINT = 0  # shoulder


def latency_steps(fraction, execute_steps):
    """Injected latency in whole steps: round(fraction * execute_steps)."""
    if not (isinstance(fraction, (int, float)) and math.isfinite(fraction) and fraction >= 0):
        raise ValueError(f'a latency fraction must be a number >= 0. Got {fraction!r}.')
    return int(round(fraction * execute_steps))


def episode_record(trace):
    """One EpisodeTrace as sim.stitching_figures' per-episode record."""
    from cosmos_policy_ros.tools import sim_metrics

    jumps = sim_metrics.boundary_jumps(trace.plans, trace.commands)
    return {'ratios': [r for r in jumps['ratios'] if math.isfinite(r)],
            'jumps': list(jumps['jumps']),
            'jerk': sim_metrics.rms_jerk(np.array(trace.positions), trace.step_period),
            'success': float(trace.success),
            'time': trace.success_step * trace.step_period if trace.success else math.nan}


def cell_metrics(traces):
    """The metrics of one (method, latency) cell from its EpisodeTraces (module docstring):
    every figure of sim.stitching_figures.FIGURES, and `intervals` {figure: [estimate, low,
    high]} (95 % bootstrap over episodes)."""
    from cosmos_policy_ros.sim.stitching_figures import cell_figures

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


def run_grid(model, config_path, seeds, out, *, methods=STITCHING_METHODS,
             fractions=DEFAULT_LATENCIES, overlap=DEFAULT_OVERLAP, mode='lockstep',
             printer=print):
    """{(method, fraction): [EpisodeTrace]} and the grid's settings."""
    from cosmos_policy_ros.node_config import load_parameter_file
    from cosmos_policy_ros.tools import sim_eval

    config = load_parameter_file(config_path, overrides={'model_path': '-'})
    execute = config.execute_steps or sim_eval.sim_layout().chunk_size
    period = config.step_period
    results = {}
    for fraction in fractions:
        steps = latency_steps(fraction, execute)
        latency = steps * period
        for method in methods:
            started = time.monotonic()
            traces, _ = sim_eval.run_policy(
                model, config_path, seeds, out, mode=mode, command_delay=latency,
                overrides=[f'stitching:={method}', f'stitching_overlap:={overlap}',
                           f'latency_margin:={latency!r}'],
                log_name=f'policy_node_{method}_{steps}.log')
            results[(method, fraction)] = traces
            metrics = cell_metrics(traces)
            printer(f'  latency {100 * fraction:3.0f} % ({steps} steps)  {method:14s} '
                    f'success {metrics["successes"]:2d}/{metrics["episodes"]}  jump/step '
                    f'median {metrics["jump_ratio_median"]:5.2f} max '
                    f'{metrics["jump_ratio_max"]:5.2f}  jerk {metrics["rms_jerk_mean"]:7.1f}  '
                    f'({time.monotonic() - started:.0f} s)')
    settings = {'execute_steps': execute, 'step_period': period, 'overlap': overlap,
                'mode': mode}
    return results, settings


def grid_record(results, settings, *, seeds, model, description, command):
    """The JSON record of a grid (bench/results style)."""
    from cosmos_policy_ros.tools import bench_record
    cells = []
    for (method, fraction), traces in results.items():
        steps = latency_steps(fraction, settings['execute_steps'])
        cells.append(dict(method=method, latency_fraction=fraction, latency_steps=steps,
                          latency_s=steps * settings['step_period'], **cell_metrics(traces)))
    from cosmos_policy_ros.sim.stitching_figures import headline, versus_baseline
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
        **bench_record.provenance(),
        'command': command, 'model': model_label(model), 'model_description': description,
        'seeds': list(seeds), 'settings': settings, 'cells': cells,
    }


# --- offline: recorded bags ---------------------------------------------------------------------
BAG_START_NS = 1_700_000_000 * 1_000_000_000
BAG_STEPS = 30  # steps per recorded bag (3 s at 0.1 s)


def record_expert_bag(path, seed, *, config_path, horizon=8, steps=BAG_STEPS):
    """`steps` steps of the scripted expert on the sim from `seed` as a bag with the node's
    input topics (sim.yaml): images and joint states stamped on the step grid from BAG_START_NS,
    the task at the start. The expert keeps commanding (holding at the target) after success, so
    every bag has the same length."""
    from cosmos_policy_ros.node_config import load_parameter_file
    from cosmos_policy_ros.sim.arm import expert_chunk, JOINT_NAMES, PlanarReachEnv
    from cosmos_policy_ros.tools.bags import BagWriter, make_typestore, ns_to_stamp

    config = load_parameter_file(config_path, overrides={'model_path': '-'})
    topic = {camera.name: '/' + camera.topic.lstrip('/') for camera in config.cameras}
    joints_topic = '/' + config.proprio_sources[0].topic.lstrip('/')
    task_topic = '/' + config.task_topic.lstrip('/')
    env = PlanarReachEnv()
    env.reset(seed)
    period = env.config.step_period
    period_ns = round(period * 1e9)
    typestore = make_typestore()
    types = typestore.types
    with BagWriter(path, typestore=typestore) as bag:
        for name in topic.values():
            bag.add_topic(name, 'sensor_msgs/msg/Image')
        bag.add_topic(joints_topic, 'sensor_msgs/msg/JointState')
        bag.add_topic(task_topic, 'std_msgs/msg/String', latched=True)
        bag.write(task_topic, BAG_START_NS, types['std_msgs/msg/String'](data=env.task))
        plan = None
        for step in range(steps):
            stamp = BAG_START_NS + step * period_ns
            header = types['std_msgs/msg/Header'](stamp=ns_to_stamp(stamp, typestore),
                                                  frame_id='')
            for camera, image in env.render().items():
                height, width, channels = image.shape
                bag.write(topic[camera], stamp, types['sensor_msgs/msg/Image'](
                    header=header, height=height, width=width, encoding='rgb8',
                    is_bigendian=0, step=width * channels, data=image.reshape(-1)))
            bag.write(joints_topic, stamp, types['sensor_msgs/msg/JointState'](
                header=header, name=list(JOINT_NAMES),
                position=np.asarray(env.joint_positions(), np.float64),
                velocity=np.zeros(0), effort=np.zeros(0)))
            if step % 4 == 0:
                plan = expert_chunk(env, horizon, period)
            env.step(plan[step % 4], period)


def offline_cell(policy, config, bags, out):
    """Metrics of one (method, latency) on the recorded bags (module docstring)."""
    from cosmos_policy_ros.execution import boundary_jumps, executed_sequence, jerk
    from cosmos_policy_ros.tools.evaluate import evaluate

    ratios, jerks, chunks, conditioned, blended = [], [], 0, 0, 0
    for index, bag in enumerate(bags):
        report = evaluate(bag, policy, config, Path(out) / f'{index}', plots=False,
                          progress=False)
        published = [tick.chunk for tick in report.chunks]
        chunks += len(published)
        conditioned += sum(1 for c in published if c.conditioned_steps)
        blended += sum(1 for c in published if c.blended_steps)
        if len(published) < 2:
            continue
        executed, ids, switches = executed_sequence(
            [c.stamp_ns for c in published], [c.actions for c in published],
            published[0].step_period_ns, [c.takeover_step for c in published])
        jumps, _ = boundary_jumps(executed, switches, ids)
        ratios += [float(r) for r in jumps if math.isfinite(r)]
        if len(executed) > 3:
            jerks.append(float(np.sqrt(np.mean(jerk(executed, config.step_period) ** 2))))

    def stat(values, fn):
        return float(fn(values)) if values else math.nan

    return {'episodes': len(bags), 'chunks': chunks, 'conditioned_chunks': conditioned,
            'blended_chunks': blended, 'switches': len(ratios),
            'jump_ratio_median': stat(ratios, np.median),
            'jump_ratio_mean': stat(ratios, np.mean),
            'jump_ratio_p90': stat(ratios, lambda v: np.percentile(v, 90)),
            'jump_ratio_max': stat(ratios, np.max),
            'rms_command_jerk_mean': stat(jerks, np.mean)}


def run_offline(model, config_path, seeds, out, *, methods=STITCHING_METHODS,
                fractions=DEFAULT_LATENCIES, overlap=DEFAULT_OVERLAP, printer=print):
    """[cell dicts] of every method x latency on expert bags of `seeds` (in-process policy)."""
    from cosmos_policy_ros.node_config import load_parameter_file
    from cosmos_policy_ros.policy_loading import load_checked_policy

    out = Path(out)
    bags = []
    for seed in seeds:
        path = out / 'bags' / f'expert_{seed}'
        if not path.exists():
            record_expert_bag(path, seed, config_path=config_path)
        bags.append(path)
    shutil.rmtree(out / 'offline', ignore_errors=True)  # evaluate() wants new directories
    config = load_parameter_file(config_path, overrides={'model_path': str(model)})
    policy = load_checked_policy(config)
    execute = config.execute_steps or policy.layout.chunk_size
    cells = []
    for fraction in fractions:
        steps = latency_steps(fraction, execute)
        for method in methods:
            started = time.monotonic()
            cell_config = config.replace(stitching=method, stitching_overlap=overlap,
                                         latency_margin=steps * config.step_period)
            metrics = offline_cell(policy, cell_config, bags,
                                   out / 'offline' / f'{method}_{steps}')
            cells.append(dict(method=method, latency_fraction=fraction, latency_steps=steps,
                              **metrics))
            printer(f'  offline latency {100 * fraction:3.0f} %  {method:14s} jump/step median '
                    f'{metrics["jump_ratio_median"]:5.2f} max {metrics["jump_ratio_max"]:5.2f}'
                    f'  command jerk {metrics["rms_command_jerk_mean"]:7.1f}  '
                    f'({time.monotonic() - started:.0f} s)')
    return cells


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


def write_plot(path, results, *, fraction, seed_index=None, joint=PLOT_JOINT, steps=None):
    """Commanded joint `joint` of one episode per method at latency `fraction`: the executed
    command step by step, each chunk's own rows dotted, switches marked. seed_index None: the
    seed whose shortest episode over the methods is longest (the most switches for all)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

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


def main(argv=None, *, printer=print):
    """The `stitching` subcommand of cosmos-policy-sim; returns the record."""
    from cosmos_policy_ros.tools import sim_eval

    parser = argparse.ArgumentParser(prog='cosmos-policy-sim stitching',
                                     description=__doc__.split('\n')[0])
    parser.add_argument('--episodes', type=int, default=12, help='episodes per cell')
    parser.add_argument('--first-seed', type=int, default=sim_eval.DEFAULT_FIRST_SEED)
    parser.add_argument('--methods', nargs='+', default=list(STITCHING_METHODS),
                        choices=STITCHING_METHODS)
    parser.add_argument('--latencies', nargs='+', type=float, default=list(DEFAULT_LATENCIES),
                        help="injected latency as a fraction of a chunk's execution time")
    parser.add_argument('--overlap', type=int, default=DEFAULT_OVERLAP,
                        help='stitching_overlap of the blend methods and ramp (steps)')
    parser.add_argument('--mode', choices=('lockstep', 'realtime'), default='lockstep')
    parser.add_argument('--model', help='model directory (default: the shipped trained model)')
    parser.add_argument('--config', help='node parameter file (default: config/sim.yaml)')
    parser.add_argument('--out', default='output/stitching_eval')
    parser.add_argument('--bench-json', help='also write the record here (bench/results)')
    parser.add_argument('--plot', help='write the trajectory plot here (png)')
    parser.add_argument('--interval-plot', help='write the figures with intervals here (png)')
    parser.add_argument('--offline-episodes', type=int, default=0,
                        help='also measure offline on this many recorded expert bags')
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    model, description = sim_eval.resolve_model(args.model, out)
    config = sim_eval.node_config_path(args.config)
    seeds = list(range(args.first_seed, args.first_seed + args.episodes))
    printer(f'model: {description}')
    started = time.monotonic()
    results, settings = run_grid(model, config, seeds, out, methods=args.methods,
                                 fractions=args.latencies, overlap=args.overlap,
                                 mode=args.mode, printer=printer)
    command = 'cosmos-policy-sim stitching ' + ' '.join(argv if argv is not None else [])
    record = grid_record(results, settings, seeds=seeds, model=model,
                         description=description, command=command.strip())
    if args.offline_episodes:
        offline_seeds = seeds[:args.offline_episodes]
        record['offline'] = {
            'seeds': offline_seeds, 'source': 'scripted-expert episodes recorded as bags',
            'cells': run_offline(model, config, offline_seeds, out, methods=args.methods,
                                 fractions=args.latencies, overlap=args.overlap,
                                 printer=printer)}
    if args.bench_json:
        record['name'] = Path(args.bench_json).stem  # as bench/results names its records
    record['wall_s'] = time.monotonic() - started
    text = json.dumps(sim_eval._clean(record), indent=2) + '\n'
    (out / 'stitching_grid.json').write_text(text)
    if args.bench_json:
        Path(args.bench_json).write_text(text)
    if args.plot:
        write_plot(args.plot, results, fraction=max(args.latencies))
    if args.interval_plot:
        from cosmos_policy_ros.sim.stitching_figures import write_interval_plot
        write_interval_plot(args.interval_plot, record['cells'])
    printer('')
    printer(format_grid(record))
    printer(record['headline'])
    printer(f'\nwrote {out / "stitching_grid.json"}'
            + (f', {args.bench_json}' if args.bench_json else '')
            + (f', {args.plot}' if args.plot else '')
            + (f', {args.interval_plot}' if args.interval_plot else ''))
    return record
