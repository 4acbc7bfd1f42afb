"""Small synthetic checkpoints in the exact formats of the released Cosmos Policy files.

Everything a released model directory holds (reference section 8), with small networks and
random weights, for tests, the demo and benchmarks:

    Cosmos-Policy-LIBERO-Predict2-2B.pt   flat dict of `net.*` tensors (or model/ as DCP)
    libero_dataset_statistics.json        actions_/proprio_ min, max, mean, std, median
    libero_t5_embeddings.pkl              pickle of {instruction: bf16 tensor (1, 512, 1024)}
    tokenizer/tokenizer.pth               Wan2.1 VAE state dict (reference key names)
    synthetic.json                        which size presets produced the files

Key names and nesting follow the reference module trees (``checkpoint.reference_dit_shapes``,
``checkpoint.reference_vae_shapes``). Every weight is random and non-trivial (also the
modulation layers the reference initializes to zero), so tests exercise every path. The output
is a deterministic function of the seed.
"""
import json
import math
from pathlib import Path
import pickle
import warnings

import numpy as np
import torch

from cosmos_policy_ros.engine.checkpoint import (
    DIT_PREFIX, EMA_PREFIX, EXTRA_STATE_SUFFIX, reference_dit_shapes, reference_vae_shapes,
    WRAPPER_INFIX)
from cosmos_policy_ros.engine.dit import dit_config
from cosmos_policy_ros.engine.vae import vae_config

T5_TOKENS = 512  # T5 sequence length of the released embeddings
T5_DIM = 1024
INFO_FILE = 'synthetic.json'
TOKENIZER_FILE = 'tokenizer/tokenizer.pth'
# --size -> (DiT preset, VAE preset)
SIZES = {'tiny': ('tiny', 'tiny'), 'small': ('small', 'tiny')}
SIZES_DIT = {dit for dit, _ in SIZES.values()}
SIZES_VAE = {vae for _, vae in SIZES.values()}
CHECKPOINT_FORMATS = ('pt', 'dcp')
# Released repository names (nvidia/Cosmos-Policy-<name>-Predict2-2B) and sample instructions
# (the first is the task of the synthetic sample episode, tools/sample_episode.py).
SUITES = {
    'libero': ('LIBERO', ('put the black bowl on the plate', 'put the bowl on the plate',
                          'open the top drawer and put the bowl inside',
                          'pick up the alphabet soup and place it in the basket')),
    'robocasa': ('RoboCasa', ('open the microwave door',
                              'pick the apple from the counter and place it in the sink',
                              'turn on the sink faucet')),
    'aloha': ('ALOHA', ('put the red cube into the bowl', 'put the candy in the bowl',
                        'fold the shirt',
                        'put the items in the pot')),
}
_DTYPES = {'bf16': torch.bfloat16, 'fp32': torch.float32}


# --- weights -----------------------------------------------------------------------------------
def random_dit_state_dict(config, *, seed=0, dtype=torch.float32):
    """A released-format DiT state dict (``net.*`` keys, buffers included) with random weights.

    Linear weights N(0, 1/fan_in), RMSNorm weights 1 + 0.2 N(0, 1); the RoPE and statistics
    buffers hold what the reference registers. Floating tensors are cast to `dtype`.
    """
    config = dit_config(config)
    generator = torch.Generator().manual_seed(seed)
    dim_h = config.head_dim // 6 * 2
    dim_t = config.head_dim - 2 * dim_h
    buffers = {
        'pos_embedder.seq': lambda n: torch.arange(n, dtype=torch.float32),
        'pos_embedder.dim_spatial_range':
            lambda n: torch.arange(0, dim_h, 2)[:n].float() / dim_h,
        'pos_embedder.dim_temporal_range':
            lambda n: torch.arange(0, dim_t, 2)[:n].float() / dim_t,
        'accum_video_sample_counter': lambda _: torch.tensor(0, dtype=torch.int64),
        'accum_image_sample_counter': lambda _: torch.tensor(0, dtype=torch.int64),
        'accum_iteration': lambda _: torch.tensor(0, dtype=torch.int64),
        'accum_train_in_hours': lambda _: torch.tensor(0.0),
    }
    tensors = {}
    for key, shape in reference_dit_shapes(config).items():
        name = key[len(DIT_PREFIX):]
        if name in buffers:
            value = buffers[name](shape[0] if shape else None)
        elif name.endswith('norm.weight'):
            value = 1.0 + 0.2 * torch.randn(shape, generator=generator)
        else:
            value = torch.randn(shape, generator=generator) / math.sqrt(shape[1])
        tensors[key] = value.to(dtype) if value.is_floating_point() else value
    return tensors


