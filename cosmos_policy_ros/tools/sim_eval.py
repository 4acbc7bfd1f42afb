"""``cosmos-policy-sim``: the simulated robot, closed-loop evaluation and the closed-loop demo.

    cosmos-policy-sim run   --episodes N [--mode lockstep|realtime]   the sim node alone (for a
                            policy node you started yourself)
    cosmos-policy-sim eval  --model DIR --episodes 50 --out DIR        policy_node (subprocess,
                            config/sim.yaml, use_sim_time) on the sim + the baselines (scripted
                            expert, random actions, hold still); JSON, CSV and plots
    cosmos-policy-sim demo                                             a short eval, one line per
                            episode and a table against the baselines
    cosmos-policy-sim stitching --episodes 12 --bench-json FILE        every stitching method x
                            injected latency through policy_node (tools/stitching_eval.py)

Episodes use fixed seeds (``--first-seed`` on, consecutive); the policy runs through the real
node and topics (docs/sim-eval.md). The baselines run the same controller without ROS.
"""
import argparse
import csv
import json
import math
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import numpy as np

from cosmos_policy_ros.sim.model import model_label

NS = 1_000_000_000
DEFAULT_GAMMA = 0.99
DEFAULT_FIRST_SEED = 100000  # evaluation seeds: far from the ones training episodes use
START_TIMEOUT_S = 300.0
BASELINES = ('expert', 'random', 'hold')
STANDIN_NOTE = ('a tiny RANDOM-WEIGHT stand-in in the released formats (engine/synthetic.py + '
                'cosmos-policy-convert): no trained model is installed, so expect ~0 % success')
TRAINED_NOTE = ('a tiny Cosmos Policy (same classes and file formats as the released '
                'checkpoints) trained on this sim by cosmos-policy-train; its value comes from '
                'the planning network beside it (--planning)')
RELEASED_HINT = (
    'With a released checkpoint (on a real robot):\n'
    '  cosmos-policy-convert --released <Cosmos-Policy-ALOHA-Predict2-2B dir> '
    '--tokenizer <tokenizer.pth> --out /models/aloha\n'
    '  ros2 launch cosmos_policy_ros policy.launch.py config:=aloha.yaml model:=/models/aloha')


# --- set-up ------------------------------------------------------------------------------------
def _share_dir():
    from ament_index_python.packages import get_package_prefix, get_package_share_directory
    return (Path(get_package_share_directory('cosmos_policy_ros')),
            Path(get_package_prefix('cosmos_policy_ros')))


def shipped_model():
    """The model directory shipped with the package (trained by cosmos-policy-train), or None."""
    from cosmos_policy_ros.sim.model import shipped_model_dir

    path = shipped_model_dir()
    return path if (path / 'model.json').is_file() else None


def sim_layout(config=None):
    from cosmos_policy_ros.layout import LatentLayout
    from cosmos_policy_ros.sim.arm import JOINT_NAMES, SimConfig

    config = config or SimConfig()
    return LatentLayout(name='planar_reach', cameras=('wrist', 'primary'), chunk_size=8,
                        action_dim=len(JOINT_NAMES), proprio_dim=len(JOINT_NAMES),
                        image_size=config.image_size)


def make_standin_model(out, *, seed=0):
    """A random-weight model directory of the sim's layout (instructions = the sim's tasks)."""
    import yaml

    from cosmos_policy_ros.engine.synthetic_checkpoints import (write_synthetic_model,
                                                                write_t5_embeddings)
    from cosmos_policy_ros.sim.arm import TASKS
    from cosmos_policy_ros.tools.convert import main as convert

    out = Path(out)
    model = out / 'model'
    if (model / 'model.json').is_file():
        return model
    released = out / 'released'
    layout = sim_layout()
    paths = write_synthetic_model(released, layout, size='tiny', seed=seed, dtype='fp32',
                                  overwrite=True)
    write_t5_embeddings(paths['t5_embeddings'], TASKS, seed=seed)
    (out / 'layout.yaml').write_text(yaml.safe_dump(layout.to_dict()))
    code = convert(['--released', str(released), '--out', str(model), '--layout',
                    str(out / 'layout.yaml'), '--images', 'aloha', '--num-steps', '5',
                    '--force'])
    if code != 0:
        raise RuntimeError('cosmos-policy-convert failed on the stand-in model')
    return model


