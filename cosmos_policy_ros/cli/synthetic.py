"""cosmos-policy-synthetic: write a small synthetic model directory in the released formats.

    cosmos-policy-synthetic --out /tmp/libero-tiny --suite libero --size tiny
    cosmos-policy-synthetic --out /tmp/my-robot --suite my_layout.yaml --size small \\
        --seed 3 --dtype fp32 --format dcp

The directory looks like a downloaded nvidia/Cosmos-Policy-*-Predict2-2B repository plus the
Cosmos-Predict2 tokenizer (random weights, small networks), and a synthetic.json naming the
size presets. Used by the tests, the demo and the benchmarks.
"""
import argparse
from pathlib import Path
import sys

from cosmos_policy_ros.cli.arguments import DefaultsHelpFormatter
from cosmos_policy_ros.engine.synthetic_checkpoints import (CHECKPOINT_FORMATS, SIZES,
                                                            write_synthetic_model)
from cosmos_policy_ros.layout import LatentLayout, PRESETS


def _layout(suite):
    if suite in PRESETS:
        return LatentLayout.preset(suite)
    if suite.endswith(('.yaml', '.yml')) or Path(suite).is_file():
        return LatentLayout.from_yaml(suite)
    raise ValueError(f'--suite must be one of {sorted(PRESETS)} or a layout YAML file. '
                     f'Got {suite!r}.')


def build_parser():
    parser = argparse.ArgumentParser(
        prog='cosmos-policy-synthetic', formatter_class=DefaultsHelpFormatter,
        description='Write a synthetic Cosmos Policy model directory (released file formats, '
                    'small random networks).')
    parser.add_argument('--out', required=True, type=Path, help='output directory')
    parser.add_argument('--suite', required=True,
                        help=f'layout preset ({", ".join(sorted(PRESETS))}) or a layout YAML')
    parser.add_argument('--size', required=True, choices=sorted(SIZES),
                        help='network size preset')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    parser.add_argument('--dtype', choices=('bf16', 'fp32'), default='bf16',
                        help='weight dtype in the files')
    parser.add_argument('--format', dest='checkpoint_format', choices=CHECKPOINT_FORMATS,
                        default='pt', help='policy checkpoint as one .pt file or a model/ DCP '
                                           'directory')
    parser.add_argument('--force', action='store_true', help='replace existing files')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        layout = _layout(args.suite)
        if args.seed < 0:
            raise ValueError(f'--seed must be non-negative. Got {args.seed}.')
        paths = write_synthetic_model(args.out, layout, size=args.size, seed=args.seed,
                                      dtype=args.dtype,
                                      checkpoint_format=args.checkpoint_format,
                                      overwrite=args.force)
    except (ValueError, FileExistsError, OSError) as error:
        print(f'cosmos-policy-synthetic: error: {error}', file=sys.stderr)
        return 2
    print(f'wrote a synthetic {layout.name!r} model ({args.size}, {args.dtype}, seed {args.seed}) '
          f'to {args.out}:')
    for role, path in paths.items():
        print(f'  {role:19s} {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
