"""Bad input: one line naming the bag, the topic and the reason; nothing half-written looks
valid; skipped steps and dropped messages counted, never silent."""
import json
from pathlib import Path

import pytest
import yaml

from cosmos_policy_ros.bags import sample_episode as se


@pytest.fixture(scope='module')
def source(tmp_path_factory, bags):
    return bags.sample(tmp_path_factory.mktemp('source') / 'bag')


@pytest.fixture
def copy_bag(bags):
    return bags.copy


def _config(tmp_path, change):
    data = yaml.safe_load(Path(se.preset_params_file('libero')).read_text())
    change(data['/**']['ros__parameters'])
    path = tmp_path / 'config.yaml'
    path.write_text(yaml.safe_dump(data))
    return path


def _one_error_line(code, err, *parts):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith('cosmos-policy-dataset: error: ')
    for part in parts:
        assert part in lines[0], (part, lines[0])
    return lines[0]


def test_no_action_stream(tmp_path, source, export_cli, copy_bag):
    bag = copy_bag(source, tmp_path / 'bag', drop=['/recorded_actions'])
    code, _, err = export_cli([bag], 'libero', tmp_path / 'out')
    _one_error_line(code, err, f'bag {bag}', 'no recorded-actions topic /recorded_actions')
    assert not (tmp_path / 'out').exists()


def test_a_missing_camera(tmp_path, source, export_cli, copy_bag):
    bag = copy_bag(source, tmp_path / 'bag', drop=['/robot0_eye_in_hand/image_raw'])
    code, _, err = export_cli([bag], 'libero', tmp_path / 'out')
    _one_error_line(code, err, f'bag {bag}', 'no topic /robot0_eye_in_hand/image_raw',
                    "input stream 'wrist'")


def test_action_dims_that_differ_from_the_config(tmp_path, source, export_cli):
    def six_actions(parameters):
        parameters['action_names'] = parameters['action_names'][:6]
        for key in ('action_lower_limits', 'action_upper_limits'):
            parameters[key] = parameters[key][:6]
    config = _config(tmp_path, six_actions)
    code, _, err = export_cli([source], 'libero', tmp_path / 'out', config=config)
    _one_error_line(code, err, f'bag {source}', 'topic /recorded_actions',
                    'has 7 values; the config has 6 actions')


def test_proprio_dims_that_differ_from_the_config(tmp_path, source, export_cli):
    def more_joints(parameters):
        parameters['proprio']['gripper']['joints'] += ['gripper0_finger_joint3']
    config = _config(tmp_path, more_joints)
    code, _, err = export_cli([source], 'libero', tmp_path / 'out', config=config)
    _one_error_line(code, err, f'bag {source}', 'topic /joint_states',
                    "every message of stream 'gripper' was dropped", 'missing_joint',
                    "lacks joint(s) ['gripper0_finger_joint3']")


def test_streams_that_never_synchronize(tmp_path, source, export_cli, copy_bag):
    def late(topic, message):  # the wrist camera's clock 2 s ahead (the bag lasts 1 s)
        if topic == '/robot0_eye_in_hand/image_raw':
            message.header.stamp.sec += 2
        return message
    bag = copy_bag(source, tmp_path / 'bag', edit=late)
    code, _, err = export_cli([bag], 'libero', tmp_path / 'out')
    _one_error_line(code, err, f'bag {bag}', 'topic /agentview/image_raw',
                    'no step: the streams never synchronize', 'x skew',
                    'sync_tolerance 0.03 s')


def test_an_empty_bag(tmp_path, source, export_cli, copy_bag):
    bag = copy_bag(source, tmp_path / 'bag', keep=lambda topic, index: False)
    code, _, err = export_cli([bag], 'libero', tmp_path / 'out')
    _one_error_line(code, err, f'bag {bag}', 'empty bag (no messages)')


def test_an_unknown_storage_plugin(tmp_path, source, export_cli, copy_bag):
    bag = copy_bag(source, tmp_path / 'bag')
    metadata = bag / 'metadata.yaml'
    metadata.write_text(metadata.read_text().replace('storage_identifier: mcap',
                                                     'storage_identifier: rosbag_v9'))
    code, _, err = export_cli([bag], 'libero', tmp_path / 'out')
    _one_error_line(code, err, f'cannot read bag {bag}', 'rosbag_v9')


def test_a_task_the_format_cannot_name(tmp_path, source, export_cli):
    code, _, err = export_cli([source], 'libero', tmp_path / 'out', '--task', 'pick_up')
    _one_error_line(code, err, f'bag {source}', "task 'pick_up' cannot be stored", "'_'")
    assert not (tmp_path / 'out').exists()


def test_skipped_steps_and_dropped_messages_are_counted(tmp_path, source, export_cli, copy_bag):
    frames = len(se.sample_stamps(se.START_NS, 20.0, 1.0))

    def bad_size(topic, message):  # frame 5 of the wrist camera: a truncated image
        if topic == '/robot0_eye_in_hand/image_raw' and message.header.stamp.nanosec == 250 * \
                10**6:
            message.data = message.data[:-10]
        return message
    # Every frame 3, 6, 9, ... of the primary camera lost: those steps have no frame.
    bag = copy_bag(source, tmp_path / 'bag', edit=bad_size,
                   keep=lambda topic, i: topic != '/agentview/image_raw' or i % 3 or i == 0)
    code, out, _ = export_cli([bag], 'libero', tmp_path / 'out')
    assert code == 0, out
    (entry,) = json.loads((tmp_path / 'out' / 'export.json').read_text())['episodes']
    lost = len(range(3, frames, 3))
    # Frame 5 (wrist truncated) cannot be synchronized within tolerance: one more skipped.
    assert entry['skipped_steps'] == {'no_frame': lost, 'skew': 1}
    assert entry['steps'] == frames - lost - 1
    assert entry['dropped_messages'] == {'wrist.truncated': 1}
    assert f'skipped: no_frame {lost}, skew 1' in out
