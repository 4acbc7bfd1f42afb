"""Checkpoint reading, conversion and strict loading, on released-format synthetic files."""
import os
import pickle

import pytest
from safetensors.torch import save_file
import torch

from cosmos_policy_ros.engine.checkpoint import (
    CheckpointError, convert_dit_state_dict, convert_vae_state_dict, dit_diffusers_shapes,
    dit_state_dict, find_dit_checkpoint, load_dit, load_vae, read_tensors, reference_dit_shapes,
    reference_vae_shapes, vae_diffusers_shapes, vae_state_dict)
from cosmos_policy_ros.engine.dit import dit_config
from cosmos_policy_ros.engine.synthetic_checkpoints import (
    random_dit_state_dict, released_dit_layout, save_dcp, write_dit_checkpoint,
    write_vae_checkpoint)
from cosmos_policy_ros.engine.vae import vae_config


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp('checkpoints')
    return {
        'pt': write_dit_checkpoint(root / 'plain.pt', 'tiny', seed=1),
        'bf16': write_dit_checkpoint(root / 'bf16.pt', 'tiny', seed=1, dtype=torch.bfloat16),
        'variants': write_dit_checkpoint(root / 'variants.pt', 'tiny', seed=1, extra_state=True,
                                         wrapped=True, ema=True),
        'dcp': write_dit_checkpoint(root / 'repo' / 'model', 'tiny', seed=1,
                                    checkpoint_format='dcp'),
        'tokenizer': write_vae_checkpoint(root / 'tokenizer' / 'tokenizer.pth', 'tiny', seed=2),
        'root': root,
    }


def _parameters(module):
    return {name: value for name, value in module.state_dict().items()}


def _assert_same_module(first, second):
    a, b = _parameters(first), _parameters(second)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _edited(path, tmp_path, edit):
    tensors = dict(torch.load(path, weights_only=True))
    edit(tensors)
    out = tmp_path / 'edited.pt'
    torch.save(tensors, out)
    return out


# --- the full-size layouts (meta device, no weights) -------------------------------------------
def test_2b_reference_keys_convert_to_exactly_the_diffusers_2b_keys():
    reference = reference_dit_shapes('2b')
    assert len(reference) == 574  # 567 parameters + 7 buffers (reference section 5)
    # Spot checks against the key list of reference section 5.
    assert reference['net.x_embedder.proj.1.weight'] == (2048, 72)
    assert reference['net.blocks.27.cross_attn.k_proj.weight'] == (2048, 1024)
    assert reference['net.blocks.0.adaln_modulation_mlp.2.weight'] == (6144, 256)
    assert reference['net.final_layer.adaln_modulation.2.weight'] == (4096, 256)
    assert reference['net.pos_embedder.seq'] == (128,)
    assert reference['net.pos_embedder.dim_spatial_range'] == (21,)
    assert reference['net.pos_embedder.dim_temporal_range'] == (22,)
    meta = {key: torch.empty(shape, device='meta') for key, shape in reference.items()}
    converted, origin = convert_dit_state_dict(meta)
    expected = dit_diffusers_shapes(dit_config('2b'))
    assert len(converted) == len(expected) == 567
    assert {key: tuple(value.shape) for key, value in converted.items()} == expected
    assert sum(torch.Size(shape).numel() for shape in expected.values()) == 1_956_413_440
    assert origin['transformer_blocks.3.ff.net.0.proj.weight'] == 'net.blocks.3.mlp.layer1.weight'


def test_wan21_reference_keys_convert_to_exactly_the_diffusers_vae_keys():
    reference = reference_vae_shapes('wan2.1')
    assert len(reference) == 194
    meta = {key: torch.empty(shape, device='meta') for key, shape in reference.items()}
    converted, _ = convert_vae_state_dict(meta)
    expected = vae_diffusers_shapes(vae_config('wan2.1'))
    assert {key: tuple(value.shape) for key, value in converted.items()} == expected
    assert sum(torch.Size(shape).numel() for shape in expected.values()) == 126_892_531


# --- loading the released formats --------------------------------------------------------------
def test_released_pt_loads_strictly_into_the_right_modules(files):
    net = load_dit(files['pt'], 'tiny', dtype=torch.float32)
    raw = torch.load(files['pt'], weights_only=True)
    params = _parameters(net.transformer)
    pairs = {
        'net.blocks.1.mlp.layer1.weight': 'transformer_blocks.1.ff.net.0.proj.weight',
        'net.blocks.0.cross_attn.output_proj.weight': 'transformer_blocks.0.attn2.to_out.0.weight',
        'net.blocks.0.self_attn.k_norm.weight': 'transformer_blocks.0.attn1.norm_k.weight',
        'net.blocks.1.adaln_modulation_cross_attn.2.weight':
            'transformer_blocks.1.norm2.linear_2.weight',
        'net.t_embedding_norm.weight': 'time_embed.norm.weight',
        'net.final_layer.linear.weight': 'proj_out.weight',
    }
    for reference, diffusers in pairs.items():
        assert torch.equal(raw[reference], params[diffusers]), reference
    assert not net.training and not any(p.requires_grad for p in net.parameters())


