"""The fleet file (fleet/config.py): shared model settings, robots composed and validated once,
every error naming the file, the robot and the key."""
import os
from pathlib import Path

import pytest
import yaml

from cosmos_policy_ros.fleet.config import (DEFAULT_BATCH_WINDOW, load_fleet, parse_robot_list,
                                            SHARED_FACTORY)
from cosmos_policy_ros.node_config import DEFAULT_POLICY_FACTORY

ROOT = Path(os.environ.get('COSMOS_ROOT', Path(__file__).resolve().parents[2]))
ROBOT = {'cameras': ['cam'], 'proprio_sources': ['arm'],
         'proprio': {'arm': {'type': 'joint_state', 'joints': ['j0', 'j1']}},
         'action_space': 'joint_position', 'action_names': ['j0', 'j1'], 'rate': 10.0}


def write(tmp_path, data, name='fleet.yaml'):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def fleet(tmp_path, robots, **top):
    data = {'server': {'model_path': '/models/m', 'device': 'cpu'}, 'robot_defaults': ROBOT,
            'robots': robots}
    data.update(top)
    return write(tmp_path, data)


def test_the_shipped_aloha_fleet_file():
    config = load_fleet(ROOT / 'config' / 'fleet_aloha.yaml')
    left, right = config.robots
    assert (left.namespace, left.node_name) == ('/cell_left', '/cell_left/cosmos_policy')
    assert (left.config.task, right.config.task) == ('fold the towel', 'put the cup in the sink')
    assert left.config.camera_names == right.config.camera_names  # aloha.yaml for both
    assert right.config.cameras[2].transport == 'compressed' and left.config.cameras[2].transport \
        == 'raw'
    assert right.remappings == (('joint_states', '/cell_right/arm_driver/joint_states'),)
    for robot in config.robots:
        assert robot.config.policy_factory == SHARED_FACTORY
        assert (robot.config.model_path, robot.config.device) == ('/models/aloha', 'cuda')
        assert robot.config.num_denoising_steps == 10  # aloha.yaml's
    assert config.loader_config().policy_factory == DEFAULT_POLICY_FACTORY
    assert config.factory_arguments() == ('/models/aloha', 'cuda', 'auto',
                                          {'decode_future_images': False})


def test_the_shipped_sim_fleet_file_needs_its_model_at_launch():
    path = ROOT / 'config' / 'fleet_sim.yaml'
    with pytest.raises(ValueError, match=r'fleet_sim.yaml: server: `model_path` must be set'):
        load_fleet(path)
    config = load_fleet(path, overrides={'model_path': '/m', 'max_batch': 4})
    assert [robot.name for robot in config.robots] == ['arm_0', 'arm_1']
    assert config.max_batch == 4 and config.batch_window == 0.01
    robot = config.robots[0].config
    assert robot.diagnostics_period == 0.05 and robot.replan_mode == 'steps_left'  # sim.yaml


def test_a_server_defaults_to_the_events_executor_and_a_short_batch_window(tmp_path):
    """Where a server's defaults differ from a lone node's (fleet/config.py: measured)."""
    config = load_fleet(fleet(tmp_path, {'a': {}, 'b': {}}))
    assert config.batch_window == DEFAULT_BATCH_WINDOW == 0.01
    assert config.shared['executor'] == 'events'
    assert {robot.config.executor for robot in config.robots} == {'events'}
    chosen = load_fleet(write(tmp_path, {
        'server': {'model_path': '/m', 'executor': 'multi_threaded', 'batch_window': 0.0},
        'robot_defaults': ROBOT, 'robots': {'a': {}}}, name='chosen.yaml'))
    assert chosen.batch_window == 0.0 and chosen.robots[0].config.executor == 'multi_threaded'


