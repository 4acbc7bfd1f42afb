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

The checkpoints are read weights-only (or as DCP), converted to diffusers key names, checked
strictly and written as safetensors; the T5 pickle is read with a restricted unpickler and
written as safetensors; the statistics are validated and copied. The result is verified by
loading it (memory-mapped, no inference) before it replaces anything at --out.
"""
import argparse
import hashlib
from pathlib import Path
import shutil
import sys

import torch

from cosmos_policy_ros.config_files import read_yaml
from cosmos_policy_ros.engine.checkpoint import (dit_state_dict, find_dit_checkpoint,
                                                 vae_state_dict)
from cosmos_policy_ros.engine.images import ImagePipelineConfig
from cosmos_policy_ros.engine.model_dir import (FILES, model_files, ModelSpec,
                                                PLANNING_DIT_FILE, read_spec, write_spec)
from cosmos_policy_ros.engine.planning import PlanningConfig
from cosmos_policy_ros.engine.policy import DEFAULT_STEPS
from cosmos_policy_ros.engine.sampling import SamplerConfig
from cosmos_policy_ros.engine.synthetic_checkpoints import read_synthetic_info, TOKENIZER_FILE
from cosmos_policy_ros.engine.text import TextEmbeddings
from cosmos_policy_ros.layout import LatentLayout, PRESETS
from cosmos_policy_ros.normalization import NormStats

_DTYPES = {'bf16': torch.bfloat16, 'fp32': torch.float32}


class ConvertError(ValueError):
    """Bad or missing input for the conversion."""


def find_released_files(released_dir, tokenizer=None):
    """{role: Path} of a released repository directory (and where the tokenizer is)."""
    released_dir = Path(released_dir)
    if not released_dir.is_dir():
        raise ConvertError(f'--released {released_dir} is not a directory.')
    files = {'checkpoint': find_dit_checkpoint(released_dir)}
    for role, pattern in (('statistics', '*_dataset_statistics.json'),
                          ('t5_embeddings', '*_t5_embeddings.pkl')):
        found = sorted(released_dir.glob(pattern))
        if len(found) != 1:
            raise ConvertError(f'expected exactly one {pattern} in {released_dir}, found '
                               f'{[p.name for p in found]}.')
        files[role] = found[0]
    if tokenizer is None:
        tokenizer = released_dir / TOKENIZER_FILE
        if not tokenizer.is_file():
            raise ConvertError(f'no {TOKENIZER_FILE} in {released_dir}: pass --tokenizer (the '
                               f'Wan2.1 tokenizer.pth of nvidia/Cosmos-Predict2-2B-Video2World).')
    files['tokenizer'] = Path(tokenizer)
    return files


def convert(*, checkpoint, tokenizer, statistics, t5_embeddings, out, layout, images=None,
            dit_preset='2b', vae_preset='wan2.1', dtype=None, num_steps=None, name=None,
            planning_checkpoint=None, planning=None, source=None, overwrite=False, log=print):
    """Write a model directory at `out` and return its ModelSpec.

    layout: LatentLayout; images: ImagePipelineConfig (default: the layout's preset).
    dtype: None keeps the checkpoint's dtype, else torch.bfloat16 / torch.float32.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise ConvertError(f'{out} exists; pass --force to replace it.')
    images = images if images is not None else ImagePipelineConfig.for_layout(layout)
    stats = NormStats.from_json(statistics, layout=layout)
    staging = out.with_name(out.name + '.partial')
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        log(f'[convert] DiT {checkpoint} ({dit_preset})')
        _save(dit_state_dict(checkpoint, dit_preset), staging / FILES['dit'], dtype)
        log(f'[convert] VAE {tokenizer} ({vae_preset})')
        _save(vae_state_dict(tokenizer, vae_preset), staging / FILES['vae'], dtype)
        if planning_checkpoint is not None:
            log(f'[convert] planning DiT {planning_checkpoint}')
            _save(dit_state_dict(planning_checkpoint, dit_preset), staging / PLANNING_DIT_FILE,
                  dtype)
            planning = planning if planning is not None else PlanningConfig()
        else:
            planning = None
        log(f'[convert] statistics {statistics}')
        shutil.copyfile(statistics, staging / FILES['statistics'])
        log(f'[convert] T5 embeddings {t5_embeddings}')
        embeddings = TextEmbeddings.from_pickle(t5_embeddings)
        embeddings.save(staging / FILES['text_embeddings'])
        digest = _sha256(staging / FILES['dit'])
        steps = num_steps if num_steps is not None else DEFAULT_STEPS.get(layout.name, 5)
        spec = ModelSpec(
            model_id=f'{name or layout.name}@{digest[:12]}',
            layout=layout, dit_preset=dit_preset, vae_preset=vae_preset, images=images,
            sampler=SamplerConfig(num_steps=steps), planning=planning,
            source={**(source or {}), 'checkpoint': str(checkpoint),
                    'tokenizer': str(tokenizer), 'dit_sha256': digest,
                    'instructions': len(embeddings), 'statistics_actions': stats.action_dim})
        write_spec(staging, spec)
        log('[convert] verifying: reading the directory back strictly')
        verify_model_dir(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    return spec


def verify_model_dir(model_dir):
    """Read a model directory back (spec, strict weight check, statistics, embeddings)."""
    spec = read_spec(model_dir)
    files = model_files(model_dir, spec)
    dit_state_dict(files['dit'], spec.dit_preset)
    vae_state_dict(files['vae'], spec.vae_preset)
    if 'planning_dit' in files:
        dit_state_dict(files['planning_dit'], spec.dit_preset)
    NormStats.from_json(files['statistics'], layout=spec.layout)
    TextEmbeddings.load(files['text_embeddings'])
    return spec


def _save(tensors, path, dtype):
    from safetensors.torch import save_file
    if dtype is not None:
        tensors = {key: value.to(dtype) if value.is_floating_point() else value
                   for key, value in tensors.items()}
    save_file({key: value.contiguous() for key, value in tensors.items()}, str(path))


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as stream:
        for block in iter(lambda: stream.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def build_parser():
    parser = argparse.ArgumentParser(
        prog='cosmos-policy-convert',
        description='Convert released Cosmos Policy files into one model directory '
                    '(safetensors, memory-mappable) that CosmosPolicy and the node load.')
    source = parser.add_argument_group('inputs (a released directory, or each file)')
    source.add_argument('--released', type=Path,
                        help='a downloaded nvidia/Cosmos-Policy-*-Predict2-2B directory')
    source.add_argument('--checkpoint', type=Path, help='policy .pt file or DCP directory')
    source.add_argument('--tokenizer', type=Path, help='Wan2.1 tokenizer.pth')
    source.add_argument('--statistics', type=Path, help='*_dataset_statistics.json')
    source.add_argument('--t5-embeddings', type=Path, help='*_t5_embeddings.pkl')
    source.add_argument('--planning', type=Path,
                        help='optional planning model (.pt, DCP or released directory)')
    parser.add_argument('--out', required=True, type=Path, help='model directory to write')
    parser.add_argument('--suite', help=f'layout preset ({", ".join(sorted(PRESETS))}); default: '
                                        'from the statistics file name')
    parser.add_argument('--layout', type=Path, help='a layout YAML for a custom robot')
    parser.add_argument('--images', help="image-pipeline preset (default: the suite's), or a "
                                         'YAML file of one (cosmos-policy-dataset writes '
                                         'image_pipeline.yaml)')
    parser.add_argument('--dit-preset', help='DiT size preset (default 2b, or synthetic.json)')
    parser.add_argument('--vae-preset', help='VAE preset (default wan2.1, or synthetic.json)')
    parser.add_argument('--dtype', choices=sorted(_DTYPES),
                        help='store weights in this dtype (default: as in the files)')
    parser.add_argument('--num-steps', type=int,
                        help="default denoising steps (default: the released deployment's)")
    parser.add_argument('--name', help='model name used in the model id (default: the suite)')
    parser.add_argument('--force', action='store_true', help='replace an existing --out')
    return parser


def _inputs(args):
    if args.released is not None:
        files = find_released_files(args.released, args.tokenizer)
        for flag in ('checkpoint', 'statistics', 't5_embeddings'):
            if getattr(args, flag) is not None:
                files[flag] = getattr(args, flag)
        return files, args.released
    missing = [f'--{flag.replace("_", "-")}' for flag in
               ('checkpoint', 'tokenizer', 'statistics', 't5_embeddings')
               if getattr(args, flag) is None]
    if missing:
        raise ConvertError(f'give --released DIR, or all of {missing}.')
    return {flag: getattr(args, flag) for flag in
            ('checkpoint', 'tokenizer', 'statistics', 't5_embeddings')}, None


def _layout(args, files, info):
    if args.layout is not None:
        return LatentLayout.from_yaml(args.layout)
    suite = args.suite
    if suite is None and info is not None:
        return LatentLayout.from_dict(info['layout'], source='synthetic.json layout')
    if suite is None:
        suite = Path(files['statistics']).name.split('_dataset_statistics')[0].lower()
    if suite not in PRESETS:
        raise ConvertError(f'cannot tell the layout: --suite {suite!r} is not one of '
                           f'{sorted(PRESETS)}; pass --suite or --layout.')
    return LatentLayout.preset(suite)


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        files, released = _inputs(args)
        info = read_synthetic_info(released) if released is not None else None
        layout = _layout(args, files, info)
        images = None
        if args.images is not None and Path(args.images).is_file():
            images = ImagePipelineConfig.from_dict(read_yaml(args.images, 'image pipeline'),
                                                   source=args.images)
        elif args.images is not None:
            images = ImagePipelineConfig.preset(args.images, image_size=layout.image_size)
        planning = args.planning
        if planning is not None and planning.is_dir() and not (planning / '.metadata').is_file():
            planning = find_dit_checkpoint(planning)
        spec = convert(
            checkpoint=files['checkpoint'], tokenizer=files['tokenizer'],
            statistics=files['statistics'], t5_embeddings=files['t5_embeddings'],
            out=args.out, layout=layout, images=images,
            dit_preset=args.dit_preset or (info or {}).get('dit_preset', '2b'),
            vae_preset=args.vae_preset or (info or {}).get('vae_preset', 'wan2.1'),
            dtype=None if args.dtype is None else _DTYPES[args.dtype],
            num_steps=args.num_steps, name=args.name, planning_checkpoint=planning,
            source={'synthetic': True} if info else {}, overwrite=args.force)
    except (ValueError, OSError) as error:
        print(f'cosmos-policy-convert: error: {error}', file=sys.stderr)
        return 2
    print(f'wrote model {spec.model_id} ({spec.layout.name}: {len(spec.layout.cameras)} cameras, '
          f'chunk {spec.layout.chunk_size} x {spec.layout.action_dim}, '
          f'{spec.sampler.num_steps} steps{", planning" if spec.planning else ""}) to {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
