"""cosmos-policy-dataset: recorded episodes -> training data in the upstream formats.

    cosmos-policy-dataset export BAG... --config CONFIG.yaml --format libero|robocasa|aloha \\
        --out DIR [--rollouts] [--label success|failure | --labels FILE.csv] [--t5-... ]
    cosmos-policy-dataset import-lerobot DATASET_DIR --format F --out DIR \\
        --camera primary=observation.images.top ... [--state KEY] [--action KEY]
    cosmos-policy-dataset check DIR

The entry point only parses, calls cosmos_policy_ros.datasets and prints (docs/datasets.md).
Exit codes: 0 done / valid, 1 `check` found problems, 2 bad input (one line naming the bag,
topic and reason).
"""
import argparse
import hashlib
from pathlib import Path
import sys

from tqdm import tqdm

from cosmos_policy_ros.bags.storage import bag_size
from cosmos_policy_ros.cli.arguments import DefaultsHelpFormatter
from cosmos_policy_ros.datasets import formats, images
from cosmos_policy_ros.datasets.check import check_dataset
from cosmos_policy_ros.datasets.export import ExportPlan, run_export, total_seconds
from cosmos_policy_ros.datasets.image_workers import default_workers
from cosmos_policy_ros.datasets.lerobot import LeRobotDataset
from cosmos_policy_ros.datasets.manifest import DEMONSTRATIONS, ROLLOUTS
from cosmos_policy_ros.datasets.outcomes import Labels
from cosmos_policy_ros.datasets.steps import EpisodeBag
from cosmos_policy_ros.node_config import load_parameter_file

PROG = 'cosmos-policy-dataset'


def _common(parser):
    """Options of every export (bags or LeRobot)."""
    parser.add_argument('--format', required=True, choices=('libero', 'robocasa', 'aloha'),
                        help='the upstream dataset format to write')
    parser.add_argument('--out', required=True, type=Path, help='dataset directory to write')
    parser.add_argument('--image-storage', choices=('raw', 'jpeg', 'mp4'),
                        help='raw rows (the default of libero, robocasa), JPEG bytes of '
                             'quality 95 (libero, robocasa) or MP4 files (aloha, its default, '
                             'as the reference preprocessing stores them)')
    parser.add_argument('--images', default='camera',
                        help="the image pipeline before the crop: 'camera' (the format's "
                             "preset without the flip), 'released' (with it), 'none' (as "
                             'recorded) or a model directory')
    parser.add_argument('--val-fraction', type=float, default=0.05,
                        help='share of the episodes held out as validation demonstrations')
    parser.add_argument('--split-seed', type=int, default=0,
                        help='seed of the train / validation split')
    parser.add_argument('--suite', default='robot',
                        help='LIBERO / RoboCasa: the folder of the demonstration files')
    parser.add_argument('--no-rollout-copy', action='store_true',
                        help='demonstrations: do not also write every train episode to '
                             'all_episodes/ (the rollout data of the value and world model)')
    text = parser.add_mutually_exclusive_group(required=True)
    text.add_argument('--t5-encoder', type=Path,
                      help='local T5 encoder directory (google-t5/t5-11b) for the tasks')
    text.add_argument('--t5-embeddings', type=Path,
                      help="existing embeddings (*_t5_embeddings.pkl or a model directory's "
                           't5_embeddings.safetensors) holding every task')
    text.add_argument('--t5-stand-in', type=int, metavar='SEED',
                      help="seeded random stand-in vectors (tests; the sim's models)")
    parser.add_argument('--restart', action='store_true',
                        help='start clean instead of continuing an interrupted export')
    parser.add_argument('--force', action='store_true', help='replace an existing --out')
    parser.add_argument('--progress', action=argparse.BooleanOptionalAction, default=None,
                        help='progress bar (default: on a terminal)')
    parser.add_argument('--workers', type=int, default=None,
                        help='image worker processes (the image pipeline, JPEG and MP4 '
                             'encoding of the cameras), a camera per worker at most; 0 or 1: '
                             'all in this process, one frame at a time (the same files either '
                             'way); default: one more than the CPUs this process may use (1 '
                             'on one CPU)')


def build_parser():
    parser = argparse.ArgumentParser(
        prog=PROG, formatter_class=DefaultsHelpFormatter,
        description='Recorded episodes (ROS 2 bags, LeRobot datasets) -> Cosmos Policy training '
                    'data in the upstream HDF5 formats (LIBERO, RoboCasa, ALOHA).')
    commands = parser.add_subparsers(dest='command', required=True)
    export = commands.add_parser('export', help='episode bags -> a dataset directory',
                                 formatter_class=DefaultsHelpFormatter)
    export.add_argument('bags', nargs='+', type=Path, help='episode bags (directories or '
                        '.mcap / .db3 files), one episode each')
    export.add_argument('--config', required=True, type=Path,
                        help="the node's parameter file (topics, cameras, joints, rate, sync)")
    export.add_argument('--rollouts', action='store_true',
                        help='the bags are rollouts of a deployed policy (actions from its '
                             'ActionChunks), each with an outcome label')
    export.add_argument('--actions-topic',
                        help="the action topic (default: the config's recorded_actions_topic; "
                             'with --rollouts /action_chunk)')
    export.add_argument('--outcome-topic', default='/episode_outcome',
                        help='topic of the outcome message (std_msgs/String or Bool)')
    export.add_argument('--label', choices=('success', 'failure'),
                        help='the outcome of every bag (checked against recorded ones; '
                             'default: the recorded outcomes)')
    export.add_argument('--labels', type=Path,
                        help='CSV with columns bag, success[, score]: an outcome per bag '
                             '(default: none)')
    export.add_argument('--task',
                        help='the task of every bag (default: its task topic)')
    _common(export)
    lerobot = commands.add_parser('import-lerobot',
                                  help='a LeRobot dataset (v2.x / v3.0) -> a dataset directory',
                                  formatter_class=DefaultsHelpFormatter)
    lerobot.add_argument('dataset', type=Path, help='the LeRobot dataset directory')
    lerobot.add_argument('--camera', action='append', default=[], metavar='NAME=FEATURE',
                         help='a camera of the format and its LeRobot image feature, e.g. '
                              'primary=observation.images.top (one per camera)')
    lerobot.add_argument('--state', default='observation.state', help='proprio feature')
    lerobot.add_argument('--action', default='action', help='action feature')
    _common(lerobot)
    check = commands.add_parser('check', help='validate a dataset directory',
                                formatter_class=DefaultsHelpFormatter)
    check.add_argument('directory', type=Path, help='the dataset directory to validate')
    return parser