def test_bf16_file_loads_in_any_dtype(files):
    as_fp32 = load_dit(files['bf16'], 'tiny', dtype=torch.float32)
    as_bf16 = load_dit(files['bf16'], 'tiny', dtype=torch.bfloat16)
    assert as_fp32.dtype == torch.float32 and as_bf16.dtype == torch.bfloat16
    for (name, a), (_, b) in zip(_parameters(as_fp32).items(), _parameters(as_bf16).items()):
        assert torch.equal(a, b.float()), name  # bf16 -> fp32 is exact


def test_extra_state_wrapper_infixes_and_ema_are_handled(files):
    raw = torch.load(files['variants'], weights_only=True)
    assert any('_extra_state' in key for key in raw)
    assert any('_checkpoint_wrapped_module.' in key for key in raw)
    assert any(key.startswith('net_ema.') for key in raw)
    _assert_same_module(load_dit(files['variants'], 'tiny', dtype=torch.float32),
                        load_dit(files['pt'], 'tiny', dtype=torch.float32))


def test_dcp_directory_loads_identically_to_the_pt_file(files):
    assert (files['dcp'] / '.metadata').is_file()
    assert (files['dcp'] / '__0_0.distcp').is_file()
    from_pt = load_dit(files['pt'], 'tiny', dtype=torch.float32)
    _assert_same_module(load_dit(files['dcp'], 'tiny', dtype=torch.float32), from_pt)
    # The repository directory itself resolves to its model/ sub-directory.
    assert find_dit_checkpoint(files['dcp'].parent) == files['dcp']
    _assert_same_module(load_dit(files['dcp'].parent, 'tiny', dtype=torch.float32), from_pt)


def test_dcp_with_extra_state_entries_loads(files, tmp_path):
    tensors = released_dit_layout(random_dit_state_dict('tiny', seed=1), extra_state=True)
    directory = save_dcp(tensors, tmp_path / 'model')
    _assert_same_module(load_dit(directory, 'tiny', dtype=torch.float32),
                        load_dit(files['pt'], 'tiny', dtype=torch.float32))


def test_diffusers_keyed_safetensors_load_strictly(files, tmp_path):
    converted = dit_state_dict(files['pt'], 'tiny')
    path = tmp_path / 'transformer.safetensors'
    save_file({key: value.contiguous() for key, value in converted.items()}, path)
    _assert_same_module(load_dit(path, 'tiny', dtype=torch.float32),
                        load_dit(files['pt'], 'tiny', dtype=torch.float32))
    converted.pop('transformer_blocks.1.attn2.norm_k.weight')
    save_file({key: value.contiguous() for key, value in converted.items()}, path)
    with pytest.raises(CheckpointError, match='transformer_blocks.1.attn2.norm_k.weight'):
        load_dit(path, 'tiny')


def test_vae_tokenizer_and_its_safetensors_load_strictly(files, tmp_path):
    vae = load_vae(files['tokenizer'], 'tiny', dtype=torch.float32)
    raw = torch.load(files['tokenizer'], weights_only=True)
    params = _parameters(vae.vae)
    assert torch.equal(raw['conv1.weight'], params['quant_conv.weight'])
    assert torch.equal(raw['decoder.upsamples.4.shortcut.weight'],
                       params['decoder.up_blocks.1.resnets.0.conv_shortcut.weight'])
    path = tmp_path / 'vae.safetensors'
    save_file(vae_state_dict(files['tokenizer'], 'tiny'), path)
    _assert_same_module(load_vae(path, 'tiny', dtype=torch.float32), vae)


# --- errors name the keys and the file ---------------------------------------------------------
def test_missing_key_is_named(files, tmp_path):
    path = _edited(files['pt'], tmp_path, lambda t: t.pop('net.blocks.1.mlp.layer2.weight'))
    with pytest.raises(CheckpointError) as error:
        load_dit(path, 'tiny')
    message = str(error.value)
    assert str(path) in message and 'missing (1)' in message
    assert 'net.blocks.1.mlp.layer2.weight' in message  # in the file's naming


