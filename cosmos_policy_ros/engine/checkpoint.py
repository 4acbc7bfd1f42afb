"""Reading released Cosmos Policy checkpoints safely, converting and loading them strictly.

Files (reference section 5 "Loading a released checkpoint", section 6):

- the policy DiT: a ``.pt`` holding a flat dict of ``net.*`` tensors (reference key names,
  possibly bf16, possibly with Transformer Engine ``*._extra_state`` entries, activation
  checkpointing ``_checkpoint_wrapped_module.`` infixes, the buffers ``net.pos_embedder.*`` and
  ``net.accum_*``, and ``net_ema.*`` copies, which are dropped because EMA is off); or a torch
  distributed checkpoint directory (``model/`` with ``.metadata`` and ``__0_0.distcp``), read
  without a process group;
- the Wan2.1 VAE ``tokenizer.pth``: a flat dict with the reference Wan keys ``encoder.*``,
  ``conv1.*``, ``conv2.*``, ``decoder.*``;
- diffusers-keyed ``.safetensors`` files of either network (written by the conversion tool).

Reading never runs arbitrary pickles: ``torch.load(weights_only=True, mmap=True)``, safetensors,
and for DCP a metadata unpickler that only admits the checkpoint's own record classes (tensor
data is then read by torch with ``weights_only=True``). Reference keys are converted with
diffusers' own converters (``convert_cosmos_transformer_checkpoint_to_diffusers``,
``convert_wan_vae_to_diffusers``), then compared with the network by name and shape: any
missing, unexpected or mis-shaped key raises ``CheckpointError`` naming the keys (in the file's
naming) and the file. Modules are built on the meta device and the tensors assigned, so a
memory-mapped file is not copied when dtype and device already match.
"""
import functools
from pathlib import Path
import pickle
import warnings

from diffusers.loaders.single_file_utils import (
    convert_cosmos_transformer_checkpoint_to_diffusers, convert_wan_vae_to_diffusers)
from safetensors import SafetensorError
from safetensors.torch import load_file
import torch

from cosmos_policy_ros.engine.dit import CosmosDiT, dit_config, DIT_PRESETS
from cosmos_policy_ros.engine.vae import CosmosVAE, vae_config, VAE_PRESETS
from cosmos_policy_ros.layout import LATENT_CHANNELS

DIT_PREFIX = 'net.'
EMA_PREFIX = 'net_ema.'
WRAPPER_INFIX = '_checkpoint_wrapped_module.'
EXTRA_STATE_SUFFIX = '_extra_state'
# Buffers of the reference net that carry no weights (dropped by the diffusers converter).
DIT_BUFFERS = ('pos_embedder.seq', 'pos_embedder.dim_spatial_range',
               'pos_embedder.dim_temporal_range', 'accum_video_sample_counter',
               'accum_image_sample_counter', 'accum_iteration', 'accum_train_in_hours')
_LISTED = 8  # key names shown per category in an error message


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, unsafe, or does not match the network."""


# --- reading -----------------------------------------------------------------------------------
def read_tensors(path):
    """All tensors of a checkpoint as a flat {name: tensor} dict on the CPU.

    path: a ``.pt``/``.pth`` file (``torch.load(weights_only=True, mmap=True)``), a
    ``.safetensors`` file, or a DCP directory (holding ``.metadata``, or a ``model/`` sub-directory
    that does). Non-tensor ``*._extra_state`` entries are dropped; any other non-tensor value, a
    nested dict or a pickle that needs Python objects raises CheckpointError.
    """
    path = Path(path)
    if path.is_dir():
        return _read_dcp(_dcp_directory(path))
    if not path.is_file():
        raise CheckpointError(f'checkpoint {path} does not exist.')
    if path.suffix == '.safetensors':
        try:
            return load_file(str(path), device='cpu')
        except (SafetensorError, OSError) as error:
            raise CheckpointError(f'cannot read safetensors file {path}: {error}') from None
    return _flat_tensors(_torch_load(path), path)


def _torch_load(path):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # e.g. "Detected pickle protocol 4 ..."
            try:
                return torch.load(path, map_location='cpu', weights_only=True, mmap=True)
            except RuntimeError as error:
                if 'mmap' not in str(error):
                    raise
                # Legacy (non-zip) torch.save format cannot be memory-mapped.
                return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f'{path} is not a weights-only checkpoint ({_unpickling_reason(error)}). Refusing '
            f'to unpickle it: a checkpoint must be a dict of tensors (torch.save or '
            f'safetensors).') from None
    except (RuntimeError, OSError, EOFError) as error:
        raise CheckpointError(f'cannot read checkpoint {path}: {error}') from None


def _unpickling_reason(error):
    """The specific line of torch's weights-only error, without its generic advice."""
    text = str(error)
    marker = 'WeightsUnpickler error:'
    if marker in text:
        return text.split(marker, 1)[1].strip().splitlines()[0].split('. ')[0]
    return 'not a torch.save archive of tensors'