def resolve_model(arg, out):
    """(model dir, description): --model, else the shipped model, else a stand-in."""
    if arg:
        path = Path(arg)
        if not (path / 'model.json').is_file():
            raise ValueError(f'--model {arg}: no model.json there (a directory written by '
                             f'cosmos-policy-convert or cosmos-policy-train)')
        return path, 'the model at ' + str(path)
    shipped = shipped_model()
    if shipped is not None:
        return shipped, TRAINED_NOTE + f' ({model_label(shipped)})'
    return make_standin_model(Path(out) / 'standin'), STANDIN_NOTE


def model_gamma(model):
    """The discount the model was trained with (model.json source.gamma), or DEFAULT_GAMMA."""
    try:
        gamma = json.loads((Path(model) / 'model.json').read_text())['source']['gamma']
        return float(gamma)
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_GAMMA


def node_config_path(arg=None):
    if arg:
        return Path(arg)
    share, _ = _share_dir()
    return share / 'config' / 'sim.yaml'


# --- the policy through policy_node --------------------------------------------------------------
class PolicyProcess:
    """policy_node (or another of the package's ROS scripts, e.g. policy_server) as a
    subprocess (use_sim_time), its output in `log`; ros_args: more ROS arguments (remaps)."""

    def __init__(self, model, config, log, *, overrides=(), env=None, script='policy_node',
                 ros_args=()):
        _, prefix = _share_dir()
        self.log = open(log, 'w')
        args = [str(prefix / 'lib' / 'cosmos_policy_ros' / script), '--ros-args',
                '--params-file', str(config), '-p', f'model_path:={model}',
                '-p', 'use_sim_time:=true', *ros_args]
        for override in overrides:
            args += ['-p', override]
        self.process = subprocess.Popen(args, env=env or dict(os.environ), stdout=self.log,
                                        stderr=subprocess.STDOUT, text=True)

    def check(self):
        if self.process.poll() is not None:
            raise RuntimeError(f'{Path(self.process.args[0]).name} exited with code '
                               f'{self.process.returncode}; see {self.log.name}')

    def close(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def replan_steps_of(config_path, chunk_size=8):
    """Steps the node executes of each chunk before it replans, from its parameter file
    (steps_left: execute_steps - replan_threshold); 0 for every_tick (a chunk per tick)."""
    from cosmos_policy_ros.node_config import load_parameter_file

    config = load_parameter_file(config_path, overrides={'model_path': '-'})
    if config.replan_mode != 'steps_left':
        return 0
    return (config.execute_steps or chunk_size) - config.replan_threshold


def sim_settings(mode, *, slowdown=1.0, future_images=False, record_frames=False,
                 command_source='action_chunk', guard_timeout=120.0, replan_steps=0,
                 command_delay=0.0):
    from cosmos_policy_ros.ros.sim_node import SimSettings
    return SimSettings(mode=mode, slowdown=slowdown, future_images=future_images,
                       record_frames=record_frames, command_source=command_source,
                       guard_timeout=guard_timeout, replan_steps=replan_steps,
                       command_delay=command_delay)


def run_sim_episodes(seeds, settings, *, env=None, on_episode=None, policy=None,
                     context=None, wait_for_policy=True):
    """Episodes through the sim node on the ROS graph; returns (traces, future images, last
    diagnostics of the policy node). policy: a PolicyProcess to watch; wait_for_policy: first
    wait until the policy node reports being active."""
    import rclpy

    from cosmos_policy_ros.ros.sim_node import SimRobotNode
    from cosmos_policy_ros.sim.arm import CAMERAS, JOINT_NAMES, PlanarReachEnv

    own = context is None
    if own:
        context = rclpy.Context()
        rclpy.init(args=[], context=context)
    sim = SimRobotNode(env if env is not None else PlanarReachEnv(), settings, context=context,
                       joint_names=JOINT_NAMES, cameras=CAMERAS)
    traces = []
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while wait_for_policy and sim.diagnostics.get('lifecycle_state') != 'active':
            if policy is not None:
                policy.check()
            if time.monotonic() > deadline:
                raise RuntimeError('policy_node did not become active in time')
            sim.spin(0.1)
        for seed in seeds:
            if policy is not None:
                policy.check()
            trace = sim.run_episode(seed)
            traces.append(trace)
            if on_episode is not None:
                on_episode(trace)
        return traces, dict(sim.future), dict(sim.diagnostics)
    finally:
        sim.close()
        if own:
            rclpy.try_shutdown(context=context)


def run_policy(model, config, seeds, out, *, mode='lockstep', slowdown=1.0,
               future_images=False, on_episode=None, record_frames=False, overrides=(),
               env=None, command_delay=0.0, log_name=None):
    """The policy through policy_node (subprocess) on the sim; returns (traces, future).

    command_delay: sim seconds the sim holds each chunk before its controller gets it
    (SimSettings); log_name: the node's log file in `out` (default policy_node_<mode>.log).
    """
    overrides = list(overrides) + (['publish_future_images:=true'] if future_images else [])
    policy = PolicyProcess(model, config, Path(out) / (log_name or f'policy_node_{mode}.log'),
                           overrides=overrides)
    try:
        settings = sim_settings(mode, slowdown=slowdown, future_images=future_images,
                                record_frames=record_frames,
                                replan_steps=replan_steps_of(config),
                                command_delay=command_delay)
        traces, future, _ = run_sim_episodes(seeds, settings, on_episode=on_episode,
                                             policy=policy, env=env)
    finally:
        policy.close()
    return traces, future


# --- baselines ---------------------------------------------------------------------------------
def run_baseline(name, seeds, *, horizon=8, replan_steps=4, on_episode=None,
                 record_frames=False):
    """The scripted expert, random joint targets or holding still, without ROS."""
    from cosmos_policy_ros.sim.arm import (expert_chunk, JOINT_LOWER, JOINT_NAMES,
                                           JOINT_UPPER, PlanarReachEnv)
    from cosmos_policy_ros.tools.sim_control import run_offline_episode

    env = PlanarReachEnv()
    period = env.config.step_period
    traces = []
    for seed in seeds:
        rng = np.random.RandomState(seed)
        if name == 'expert':
            def chunk_fn(env, step):
                return expert_chunk(env, horizon, period)
        elif name == 'random':
            def chunk_fn(env, step, rng=rng):
                return rng.uniform(JOINT_LOWER, JOINT_UPPER, size=(horizon, len(JOINT_NAMES)))
        elif name == 'hold':
            def chunk_fn(env, step):
                return None
        else:
            raise ValueError(f'unknown baseline {name!r}; one of {list(BASELINES)}')
        trace = run_offline_episode(env, seed, chunk_fn, joint_names=JOINT_NAMES,
                                    horizon=horizon, step_period=period,
                                    replan_steps=replan_steps, record_frames=record_frames)
        traces.append(trace)
        if on_episode is not None:
            on_episode(trace)
    return traces


# --- reporting ---------------------------------------------------------------------------------
def summarize(traces, gamma):
    from cosmos_policy_ros.tools.sim_metrics import spearman

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


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_report(results, out, *, gamma, meta):
    """results: {controller: [EpisodeTrace]} -> summary.json, episodes.csv, ticks.csv."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = {'meta': meta, 'gamma': gamma,
               'controllers': {name: summarize(traces, gamma) for name, traces in
                               results.items()}}
    (out / 'summary.json').write_text(json.dumps(_clean(summary), indent=2) + '\n')
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


def write_plots(results, out, *, future=None, policy_name='policy'):
    """success.png, value.png (policy), filmstrip.png (policy, first episode with frames)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

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
        fig, ax = plt.subplots(figsize=(8, 4))
        twin = ax.twinx()
        for trace in traces[:6]:
            steps = np.arange(len(trace.distances)) * trace.step_period
            line, = twin.plot(steps, trace.distances, alpha=0.4, linestyle='--')
            ax.plot([c.step * trace.step_period for c in trace.chunks],
                    [c.value for c in trace.chunks], marker='o', color=line.get_color(),
                    label=f'seed {trace.seed} ({"ok" if trace.success else "fail"})')
        ax.set_xlabel('episode time (s)')
        ax.set_ylabel('predicted value (solid)')
        twin.set_ylabel('distance to goal (dashed)')
        ax.legend(fontsize=7, loc='upper right')
        fig.tight_layout()
        fig.savefig(out / 'value.png', dpi=80)
        plt.close(fig)
        written.append(out / 'value.png')
        framed = [t for t in traces if t.frames]
        if framed:
            path = out / 'filmstrip.png'
            write_filmstrip(path, framed[0], future or {})
            written.append(path)
    return written


def write_filmstrip(path, trace, future, *, columns=6, camera='primary'):
    """Rows: the real frame at each chunk's observation, the node's predicted future frame for
    that chunk (when published), and the real frame one chunk later."""
    from PIL import Image, ImageDraw

    chunks = trace.chunks[:columns]
    if not chunks or not trace.frames:
        return None
    size = max(96, trace.frames[0].shape[0])  # small sim images are scaled up
    horizon = len(chunks[0].actions) if chunks[0].actions is not None else 8
    blank = np.full((size, size, 3), 255, np.uint8)
    label_w = 70
    canvas = Image.new('RGB', (label_w + len(chunks) * (size + 4), 3 * (size + 4) + 14),
                       'white')
    draw = ImageDraw.Draw(canvas)
    published = any(future.get(chunk.stamp_ns, {}).get(camera) is not None for chunk in chunks)
    rows = ('now', 'predicted' if published else 'predicted\n(not\npublished)',
            f'real +{horizon}')
    for row, text in enumerate(rows):
        draw.text((2, 14 + row * (size + 4) + size // 2 - 5), text, fill='black')
    for column, chunk in enumerate(chunks):
        x = label_w + column * (size + 4)
        draw.text((x, 1), f'step {chunk.step}', fill='black')
        later = min(chunk.step + horizon, len(trace.frames) - 1)
        predicted = future.get(chunk.stamp_ns, {}).get(camera)
        images = [trace.frames[min(chunk.step, len(trace.frames) - 1)],
                  predicted if predicted is not None else blank, trace.frames[later]]
        for row, image in enumerate(images):
            tile = Image.fromarray(np.asarray(image, np.uint8))
            tile = tile.resize((size, size), Image.NEAREST)
            canvas.paste(tile, (x, 14 + row * (size + 4)))
    canvas.save(path)
    return path


def format_table(summary):
    lines = [f'  {"controller":15s} {"success":>8s} {"t_success":>9s} {"jerk":>8s} '
             f'{"jump/step":>9s} {"value~G":>8s} {"latency":>8s}']
    for name, data in summary['controllers'].items():
        def fmt(value, spec):
            return format(value, spec) if value is not None and math.isfinite(value) else '-'
        lines.append(
            f'  {name:15s} {100 * data["success_rate"]:7.0f}% '
            f'{fmt(data["time_to_success_mean"], "8.2f")}s '
            f'{fmt(data["rms_jerk_mean"], "8.1f")} '
            f'{fmt(data["boundary_jump_ratio_mean"], "9.2f")} '
            f'{fmt(data["value_spearman"], "8.2f")} '
            f'{fmt(data["latency_mean"], "7.3f")}s')
    return '\n'.join(lines)


def episode_line(name, trace):
    outcome = (f'success in {trace.success_step * trace.step_period:4.1f} s' if trace.success
               else 'timeout         ')
    values = [c.value for c in trace.chunks if math.isfinite(c.value)]
    value = f'  value {values[0]:.2f} -> {values[-1]:.2f}' if values else ''
    refused = f'  refused {trace.refused}' if trace.refused else ''
    return (f'  {name:8s} seed {trace.seed:6d}  {trace.task:22s}  {outcome}  '
            f'{len(trace.chunks):2d} chunks{value}{refused}')


# --- commands ----------------------------------------------------------------------------------
def evaluate(args, *, printer=print):
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    model, description = resolve_model(args.model, out)
    gamma = args.gamma if args.gamma is not None else model_gamma(model)
    config = node_config_path(args.config)
    seeds = list(range(args.first_seed, args.first_seed + args.episodes))
    printer(f'model: {description}')
    printer(f'node:  policy_node --params-file {config} (use_sim_time), {args.mode} clock')
    results = {}
    started = time.monotonic()

    def show(name):
        return lambda trace: printer(episode_line(name, trace)) if not args.quiet else None

    traces, future = run_policy(model, config, seeds, out, mode=args.mode,
                                slowdown=args.slowdown, future_images=args.future_images,
                                on_episode=show('policy'), record_frames=True)
    results['policy'] = traces
    policy_s = time.monotonic() - started
    if args.realtime_episodes:
        rt, _ = run_policy(model, config, seeds[:args.realtime_episodes], out, mode='realtime',
                           slowdown=args.slowdown, on_episode=show('realtime'))
        results['policy_realtime'] = rt
    for name in args.baselines:
        results[name] = run_baseline(name, seeds, on_episode=show(name),
                                     replan_steps=replan_steps_of(config) or 1)
    meta = {'model': model_label(model), 'model_description': description, 'config': str(config),
            'mode': args.mode, 'slowdown': args.slowdown, 'seeds': seeds,
            'policy_wall_s': policy_s}
    summary = write_report(results, out, gamma=gamma, meta=meta)
    plots = write_plots(results, out, future=future) if not args.no_plots else []
    if args.bench_json:
        write_bench_record(args.bench_json, summary, args)
    printer('')
    printer(format_table(summary))
    printer(f'\nwrote {out / "summary.json"}, {out / "episodes.csv"}, {out / "ticks.csv"}'
            + ''.join(f', {p.name}' for p in plots))
    return summary


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


def write_bench_record(path, summary, args):
    """A bench/results-style JSON of an eval (bench/harness.py's summary reads its fields)."""
    from cosmos_policy_ros.tools import bench_record
    record = {
        'name': Path(path).stem, 'status': 'ok',
        'title': 'Closed loop on the simulated arm: the policy through policy_node vs baselines',
        'device': 'cpu', 'dtype': 'float32',
        'preset': f'planar_reach, {args.mode}, {args.episodes} episodes from seed '
                  f'{args.first_seed}' + (f', {args.realtime_episodes} real-time'
                                          if args.realtime_episodes else ''),
        'headline': bench_headline(summary),
        **bench_record.provenance(),
        'summary': {name: {k: v for k, v in data.items() if k != 'per_episode'}
                    for name, data in summary['controllers'].items()},
        'meta': summary['meta'],
    }
    Path(path).write_text(json.dumps(_clean(record), indent=2) + '\n')


def cmd_run(args):
    from cosmos_policy_ros.tools.sim_control import EpisodeTrace  # noqa: F401 (numpy only)
    seeds = list(range(args.first_seed, args.first_seed + args.episodes))
    settings = sim_settings(args.mode, slowdown=args.slowdown,
                            command_source=args.command_source)
    traces, _, _ = run_sim_episodes(seeds, settings,
                                    on_episode=lambda t: print(episode_line('sim', t)))
    rate = np.mean([t.success for t in traces]) if traces else 0.0
    print(f'success rate {100 * rate:.0f} % over {len(traces)} episodes')
    return 0


def cmd_demo(args):
    print('cosmos_policy_ros closed-loop demo: Cosmos Policy drives a simulated planar arm '
          'through policy_node')
    summary = evaluate(args)
    print('\nThe model: ' + summary['meta']['model_description'] + '.')
    print(RELEASED_HINT)
    return 0


def _common(parser):
    parser.add_argument('--episodes', type=int, default=10)
    parser.add_argument('--first-seed', type=int, default=DEFAULT_FIRST_SEED)
    parser.add_argument('--mode', choices=('lockstep', 'realtime'), default='lockstep')
    parser.add_argument('--slowdown', type=float, default=1.0,
                        help='realtime: wall seconds per sim second')


def _eval_args(parser, *, episodes, out, baselines=BASELINES):
    _common(parser)
    parser.set_defaults(episodes=episodes)
    parser.add_argument('--model', help='model directory (default: the shipped trained model)')
    parser.add_argument('--config', help='node parameter file (default: config/sim.yaml)')
    parser.add_argument('--out', default=out)
    parser.add_argument('--baselines', nargs='*', default=list(baselines),
                        choices=BASELINES)
    parser.add_argument('--realtime-episodes', type=int, default=0,
                        help='also run this many episodes in real time')
    parser.add_argument('--future-images', action='store_true',
                        help='have the node publish predicted frames (filmstrip row)')
    parser.add_argument('--gamma', type=float, default=None,
                        help="discount of the true return (default: the model.json's "
                             f'source.gamma, else {DEFAULT_GAMMA})')
    parser.add_argument('--no-plots', action='store_true')
    parser.add_argument('--bench-json', help='also write a bench/results-style JSON here')
    parser.add_argument('--quiet', action='store_true')


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ['stitching']:  # its own options: tools/stitching_eval.py
        from cosmos_policy_ros.tools import stitching_eval
        try:
            stitching_eval.main(argv[1:])
            return 0
        except (RuntimeError, ValueError, OSError) as error:
            print(f'cosmos-policy-sim stitching: {error}', file=sys.stderr)
            return 1
    parser = argparse.ArgumentParser(prog='cosmos-policy-sim', description=__doc__.split(
        '\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    run = sub.add_parser('run', help='the sim node alone')
    _common(run)
    run.add_argument('--command-source', choices=('action_chunk', 'joint_trajectory'),
                     default='action_chunk')
    _eval_args(sub.add_parser('eval', help='closed-loop evaluation'), episodes=50,
               out='output/sim_eval')
    _eval_args(sub.add_parser('demo', help='the closed-loop demo'), episodes=8,
               out='output/sim_demo')
    sub.add_parser('stitching', help='stitching methods x injected latency '
                                     '(cosmos-policy-sim stitching --help)')
    args = parser.parse_args(argv)
    try:
        if args.command == 'run':
            return cmd_run(args)
        if args.command == 'demo':
            return cmd_demo(args)
        evaluate(args)
        return 0
    except (RuntimeError, ValueError, OSError) as error:
        print(f'cosmos-policy-sim: {error}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
