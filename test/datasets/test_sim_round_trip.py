"""The sim's demonstrations -> cosmos-policy-dataset export -> cosmos-policy-train --dataset:
the training samples, latents and a few optimizer steps equal the bag path bit for bit."""
import json

import numpy as np
import pytest
import torch

from cosmos_policy_ros.bags import sample_episode as se
from cosmos_policy_ros.cli.dataset import main as dataset_main
from cosmos_policy_ros.sim.arm import SimConfig
from cosmos_policy_ros.sim.episodes import read_episode_bag, record_demonstrations
from cosmos_policy_ros.sim.model import shipped_model_dir
from cosmos_policy_ros.training.data import dataset_episodes
from cosmos_policy_ros.training.dit_phase import train
from cosmos_policy_ros.training.options import TrainOptions
from cosmos_policy_ros.training.prepare import prepare

SIZE = 32
# Two successes and two failures (early_stop, wrong_target), so demonstrations and rollouts.
KINDS = {'expert': 0.5, 'early_stop': 0.25, 'wrong_target': 0.25}


@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp('sim')
    bags = record_demonstrations(root / 'bags', 4, seed=10, fractions=KINDS,
                                 config=SimConfig(image_size=SIZE))
    out = root / 'dataset'
    code = dataset_main(['export', *map(str, bags), '--config', se.preset_params_file('sim'),
                         '--format', 'libero', '--out', str(out), '--images', 'none',
                         '--outcome-topic', '/episode', '--val-fraction', '0',
                         '--t5-embeddings',
                         str(shipped_model_dir() / 't5_embeddings.safetensors'),
                         '--no-progress'])
    assert code == 0
    return root, bags, out


def test_export_splits_successes_into_demonstrations_and_keeps_every_rollout(exported):
    _, bags, out = exported
    record = json.loads((out / 'export.json').read_text())
    outcomes = [read_episode_bag(bag).success for bag in bags]
    assert sorted(outcomes) == [False, False, True, True]
    assert [e['success'] for e in record['episodes']] == outcomes
    assert [bool(e['demo_file']) for e in record['episodes']] == outcomes  # successes only
    assert all(e['rollout_file'] for e in record['episodes'])
    # The sim's /episode JSON is kept: its targets feed the trainer's VAE probe.
    episodes = list(dataset_episodes(out))
    assert [e.info['targets'] for e in episodes] == [read_episode_bag(b).info['targets']
                                                     for b in bags]


def test_read_back_episodes_equal_the_bags(exported):
    _, bags, out = exported
    for bag, episode in zip(bags, dataset_episodes(out)):
        original = read_episode_bag(bag)
        assert episode.task == original.task and episode.success == original.success
        assert np.array_equal(episode.joints, original.joints)
        assert np.array_equal(episode.actions, original.actions)
        for camera, frames in original.images.items():
            assert np.array_equal(episode.images[camera], frames)


def _prepared(source, work):
    options = TrainOptions(**source, work_dir=work, image_size=SIZE, steps=2, batch_size=4,
                           quiet=True)
    return options, prepare(options, log=lambda *_: None)


def test_training_samples_and_steps_equal_the_bag_path_bit_for_bit(exported):
    root, _, out = exported
    args_bags, bags = _prepared({'data': (root / 'bags',)}, root / 'work_bags')
    args_set, dataset = _prepared({'dataset': (out,)}, root / 'work_dataset')
    first, second = bags.samples, dataset.samples
    assert first.states == second.states and len(first) > 0
    for name in ('current', 'future', 'success', 'imitate', 'value', 'value_now', 'task',
                 'actions', 'proprio'):
        assert torch.equal(getattr(first, name), getattr(second, name)), name
    assert bool(first.imitate.any()) and not bool(first.imitate.all())  # both kinds present
    assert torch.equal(first.state_images(bags.images), second.state_images(dataset.images))
    assert torch.equal(first.state_targets(), second.state_targets())
    assert torch.equal(bags.latents, dataset.latents) and torch.equal(bags.text, dataset.text)
    assert bags.stats == dataset.stats and bags.digest == dataset.digest
    _, history_bags = train(args_bags, data=bags, log=lambda *_: None)
    _, history_set = train(args_set, data=dataset, log=lambda *_: None)
    assert history_bags == history_set and len(history_set) == 2