def _flat_tensors(data, source):
    if not isinstance(data, dict):
        raise CheckpointError(f'{source}: expected a dict of tensors, got {type(data).__name__}.')
    tensors = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise CheckpointError(f'{source}: key {key!r} is not a string.')
        if isinstance(value, torch.Tensor):
            tensors[key] = value
        elif key.endswith(EXTRA_STATE_SUFFIX):
            continue  # Transformer Engine metadata, not a weight
        elif isinstance(value, dict):
            raise CheckpointError(
                f'{source}: entry {key!r} is a nested dict; expected a flat dict of tensors '
                f'(released checkpoints hold `net.*` keys at the top level).')
        else:
            raise CheckpointError(f'{source}: entry {key!r} is a {type(value).__name__}, '
                                  f'not a tensor.')
    return tensors


def _dcp_directory(path):
    if (path / '.metadata').is_file():
        return path
    if (path / 'model' / '.metadata').is_file():
        return path / 'model'
    raise CheckpointError(f'{path} is a directory but not a torch distributed checkpoint (no '
                          f'.metadata in it or in {path / "model"}).')


class _MetadataUnpickler(pickle.Unpickler):
    """Unpickles DCP `.metadata` records and nothing else (no arbitrary callables)."""

    _ALLOWED = {
        ('torch.distributed.checkpoint.metadata', name) for name in (
            'Metadata', 'TensorStorageMetadata', 'BytesStorageMetadata', 'TensorProperties',
            'ChunkStorageMetadata', 'MetadataIndex', 'StorageMeta', '_MEM_FORMAT_ENCODING')
    } | {
        ('torch.distributed.checkpoint.filesystem', '_StorageInfo'),
        ('torch.serialization', '_get_layout'),
        ('torch', 'Size'),
        ('pathlib', 'PosixPath'), ('pathlib', 'WindowsPath'),
        ('pathlib', 'PurePosixPath'), ('pathlib', 'PureWindowsPath'),
        ('collections', 'OrderedDict'),
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        if module == 'torch' and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)
        raise pickle.UnpicklingError(f'{module}.{name} is not allowed in DCP metadata')


def _read_dcp(directory):
    # torch.distributed: DCP checkpoints only (some torch builds, e.g. Jetson's, lack it)
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    class SafeReader(dcp.FileSystemReader):
        def read_metadata(self, *args, **kwargs):
            try:
                with open(Path(self.path) / '.metadata', 'rb') as stream:
                    metadata = _MetadataUnpickler(stream).load()
            except (pickle.UnpicklingError, EOFError, AttributeError, TypeError) as error:
                raise CheckpointError(f'{directory}/.metadata is not plain DCP metadata: '
                                      f'{error}. Refusing to unpickle it.') from None
            if getattr(metadata, 'storage_meta', None) is not None:
                metadata.storage_meta.load_id = self.load_id
            return metadata

    reader = SafeReader(str(directory))
    metadata = reader.read_metadata()
    tensors = {}
    for key, item in metadata.state_dict_metadata.items():
        if isinstance(item, TensorStorageMetadata):
            tensors[key] = torch.empty(item.size, dtype=item.properties.dtype)
        elif not key.endswith(EXTRA_STATE_SUFFIX):
            # Non-tensor entries would be read with an unrestricted torch.load: never request.
            raise CheckpointError(f'{directory}: entry {key!r} is not a tensor.')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # "torch.distributed is disabled ... single process"
        try:
            dcp.load(tensors, storage_reader=reader, no_dist=True)
        except CheckpointError:
            raise
        except Exception as error:  # DCP wraps reader errors in its own exception types
            raise CheckpointError(f'cannot read distributed checkpoint {directory}: '
                                  f'{error}') from None
    return tensors


