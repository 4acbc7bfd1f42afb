"""cosmos-policy-synthetic: released directory layout, loadable files, determinism."""
import json
import pickle

import pytest
import torch

from cosmos_policy_ros.cli.synthetic import main
from cosmos_policy_ros.engine.checkpoint import (
    find_dit_checkpoint, load_dit, load_vae, read_tensors, reference_dit_shapes)
from cosmos_policy_ros.engine.synthetic_checkpoints import (
    random_dit_state_dict, read_synthetic_info, write_synthetic_model)
from cosmos_policy_ros.layout import LatentLayout


@pytest.fixture(scope='module')
def libero(tmp_path_factory):
    out = tmp_path_factory.mktemp('libero')
    assert main(['--out', str(out), '--suite', 'libero', '--size', 'tiny', '--seed', '3']) == 0
    return out


def test_directory_is_laid_out_like_the_released_repository(libero):
    names = {path.relative_to(libero).as_posix() for path in libero.rglob('*') if path.is_file()}
    assert names == {'Cosmos-Policy-LIBERO-Predict2-2B.pt', 'libero_dataset_statistics.json',
                     'libero_t5_embeddings.pkl', 'tokenizer/tokenizer.pth', 'synthetic.json'}
    info = read_synthetic_info(libero)
    assert info['dit_preset'] == 'tiny' and info['vae_preset'] == 'tiny'
    assert info['seed'] == 3 and info['dtype'] == 'bf16' and info['checkpoint_format'] == 'pt'
    assert LatentLayout.from_dict(info['layout']) == LatentLayout.preset('libero')
    assert read_synthetic_info(libero / 'tokenizer') is None  # not a synthetic directory


def test_checkpoint_has_the_released_keys_and_loads(libero):
    info = read_synthetic_info(libero)
    path = find_dit_checkpoint(libero)
    tensors = read_tensors(path)
    assert set(tensors) == set(reference_dit_shapes(info['dit_preset']))
    weights = [value for key, value in tensors.items() if value.is_floating_point()]
    assert all(value.dtype == torch.bfloat16 for value in weights)
    # Zero-initialized in the reference, random here: the modulation layers are exercised.
    assert tensors['net.blocks.0.adaln_modulation_mlp.2.weight'].float().std() > 0.1
    net = load_dit(path, info['dit_preset'], dtype=torch.float32)
    vae = load_vae(libero / info['files']['tokenizer'], info['vae_preset'], dtype=torch.float32)
    assert net.dtype == vae.dtype == torch.float32


def test_statistics_and_embeddings_have_the_released_formats(libero):
    layout = LatentLayout.preset('libero')
    stats = json.loads((libero / 'libero_dataset_statistics.json').read_text())
    for prefix, size in (('actions', layout.action_dim), ('proprio', layout.proprio_dim)):
        values = {name: stats[f'{prefix}_{name}'] for name in
                  ('min', 'max', 'mean', 'std', 'median')}
        assert all(len(column) == size for column in values.values())
        for i in range(size):
            assert values['min'][i] < values['median'][i] < values['max'][i]
            assert values['min'][i] < values['mean'][i] < values['max'][i]
            assert values['std'][i] > 0
    with open(libero / 'libero_t5_embeddings.pkl', 'rb') as stream:
        embeddings = pickle.load(stream)  # our own file; the engine reads it restrictedly
    assert set(embeddings) == set(read_synthetic_info(libero)['instructions'])
    for text, embedding in embeddings.items():
        assert embedding.shape == (1, 512, 1024) and embedding.dtype == torch.bfloat16
        rows = embedding[0].float().abs().sum(-1) > 0
        count = int(rows.sum())
        assert 0 < count < 512 and rows[:count].all()  # real tokens first, zeros after


