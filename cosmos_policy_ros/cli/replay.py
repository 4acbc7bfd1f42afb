"""`cosmos-policy-replay`: replay recorded episodes through a Cosmos Policy node.

    cosmos-policy-replay info BAG
    cosmos-policy-replay make-sample OUT [--preset aloha] [--storage mcap] [--compressed] ...
    cosmos-policy-replay play BAG [--rate 2] [--remap FROM:=TO ...] [--record OUT] ...
    cosmos-policy-replay eval BAG --config config/aloha.yaml --model /models/aloha [--out DIR]

Each subcommand is one `add_<name>_parser(subparsers)` function that declares its arguments
and sets `handler` to a `run_<name>(args) -> exit code` function; add a new subcommand (e.g.
`eval`) by writing such a pair and listing the adder in SUBCOMMANDS. Errors in inputs (bags,
topics, options) print one `error: ...` line and exit with code 2; SIGINT/SIGTERM during
`play` exit cleanly with code 0. `play` exits with 1 when it recorded (`--record`) not one
message, and with 3 when `--wait-for-subscribers` ran out of `--wait-timeout`. `eval` exits
with 2 when no chunk was produced and inferences failed, and with EXIT_NO_CHUNK (4) when no
tick gave a chunk for another reason (the reasons are listed).
"""
import argparse
import math
import os
import sys

import yaml

from cosmos_policy_ros import package_files
from cosmos_policy_ros.bags.playback import parse_remaps, PlayConfig
from cosmos_policy_ros.bags.reader import read_info
from cosmos_policy_ros.bags.sample_episode import EpisodeConfig, make_sample, preset_params_file
from cosmos_policy_ros.bags.sample_robots import ROBOTS
from cosmos_policy_ros.bags.storage import bag_size, BagError
from cosmos_policy_ros.cli.arguments import DefaultsHelpFormatter
from cosmos_policy_ros.evaluation.evaluate import evaluate, format_report, no_chunk_reasons
from cosmos_policy_ros.node_config import load_parameter_file
from cosmos_policy_ros.parameter_report import report_lines
from cosmos_policy_ros.policy_loading import load_policy_for

EXIT_NO_CHUNK = 4  # eval: not one tick gave a chunk (and not because every inference failed)


def _seconds(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'not a number of seconds: {text!r}') from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f'must be >= 0 seconds, got {text!r}')
    return value


def _positive(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'not a number: {text!r}') from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f'must be > 0, got {text!r}')
    return value


# --- info --------------------------------------------------------------------------------------
def add_info_parser(subparsers):
    parser = subparsers.add_parser(
        'info', formatter_class=DefaultsHelpFormatter,
        help='list the topics, types and message counts of a bag',
        description='List the topics, types and message counts of a rosbag2 bag (directory, '
                    '.mcap or .db3), like `ros2 bag info`.')
    parser.add_argument('bag', help='bag directory or storage file')
    parser.set_defaults(handler=run_info)


def run_info(args):
    print(read_info(args.bag).format())
    return 0


# --- make-sample -------------------------------------------------------------------------------
def add_make_sample_parser(subparsers):
    defaults = EpisodeConfig()
    parser = subparsers.add_parser(
        'make-sample', formatter_class=DefaultsHelpFormatter,
        help='write a small synthetic episode bag',
        description='Write a small synthetic episode (cameras of the layout preset, joint '
                    'states, recorded demonstrator actions, task) as a rosbag2 bag. The same '
                    'arguments give a byte-identical bag.')
    parser.add_argument('out', help='output bag directory (must not exist)')
    parser.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap',
                        help='rosbag2 storage format')
    parser.add_argument('--preset', choices=sorted(ROBOTS), default=defaults.preset,
                        help='layout preset: cameras, joints and action space; topics and '
                             'joint names are those of config/<preset>.yaml')
    parser.add_argument('--config', default=None, metavar='YAML',
                        help='take topics and joint names from this node parameter file (your '
                             "copy of the preset; its cameras must be the preset's) (default: "
                             'the installed config/<preset>.yaml)')
    parser.add_argument('--duration', type=_positive, default=defaults.duration,
                        metavar='S', help='episode length in seconds')
    parser.add_argument('--camera-rate', type=_positive, default=defaults.camera_rate,
                        metavar='HZ', help='image rate per camera')
    parser.add_argument('--joint-rate', type=_positive, default=defaults.joint_rate,
                        metavar='HZ', help='joint state (and end-effector pose) rate')
    parser.add_argument('--action-rate', type=_positive, default=None, metavar='HZ',
                        help="recorded action rate (default: the preset robot's control rate)")
    parser.add_argument('--image-size', type=int, default=defaults.image_size, metavar='PX',
                        help='camera image width and height')
    parser.add_argument('--seed', type=int, default=defaults.seed, metavar='N',
                        help='seed of the scene and trajectories (same seed: same bag)')
    parser.add_argument('--compressed', action='store_true',
                        help='JPEG sensor_msgs/CompressedImage on <camera topic>/compressed')
    parser.add_argument('--compression', choices=('zstd', 'none'), default='zstd',
                        help='bag compression (mcap: chunks, sqlite3: per message)')
    parser.set_defaults(handler=run_make_sample)


