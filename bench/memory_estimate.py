#!/usr/bin/env python3
"""Expected GPU memory of Cosmos Policy (2B DiT + Wan2.1 VAE) for given settings.

    python bench/memory_estimate.py                          # LIBERO, batch 1, bf16
    python bench/memory_estimate.py --layout robocasa --batch 8 --planning
    python bench/memory_estimate.py --attention math --batch 8

Weights come from the exact parameter counts (DiT 1,956,413,440; VAE 126,892,531, of which the
encoder and quant_conv 53,596,928); activations from the formulas in model_cost.py, which
bench_memory checks against measured peaks. Assumptions (printed): the CUDA context and the
library kernels take `--context-gb` (0.5 GB by default, not visible to torch), the caching
allocator holds ~10 % on top of the live tensors, the VAE runs before the DiT (their activation
peaks do not add up, but the allocator may keep both reserved, so both are counted), T5
embeddings are precomputed (the T5-11B encoder is not loaded), and one embedding per
instruction (1 MiB in bf16) sits on the device.
"""
import argparse
import importlib.util
from pathlib import Path
import sys

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
if importlib.util.find_spec('cosmos_policy_ros') is None:
    sys.path.insert(0, str(HERE.parent))

import model_cost  # noqa: E402
import workloads  # noqa: E402, I100

DIT_2B_PARAMS = 1_956_413_440
VAE_PARAMS = 126_892_531
VAE_ENCODER_PARAMS = 53_596_928  # encoder + quant_conv (model_cost.parameter_counts)
WAN_BASE_DIM = 96
DTYPE_BYTES = {'bf16': 2, 'fp16': 2, 'fp32': 4}


def estimate(layout_name='libero', batch=1, *, dtype='bf16', planning=False, attention='sdpa',
             vae_part='full', context_gb=0.5, allocator_overhead=0.10, instructions=1,
             cuda_graphs=0, pipeline='engine'):
    """Dict of memory components in GB and their 'total' for one configuration.

    pipeline: 'engine' (this package: conditioning-only VAE encode, no decode) or 'reference'
    (the NVIDIA reference per query: full-video encode in 16-frame windows plus the decode of
    the whole sequence), for comparison with its published numbers.
    cuda_graphs: captured graph signatures at this batch (each keeps one forward's activations).
    """
    if pipeline not in ('engine', 'reference'):
        raise ValueError(f"`pipeline` must be 'engine' or 'reference'. Got {pipeline!r}.")
    layout = workloads.layout(layout_name, 224)
    size = DTYPE_BYTES[dtype]
    _, frames, height, width = layout.latent_shape
    tokens = frames * height * width // 4
    vae_params = VAE_PARAMS if vae_part == 'full' else VAE_ENCODER_PARAMS
    parts = {
        'dit_weights': DIT_2B_PARAMS * size / model_cost.GB,
        'planning_dit_weights': DIT_2B_PARAMS * size / model_cost.GB if planning else 0.0,
        'vae_weights': vae_params * size / model_cost.GB,
        't5_embeddings': instructions * model_cost.T5_TOKENS * model_cost.T5_WIDTH * size
        / model_cost.GB,
        'dit_activations': model_cost.dit_activation_bytes(
            batch, tokens, 2048, size, heads=16, attention=attention) / model_cost.GB,
        'vae_activations': (model_cost.vae_conditioning_bytes(
            layout.num_cameras, layout.image_size, WAN_BASE_DIM, size) if pipeline == 'engine'
            else model_cost.vae_reference_bytes(layout.image_size, WAN_BASE_DIM, size))
        / model_cost.GB,
        'sampler_state': batch * 12 * layout.frame_elements * frames * 4 / model_cost.GB,
    }
    parts['cuda_graph_pools'] = cuda_graphs * parts['dit_activations']
    live = sum(parts.values())
    parts['allocator_overhead'] = allocator_overhead * (
        parts['dit_activations'] + parts['vae_activations'])
    parts['cuda_context'] = context_gb
    parts['total'] = live + parts['allocator_overhead'] + context_gb
    parts['tokens'] = tokens
    return parts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--layout', choices=('libero', 'robocasa', 'aloha'), default='libero')
    parser.add_argument('--batch', type=int, default=1, help='samples per DiT call (best-of-N)')
    parser.add_argument('--dtype', choices=sorted(DTYPE_BYTES), default='bf16')
    parser.add_argument('--planning', action='store_true',
                        help='also hold the planning (world model / value) checkpoint')
    parser.add_argument('--attention', choices=('sdpa', 'math'), default='sdpa',
                        help='sdpa: flash / memory-efficient kernels; math: scores materialized')
    parser.add_argument('--vae', choices=('full', 'encoder'), default='full',
                        help='VAE weights on the device: encoder + decoder, or the encoder only')
    parser.add_argument('--cuda-graphs', type=int, default=0, metavar='N',
                        help='captured CUDA-graph signatures at this batch')
    parser.add_argument('--pipeline', choices=('engine', 'reference'), default='engine',
                        help="'reference': the NVIDIA reference's per-query VAE work")
    parser.add_argument('--context-gb', type=float, default=0.5,
                        help='CUDA context and kernels, outside torch (assumption)')
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error(f'--batch must be >= 1, got {args.batch}')
    parts = estimate(args.layout, args.batch, dtype=args.dtype, planning=args.planning,
                     attention=args.attention, vae_part=args.vae, context_gb=args.context_gb,
                     cuda_graphs=args.cuda_graphs, pipeline=args.pipeline)
    print(f'{args.layout}, batch {args.batch}, {args.dtype}, attention {args.attention}, '
          f'{parts["tokens"]} tokens, {args.pipeline} pipeline'
          + (', with the planning checkpoint' if args.planning else ''))
    for name, value in parts.items():
        if name not in ('total', 'tokens'):
            print(f'  {name:22s} {value:6.2f} GB')
    print(f'  {"total":22s} {parts["total"]:6.2f} GB')
    return 0


if __name__ == '__main__':
    sys.exit(main())
