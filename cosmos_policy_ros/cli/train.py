"""cosmos-policy-train: train a small Cosmos Policy on simulated demonstrations, on a CPU.

    # record 300 demonstration bags (expert + imperfect rollouts) and train on them:
    cosmos-policy-train --data /tmp/planar_demos --record 300 --out /tmp/planar_model \\
        --work-dir /tmp/planar_work --steps 2000 --time-budget 1800 --seed 0

What a run does, its objective and its files: ``training/__init__.py`` and docs/sim.md.
"""
import argparse
import dataclasses
from pathlib import Path
import sys
from types import SimpleNamespace

from cosmos_policy_ros.cli.arguments import DefaultsHelpFormatter
from cosmos_policy_ros.training.dit_phase import train
from cosmos_policy_ros.training.options import TrainOptions

# Every option's default: TrainOptions' field defaults (one home).
DEFAULTS = SimpleNamespace(**{
    field.name: field.default if field.default_factory is dataclasses.MISSING
    else field.default_factory() for field in dataclasses.fields(TrainOptions)})


def build_parser():
    parser = argparse.ArgumentParser(
        prog='cosmos-policy-train', formatter_class=DefaultsHelpFormatter,
        description='Train a small Cosmos Policy (released model-directory format) on '
                    'planar-reach sim demonstrations, on a CPU.')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--data', type=Path, nargs='+', default=DEFAULTS.data,
                        help='directories of episode bags, all used (--record N writes into '
                             'the last one first)')
    source.add_argument('--dataset', type=Path, nargs='+', default=DEFAULTS.dataset,
                        help='directories exported by cosmos-policy-dataset (the upstream '
                             'files: demonstrations, rollouts, T5 embeddings of the first)')
    parser.add_argument('--record', type=int, default=DEFAULTS.record,
                        help='record N demonstration episodes into --data first')
    parser.add_argument('--record-kinds', nargs='+', metavar='KIND[=SHARE]',
                        help='the rollout kinds --record mixes (default: 70 %% expert, 10 %% '
                             'each of noisy, early_stop, wrong_target); e.g. near_miss, or '
                             'policy (rollouts of the --init-from model)')
    parser.add_argument('--recovery-every', type=int, default=DEFAULTS.recovery_every,
                        metavar='K',
                        help='with --record-kinds policy: after each policy rollout also '
                             'record the expert taking over at its states K, 2K, ... '
                             '(recovery demonstrations, imitated; 0: none)')
    parser.add_argument('--data-seed', type=int, default=DEFAULTS.data_seed,
                        help='first episode seed of --record (episodes use seeds S..S+N-1)')
    parser.add_argument('--out', type=Path,
                        help='model directory to write (default: none, train only)')
    parser.add_argument('--work-dir', required=True, type=Path,
                        help='training state and latent cache (for --resume)')
    parser.add_argument('--resume', action='store_true', help='continue from --work-dir')
    parser.add_argument('--seed', type=int, default=DEFAULTS.seed,
                        help='seed of the network initialisation and the sample order')
    parser.add_argument('--steps', type=int, default=DEFAULTS.steps, help='optimizer steps')
    parser.add_argument('--time-budget', type=float, default=DEFAULTS.time_budget,
                        help='stop after this many seconds (0: no limit)')
    parser.add_argument('--pause-after', type=int, default=DEFAULTS.pause_after,
                        help='stop after this many steps of this run (0: no limit); the '
                             'learning-rate schedule still spans --steps')
    parser.add_argument('--batch-size', type=int, default=DEFAULTS.batch_size,
                        help='samples per DiT optimizer step')
    parser.add_argument('--vae-steps', type=int, default=DEFAULTS.vae_steps,
                        help='train the VAE as an autoencoder for this many steps first '
                             '(0: keep it at random weights)')
    parser.add_argument('--vae-lr', type=float, default=DEFAULTS.vae_lr,
                        help='learning rate of the VAE phase')
    parser.add_argument('--vae-batch-size', type=int, default=DEFAULTS.vae_batch_size,
                        help='images per VAE optimizer step')
    parser.add_argument('--vae-foreground-weight', type=float,
                        default=DEFAULTS.vae_foreground_weight,
                        help='extra weight of non-background pixels in the VAE loss')
    parser.add_argument('--vae-probe-weight', type=float, default=DEFAULTS.vae_probe_weight,
                        help='weight of the auxiliary loss reading the disc positions linearly '
                             'from the primary latent (0: a plain autoencoder)')
    parser.add_argument('--init-from', type=Path, default=DEFAULTS.init_from,
                        help='continue training the model directory written by an earlier run '
                             '(its VAE, DiT weights, statistics and embeddings; a new optimizer '
                             'and learning-rate schedule); excludes --vae-steps (default: none, '
                             'train from scratch)')
    parser.add_argument('--planning', action='store_true',
                        help='train the planning network (world model + value) of the '
                             '--init-from model on every episode, rollouts included; --out is '
                             'that model plus the network, which then gives the published value')
    parser.add_argument('--lr', type=float, default=DEFAULTS.lr,
                        help='peak learning rate of the DiT phase')
    parser.add_argument('--unimitated-policy-share', type=float,
                        default=DEFAULTS.unimitated_policy_share,
                        help='share of the samples whose actions are not imitated (failed '
                             'episodes, policy rollouts) drawn as policy samples, their action '
                             'frame unsupervised, so the value the node publishes learns them '
                             '(0: world-model samples only)')
    parser.add_argument('--gamma', type=float, default=DEFAULTS.gamma,
                        help='value discount per step')
    parser.add_argument('--chunk-size', type=int, default=DEFAULTS.chunk_size,
                        help='actions per chunk of the model layout')
    parser.add_argument('--image-size', type=int, default=DEFAULTS.image_size,
                        help='camera image size of the model layout (px)')
    parser.add_argument('--dit-preset', default=DEFAULTS.dit_preset,
                        help='DiT size preset (engine/dit.py)')
    parser.add_argument('--num-steps', type=int, default=DEFAULTS.num_steps,
                        help="denoising steps the model uses at inference (model.json's sampler)")
    parser.add_argument('--save-every', type=int, default=DEFAULTS.save_every,
                        help='steps between two training-state saves in --work-dir')
    parser.add_argument('--force', action='store_true', help='replace an existing --out')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        train(TrainOptions(**vars(args)))
    except (ValueError, OSError) as error:
        print(f'cosmos-policy-train: error: {error}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