def run_make_sample(args):
    config = EpisodeConfig(preset=args.preset, duration=args.duration,
                           camera_rate=args.camera_rate, joint_rate=args.joint_rate,
                           action_rate=args.action_rate, image_size=args.image_size,
                           seed=args.seed, compressed=args.compressed,
                           params_file=args.config or preset_params_file(args.preset))
    info = make_sample(args.out, config, storage=args.storage, compression=args.compression)
    print(info.format())
    print(f'size:      {bag_size(args.out) / 1e6:.2f} MB')
    return 0


# --- play --------------------------------------------------------------------------------------
def add_play_parser(subparsers):
    parser = subparsers.add_parser(
        'play', formatter_class=DefaultsHelpFormatter,
        help='publish a bag on the ROS graph with /clock, optionally recording outputs',
        description='Publish the messages of a bag on their topics at real time (or a rate '
                    'factor) with /clock = bag time, so a node with use_sim_time:=true runs as '
                    "on the robot. Optionally record the node's outputs into a new bag.")
    parser.add_argument('bag', help='bag directory or storage file')
    parser.add_argument('--rate', type=_positive, default=1.0, metavar='F',
                        help='bag seconds per wall second (2: twice as fast; inf: no pacing)')
    parser.add_argument('--start', type=_seconds, default=None, metavar='S',
                        help='start at S seconds after the first message (default: at it)')
    parser.add_argument('--end', type=_seconds, default=None, metavar='S',
                        help='stop before S seconds after the first message (default: after '
                             'the last)')
    parser.add_argument('--remap', nargs='+', default=[], metavar='FROM:=TO',
                        help='publish bag topic FROM on topic TO')
    parser.add_argument('--topics', nargs='+', default=None, metavar='TOPIC',
                        help='publish only these bag topics (default: all)')
    parser.add_argument('--latch', nargs='+', default=[], metavar='TOPIC',
                        help='also publish these topics transient-local (latched)')
    parser.add_argument('--loop', action='store_true', help='play the window again and again')
    parser.add_argument('--no-clock', action='store_true', help='do not publish /clock')
    parser.add_argument('--delay', type=_seconds, default=1.0, metavar='S',
                        help='wait S seconds after creating the publishers (discovery)')
    parser.add_argument('--wait-for-subscribers', action='store_true',
                        help='then also wait until every played topic has a subscriber '
                             '(exit code 3 if one has none after --wait-timeout)')
    parser.add_argument('--wait-timeout', type=_positive, default=60.0, metavar='S',
                        help='longest wait for subscribers, in seconds')
    parser.add_argument('--lockstep', type=_positive, default=None, metavar='S',
                        help="deterministic pacing: play steps of S bag seconds (the node's "
                             'control period, 1/rate) and advance /clock to the next step only '
                             'when the node has answered the last one (ignores --rate; '
                             'default: off, paced by --rate)')
    parser.add_argument('--lockstep-topic', default='action_chunk', metavar='TOPIC',
                        help='the answer to wait for in lockstep')
    parser.add_argument('--lockstep-timeout', type=_positive, default=30.0, metavar='S',
                        help='longest wait for one answer, in wall seconds')
    parser.add_argument('--record', default=None, metavar='OUT',
                        help="record the node's outputs into a new bag OUT (default: record "
                             'nothing)')
    parser.add_argument('--record-topics', nargs='+', default=['action_chunk', 'value'],
                        metavar='TOPIC', help='topics to record')
    parser.add_argument('--record-storage', choices=('mcap', 'sqlite3'), default='mcap',
                        help='rosbag2 storage format of the recording')
    parser.add_argument('--tail', type=_seconds, default=2.0, metavar='S',
                        help='keep recording S seconds after the last message')
    parser.set_defaults(handler=run_play)


def run_play(args):
    from cosmos_policy_ros.ros.player import play  # rclpy: info, make-sample, eval need no ROS
    config = PlayConfig(
        bag=args.bag, rate=args.rate, start=args.start, end=args.end,
        remaps=parse_remaps(args.remap), topics=args.topics, loop=args.loop,
        clock=not args.no_clock, latch=tuple(args.latch), delay=args.delay,
        wait_for_subscribers=args.wait_for_subscribers, wait_timeout=args.wait_timeout,
        lockstep=args.lockstep, lockstep_topic=args.lockstep_topic,
        lockstep_timeout=args.lockstep_timeout, record=args.record,
        record_topics=tuple(args.record_topics), record_storage=args.record_storage,
        tail=args.tail)
    return play(config)


