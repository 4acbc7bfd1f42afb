"""The closed-loop evaluation harness: the policy through the real ``policy_node`` (a child
process, ``config/sim.yaml``, use_sim_time) on the simulated arm, and the baselines without ROS,
over fixed seeds; the results as files, figures and a table (docs/sim-eval.md).

The ROS side, the sim node stepping episodes on the graph, comes in as ``runner`` (the episode
runner, ``ros.sim_node.run_sim_episodes``): this module stays below ros/, and its logic can be
driven without a graph.

    runner(seeds, settings, *, policy=None, on_episode=None, env=None, recorder=None)
        -> (traces, future images by stamp, the policy node's last diagnostics)

``recorder`` (ros/episode_recorder.py, made by the caller): each policy episode recorded as a
rollout bag labelled by the sim, for ``cosmos-policy-dataset export --rollouts``.
"""
from dataclasses import dataclass
from pathlib import Path
import time
from typing import Callable, Optional, Sequence, Tuple

from cosmos_policy_ros import package_files
from cosmos_policy_ros.node_config import load_parameter_file
from cosmos_policy_ros.node_process import PolicyProcess
from cosmos_policy_ros.sim.baselines import BASELINES, run_baseline
from cosmos_policy_ros.sim.model import model_gamma, model_label, resolve_model
from cosmos_policy_ros.sim.node_settings import SimSettings
from cosmos_policy_ros.sim.report import episode_line, format_table, write_bench_record
from cosmos_policy_ros.sim.report import write_report

DEFAULT_FIRST_SEED = 100000  # evaluation seeds: far from the ones training episodes use
RELEASED_HINT = (
    'With a released checkpoint (on a real robot; README, "Quick start"):\n'
    '  cosmos-policy-convert --released <Cosmos-Policy-ALOHA-Predict2-2B dir> '
    '--tokenizer <tokenizer.pth> --out /models/aloha\n'
    '  cp config/aloha.yaml my_robot.yaml     # your copy of the preset: edit its topics, '
    'joints, limits\n'
    '  ros2 launch cosmos_policy_ros policy.launch.py config:=./my_robot.yaml '
    'model:=/models/aloha\n'
    '  cosmos-policy-replay eval <your bag> --config my_robot.yaml --model /models/aloha '
    '--recorded-actions <its actions topic>')
EpisodeRunner = Callable[..., Tuple[list, dict, dict]]


def node_config_path(arg=None):
    """The node parameter file: `arg`, or the installed config/sim.yaml."""
    return Path(arg) if arg else package_files.config_file('sim.yaml')


def replan_steps_of(config_path, chunk_size=8):
    """Steps the node executes of each chunk before it replans, from its parameter file
    (steps_left: execute_steps - replan_threshold); 0 for every_tick (a chunk per tick)."""
    config = load_parameter_file(config_path, overrides={'model_path': '-'})
    if config.replan_mode != 'steps_left':
        return 0
    return (config.execute_steps or chunk_size) - config.replan_threshold


def sim_settings(mode, *, slowdown=1.0, future_images=False, record_frames=False,
                 command_source='action_chunk', guard_timeout=120.0, replan_steps=0,
                 command_delay=0.0):
    return SimSettings(mode=mode, slowdown=slowdown, future_images=future_images,
                       record_frames=record_frames, command_source=command_source,
                       guard_timeout=guard_timeout, replan_steps=replan_steps,
                       command_delay=command_delay)


def run_policy(model, config, seeds, out, *, runner: EpisodeRunner, mode='lockstep',
               slowdown=1.0, future_images=False, on_episode=None, record_frames=False,
               overrides=(), env=None, command_delay=0.0, log_name=None, recorder=None):
    """The policy through policy_node (child process) on the sim; returns (traces, future).

    runner: the episode runner (module docstring); command_delay: sim seconds the sim holds
    each chunk before its controller gets it (SimSettings); log_name: the node's log file in
    `out` (default policy_node_<mode>.log); recorder: the runner's episode recorder (each
    episode as a rollout bag), or None.
    """
    overrides = list(overrides) + (['publish_future_images:=true'] if future_images else [])
    policy = PolicyProcess(model, config, Path(out) / (log_name or f'policy_node_{mode}.log'),
                           overrides=overrides)
    try:
        settings = sim_settings(mode, slowdown=slowdown, future_images=future_images,
                                record_frames=record_frames,
                                replan_steps=replan_steps_of(config),
                                command_delay=command_delay)
        traces, future, _ = runner(seeds, settings, on_episode=on_episode, policy=policy,
                                   env=env, recorder=recorder)
    finally:
        policy.close()
    return traces, future


@dataclass(frozen=True)
class EvalRequest:
    """What `cosmos-policy-sim eval` (and `demo`) evaluates; fields as its options."""

    out: str
    episodes: int = 50
    first_seed: int = DEFAULT_FIRST_SEED
    mode: str = 'lockstep'
    slowdown: float = 1.0
    model: Optional[str] = None
    config: Optional[str] = None
    baselines: Sequence[str] = BASELINES
    realtime_episodes: int = 0
    future_images: bool = False
    gamma: Optional[float] = None
    plots: bool = True
    bench_json: Optional[str] = None
    quiet: bool = False

    @property
    def seeds(self):
        return list(range(self.first_seed, self.first_seed + self.episodes))


def evaluate(request: EvalRequest, *, runner: EpisodeRunner, recorder=None, printer=print):
    """Run `request`: the policy through the node (and, with realtime_episodes, again in real
    time), the baselines; write the report, figures and bench record; return the summary.
    recorder: records the (lockstep) policy episodes as rollout bags (run_policy)."""
    out = Path(request.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    model, description = resolve_model(request.model, out)
    gamma = request.gamma if request.gamma is not None else model_gamma(model)
    config = node_config_path(request.config)
    seeds = request.seeds
    printer(f'model: {description}')
    printer(f'node:  policy_node --params-file {config} (use_sim_time), {request.mode} clock')
    results = {}
    started = time.monotonic()

    def show(name):
        return lambda trace: printer(episode_line(name, trace)) if not request.quiet else None

    traces, future = run_policy(model, config, seeds, out, runner=runner, mode=request.mode,
                                slowdown=request.slowdown, future_images=request.future_images,
                                on_episode=show('policy'), record_frames=True,
                                recorder=recorder)
    results['policy'] = traces
    policy_s = time.monotonic() - started
    if request.realtime_episodes:
        rt, _ = run_policy(model, config, seeds[:request.realtime_episodes], out, runner=runner,
                           mode='realtime', slowdown=request.slowdown,
                           on_episode=show('realtime'))
        results['policy_realtime'] = rt
    for name in request.baselines:
        results[name] = run_baseline(name, seeds, on_episode=show(name),
                                     replan_steps=replan_steps_of(config) or 1)
    meta = {'model': model_label(model), 'model_description': description, 'config': str(config),
            'mode': request.mode, 'slowdown': request.slowdown, 'seeds': seeds,
            'policy_wall_s': policy_s}
    summary = write_report(results, out, gamma=gamma, meta=meta)
    plots = []
    if request.plots:
        from cosmos_policy_ros.sim.plots import write_plots  # matplotlib: only for figures
        plots = write_plots(results, out, future=future)
    if request.bench_json:
        write_bench_record(request.bench_json, summary, request)
    printer('')
    printer(format_table(summary))
    printer(f'\nwrote {out / "summary.json"}, {out / "episodes.csv"}, {out / "ticks.csv"}'
            + ''.join(f', {p.name}' for p in plots))
    return summary
