"""Interrupt safety: an export killed (SIGKILL) mid-episode or between placing an episode and
journaling it leaves only `<out>.partial`, which check refuses; a rerun continues and
finishes a dataset equal to an uninterrupted one; other settings start clean."""
import json
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from cosmos_policy_ros.bags import sample_episode as se
from cosmos_policy_ros.cli.dataset import main as dataset_main
from cosmos_policy_ros.sim.arm import SimConfig
from cosmos_policy_ros.sim.episodes import record_demonstrations

KILLER = textwrap.dedent('''
    import os, signal, sys
    from cosmos_policy_ros.datasets import episode_files
    where, index = sys.argv[1], int(sys.argv[2])
    add, place = episode_files.EpisodeWriter.add, episode_files.EpisodeWriter.place
    def killing_add(self, step):
        add(self, step)
        if where == 'add' and self.index == index and self.num_steps == 3:
            os.kill(os.getpid(), signal.SIGKILL)  # mid-episode: frames in the staging file
    def killing_place(self, **kwargs):
        placed = place(self, **kwargs)
        if where == 'place' and self.index == index:
            os.kill(os.getpid(), signal.SIGKILL)  # placed, not yet in the journal
        return placed
    episode_files.EpisodeWriter.add, episode_files.EpisodeWriter.place = killing_add, \\
        killing_place
    from cosmos_policy_ros.cli.dataset import main
    sys.exit(main(sys.argv[3:]))
''')


@pytest.fixture(scope='module')
def bags(tmp_path_factory):
    root = tmp_path_factory.mktemp('bags')
    return [str(p) for p in record_demonstrations(root, 5, seed=20,
                                                  config=SimConfig(image_size=32))]


def _args(bags, out, *extra):
    return ['export', *bags, '--config', se.preset_params_file('sim'), '--format', 'libero',
            '--out', str(out), '--images', 'none', '--outcome-topic', '/episode',
            '--t5-stand-in', '0', '--no-progress', *extra]


def _killed(bags, out, where, index):
    result = subprocess.run([sys.executable, '-c', KILLER, where, str(index),
                             *_args(bags, out)], capture_output=True, text=True)
    assert result.returncode == -9, result.stderr  # killed, not finished
    return json.loads((out.with_name(out.name + '.partial') / 'export.json').read_text())


def _contents(out):
    """Every file of a dataset with its datasets' values (the manifest aside)."""
    files = {}
    for path in sorted(out.rglob('*.hdf5')):
        with h5py.File(path, 'r') as h5:
            values = {}
            h5.visititems(lambda name, obj: values.__setitem__(name, obj[()]) if isinstance(
                obj, h5py.Dataset) else None)
        files[str(path.relative_to(out))] = values
    return files


def test_kill_check_refuses_rerun_continues(tmp_path, bags, capsys):
    out = tmp_path / 'out'
    partial = tmp_path / 'out.partial'
    journal = _killed(bags, out, 'add', 2)
    assert [e['index'] for e in journal['episodes']] == [0, 1] and not journal['complete']
    assert not out.exists()
    assert dataset_main(['check', str(partial)]) == 1
    assert 'incomplete export (the journal of an interrupted run)' in capsys.readouterr().err
    assert dataset_main(['check', str(out)]) == 1
    # Killed again after episode 3's files were placed but before it was journaled.
    journal = _killed(bags, out, 'place', 3)
    assert [e['index'] for e in journal['episodes']] == [0, 1, 2]
    assert any('episode000003' in p.name for p in partial.rglob('*.hdf5'))  # unjournaled
    stray = partial / 'success_only' / 'robot' / 'stray_SCENE_left_over_demo.hdf5'
    h5py.File(stray, 'w').close()  # any file the journal does not list goes on a rerun
    assert dataset_main(_args(bags, out)) == 0
    log = capsys.readouterr()
    assert 'continuing' in log.err and '3 episode(s) already done' in log.err
    assert not partial.exists() and dataset_main(['check', str(out)]) == 0
    assert not (out / 'success_only' / 'robot' / stray.name).exists()
    # The same export, never interrupted: the same files and values.
    clean = tmp_path / 'clean'
    assert dataset_main(_args(bags, clean)) == 0
    first, second = _contents(out), _contents(clean)
    assert list(first) == list(second)
    for name in first:
        for key, value in first[name].items():
            assert np.array_equal(value, second[name][key]), (name, key)


def test_other_settings_start_clean_and_force_replaces(tmp_path, bags, capsys):
    out = tmp_path / 'out'
    _killed(bags, out, 'add', 1)
    assert dataset_main(_args(bags, out, '--val-fraction', '0.4')) == 0
    err = capsys.readouterr().err
    assert 'starting clean' in err and 'its settings differ' in err
    record = json.loads((out / 'export.json').read_text())
    assert sorted(e['split'] for e in record['episodes']) == ['train'] * 3 + ['val'] * 2
    assert dataset_main(_args(bags, out)) == 2
    assert 'exists; pass --force' in capsys.readouterr().err
    assert dataset_main(_args(bags, out, '--force')) == 0
    assert dataset_main(['check', str(out)]) == 0