def random_vae_state_dict(config, *, seed=0, dtype=torch.float32):
    """A Wan2.1 ``tokenizer.pth`` state dict (reference keys) with random weights.

    Conv weights N(0, 1/fan_in), biases 0.05 N(0, 1), RMS-norm gammas 1 + 0.2 N(0, 1).
    """
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for key, shape in reference_vae_shapes(vae_config(config)).items():
        noise = torch.randn(shape, generator=generator)
        if key.endswith('.gamma'):
            value = 1.0 + 0.2 * noise
        elif key.endswith('.bias'):
            value = 0.05 * noise
        else:
            value = noise / math.sqrt(math.prod(shape[1:]))
        tensors[key] = value.to(dtype)
    return tensors


def released_dit_layout(tensors, *, seed=0, extra_state=False, wrapped=False, ema=False):
    """Variants seen in training checkpoints, applied to a ``net.*`` state dict.

    extra_state: add Transformer Engine ``*._extra_state`` byte tensors to the TE RMSNorms.
    wrapped: insert ``_checkpoint_wrapped_module.`` after every block and the final layer.
    ema: add ``net_ema.*`` copies of every weight with different values (EMA is off).
    """
    generator = torch.Generator().manual_seed(seed + 1)
    out = {}
    for key, value in tensors.items():
        name = key
        if wrapped:
            parts = key.split('.')
            if parts[1] == 'blocks':
                name = '.'.join(parts[:3]) + '.' + WRAPPER_INFIX + '.'.join(parts[3:])
            elif parts[1] == 'final_layer':
                name = '.'.join(parts[:2]) + '.' + WRAPPER_INFIX + '.'.join(parts[2:])
        out[name] = value
        if extra_state and key.endswith(('q_norm.weight', 'k_norm.weight',
                                         't_embedding_norm.weight')):
            stem = name[:-len('weight')]
            out[stem + EXTRA_STATE_SUFFIX] = torch.randint(
                0, 256, (16,), generator=generator, dtype=torch.uint8)
    if ema:
        for key, value in tensors.items():
            if value.is_floating_point():
                noise = torch.randn(value.shape, generator=generator).to(value.dtype)
                out[EMA_PREFIX + key[len(DIT_PREFIX):]] = value + 0.1 * noise
    return out


def write_dit_checkpoint(path, config, *, seed=0, dtype=torch.float32, checkpoint_format='pt',
                         extra_state=False, wrapped=False, ema=False):
    """Write a released-format DiT checkpoint: a ``.pt`` file or a DCP directory at `path`."""
    if checkpoint_format not in CHECKPOINT_FORMATS:
        raise ValueError(f'`checkpoint_format` must be one of {CHECKPOINT_FORMATS}. '
                         f'Got {checkpoint_format!r}.')
    tensors = released_dit_layout(random_dit_state_dict(config, seed=seed, dtype=dtype),
                                  seed=seed, extra_state=extra_state, wrapped=wrapped, ema=ema)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if checkpoint_format == 'pt':
        torch.save(tensors, path)
    else:
        save_dcp(tensors, path)
    return path


def save_dcp(tensors, directory):
    """Save a flat dict of tensors as a single-process torch distributed checkpoint."""
    import torch.distributed.checkpoint as dcp  # torch.distributed: DCP only (not on Jetson)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # "torch.distributed is disabled ... single process"
        dcp.save(dict(tensors), checkpoint_id=str(directory), no_dist=True)
    return Path(directory)


