"""check: a valid export passes; each upstream rule broken in a copy is reported by name."""
import json
import pickle
import shutil

import h5py
import pytest
import torch

from cosmos_policy_ros.bags import sample_episode as se
from cosmos_policy_ros.cli.dataset import main as dataset_main


@pytest.fixture(scope='module')
def dataset(tmp_path_factory, bags):
    root = tmp_path_factory.mktemp('check')
    bag = bags.sample(root / 'bag', 'libero')
    out = root / 'dataset'
    assert dataset_main(['export', str(bag), '--config', se.preset_params_file('libero'),
                         '--format', 'libero', '--out', str(out), '--actions-topic',
                         '/recorded_actions', '--val-fraction', '0', '--t5-stand-in', '0',
                         '--no-progress']) == 0
    return out


def _broken(tmp_path, dataset, breaker):
    copy = tmp_path / 'copy'
    shutil.copytree(dataset, copy)
    record = json.loads((copy / 'export.json').read_text())
    breaker(copy, record['episodes'][0])
    return copy


def _problems(path, capsys):
    code = dataset_main(['check', str(path)])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if 'problem:' in line]


def test_a_valid_export_passes_and_prints_what_it_holds(dataset, capsys):
    assert dataset_main(['check', str(dataset)]) == 0
    out = capsys.readouterr().out
    assert 'episodes:    1: 1 train + 0 val demonstrations, 1 rollouts' in out
    assert "tasks:       1: 'put the black bowl on the plate'" in out
    assert 'actions:     7' in out and 'proprio:     9' in out and 'check:       OK' in out


def _stale_statistics(copy, entry):
    path = copy / 'success_only' / 'dataset_statistics.json'
    stats = json.loads(path.read_text())
    stats['actions_max'][0] += 1.0
    path.write_text(json.dumps(stats))


def _missing_embedding(copy, entry):
    with open(copy / 'success_only' / 't5_embeddings.pkl', 'wb') as stream:
        pickle.dump({'another task': torch.zeros(1, 512, 1024, dtype=torch.bfloat16)}, stream)


def _stray_demo(copy, entry):
    h5py.File(copy / 'success_only' / 'robot' / 'old_demo.hdf5', 'w').close()


def _renamed_demo(copy, entry):
    path = copy / entry['demo_file']
    path.rename(path.with_name(path.name.replace('_plate_', '_table_')))
    record = json.loads((copy / 'export.json').read_text())
    record['episodes'][0]['demo_file'] = str(path.with_name(path.name.replace(
        '_plate_', '_table_')).relative_to(copy))
    (copy / 'export.json').write_text(json.dumps(record))


def _short_camera(copy, entry):
    with h5py.File(copy / entry['rollout_file'], 'a') as h5:
        h5['wrist_images'].resize(h5['wrist_images'].shape[0] - 1, axis=0)


def _constant_action(copy, entry):
    for name, key in ((entry['demo_file'], 'data/demo_0/actions'),
                      (entry['rollout_file'], 'actions')):
        with h5py.File(copy / name, 'a') as h5:
            h5[key][:, 6] = 1.0
    path = copy / 'success_only' / 'dataset_statistics.json'
    stats = json.loads(path.read_text())
    for name in ('min', 'max', 'mean', 'median'):
        stats[f'actions_{name}'][6] = 1.0
    stats['actions_std'][6] = 0.0
    path.write_text(json.dumps(stats))


@pytest.mark.parametrize('breaker, message', [
    (_stale_statistics, "actions_max differs from the train demonstrations' statistics"),
    (_missing_embedding, "no embedding of task 'put the black bowl on the plate'"),
    (_stray_demo, 'old_demo.hdf5: an HDF5 file in the data_dir that is no listed '
                  'demonstration'),
    (_renamed_demo, "the class reads its task as 'put the black bowl on the table'"),
    (_short_camera, "camera 'wrist' has 19 frames but there are 20 action rows"),
    (_constant_action, 'actions dimension 6 (gripper) is constant (1.0)'),
])
def test_each_broken_rule_is_named(tmp_path, dataset, capsys, breaker, message):
    code, problems = _problems(_broken(tmp_path, dataset, breaker), capsys)
    assert code == 1 and any(message in line for line in problems), problems


def test_a_partial_directory_never_passes(tmp_path, dataset, capsys):
    copy = _broken(tmp_path, dataset, lambda copy, entry: None)
    record = json.loads((copy / 'export.json').read_text())
    record['complete'] = False
    (copy / 'export.json').write_text(json.dumps(record))
    code, problems = _problems(copy, capsys)
    assert code == 1 and 'incomplete export' in problems[0]
