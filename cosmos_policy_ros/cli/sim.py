"""``cosmos-policy-sim``: the simulated robot, closed-loop evaluation and the closed-loop demo.

    cosmos-policy-sim run   --episodes N [--mode lockstep|realtime]   the sim node alone (for a
                            policy node you started yourself)
    cosmos-policy-sim eval  --model DIR --episodes 50 --out DIR        policy_node (subprocess,
                            config/sim.yaml, use_sim_time) on the sim + the baselines (scripted
                            expert, random actions, hold still); JSON, CSV and plots
    cosmos-policy-sim demo                                             a short eval, one line per
                            episode and a table against the baselines
    cosmos-policy-sim stitching --episodes 12 --bench-json FILE        every stitching method x
                            injected latency through policy_node (sim/stitching.py)

Episodes use fixed seeds (``--first-seed`` on, consecutive); the policy runs through the real
node and topics (docs/sim-eval.md, sim/harness.py). The baselines run the same controller
without ROS.
"""
import argparse
import os
import sys

import numpy as np

from cosmos_policy_ros.cli.arguments import DefaultsHelpFormatter
from cosmos_policy_ros.execution import STITCHING_METHODS
from cosmos_policy_ros.ros.episode_recorder import EpisodeRecorder
from cosmos_policy_ros.ros.sim_node import run_sim_episodes
from cosmos_policy_ros.sim.baselines import BASELINES
from cosmos_policy_ros.sim.harness import (DEFAULT_FIRST_SEED, EvalRequest, evaluate,
                                           RELEASED_HINT, sim_settings)
from cosmos_policy_ros.sim.model import DEFAULT_GAMMA
from cosmos_policy_ros.sim.report import episode_line
from cosmos_policy_ros.sim.stitching import run_stitching, StitchingRequest
from cosmos_policy_ros.sim.stitching_grid import DEFAULT_LATENCIES, DEFAULT_OVERLAP


def cmd_run(args):
    seeds = list(range(args.first_seed, args.first_seed + args.episodes))
    settings = sim_settings(args.mode, slowdown=args.slowdown,
                            command_source=args.command_source)
    traces, _, _ = run_sim_episodes(seeds, settings,
                                    on_episode=lambda t: print(episode_line('sim', t)))
    rate = np.mean([t.success for t in traces]) if traces else 0.0
    print(f'success rate {100 * rate:.0f} % over {len(traces)} episodes')
    return 0


def eval_request(args):
    return EvalRequest(
        out=args.out, episodes=args.episodes, first_seed=args.first_seed, mode=args.mode,
        slowdown=args.slowdown, model=args.model, config=args.config,
        baselines=tuple(args.baselines), realtime_episodes=args.realtime_episodes,
        future_images=args.future_images, gamma=args.gamma, plots=not args.no_plots,
        bench_json=args.bench_json, quiet=args.quiet)


def episode_recorder(args):
    """--record-rollouts DIR: one bag per policy episode, labelled by the sim."""
    return EpisodeRecorder(args.record_rollouts) if args.record_rollouts else None


def cmd_eval(args):
    evaluate(eval_request(args), runner=run_sim_episodes, recorder=episode_recorder(args))
    return 0


def cmd_demo(args):
    print('cosmos_policy_ros closed-loop demo: Cosmos Policy drives a simulated planar arm '
          'through policy_node')
    summary = evaluate(eval_request(args), runner=run_sim_episodes,
                       recorder=episode_recorder(args))
    print('\nThe model: ' + summary['meta']['model_description'] + '.')
    print(RELEASED_HINT)
    return 0


def _common(parser):
    parser.add_argument('--episodes', type=int, default=10, help='episodes to run')
    parser.add_argument('--first-seed', type=int, default=DEFAULT_FIRST_SEED,
                        help='seed of the first episode (the others follow it); far from the '
                             'training seeds')
    parser.add_argument('--mode', choices=('lockstep', 'realtime'), default='lockstep',
                        help="lockstep: the sim waits for the node's answer at each step "
                             '(repeatable); realtime: the sim follows the wall clock')
    parser.add_argument('--slowdown', type=float, default=1.0,
                        help='realtime mode: wall seconds per sim second')


def _eval_args(parser, *, episodes, out, baselines=BASELINES):
    _common(parser)
    parser.set_defaults(episodes=episodes)
    parser.add_argument('--model', help='model directory (default: the shipped trained model)')
    parser.add_argument('--config', help='node parameter file (default: config/sim.yaml)')
    parser.add_argument('--out', default=out, help='output directory')
    parser.add_argument('--baselines', nargs='*', default=list(baselines),
                        choices=BASELINES, help='baselines run in-process on the same seeds')
    parser.add_argument('--realtime-episodes', type=int, default=0,
                        help='also run this many episodes of the policy in real time')
    parser.add_argument('--future-images', action='store_true',
                        help="have the node publish predicted frames (the filmstrip's middle "
                             'row; about 1 s more per chunk on a CPU)')
    parser.add_argument('--gamma', type=float, default=None,
                        help="discount of the true return (default: the model.json's "
                             f'source.gamma, else {DEFAULT_GAMMA})')
    parser.add_argument('--no-plots', action='store_true', help='write no PNG figures')
    parser.add_argument('--bench-json',
                        help='also write a bench/results-style JSON here (default: none)')
    parser.add_argument('--record-rollouts', metavar='DIR',
                        help="record the policy's episodes as bags in DIR (its inputs, "
                             "/action_chunk, /episode_outcome with the sim's label) for "
                             'cosmos-policy-dataset export --rollouts (default: none)')
    parser.add_argument('--quiet', action='store_true', help='no line per episode')


