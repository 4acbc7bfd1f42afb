"""The node's parameters in-process: descriptors, rcl parsing of the presets, configure errors."""
import os
from pathlib import Path

import pytest

rclpy = pytest.importorskip('rclpy')

pytestmark = pytest.mark.ros

ROOT = Path(os.environ.get('COSMOS_ROOT', Path(__file__).resolve().parents[2]))
PRESETS = {'libero.yaml': 'libero', 'robocasa.yaml': 'robocasa', 'aloha.yaml': 'aloha',
           'demo.yaml': 'aloha'}


@pytest.fixture
def make_node(tmp_path):
    """make_node(*ros_args) -> a PolicyNode in a private context initialized with the args."""
    from cosmos_policy_ros.ros.policy_node import PolicyNode

    made = []

    def make(*args):
        context = rclpy.Context()
        rclpy.init(context=context, args=['test', '--ros-args', *args])
        node = PolicyNode(context=context)
        made.append((node, context))
        return node

    yield make
    for node, context in made:
        node.close()
        rclpy.try_shutdown(context=context)
        context.destroy()


def fake_model(tmp_path, preset):
    path = tmp_path / f'fake_{preset}.yaml'
    path.write_text(f'layout: {{preset: {preset}}}\n')
    return path


def test_every_parameter_has_a_descriptor(make_node):
    from cosmos_policy_ros.node_config import NodeConfig, parameter_fields

    node = make_node('-p', 'cameras:=[wrist]', '-p', 'model_path:=/m')
    runtime = set(NodeConfig.runtime_parameters())
    fields = {name: meta for name, _, meta in parameter_fields(NodeConfig)}
    for name, meta in fields.items():
        descriptor = node.describe_parameter(name)
        assert descriptor.description.startswith(meta['description']), name
        assert 'Default:' in descriptor.description
        assert descriptor.read_only == (name not in runtime), name
        if meta['kind'] == 'int' and meta['high'] is not None:
            (bounds,) = descriptor.integer_range
            assert (bounds.from_value, bounds.to_value) == (meta['low'], meta['high']), name
        if meta['kind'] == 'float' and meta['high'] is not None:
            (bounds,) = descriptor.floating_point_range
            assert (bounds.from_value, bounds.to_value) == (meta['low'], meta['high']), name
        if meta['choices']:
            assert all(choice in descriptor.additional_constraints for choice in meta['choices'])
    assert node.describe_parameter('rate').description.endswith('[Hz]. Default: 10.0.')
    for name in ('cameras', 'proprio_sources', 'autostart'):
        assert node.describe_parameter(name).read_only
    # Nested parameters are declared by configure, once the names are known.
    assert not node.has_parameter('camera.wrist.topic')


@pytest.mark.parametrize('name', sorted(PRESETS))
def test_presets_parse_with_rcl_and_configure(make_node, tmp_path, name):
    """Each shipped preset: rcl's YAML parser, our parameter reading, the layout and warm-up."""
    from cosmos_policy_ros.node_config import load_parameter_file
    from cosmos_policy_ros.ros import params

    model = fake_model(tmp_path, PRESETS[name])
    node = make_node('--params-file', str(ROOT / 'config' / name),
                     '-p', f'model_path:={model}',
                     '-p', 'policy_factory:=cosmos_policy_ros.testing:load_fake_policy',
                     '-p', 'warmup_iterations:=1')
    result = node.trigger_configure()
    assert result.name == 'SUCCESS', node.health().configure_error
    # The ROS path and the offline evaluator's YAML path read the same configuration.
    expected = load_parameter_file(ROOT / 'config' / name, overrides={
        'model_path': str(model), 'policy_factory': 'cosmos_policy_ros.testing:load_fake_policy',
        'warmup_iterations': 1})
    assert params.read_config(node) == expected
    assert node.health().lifecycle_state == 'inactive'
    assert node.describe_parameter(f'camera.{expected.cameras[0].name}.topic').read_only


