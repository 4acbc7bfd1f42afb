"""The end-to-end demo (``bash scripts/demo.sh``): model, episode, node, live replay, evaluation.

1. a tiny random-weight model in the released formats, converted into a model directory
   (a stand-in: no weights can be downloaded here);
2. a synthetic ALOHA-like episode bag (three cameras, 14 joints, recorded actions, task);
3. ``policy_node`` with ``config/demo.yaml`` and ``use_sim_time``, as on a robot;
4. ``cosmos-policy-replay play`` publishes the episode with /clock and records the node's
   chunks, while this process prints a line per chunk (paced at ``--rate`` x real time, or
   ``--lockstep``: one control period of bag time at a time, see docs/replay.md);
5. ``cosmos-policy-replay eval`` runs the same bag offline (metrics, plots), and the live
   chunks are compared with the offline ones observation by observation.

Everything lands in --out (default output/demo); the model and the episode are reused when
present. Exit code 0 when every step worked and the live chunks equal the offline ones.
"""

import argparse
import os
from pathlib import Path
import shutil
import sys
import time

from cosmos_policy_ros import package_files
from cosmos_policy_ros.bags.sample_episode import EpisodeConfig, make_sample
from cosmos_policy_ros.cli.arguments import DefaultsHelpFormatter
from cosmos_policy_ros.evaluation.evaluate import evaluate, format_report
from cosmos_policy_ros.evaluation.parity import check_parity
from cosmos_policy_ros.layout import LatentLayout
from cosmos_policy_ros.node_config import load_parameter_file
from cosmos_policy_ros.policy_loading import load_policy_for
from cosmos_policy_ros.sim.harness import RELEASED_HINT

MODEL_LAYOUT = {'preset': 'aloha', 'image_size': 64}  # small images: the demo runs on a CPU


def _step(number, text):
    print(f'\n[{number}/5] {text}', flush=True)


def prepare_model(out):
    # torch: imported after run() set OMP_NUM_THREADS (one intra-op thread per process)
    from cosmos_policy_ros.engine.standin import write_standin_model

    model = out / 'model'
    if (model / 'model.json').is_file():
        print(f'  reusing {model}')
        return model
    model = write_standin_model(out, LatentLayout.from_dict(MODEL_LAYOUT))
    print(f'  wrote synthetic released-format files (tiny DiT and VAE, random weights) to '
          f'{out / "released"} and converted them into {model}')
    return model


def prepare_episode(out, duration):
    bag = out / f'episode_{duration:g}s'
    if (bag / 'metadata.yaml').is_file():
        print(f'  reusing {bag}')
        return bag
    info = make_sample(bag, EpisodeConfig(preset='aloha', duration=duration))
    print(f'  wrote {bag}: {info.message_count} messages, {duration:g} s, topics '
          f'{", ".join(sorted(info.topics))}')
    return bag


def run(args):
    from cosmos_policy_ros.ros.live_replay import run_live  # rclpy: the offline steps need none

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    config = Path(args.config) if args.config else package_files.config_file('demo.yaml')
    # Node, player and this process share the CPU: one intra-op thread each (set before torch
    # is imported here; inherited by the children).
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    env = dict(os.environ)
    print('cosmos_policy_ros demo: Cosmos Policy on a replayed episode, live and offline')
    print('NOTE: the model is a tiny random-weight stand-in in the released formats (no '
          'weights can be\n      downloaded here): its actions are meaningless, the pipeline '
          'around it is the real one.')

    _step(1, 'model: a tiny random-weight stand-in, converted with cosmos-policy-convert')
    model = prepare_model(out)
    _step(2, 'episode: a synthetic ALOHA-like bag (3 cameras, 14 joints, recorded actions)')
    bag = prepare_episode(out, args.duration)
    node_config = load_parameter_file(config, overrides={'model_path': str(model)})
    lockstep = 1.0 / node_config.rate if args.lockstep else None  # one control period a step
    pacing = (f'at rate {args.rate:g}' if lockstep is None else
              f'in lockstep ({lockstep:g} s steps)')
    _step(3, f'live: policy_node ({config.name}, use_sim_time) fed by cosmos-policy-replay '
             f'play {pacing}')
    started = time.monotonic()
    recorded, printed = run_live(bag, model, config, out, rate=args.rate, env=env,
                                 lockstep=lockstep)
    live_s = time.monotonic() - started

    _step(4, 'offline: cosmos-policy-replay eval on the same bag (no ROS graph)')
    policy = load_policy_for(node_config)
    eval_dir = out / 'eval'
    shutil.rmtree(eval_dir, ignore_errors=True)
    report = evaluate(bag, policy, node_config, eval_dir)
    print('\n'.join('  ' + line for line in format_report(report).splitlines()))

    _step(5, 'parity: live chunks vs offline chunks of the same observations')
    parity = check_parity(bag, recorded, policy, node_config, out)
    print(f'  {parity.live_chunks} live chunks; the offline sync rules pick the same messages '
          f'for {parity.same_sets} of their frames (the node may have had to do without a late '
          f'one)')
    print(f'  {parity.recomputed} recomputed offline from the same messages: largest difference '
          f'{parity.largest_difference:.2e}; {parity.not_recomputed} not recomputed')

    print('\nSummary')
    print(f'  live replay        {parity.live_chunks} chunks in {live_s:.1f} s -> {recorded}')
    print(f'  offline metrics    {eval_dir / "metrics.json"}')
    print(f'  offline chunks     {eval_dir / "chunks"}  (rosbag2, mcap)')
    print(f'  plots              {eval_dir / "actions.png"}, {eval_dir / "value.png"}, '
          f'{eval_dir / "latency.png"}')
    print(f'  parity             {"OK" if parity.ok else "FAILED"}')
    print('\n' + RELEASED_HINT)
    return 0 if parity.ok and printed > 0 else 1


def build_parser():
    parser = argparse.ArgumentParser(
        prog='cosmos-policy-demo', description=__doc__.split('\n')[0],
        formatter_class=DefaultsHelpFormatter)
    parser.add_argument('--out', default='output/demo', help='output directory')
    parser.add_argument('--duration', type=float, default=10.0,
                        help='length of the synthetic episode, seconds')
    parser.add_argument('--rate', type=float, default=1.0,
                        help='replay speed: bag seconds per wall second')
    parser.add_argument('--lockstep', action='store_true',
                        help="play in lockstep with the node's answers instead (ignores --rate)")
    parser.add_argument('--config', default=None,
                        help='node parameter file (default: the installed config/demo.yaml)')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (RuntimeError, ValueError, OSError) as error:
        print(f'demo failed: {error}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