# --- eval --------------------------------------------------------------------------------------
def add_eval_parser(subparsers):
    parser = subparsers.add_parser(
        'eval', formatter_class=DefaultsHelpFormatter,
        help='run a bag through the policy offline (no ROS graph): chunks, metrics, plots',
        description='Feed a bag through the same conversions, sync buffer, replanning and '
                    'safety rules the node uses, run the policy at the control rate on bag '
                    'time (deterministic seeds), and write the chunks as a bag, per-tick CSVs, '
                    'metrics against the recorded actions, and PNG plots.')
    parser.add_argument('bag', help='bag directory or storage file')
    parser.add_argument('--config', required=True,
                        help="the node's parameter file (e.g. config/aloha.yaml, or your copy)")
    parser.add_argument('--model', default=None,
                        help="model directory (default: the config's model_path)")
    parser.add_argument('--out', default=None,
                        help='output directory (default: <bag>_eval next to the bag)')
    parser.add_argument('--ticks', choices=('control', 'observations'), default='control',
                        help="control: the node's control loop at `rate`; observations: one "
                             'chunk per reference-camera frame (for parity checks)')
    parser.add_argument('--start', type=_seconds, default=None, metavar='S',
                        help='start at S seconds after the first message (default: at it)')
    parser.add_argument('--end', type=_seconds, default=None, metavar='S',
                        help='stop before S seconds after the first message (default: after '
                             'the last)')
    parser.add_argument('--recorded-actions', default=None, metavar='TOPIC',
                        help="the demonstrator's actions in the bag, compared with the chunks "
                             '(sensor_msgs/JointState or std_msgs/Float64MultiArray; default: '
                             "the config's recorded_actions_topic; neither: no comparison, "
                             'and eval says so)')
    parser.add_argument('--device', default=None,
                        help="override the config's device (default: the config's)")
    parser.add_argument('--dtype', default=None,
                        help="override the config's dtype (default: the config's)")
    parser.add_argument('--param', '-p', nargs='+', default=[], metavar='NAME:=VALUE',
                        help='override node parameters (YAML values), e.g. rate:=2.0 '
                             '(default: none)')
    parser.add_argument('--storage', choices=('mcap', 'sqlite3'), default='mcap',
                        help='storage of the output chunk bag')
    parser.add_argument('--no-plots', action='store_true', help='skip the PNG plots')
    parser.set_defaults(handler=run_eval)


def parse_overrides(items):
    """NAME:=VALUE strings -> {name: YAML-parsed value}."""
    overrides = {}
    for item in items:
        name, sep, value = item.partition(':=')
        if not sep or not name:
            raise ValueError(f'parameter override {item!r} is not NAME:=VALUE.')
        overrides[name] = yaml.safe_load(value)
    return overrides


def run_eval(args):
    overrides = parse_overrides(args.param)
    for name in ('model', 'device', 'dtype'):
        if getattr(args, name) is not None:
            overrides['model_path' if name == 'model' else name] = getattr(args, name)
    config = load_parameter_file(args.config, overrides=overrides)
    for line in report_lines(config, [os.path.abspath(args.config)],
                             package_files.preset_files()):
        print(line)
    out = args.out or str(args.bag).rstrip('/') + '_eval'
    print(f'loading the policy: {config.policy_factory}({config.model_path!r}, '
          f'device={config.device!r}, dtype={config.dtype!r})')
    policy = load_policy_for(config)
    try:
        report = evaluate(args.bag, policy, config, out, tick_mode=args.ticks,
                          start_s=args.start, end_s=args.end,
                          recorded_actions_topic=args.recorded_actions, storage=args.storage,
                          plots=not args.no_plots)
    except KeyboardInterrupt:
        print(f'interrupted: the results so far are in {out} (metrics.json says incomplete)',
              file=sys.stderr)
        return 130
    print(format_report(report))
    if report.chunks:
        return 0
    ticks = report.summary['ticks']
    errors = [tick for tick in report.ticks if tick.status == 'inference_error']
    if errors:
        print(f'error: every inference failed; the first: {errors[0].detail}', file=sys.stderr)
        return 2
    first = next((tick for tick in report.ticks if tick.detail), None)
    example = f' (the first: {first.status}: {first.detail})' if first else ''
    print(f'error: no chunk was produced in {ticks} ticks: '
          f'{no_chunk_reasons(report.summary) or "no tick"}{example}', file=sys.stderr)
    return EXIT_NO_CHUNK


# --- entry point -------------------------------------------------------------------------------
SUBCOMMANDS = (add_info_parser, add_make_sample_parser, add_play_parser, add_eval_parser)


def build_parser():
    parser = argparse.ArgumentParser(
        prog='cosmos-policy-replay', formatter_class=DefaultsHelpFormatter,
        description='Replay recorded episodes through a Cosmos Policy node and inspect bags.')
    subparsers = parser.add_subparsers(dest='command', metavar='COMMAND', required=True)
    for add_parser in SUBCOMMANDS:
        add_parser(subparsers)
    return parser


def main(argv=None):
    """Console script entry point; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except (BagError, ValueError) as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # outside `play` (e.g. while writing a sample)
        print('interrupted', file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `cosmos-policy-replay info BAG | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 0


if __name__ == '__main__':
    sys.exit(main())
