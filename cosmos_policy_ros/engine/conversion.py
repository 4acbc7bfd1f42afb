"""Released Cosmos Policy files -> one deployable model directory (cosmos-policy-convert; its
command lines: cli/convert.py).

The checkpoints are read weights-only (or as DCP), converted to diffusers key names, checked
strictly and written as safetensors; the T5 pickle is read with a restricted unpickler and
written as safetensors; the statistics are validated and copied. The result is verified by
loading it (memory-mapped, no inference) before it replaces anything at --out.
``convert_released`` takes what the command line gives (a released directory or the files, a
suite or a layout); ``convert`` the resolved inputs.
"""
from pathlib import Path
import shutil

from safetensors.torch import save_file
import torch

from cosmos_policy_ros.config_files import read_yaml
from cosmos_policy_ros.engine.checkpoint import (dit_state_dict, find_dit_checkpoint,
                                                 vae_state_dict)
from cosmos_policy_ros.engine.images import ImagePipelineConfig
from cosmos_policy_ros.engine.model_dir import (file_sha256, FILES, model_files, ModelSpec,
                                                PLANNING_DIT_FILE, read_spec, write_spec)
from cosmos_policy_ros.engine.planning import PlanningConfig
from cosmos_policy_ros.engine.policy import DEFAULT_STEPS
from cosmos_policy_ros.engine.sampling import SamplerConfig
from cosmos_policy_ros.engine.synthetic_checkpoints import read_synthetic_info, TOKENIZER_FILE
from cosmos_policy_ros.engine.text import TextEmbeddings
from cosmos_policy_ros.layout import LatentLayout, PRESETS
from cosmos_policy_ros.normalization import NormStats

DTYPES = {'bf16': torch.bfloat16, 'fp32': torch.float32}
INPUT_FILES = ('checkpoint', 'tokenizer', 'statistics', 't5_embeddings')


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
        digest = file_sha256(staging / FILES['dit'])
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
    if dtype is not None:
        tensors = {key: value.to(dtype) if value.is_floating_point() else value
                   for key, value in tensors.items()}
    save_file({key: value.contiguous() for key, value in tensors.items()}, str(path))


def released_inputs(released=None, **files):
    """{role: Path} of INPUT_FILES: found in a released directory (`released`), where the given
    files (checkpoint=, tokenizer=, statistics=, t5_embeddings=; None: not given) override what
    it holds, or all of them given."""
    if released is not None:
        found = find_released_files(released, files.get('tokenizer'))
        found.update({role: Path(path) for role, path in files.items() if path is not None})
        return found
    missing = [f'--{role.replace("_", "-")}' for role in INPUT_FILES if files.get(role) is None]
    if missing:
        raise ConvertError(f'give --released DIR, or all of {missing}.')
    return {role: Path(files[role]) for role in INPUT_FILES}


def resolve_layout(files, *, layout_file=None, suite=None, info=None):
    """The LatentLayout: a layout YAML, the --suite preset, a synthetic model's own layout, or
    the preset the statistics file is named after."""
    if layout_file is not None:
        return LatentLayout.from_yaml(layout_file)
    if suite is None and info is not None:
        return LatentLayout.from_dict(info['layout'], source='synthetic.json layout')
    if suite is None:
        suite = Path(files['statistics']).name.split('_dataset_statistics')[0].lower()
    if suite not in PRESETS:
        raise ConvertError(f'cannot tell the layout: --suite {suite!r} is not one of '
                           f'{sorted(PRESETS)}; pass --suite or --layout.')
    return LatentLayout.preset(suite)


def convert_released(*, out, released=None, checkpoint=None, tokenizer=None, statistics=None,
                     t5_embeddings=None, planning=None, suite=None, layout=None,
                     layout_file=None, images=None, dit_preset=None, vae_preset=None,
                     dtype=None, num_steps=None, name=None, overwrite=False, log=print):
    """`convert` from what cosmos-policy-convert is given: a released directory or the files,
    the layout (a LatentLayout, a YAML file, a suite, or found as `resolve_layout` says), an
    image-pipeline preset name or YAML file, a dtype name of DTYPES. Returns the ModelSpec."""
    files = released_inputs(released, checkpoint=checkpoint, tokenizer=tokenizer,
                            statistics=statistics, t5_embeddings=t5_embeddings)
    info = read_synthetic_info(released) if released is not None else None
    if layout is None:
        layout = resolve_layout(files, layout_file=layout_file, suite=suite, info=info)
    if images is not None and Path(images).is_file():  # e.g. cosmos-policy-dataset's YAML
        images = ImagePipelineConfig.from_dict(read_yaml(images, 'image pipeline'),
                                               source=str(images))
    elif images is not None:
        images = ImagePipelineConfig.preset(images, image_size=layout.image_size)
    if planning is not None:
        planning = Path(planning)
        if planning.is_dir() and not (planning / '.metadata').is_file():
            planning = find_dit_checkpoint(planning)
    return convert(
        checkpoint=files['checkpoint'], tokenizer=files['tokenizer'],
        statistics=files['statistics'], t5_embeddings=files['t5_embeddings'], out=out,
        layout=layout, images=images,
        dit_preset=dit_preset or (info or {}).get('dit_preset', '2b'),
        vae_preset=vae_preset or (info or {}).get('vae_preset', 'wan2.1'),
        dtype=None if dtype is None else DTYPES[dtype], num_steps=num_steps, name=name,
        planning_checkpoint=planning, source={'synthetic': True} if info else {},
        overwrite=overwrite, log=log)