def write_vae_checkpoint(path, config, *, seed=0, dtype=torch.float32):
    """Write a Wan2.1-format ``tokenizer.pth`` with random weights."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(random_vae_state_dict(config, seed=seed, dtype=dtype), path)
    return path


# --- data files --------------------------------------------------------------------------------
def dataset_statistics(layout, *, seed=0):
    """Statistics like `<suite>_dataset_statistics.json`, sized for `layout`.

    Per dimension: min < median, mean < max, std > 0 (only min/max are used by the policy).
    """
    rng = np.random.RandomState(seed)
    stats = {}
    for prefix, size in (('actions', layout.action_dim), ('proprio', layout.proprio_dim)):
        low = -1.0 - rng.rand(size)
        high = 1.0 + rng.rand(size)
        width = high - low
        stats[f'{prefix}_min'] = low.tolist()
        stats[f'{prefix}_max'] = high.tolist()
        stats[f'{prefix}_mean'] = (low + width * (0.3 + 0.4 * rng.rand(size))).tolist()
        stats[f'{prefix}_std'] = (width * (0.1 + 0.2 * rng.rand(size))).tolist()
        stats[f'{prefix}_median'] = (low + width * (0.3 + 0.4 * rng.rand(size))).tolist()
    return stats


def t5_embeddings(instructions, *, seed=0):
    """{instruction: bf16 (1, 512, 1024)}: random rows for the tokens, zeros after (like T5)."""
    generator = torch.Generator().manual_seed(seed)
    embeddings = {}
    for text in instructions:
        tokens = min(T5_TOKENS, len(text.split()) + 2)  # a rough token count, EOS included
        embedding = torch.zeros(1, T5_TOKENS, T5_DIM)
        embedding[0, :tokens] = 0.2 * torch.randn(tokens, T5_DIM, generator=generator)
        embeddings[text] = embedding.to(torch.bfloat16)
    return embeddings


def write_t5_embeddings(path, instructions, *, seed=0):
    """Write `<suite>_t5_embeddings.pkl` with plain pickle.dump, as the reference does."""
    path = Path(path)
    with open(path, 'wb') as stream:
        pickle.dump(t5_embeddings(instructions, seed=seed), stream)
    return path


# --- a whole model directory ---------------------------------------------------------------------
def checkpoint_name(suite):
    """File name of the released policy checkpoint of a suite (or layout name)."""
    title = SUITES[suite][0] if suite in SUITES else suite
    return f'Cosmos-Policy-{title}-Predict2-2B.pt'


def write_synthetic_model(out_dir, layout, *, size='tiny', seed=0, dtype='bf16',
                          checkpoint_format='pt', overwrite=False):
    """Write a synthetic model directory laid out like a released HF repository.

    layout: the LatentLayout (its name picks the file names and sample instructions).
    size: 'tiny' or 'small' (DiT preset; the VAE is the 'tiny' preset for both).
    dtype: 'bf16' or 'fp32' weights. checkpoint_format: 'pt' (one file) or 'dcp' (model/).
    Returns {role: path} for 'checkpoint', 'tokenizer', 'dataset_statistics',
    't5_embeddings' and 'info'. Existing files are only replaced with overwrite=True.
    """
    if size not in SIZES:
        raise ValueError(f'`size` must be one of {sorted(SIZES)}. Got {size!r}.')
    if dtype not in _DTYPES:
        raise ValueError(f'`dtype` must be one of {sorted(_DTYPES)}. Got {dtype!r}.')
    if checkpoint_format not in CHECKPOINT_FORMATS:
        raise ValueError(f'`checkpoint_format` must be one of {CHECKPOINT_FORMATS}. '
                         f'Got {checkpoint_format!r}.')
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f'`seed` must be a non-negative integer. Got {seed!r}.')
    out_dir = Path(out_dir)
    suite = layout.name
    files = {
        'checkpoint': checkpoint_name(suite) if checkpoint_format == 'pt' else 'model',
        'tokenizer': TOKENIZER_FILE,
        'dataset_statistics': f'{suite}_dataset_statistics.json',
        't5_embeddings': f'{suite}_t5_embeddings.pkl',
        'info': INFO_FILE,
    }
    paths = {role: out_dir / name for role, name in files.items()}
    # Both checkpoint forms count: a stale model/ next to a new .pt would be picked first.
    checkpoints = [out_dir / checkpoint_name(suite), out_dir / 'model']
    existing = [path for path in list(paths.values()) + checkpoints if path.exists()]
    if existing and not overwrite:
        raise FileExistsError(f'refusing to overwrite {sorted(set(map(str, existing)))} '
                              f'(pass overwrite=True / --force).')
    dit_preset, vae_preset = SIZES[size]
    instructions = SUITES[suite][1] if suite in SUITES else (
        'pick up the object', 'place the object in the box')
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in checkpoints:
        if stale.is_dir():
            for entry in stale.iterdir():
                entry.unlink()
            stale.rmdir()
        elif stale.exists():
            stale.unlink()
    write_dit_checkpoint(paths['checkpoint'], dit_preset, seed=seed, dtype=_DTYPES[dtype],
                         checkpoint_format=checkpoint_format)
    write_vae_checkpoint(paths['tokenizer'], vae_preset, seed=seed + 1, dtype=_DTYPES[dtype])
    paths['dataset_statistics'].write_text(
        json.dumps(dataset_statistics(layout, seed=seed), indent=2) + '\n')
    write_t5_embeddings(paths['t5_embeddings'], instructions, seed=seed)
    info = {
        'synthetic': True,
        'dit_preset': dit_preset,
        'vae_preset': vae_preset,
        'size': size,
        'seed': seed,
        'dtype': dtype,
        'checkpoint_format': checkpoint_format,
        'layout': layout.to_dict(),
        'instructions': list(instructions),
        'files': {role: name for role, name in files.items() if role != 'info'},
    }
    paths['info'].write_text(json.dumps(info, indent=2) + '\n')
    return paths


def read_synthetic_info(model_dir):
    """The synthetic.json of a model directory as a dict, or None for a released model.

    The facade uses its 'dit_preset' / 'vae_preset' to build the right network sizes.
    """
    path = Path(model_dir) / INFO_FILE
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f'cannot read {path}: {error}') from None
    for field, known in (('dit_preset', SIZES_DIT), ('vae_preset', SIZES_VAE)):
        if info.get(field) not in known:
            raise ValueError(f'{path}: `{field}` must be one of {sorted(known)}. '
                             f'Got {info.get(field)!r}.')
    return info