@pytest.mark.parametrize('args,message', [
    (('-p', 'num_denoising_steps:=0'), '`num_denoising_steps` must be >= 1. Got 0'),
    (('-p', 'rate:=5000.0'), '`rate` must be <= 1000.0 Hz'),
    (('-p', 'rate:=fast'), '`rate` must be a number'),
    (('-p', 'model_path:=/no/such/fake.yaml'), "`model_path` '/no/such/fake.yaml': cannot "
                                               'read fake policy file'),
    (('-p', 'policy_factory:=nowhere.at_all:load'), "cannot import 'nowhere.at_all'"),
    (('-p', 'camera.wrist.transport:=mpeg'), '`camera.wrist.transport` must be one of'),
    (('-p', 'proprio.typo.topic:=x'), "unknown parameter(s) 'proprio.typo.topic' (did you "
                                      "mean 'proprio.eef.topic'?)"),
    (('-p', 'num_denoising_step:=3'), "unknown parameter(s) 'num_denoising_step' (did you "
                                      "mean 'num_denoising_steps'?)"),
    (('-p', 'cameras:=wrist'), "`cameras` must be a list of names, e.g. [wrist]. Got 'wrist'"),
    (('-p', 'max_warmup_latency:=0.0001', '-p', 'warmup_iterations:=2'),
     'exceeds `max_warmup_latency`'),
])
def test_configure_errors_name_the_parameter(make_node, tmp_path, args, message):
    model = tmp_path / 'fake.yaml'
    model.write_text('layout: {preset: libero}\ndelay: 0.01\n')
    base = ['-p', f'model_path:={model}',
            '-p', 'policy_factory:=cosmos_policy_ros.testing:load_fake_policy',
            '-p', 'cameras:=[wrist, primary]', '-p', 'proprio_sources:=[gripper, eef]',
            '-p', 'proprio.gripper.joints:=[a, b]', '-p', 'proprio.eef.type:=pose',
            '-p', 'warmup_iterations:=1']
    node = make_node(*base, *args)
    assert node.trigger_configure().name == 'FAILURE'
    health = node.health()
    assert message in health.configure_error, health.configure_error
    assert health.lifecycle_state == 'unconfigured'
    # The diagnostics report it as an ERROR.
    from cosmos_policy_ros.ros.diagnostics import ERROR, policy_status
    status = policy_status(health, None)
    assert status.level == ERROR and message in status.message


def test_runtime_changes_in_process(make_node, tmp_path):
    from rclpy.parameter import Parameter

    model = fake_model(tmp_path, 'aloha')
    node = make_node('--params-file', str(ROOT / 'config' / 'aloha.yaml'),
                     '-p', f'model_path:={model}',
                     '-p', 'policy_factory:=cosmos_policy_ros.testing:load_fake_policy',
                     '-p', 'warmup_iterations:=0')
    assert node.trigger_configure().name == 'SUCCESS', node.health().configure_error
    ok = node.set_parameters([Parameter('num_candidates', value=4),
                              Parameter('sync_tolerance', value=0),  # int for a float: fine
                              Parameter('action_lower_limits', value=[-3.2] * 14),
                              Parameter('action_upper_limits', value=[3.2] * 14)])
    assert all(result.successful for result in ok), ok
    health = node.health()
    assert health.num_candidates == 4
    bad = node.set_parameters([Parameter('action_lower_limits', value=[4.0] * 14)])[0]
    assert not bad.successful and 'must not exceed' in bad.reason
    bad = node.set_parameters([Parameter('replan_threshold', value=50)])[0]
    assert not bad.successful and 'smaller than the executed steps (50)' in bad.reason
    bad = node.set_parameters([Parameter('execute_steps', value=51)])[0]
    assert not bad.successful and 'exceeds the chunk size 50' in bad.reason
    bad = node.set_parameters([Parameter('publish_joint_trajectory', value=False)])[0]
    assert not bad.successful and 'read-only' in bad.reason