def test_renamed_key_is_named_both_ways(files, tmp_path):
    def rename(tensors):
        tensors['net.blocks.0.mlp.fc1.weight'] = tensors.pop('net.blocks.0.mlp.layer1.weight')
    with pytest.raises(CheckpointError) as error:
        load_dit(_edited(files['pt'], tmp_path, rename), 'tiny')
    message = str(error.value)
    assert 'missing (1): net.blocks.0.mlp.layer1.weight' in message
    assert 'unexpected (1): net.blocks.0.mlp.fc1.weight' in message


def test_extra_key_is_named(files, tmp_path):
    path = _edited(files['pt'], tmp_path,
                   lambda t: t.update({'net.blocks.0.self_attn.lora.weight': torch.zeros(2)}))
    with pytest.raises(CheckpointError, match='unexpected \\(1\\): net.blocks.0.self_attn.lora'):
        load_dit(path, 'tiny')
    path = _edited(files['pt'], tmp_path, lambda t: t.update({'logit_scale': torch.zeros(1)}))
    with pytest.raises(CheckpointError, match='unexpected \\(1\\): logit_scale'):
        load_dit(path, 'tiny')


def test_wrong_shape_is_named_with_both_shapes(files, tmp_path):
    def widen(tensors):
        tensors['net.x_embedder.proj.1.weight'] = torch.zeros(64, 68)
    with pytest.raises(CheckpointError) as error:
        load_dit(_edited(files['pt'], tmp_path, widen), 'tiny')
    assert 'net.x_embedder.proj.1.weight (-> patch_embed.proj.weight): file (64, 68), ' \
           'model (64, 72)' in str(error.value)


def test_wrong_preset_names_the_matching_one(files):
    with pytest.raises(CheckpointError, match="matches the DiT preset 'tiny'"):
        dit_state_dict(files['pt'], 'small')


def test_vae_missing_key_uses_the_reference_name(files, tmp_path):
    path = _edited(files['tokenizer'], tmp_path,
                   lambda t: t.pop('encoder.middle.1.to_qkv.weight'))
    with pytest.raises(CheckpointError, match='encoder.middle.1.to_qkv.weight'):
        load_vae(path, 'tiny')


# --- safety ------------------------------------------------------------------------------------
class _Payload:
    """Creates a marker file when unpickled: proves the loader never executes pickles."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


def test_pickle_with_python_objects_is_refused(tmp_path):
    marker = tmp_path / 'executed'
    path = tmp_path / 'evil.pt'
    torch.save({'net.blocks.0.mlp.layer1.weight': torch.zeros(2), 'extra': _Payload(str(marker))},
               path)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match='not a weights-only checkpoint'):
        read_tensors(path)
    assert not marker.exists()


def test_dcp_metadata_with_python_objects_is_refused(files, tmp_path):
    directory = tmp_path / 'model'
    directory.mkdir()
    marker = tmp_path / 'executed'
    with open(directory / '.metadata', 'wb') as stream:
        pickle.dump(_Payload(str(marker)), stream)
    with pytest.raises(CheckpointError, match='Refusing to unpickle'):
        read_tensors(directory)
    assert not marker.exists()


def test_plain_pickle_and_nested_dicts_are_refused(tmp_path):
    path = tmp_path / 't5.pkl'
    with open(path, 'wb') as stream:
        pickle.dump({'a': 1}, stream)
    with pytest.raises(CheckpointError, match=str(path)):
        read_tensors(path)
    nested = tmp_path / 'nested.pt'
    torch.save({'model': {'net.x': torch.zeros(1)}}, nested)
    with pytest.raises(CheckpointError, match="'model' is a nested dict"):
        read_tensors(nested)
    with pytest.raises(CheckpointError, match='does not exist'):
        read_tensors(tmp_path / 'nowhere.pt')


def test_find_dit_checkpoint_resolves_a_released_directory(files, tmp_path):
    (tmp_path / 'Cosmos-Policy-LIBERO-Predict2-2B.pt').write_bytes(files['pt'].read_bytes())
    assert find_dit_checkpoint(tmp_path).name == 'Cosmos-Policy-LIBERO-Predict2-2B.pt'
    (tmp_path / 'other.pt').write_bytes(b'')
    with pytest.raises(CheckpointError, match='several'):
        find_dit_checkpoint(tmp_path)
    os.remove(tmp_path / 'other.pt')
    os.remove(tmp_path / 'Cosmos-Policy-LIBERO-Predict2-2B.pt')
    with pytest.raises(CheckpointError, match='no policy checkpoint'):
        find_dit_checkpoint(tmp_path)