def stitching_parser():
    parser = argparse.ArgumentParser(
        prog='cosmos-policy-sim stitching', formatter_class=DefaultsHelpFormatter,
        description='Every stitching method x injected latency in the closed loop.')
    parser.add_argument('--episodes', type=int, default=12, help='episodes per cell')
    parser.add_argument('--first-seed', type=int, default=DEFAULT_FIRST_SEED,
                        help='seed of the first episode of each cell')
    parser.add_argument('--methods', nargs='+', default=list(STITCHING_METHODS),
                        choices=STITCHING_METHODS, help='stitching methods to compare')
    parser.add_argument('--latencies', nargs='+', type=float, default=list(DEFAULT_LATENCIES),
                        help="injected latency as a fraction of a chunk's execution time")
    parser.add_argument('--overlap', type=int, default=DEFAULT_OVERLAP,
                        help='stitching_overlap of the blend methods and ramp (steps)')
    parser.add_argument('--mode', choices=('lockstep', 'realtime'), default='lockstep',
                        help='clock mode of the sim (see cosmos-policy-sim eval --help)')
    parser.add_argument('--model', help='model directory (default: the shipped trained model)')
    parser.add_argument('--config', help='node parameter file (default: config/sim.yaml)')
    parser.add_argument('--out', default='output/stitching_eval', help='output directory')
    parser.add_argument('--bench-json',
                        help='also write the record here (bench/results; default: none)')
    parser.add_argument('--plot', help='write the trajectory plot here (png; default: none)')
    parser.add_argument('--interval-plot',
                        help='write the figures with intervals here (png; default: none)')
    parser.add_argument('--offline-episodes', type=int, default=0,
                        help='also measure offline on this many recorded expert bags')
    return parser


def cmd_stitching(argv, printer=print):
    """The `stitching` subcommand (its own options); returns the record."""
    args = stitching_parser().parse_args(argv)
    request = StitchingRequest(
        out=args.out, episodes=args.episodes, first_seed=args.first_seed,
        methods=tuple(args.methods), latencies=tuple(args.latencies), overlap=args.overlap,
        mode=args.mode, model=args.model, config=args.config, bench_json=args.bench_json,
        plot=args.plot, interval_plot=args.interval_plot,
        offline_episodes=args.offline_episodes,
        command=' '.join(['cosmos-policy-sim stitching', *argv]))
    return run_stitching(request, runner=run_sim_episodes, printer=printer)


def build_parser():
    parser = argparse.ArgumentParser(prog='cosmos-policy-sim', description=__doc__.split(
        '\n')[0], formatter_class=DefaultsHelpFormatter)
    sub = parser.add_subparsers(dest='command', required=True)
    run = sub.add_parser(
        'run', help='the sim node alone', formatter_class=DefaultsHelpFormatter,
        description='The simulated arm behind ROS topics, for a policy_node you started '
                    'yourself (docs/sim-eval.md).')
    _common(run)
    run.add_argument('--command-source', choices=('action_chunk', 'joint_trajectory'),
                     default='action_chunk', help="which of the node's outputs to execute")
    _eval_args(sub.add_parser(
        'eval', help='closed-loop evaluation', formatter_class=DefaultsHelpFormatter,
        description='Closed-loop evaluation: the policy drives the simulated arm through '
                    'policy_node (config/sim.yaml, use_sim_time) for --episodes episodes, '
                    'next to the baselines on the same seeds; writes summary.json, '
                    'episodes.csv, ticks.csv, figures and the node log to --out '
                    '(docs/sim-eval.md).'), episodes=50, out='output/sim_eval')
    demo = sub.add_parser(
        'demo', help='the closed-loop demo', formatter_class=DefaultsHelpFormatter,
        description='The closed-loop demo (part 1 of scripts/demo.sh): a short evaluation '
                    'that prints one line per episode and a table of the policy against the '
                    'baselines, then how to use a released checkpoint.')
    _eval_args(demo, episodes=8, out='output/sim_demo')
    sub.add_parser('stitching', help='stitching methods x injected latency '
                                     '(cosmos-policy-sim stitching --help)',
                   formatter_class=DefaultsHelpFormatter,
                   description='See cosmos-policy-sim stitching --help.')
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    # One intra-op thread per process: the node, the sim and this process share the CPU.
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    if argv[:1] == ['stitching']:  # its own options
        try:
            cmd_stitching(argv[1:])
            return 0
        except (RuntimeError, ValueError, OSError) as error:
            print(f'cosmos-policy-sim stitching: {error}', file=sys.stderr)
            return 1
    args = build_parser().parse_args(argv)
    commands = {'run': cmd_run, 'eval': cmd_eval, 'demo': cmd_demo}
    try:
        return commands[args.command](args)
    except (RuntimeError, ValueError, OSError) as error:
        print(f'cosmos-policy-sim: {error}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