def _plan(args, kind, inputs, extra):
    fmt = formats.get_format(args.format)
    storage = args.image_storage or fmt.storages[0]
    if storage not in fmt.storages:
        raise ValueError(f'--image-storage {storage}: the {fmt.name} classes read '
                         f'{list(fmt.storages)}')
    if not 0.0 <= args.val_fraction < 1.0:
        raise ValueError('--val-fraction must be in [0, 1)')
    t5 = {key: value for key, value in (('encoder', args.t5_encoder), ('file', args.t5_embeddings),
                                        ('stand_in', args.t5_stand_in)) if value is not None}
    labels = Labels(getattr(args, 'label', None), getattr(args, 'labels', None))
    return ExportPlan(fmt=fmt, kind=kind, storage=storage,
                      pipeline=images.image_pipeline(args.images, fmt.name),
                      val_fraction=args.val_fraction, split_seed=args.split_seed,
                      suite=args.suite, rollout_copy=not args.no_rollout_copy, t5=t5,
                      labels=labels, inputs=tuple(inputs), extra=extra)


def _bag_sources(args):
    config = load_parameter_file(args.config, overrides={'model_path': '-'})
    topic = args.actions_topic or ('/action_chunk' if args.rollouts else
                                   config.recorded_actions_topic)
    if not topic:
        raise ValueError(f'{args.config}: no action stream: set recorded_actions_topic in the '
                         f'config or pass --actions-topic')
    dim = formats.get_format(args.format).action_dim
    sources = [EpisodeBag(bag, config, action_topic=topic, action_dim=dim, task=args.task,
                          outcome_topic=args.outcome_topic) for bag in args.bags]
    extra = {'config': str(args.config),
             'config_sha256': hashlib.sha256(args.config.read_bytes()).hexdigest(),
             'actions_topic': topic, 'outcome_topic': args.outcome_topic, 'task': args.task}
    inputs = [f'{bag}:{bag_size(bag)}' for bag in args.bags]
    return sources, inputs, extra


def _lerobot_sources(args):
    fmt = formats.get_format(args.format)
    cameras = {}
    for item in args.camera:
        name, _, key = item.partition('=')
        if not key:
            raise ValueError(f'--camera {item}: expected NAME=FEATURE')
        cameras[name] = key
    if set(cameras) != set(fmt.cameras):
        raise ValueError(f'the {fmt.name} format needs --camera for each of '
                         f'{list(fmt.cameras)}; got {sorted(cameras)}')
    dataset = LeRobotDataset(args.dataset)
    sources = dataset.sources(cameras, state_key=args.state, action_key=args.action)
    extra = {'lerobot': str(args.dataset), 'cameras': cameras, 'state': args.state,
             'action': args.action, 'lerobot_version': dataset.version}
    return sources, [str(args.dataset)], extra


def _export(args, sources, plan):
    if args.workers is not None and args.workers < 0:
        raise ValueError(f'--workers {args.workers}: give 0 or more')
    show = sys.stderr.isatty() if args.progress is None else args.progress
    bar = None
    if show:
        bar = tqdm(total=round(total_seconds(sources), 3), unit='s', file=sys.stderr,
                   bar_format='{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s '
                              '(episode time) [{elapsed}<{remaining}]')
    try:
        record = run_export(sources, plan, args.out, restart=args.restart, force=args.force,
                            log=lambda text: print(text, file=sys.stderr), progress=bar,
                            workers=default_workers() if args.workers is None else args.workers)
    finally:
        if bar is not None:
            bar.close()
    return record


def cmd_export(args):
    sources, inputs, extra = _bag_sources(args)
    plan = _plan(args, ROLLOUTS if args.rollouts else DEMONSTRATIONS, inputs, extra)
    return _report(_export(args, sources, plan), args.out)


def cmd_import_lerobot(args):
    sources, inputs, extra = _lerobot_sources(args)
    plan = _plan(args, DEMONSTRATIONS, inputs, extra)
    return _report(_export(args, sources, plan), args.out)


def _report(record, out):
    report = check_dataset(out)
    print(f'wrote {out}')
    for line in report.summary():
        print('  ' + line)
    return 0 if report.ok else 1


def cmd_check(args):
    report = check_dataset(args.directory)
    if report.manifest:
        for line in report.summary():
            print(line)
    for problem in report.problems:
        print(f'{PROG}: problem: {problem}', file=sys.stderr)
    return 0 if report.ok else 1


def main(argv=None):
    args = build_parser().parse_args(argv)
    command = {'export': cmd_export, 'import-lerobot': cmd_import_lerobot,
               'check': cmd_check}[args.command]
    try:
        return command(args)
    except (ValueError, OSError) as error:
        print(f'{PROG}: error: {error}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f'{PROG}: interrupted; rerun the same command to continue', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
