"""cosmos-policy-convert: released Cosmos Policy files -> one deployable model directory.

    # a downloaded nvidia/Cosmos-Policy-LIBERO-Predict2-2B repository + the tokenizer:
    cosmos-policy-convert --released ~/hf/Cosmos-Policy-LIBERO-Predict2-2B \\
        --tokenizer ~/hf/Cosmos-Predict2-2B-Video2World/tokenizer/tokenizer.pth \\
        --out /models/libero
    # explicit files, with the ALOHA planning model for best-of-N:
    cosmos-policy-convert --checkpoint Cosmos-Policy-ALOHA-Predict2-2B.pt \\
        --tokenizer tokenizer.pth --statistics aloha_dataset_statistics.json \\
        --t5-embeddings aloha_t5_embeddings.pkl --suite aloha \\
        --planning Cosmos-Policy-ALOHA-Planning-Model-Predict2-2B.pt --out /models/aloha

What the conversion does and checks: ``engine/conversion.py``.
"""
import argparse
from pathlib import Path
import sys

from cosmos_policy_ros.cli.arguments import DefaultsHelpFormatter
from cosmos_policy_ros.engine.conversion import convert_released, DTYPES
from cosmos_policy_ros.layout import PRESETS


def build_parser():
    parser = argparse.ArgumentParser(
        prog='cosmos-policy-convert', formatter_class=DefaultsHelpFormatter,
        description='Convert released Cosmos Policy files into one model directory '
                    '(safetensors, memory-mappable) that CosmosPolicy and the node load.')
    source = parser.add_argument_group('inputs (a released directory, or each file)')
    source.add_argument('--released', type=Path,
                        help='a downloaded nvidia/Cosmos-Policy-*-Predict2-2B directory '
                             '(default: none; then give each file)')
    source.add_argument('--checkpoint', type=Path,
                        help="policy .pt file or DCP directory (default: --released's)")
    source.add_argument('--tokenizer', type=Path,
                        help="Wan2.1 tokenizer.pth (default: --released's)")
    source.add_argument('--statistics', type=Path,
                        help="*_dataset_statistics.json (default: --released's)")
    source.add_argument('--t5-embeddings', type=Path,
                        help="*_t5_embeddings.pkl (default: --released's)")
    source.add_argument('--planning', type=Path,
                        help='optional planning model (.pt, DCP or released directory; '
                             'default: none)')
    parser.add_argument('--out', required=True, type=Path, help='model directory to write')
    parser.add_argument('--suite', help=f'layout preset ({", ".join(sorted(PRESETS))}); default: '
                                        'from the statistics file name')
    parser.add_argument('--layout', type=Path,
                        help='a layout YAML for a custom robot (default: the --suite preset)')
    parser.add_argument('--images', help="image-pipeline preset (default: the suite's), or a "
                                         'YAML file of one (cosmos-policy-dataset writes '
                                         'image_pipeline.yaml)')
    parser.add_argument('--dit-preset', help='DiT size preset (default 2b, or synthetic.json)')
    parser.add_argument('--vae-preset', help='VAE preset (default wan2.1, or synthetic.json)')
    parser.add_argument('--dtype', choices=sorted(DTYPES),
                        help='store weights in this dtype (default: as in the files)')
    parser.add_argument('--num-steps', type=int,
                        help="default denoising steps (default: the released deployment's)")
    parser.add_argument('--name', help='model name used in the model id (default: the suite)')
    parser.add_argument('--force', action='store_true', help='replace an existing --out')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        spec = convert_released(
            out=args.out, released=args.released, checkpoint=args.checkpoint,
            tokenizer=args.tokenizer, statistics=args.statistics,
            t5_embeddings=args.t5_embeddings, planning=args.planning, suite=args.suite,
            layout_file=args.layout, images=args.images, dit_preset=args.dit_preset,
            vae_preset=args.vae_preset, dtype=args.dtype, num_steps=args.num_steps,
            name=args.name, overwrite=args.force)
    except (ValueError, OSError) as error:
        print(f'cosmos-policy-convert: error: {error}', file=sys.stderr)
        return 2
    print(f'wrote model {spec.model_id} ({spec.layout.name}: {len(spec.layout.cameras)} cameras, '
          f'chunk {spec.layout.chunk_size} x {spec.layout.action_dim}, '
          f'{spec.sampler.num_steps} steps{", planning" if spec.planning else ""}) to {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
