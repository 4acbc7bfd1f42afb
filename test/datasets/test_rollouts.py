"""Rollout export: actions from the node's ActionChunks, outcomes from the bag or the command
line / a CSV; an outcome missing or contradicted is an error naming the bag."""
import json

import h5py
import numpy as np
import pytest

from cosmos_policy_ros.bags.typestore import make_typestore, ns_to_stamp
from cosmos_policy_ros.bags.writer import BagWriter
from cosmos_policy_ros.sim.arm import CAMERAS, JOINT_NAMES, PlanarReachEnv, SimConfig
from cosmos_policy_ros.sim.episodes import rollout

START = 10**18
STEP = 100_000_000  # config/sim.yaml step_period
EXECUTE, HORIZON = 4, 8


def write_rollout(path, episode, outcome=None):
    """A bag as the sim node records one: observations of states 0..N-1, a chunk every
    EXECUTE steps (the next HORIZON commands, the last one repeated), the outcome last."""
    store = make_typestore()
    types = store.types

    def header(ns):
        return types['std_msgs/msg/Header'](stamp=ns_to_stamp(ns, store), frame_id='')

    with BagWriter(path, typestore=store) as bag:
        for camera in CAMERAS:
            bag.add_topic(f'/cameras/{camera}/image', 'sensor_msgs/msg/Image')
        bag.add_topic('/joint_states', 'sensor_msgs/msg/JointState')
        bag.add_topic('/task', 'std_msgs/msg/String', latched=True)
        bag.add_topic('/action_chunk', 'cosmos_policy_ros/msg/ActionChunk')
        bag.add_topic('/episode_outcome', 'std_msgs/msg/String')
        bag.write('/task', START, types['std_msgs/msg/String'](data=episode.task))
        steps = episode.num_steps
        for k in range(steps):
            ns = START + k * STEP
            for camera in CAMERAS:
                image = episode.images[camera][k]
                bag.write(f'/cameras/{camera}/image', ns, types['sensor_msgs/msg/Image'](
                    header=header(ns), height=image.shape[0], width=image.shape[1],
                    encoding='rgb8', is_bigendian=0, step=image.shape[1] * 3,
                    data=image.reshape(-1)))
            bag.write('/joint_states', ns, types['sensor_msgs/msg/JointState'](
                header=header(ns), name=list(JOINT_NAMES), position=episode.joints[k],
                velocity=np.zeros(0), effort=np.zeros(0)))
            if k % EXECUTE == 0:
                rows = episode.actions[[min(k + j, steps - 1) for j in range(HORIZON)]]
                bag.write('/action_chunk', ns, types['cosmos_policy_ros/msg/ActionChunk'](
                    header=header(ns), action_names=list(JOINT_NAMES), horizon=HORIZON,
                    action_dim=3, step_period=0.1,
                    actions=rows.astype(np.float32).reshape(-1), value=np.float32(0.5),
                    source_stamps=[], source_names=[], seed=0, num_denoising_steps=5,
                    inference_time=np.float32(0.01), model_id='m', stitching='none',
                    conditioned_steps=0, takeover_step=0, blended_steps=0,
                    expected_latency=np.float32(0)))
        if outcome is not None:
            bag.write('/episode_outcome', START + steps * STEP,
                      types['std_msgs/msg/String'](data=outcome))
    return path


@pytest.fixture(scope='module')
def rollouts(tmp_path_factory):
    root = tmp_path_factory.mktemp('rollouts')
    env = PlanarReachEnv(SimConfig(image_size=32))
    first = rollout(env, 3, 'wrong_target')  # fails
    second = rollout(env, 4, 'expert')  # succeeds
    return root, [
        (write_rollout(root / 'a', first, json.dumps({'success': False, 'seed': 3})), first),
        (write_rollout(root / 'b', second), second)]


def _export(export_cli, bags, out, *options):
    return export_cli(bags, 'sim', out, '--rollouts', '--actions-topic', '/action_chunk',
                      '--images', 'none', *options)


def test_outcomes_from_the_bag_and_from_a_csv(tmp_path, rollouts, export_cli):
    root, items = rollouts
    labels = tmp_path / 'labels.csv'
    labels.write_text('bag,success,score\nb,success,0.75\n')
    code, _, err = _export(export_cli, [bag for bag, _ in items], tmp_path / 'out',
                           '--labels', str(labels))
    assert code == 0, err
    record = json.loads((tmp_path / 'out' / 'export.json').read_text())
    assert [(e['success'], e['score']) for e in record['episodes']] == [(False, None),
                                                                        (True, 0.75)]
    assert record['data_dir'] is None and record['rollout_data_dir'] == 'all_episodes'
    for entry, (_, episode) in zip(record['episodes'], items):
        assert entry['demo_file'] is None and entry['steps'] == episode.num_steps
        with h5py.File(tmp_path / 'out' / entry['rollout_file'], 'r') as h5:
            assert h5.attrs['success'] == entry['success']
            assert h5.attrs['task_description'] == episode.task
            # The executed rows of the chunks: the commands of the episode, as float32.
            assert np.array_equal(h5['actions'][:],
                                  episode.actions.astype(np.float32).astype(np.float64))
            assert np.array_equal(h5['proprio'][:], episode.joints[:-1])
            assert np.array_equal(h5['primary_images'][:], episode.images['primary'][:-1])
            assert json.loads(h5['cosmos_policy_ros'].attrs['episode_outcome'] or 'null') == (
                {'success': False, 'seed': 3} if not entry['success'] else None)


def test_a_label_for_every_bag_and_a_contradiction(tmp_path, rollouts, export_cli):
    _, items = rollouts
    (first, _), (second, _) = items
    code, _, err = _export(export_cli, [second], tmp_path / 'ok', '--label', 'failure')
    assert code == 0, err
    code, _, err = _export(export_cli, [first], tmp_path / 'out', '--label', 'success')
    assert code == 2 and not (tmp_path / 'out').exists()
    assert err.strip() == (f'cosmos-policy-dataset: error: bag {first}: topic /episode_outcome '
                           f'of bag {first} says failure but --label says success')


def test_a_rollout_without_an_outcome(tmp_path, rollouts, export_cli):
    _, items = rollouts
    second = items[1][0]
    code, _, err = _export(export_cli, [second], tmp_path / 'out')
    assert code == 2
    assert err.strip() == (f'cosmos-policy-dataset: error: bag {second}: no outcome: no '
                           f'/episode_outcome message in the bag and no --label / --labels '
                           f'entry for it')