def test_layers_apply_in_order_and_a_robot_is_added_without_touching_the_others(tmp_path):
    (tmp_path / 'fast.yaml').write_text(yaml.safe_dump(
        {'/**': {'ros__parameters': {'rate': 20.0, 'seed': 3}}}))
    robots = {'a': {}, 'b': {'config': 'fast.yaml', 'parameters': {'seed': 9, 'task': 'x'}}}
    before = load_fleet(fleet(tmp_path, robots))
    a, b = before.robots
    assert (a.config.rate, a.config.seed) == (10.0, 0)
    assert (b.config.rate, b.config.seed, b.config.task) == (20.0, 9, 'x')  # file, then inline
    robots['cell_c/arm'] = {'parameters': {'task': 'y'}}
    after = load_fleet(fleet(tmp_path, robots))
    assert [robot.name for robot in after.robots] == ['a', 'b', 'cell_c/arm']
    assert after.robots[:2] == before.robots
    assert after.robots[2].node_name == '/cell_c/arm/cosmos_policy'


def test_a_subset_of_the_robots_in_the_file_order(tmp_path):
    path = fleet(tmp_path, {'a': {}, 'b': {}, 'c': {}})
    assert [r.name for r in load_fleet(path, robots=['c', 'a']).robots] == ['c', 'a']
    with pytest.raises(ValueError, match=r"robot\(s\) \['d'\] are not in the fleet file"):
        load_fleet(path, robots=['a', 'd'])
    assert parse_robot_list(' a, /b ,,c') == ('a', 'b', 'c') and parse_robot_list('') == ()


@pytest.mark.parametrize('robots, top, message', [
    ({'a': {'parameters': {'rate': -1.0}}}, {}, r'robot a: `rate` must be > 0.0'),
    ({'a': {'parameters': {'device': 'cuda:1'}}}, {},
     r'robot a: .* sets `device` to \'cuda:1\', but the model and engine settings belong to '
     r'the server'),
    ({'a': {'parameters': {'use_sim_time': True}}}, {}, r'`use_sim_time` is a server setting'),
    ({'a': {'parameters': {'rates': 1.0}}}, {},
     r"robot a: unknown parameter\(s\) 'rates' \(did you mean 'rate'\?\)"),
    ({'a': {'params': {}}}, {}, r"robot a: unknown key\(s\) \['params'\]"),
    ({'-a': {}}, {}, r'robot names are their namespaces'),
    ({'a': {'config': 'missing.yaml'}}, {}, r'robot a: config: cannot read parameter file'),
    ({'a': {'remappings': {'x': 3}}}, {}, r'remappings must map topic names'),
    ({}, {}, r'`robots` must list at least one robot'),
    ({'a': {}}, {'server': {'model_path': '/m', 'rate': 5.0}},
     r"server: unknown key\(s\) \['rate'\]"),
    ({'a': {}}, {'server': {'model_path': '/m', 'max_batch': 0}}, r'`max_batch` must be'),
    ({'a': {}}, {'server': {'model_path': '/m', 'batch_window': 2}}, r'`batch_window` must be'),
    ({'a': {}}, {'server': {'model_path': '/m', 'device': 3}}, r'`device` must be a string'),
    ({'a': {}}, {'fleet': {}}, r"unknown key\(s\) \['fleet'\]"),
])
def test_errors_name_the_file_the_robot_and_the_key(tmp_path, robots, top, message):
    path = fleet(tmp_path, robots, **top)
    with pytest.raises(ValueError, match=message) as error:
        load_fleet(path)
    assert str(path) in str(error.value)


def test_a_robot_file_may_repeat_or_leave_unset_what_the_server_sets(tmp_path):
    (tmp_path / 'robot.yaml').write_text(yaml.safe_dump({'/**': {'ros__parameters': {
        'model_path': '', 'device': 'cpu', 'python_switch_interval': 0.0001}}}))
    config = load_fleet(fleet(tmp_path, {'a': {'config': 'robot.yaml'}}))
    assert config.robots[0].config.model_path == '/models/m'