def test_same_seed_same_files_other_seed_other_weights(libero, tmp_path):
    assert main(['--out', str(tmp_path / 'a'), '--suite', 'libero', '--size', 'tiny',
                 '--seed', '3']) == 0
    for name in ('libero_dataset_statistics.json', 'tokenizer/tokenizer.pth', 'synthetic.json'):
        assert (tmp_path / 'a' / name).read_bytes() == (libero / name).read_bytes(), name
    embeddings = []
    for directory in (libero, tmp_path / 'a'):
        with open(directory / 'libero_t5_embeddings.pkl', 'rb') as stream:
            embeddings.append(pickle.load(stream))  # pickled tensors embed storage ids
    assert embeddings[0].keys() == embeddings[1].keys()
    assert all(torch.equal(embeddings[0][key], embeddings[1][key]) for key in embeddings[0])
    first = read_tensors(libero / 'Cosmos-Policy-LIBERO-Predict2-2B.pt')
    again = read_tensors(tmp_path / 'a' / 'Cosmos-Policy-LIBERO-Predict2-2B.pt')
    assert all(torch.equal(first[key], again[key]) for key in first)
    other = random_dit_state_dict('tiny', seed=4, dtype=torch.bfloat16)
    assert not torch.equal(other['net.x_embedder.proj.1.weight'],
                           first['net.x_embedder.proj.1.weight'])


def test_dcp_format_and_fp32_and_a_layout_file(tmp_path):
    layout_file = tmp_path / 'arm.yaml'
    layout_file.write_text('layout:\n  preset: aloha\n  name: arm\n  image_size: 64\n')
    out = tmp_path / 'arm'
    assert main(['--out', str(out), '--suite', str(layout_file), '--size', 'tiny',
                 '--dtype', 'fp32', '--format', 'dcp']) == 0
    assert (out / 'model' / '.metadata').is_file() and (out / 'arm_t5_embeddings.pkl').is_file()
    info = read_synthetic_info(out)
    assert info['layout']['name'] == 'arm' and info['layout']['image_size'] == 64
    stats = json.loads((out / 'arm_dataset_statistics.json').read_text())
    assert len(stats['actions_min']) == 14 and len(stats['proprio_max']) == 14
    tensors = read_tensors(find_dit_checkpoint(out))
    assert tensors['net.t_embedding_norm.weight'].dtype == torch.float32
    reference = random_dit_state_dict('tiny', seed=0)
    assert all(torch.equal(tensors[key], reference[key]) for key in reference)


def test_small_size_uses_the_small_dit(tmp_path):
    paths = write_synthetic_model(tmp_path, LatentLayout.preset('robocasa'), size='small')
    assert read_synthetic_info(tmp_path)['dit_preset'] == 'small'
    assert paths['checkpoint'].name == 'Cosmos-Policy-RoboCasa-Predict2-2B.pt'


def test_refuses_to_overwrite_and_bad_arguments(libero, tmp_path, capsys):
    assert main(['--out', str(libero), '--suite', 'libero', '--size', 'tiny']) == 2
    assert 'refusing to overwrite' in capsys.readouterr().err
    assert main(['--out', str(tmp_path), '--suite', 'franka', '--size', 'tiny']) == 2
    assert "--suite must be one of ['aloha', 'libero', 'robocasa']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(['--out', str(tmp_path), '--suite', 'libero', '--size', 'huge'])
    with pytest.raises(ValueError, match='seed'):
        write_synthetic_model(tmp_path, LatentLayout.preset('libero'), seed=-1)


def test_force_replaces_the_other_checkpoint_form(tmp_path):
    layout = LatentLayout.preset('libero')
    write_synthetic_model(tmp_path, layout, checkpoint_format='dcp')
    with pytest.raises(FileExistsError, match='model'):
        write_synthetic_model(tmp_path, layout, checkpoint_format='pt')
    paths = write_synthetic_model(tmp_path, layout, checkpoint_format='pt', overwrite=True)
    assert not (tmp_path / 'model').exists()
    assert find_dit_checkpoint(tmp_path) == paths['checkpoint']