def find_dit_checkpoint(path):
    """The policy checkpoint in a downloaded model directory (or `path` itself if a file).

    Like the reference: a ``model/`` DCP directory if present, else the single ``*.pt``; a
    single ``*.safetensors`` (converted) is accepted as well.
    """
    path = Path(path)
    if path.is_file() or (path / '.metadata').is_file():
        return path
    if not path.is_dir():
        raise CheckpointError(f'checkpoint path {path} does not exist.')
    if (path / 'model' / '.metadata').is_file():
        return path / 'model'
    for pattern in ('*.pt', '*.safetensors'):
        found = sorted(path.glob(pattern))
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise CheckpointError(f'{path} holds several {pattern} files '
                                  f'{[p.name for p in found]}; pass the one to load.')
    raise CheckpointError(f'no policy checkpoint in {path}: expected a model/ DCP directory, '
                          f'a *.pt or a *.safetensors file.')


# --- the reference key layouts ------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def reference_dit_shapes(config='2b'):
    """{key: shape} of a released DiT checkpoint (``net.*`` names, buffers included).

    The module tree of the reference MinimalV1LVGDiT (reference section 5, "State-dict keys").
    """
    c = dit_config(config)
    d, lora, hd = c.hidden_size, c.adaln_lora_dim, c.head_dim
    mlp = int(d * c.mlp_ratio)
    p_t, p_h, p_w = c.patch_size
    patch_in = (LATENT_CHANNELS + 2) * p_t * p_h * p_w  # latent, condition mask, padding mask
    dim_h = hd // 6 * 2
    dim_t = hd - 2 * dim_h
    shapes = {
        'x_embedder.proj.1.weight': (d, patch_in),
        't_embedder.1.linear_1.weight': (d, d),
        't_embedder.1.linear_2.weight': (3 * d, d),
        't_embedding_norm.weight': (d,),
    }
    for i in range(c.num_layers):
        block = f'blocks.{i}.'
        for attn, context in (('self_attn', d), ('cross_attn', c.text_dim)):
            shapes[block + attn + '.q_proj.weight'] = (d, d)
            shapes[block + attn + '.k_proj.weight'] = (d, context)
            shapes[block + attn + '.v_proj.weight'] = (d, context)
            shapes[block + attn + '.output_proj.weight'] = (d, d)
            shapes[block + attn + '.q_norm.weight'] = (hd,)
            shapes[block + attn + '.k_norm.weight'] = (hd,)
        shapes[block + 'mlp.layer1.weight'] = (mlp, d)
        shapes[block + 'mlp.layer2.weight'] = (d, mlp)
        for branch in ('self_attn', 'cross_attn', 'mlp'):
            shapes[block + f'adaln_modulation_{branch}.1.weight'] = (lora, d)
            shapes[block + f'adaln_modulation_{branch}.2.weight'] = (3 * d, lora)
    shapes['final_layer.linear.weight'] = (p_t * p_h * p_w * LATENT_CHANNELS, d)
    shapes['final_layer.adaln_modulation.1.weight'] = (lora, d)
    shapes['final_layer.adaln_modulation.2.weight'] = (2 * d, lora)
    len_t, len_h, len_w = (size // patch for size, patch in zip(c.max_size, c.patch_size))
    shapes['pos_embedder.seq'] = (max(len_t, len_h, len_w),)
    shapes['pos_embedder.dim_spatial_range'] = (dim_h // 2,)
    shapes['pos_embedder.dim_temporal_range'] = (dim_t // 2,)
    for name in DIT_BUFFERS[3:]:
        shapes[name] = ()
    return {DIT_PREFIX + key: shape for key, shape in shapes.items()}


@functools.lru_cache(maxsize=None)
def reference_vae_shapes(config='wan2.1'):
    """{key: shape} of a Wan2.1 ``tokenizer.pth`` (the reference WanVAE_ module tree)."""
    c = vae_config(config)
    z = LATENT_CHANNELS
    shapes = {}

    def conv3d(prefix, c_out, c_in, kernel):
        shapes[prefix + '.weight'] = (c_out, c_in, *kernel)
        shapes[prefix + '.bias'] = (c_out,)

    def residual(prefix, c_in, c_out):
        shapes[prefix + '.residual.0.gamma'] = (c_in, 1, 1, 1)
        conv3d(prefix + '.residual.2', c_out, c_in, (3, 3, 3))
        shapes[prefix + '.residual.3.gamma'] = (c_out, 1, 1, 1)
        conv3d(prefix + '.residual.6', c_out, c_out, (3, 3, 3))
        if c_in != c_out:
            conv3d(prefix + '.shortcut', c_out, c_in, (1, 1, 1))

    def middle(prefix, dim):
        residual(prefix + '.0', dim, dim)
        shapes[prefix + '.1.norm.gamma'] = (dim, 1, 1)
        conv3d(prefix + '.1.to_qkv', 3 * dim, dim, (1, 1))
        conv3d(prefix + '.1.proj', dim, dim, (1, 1))
        residual(prefix + '.2', dim, dim)

    # Encoder3d(dim, 2z): conv1, per level num_res_blocks residuals and a down-sampler.
    dims = [c.base_dim * m for m in (1,) + c.dim_mult]
    conv3d('encoder.conv1', dims[0], 3, (3, 3, 3))
    index = 0
    for level, (c_in, c_out) in enumerate(zip(dims[:-1], dims[1:])):
        for _ in range(c.num_res_blocks):
            residual(f'encoder.downsamples.{index}', c_in, c_out)
            c_in, index = c_out, index + 1
        if level != len(c.dim_mult) - 1:
            conv3d(f'encoder.downsamples.{index}.resample.1', c_out, c_out, (3, 3))
            if c.temporal_downsample[level]:
                conv3d(f'encoder.downsamples.{index}.time_conv', c_out, c_out, (3, 1, 1))
            index += 1
    middle('encoder.middle', dims[-1])
    shapes['encoder.head.0.gamma'] = (dims[-1], 1, 1, 1)
    conv3d('encoder.head.2', 2 * z, dims[-1], (3, 3, 3))
    conv3d('conv1', 2 * z, 2 * z, (1, 1, 1))
    conv3d('conv2', z, z, (1, 1, 1))
    # Decoder3d(dim, z): conv1, middle, per level num_res_blocks + 1 residuals and an up-sampler.
    dims = [c.base_dim * m for m in (c.dim_mult[-1],) + c.dim_mult[::-1]]
    temporal_upsample = c.temporal_downsample[::-1]
    conv3d('decoder.conv1', dims[0], z, (3, 3, 3))
    middle('decoder.middle', dims[0])
    index = 0
    for level, (c_in, c_out) in enumerate(zip(dims[:-1], dims[1:])):
        if level in (1, 2, 3):
            c_in //= 2  # the previous up-sampler halves the channels
        for _ in range(c.num_res_blocks + 1):
            residual(f'decoder.upsamples.{index}', c_in, c_out)
            c_in, index = c_out, index + 1
        if level != len(c.dim_mult) - 1:
            conv3d(f'decoder.upsamples.{index}.resample.1', c_out // 2, c_out, (3, 3))
            if temporal_upsample[level]:
                conv3d(f'decoder.upsamples.{index}.time_conv', 2 * c_out, c_out, (3, 1, 1))
            index += 1
    shapes['decoder.head.0.gamma'] = (dims[-1], 1, 1, 1)
    conv3d('decoder.head.2', 3, dims[-1], (3, 3, 3))
    return shapes


# --- conversion --------------------------------------------------------------------------------
def convert_dit_state_dict(tensors, *, source='state dict'):
    """Released (``net.*``) DiT tensors -> (diffusers-keyed dict, {diffusers key: file key}).

    Drops ``net_ema.*``, ``*._extra_state`` and the reference buffers, strips
    ``_checkpoint_wrapped_module.`` infixes, and renames with diffusers'
    ``convert_cosmos_transformer_checkpoint_to_diffusers``. Keys outside ``net.`` are kept under
    their own name (and will be reported as unexpected).
    """
    if not any(key.startswith(DIT_PREFIX) for key in tensors):
        raise CheckpointError(f'{source}: no `{DIT_PREFIX}*` keys; this is not a released '
                              f'Cosmos Policy DiT checkpoint (first keys: '
                              f'{sorted(tensors)[:_LISTED]}).')
    converted, origin = {}, {}
    for key, value in tensors.items():
        if key.startswith(EMA_PREFIX) or key.endswith(EXTRA_STATE_SUFFIX):
            continue
        name = key.replace(WRAPPER_INFIX, '')
        renamed = ({name: value} if not name.startswith(DIT_PREFIX)
                   else convert_cosmos_transformer_checkpoint_to_diffusers({name: value}))
        _merge(converted, origin, renamed, key, source)
    return converted, origin


def convert_vae_state_dict(tensors, *, source='state dict'):
    """Wan2.1 ``tokenizer.pth`` tensors -> (diffusers-keyed dict, {diffusers key: file key})."""
    converted, origin = {}, {}
    for key, value in tensors.items():
        _merge(converted, origin, convert_wan_vae_to_diffusers({key: value}), key, source)
    return converted, origin


def _merge(converted, origin, renamed, key, source):
    for new_key, value in renamed.items():
        if new_key in converted:
            raise CheckpointError(f'{source}: keys {origin[new_key]!r} and {key!r} both map to '
                                  f'{new_key!r}.')
        converted[new_key] = value
        origin[new_key] = key


def _is_reference_dit(tensors):
    return any(key.startswith((DIT_PREFIX, EMA_PREFIX)) for key in tensors)


def _is_reference_vae(tensors):
    return any(key.startswith(('encoder.downsamples.', 'decoder.upsamples.', 'encoder.middle.',
                               'conv1.', 'conv2.')) for key in tensors)


# --- strict checks -----------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def dit_diffusers_shapes(config='2b'):
    """{diffusers key: shape} of the DiT for a preset (built on the meta device)."""
    with torch.device('meta'):
        net = CosmosDiT(config)
    return {key: tuple(value.shape) for key, value in net.transformer.state_dict().items()}


@functools.lru_cache(maxsize=None)
def vae_diffusers_shapes(config='wan2.1'):
    """{diffusers key: shape} of the VAE for a preset (built on the meta device)."""
    with torch.device('meta'):
        vae = CosmosVAE(config)
    return {key: tuple(value.shape) for key, value in vae.vae.state_dict().items()}


@functools.lru_cache(maxsize=None)
def _reference_names(kind, config):
    """{diffusers key: reference key} for the preset, to name missing keys as the file would."""
    if kind == 'DiT':
        shapes = reference_dit_shapes(config)
        _, origin = convert_dit_state_dict({k: None for k in shapes})
    else:
        _, origin = convert_vae_state_dict({k: None for k in reference_vae_shapes(config)})
    return origin


def _check(tensors, origin, *, kind, config, source):
    expected = dit_diffusers_shapes(config) if kind == 'DiT' else vae_diffusers_shapes(config)
    reference = _reference_names(kind, config) if origin is not None else {}
    origin = origin or {}

    def file_name(key):
        original = origin.get(key, key)
        return original if original == key else f'{original} (-> {key})'

    def model_name(key):
        original = reference.get(key, key)
        return original if original == key else f'{original} (diffusers {key})'

    missing = sorted(set(expected) - set(tensors), key=_natural)
    unexpected = sorted(set(tensors) - set(expected), key=_natural)
    mismatched = sorted((key for key in set(expected) & set(tensors)
                         if tuple(tensors[key].shape) != expected[key]), key=_natural)
    if not (missing or unexpected or mismatched):
        return
    lines = [f'{source} does not match the {kind} preset {config.name!r}:']
    matching = [name for name in (DIT_PRESETS if kind == 'DiT' else VAE_PRESETS)
                if name != config.name and _shapes_match(tensors, kind, name)]
    if matching:
        lines.append(f'  (it matches the {kind} preset {matching[0]!r}; synthetic checkpoints '
                     f'name theirs in synthetic.json)')
    for label, keys, describe in (
            ('missing', missing, model_name),
            ('unexpected', unexpected, file_name),
            ('wrong shape', mismatched,
             lambda k: f'{file_name(k)}: file {tuple(tensors[k].shape)}, model {expected[k]}')):
        if keys:
            shown = [describe(key) for key in keys[:_LISTED]]
            more = f' ... and {len(keys) - _LISTED} more' if len(keys) > _LISTED else ''
            lines.append(f'  {label} ({len(keys)}): ' + '; '.join(shown) + more)
    raise CheckpointError('\n'.join(lines))


def _natural(key):
    """Sort key that orders 'blocks.2' before 'blocks.10'."""
    return [(0, int(part), '') if part.isdigit() else (1, 0, part) for part in key.split('.')]


def _shapes_match(tensors, kind, name):
    expected = dit_diffusers_shapes(dit_config(name)) if kind == 'DiT' else (
        vae_diffusers_shapes(vae_config(name)))
    return set(expected) == set(tensors) and all(
        tuple(tensors[key].shape) == shape for key, shape in expected.items())


# --- public loading API ------------------------------------------------------------------------
def dit_state_dict(path, preset='2b'):
    """Diffusers-keyed DiT tensors from a released or converted checkpoint, checked strictly.

    path: ``.pt``, DCP directory, or ``.safetensors`` (either key naming). Raises
    CheckpointError naming every missing, unexpected or mis-shaped key. Tensors keep the file's
    dtype (and stay memory-mapped where the format allows).
    """
    return _checked_tensors(path, 'DiT', dit_config(preset), _is_reference_dit,
                            convert_dit_state_dict)


def vae_state_dict(path, preset='wan2.1'):
    """Diffusers-keyed VAE tensors from a ``tokenizer.pth`` or converted file, checked strictly."""
    return _checked_tensors(path, 'VAE', vae_config(preset), _is_reference_vae,
                            convert_vae_state_dict)


def _checked_tensors(path, kind, config, is_reference, convert):
    """Read `path`, convert reference key names to diffusers' if needed, check strictly."""
    tensors = read_tensors(path)
    origin = None
    if is_reference(tensors):
        tensors, origin = convert(tensors, source=str(path))
    _check(tensors, origin, kind=kind, config=config, source=str(path))
    return tensors


def load_dit(path, preset='2b', *, dtype=torch.bfloat16, device='cpu', parity=None,
             per_frame_adaln=True):
    """A ready CosmosDiT (eval mode, no grad) with the weights of `path`.

    path: released ``.pt``, DCP directory, or diffusers-keyed ``.safetensors``.
    preset: the DiT size ('2b' for released weights). parity, per_frame_adaln: see CosmosDiT.
    """
    tensors = dit_state_dict(path, preset)
    with torch.device('meta'):
        net = CosmosDiT(preset, parity=parity, per_frame_adaln=per_frame_adaln)
    net.transformer.load_state_dict(tensors, strict=True, assign=True)
    return net.to(device=device, dtype=dtype).eval().requires_grad_(False)


def load_vae(path, preset='wan2.1', *, dtype=torch.bfloat16, device='cpu', parity=None):
    """A ready CosmosVAE (eval mode, no grad) with the weights of `path`.

    path: the Wan2.1 ``tokenizer.pth`` or a diffusers-keyed ``.safetensors``.
    """
    tensors = vae_state_dict(path, preset)
    with torch.device('meta'):
        vae = CosmosVAE(preset, parity=parity)
    vae.vae.load_state_dict(tensors, strict=True, assign=True)
    return vae.to(device=device, dtype=dtype).eval().requires_grad_(False)
