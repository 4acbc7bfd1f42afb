"""NodeConfig validation, seeds, layout binding, factories and the shipped parameter presets."""
import os
from pathlib import Path

import pytest

from cosmos_policy_ros.layout import LatentLayout
from cosmos_policy_ros.node_config import (bind_layout, CameraConfig, config_from_parameters,
                                           config_parameters, derive_seed, load_parameter_file,
                                           NodeConfig, parameter_fields, ProprioSourceConfig)
from cosmos_policy_ros.policy_loading import import_factory

ROOT = Path(os.environ.get('COSMOS_ROOT', Path(__file__).resolve().parents[1]))
ALOHA_JOINTS = tuple(f'{side}_{joint}' for side in ('left', 'right') for joint in (
    'waist', 'shoulder', 'elbow', 'forearm_roll', 'wrist_angle', 'wrist_rotate', 'gripper'))


def libero(**changes):
    values = dict(
        model_path='/models/libero',
        cameras=(CameraConfig('wrist'), CameraConfig('primary', transport='compressed')),
        proprio_sources=(ProprioSourceConfig('gripper', joints=('f1', 'f2')),
                         ProprioSourceConfig('eef', type='pose')),
        action_names=('dx', 'dy', 'dz', 'droll', 'dpitch', 'dyaw', 'gripper'))
    values.update(changes)
    return NodeConfig(**values)


def aloha(**changes):
    values = dict(
        model_path='/models/aloha',
        cameras=tuple(CameraConfig(name) for name in ('left_wrist', 'right_wrist', 'primary')),
        proprio_sources=(ProprioSourceConfig('arms', joints=ALOHA_JOINTS),),
        action_space='joint_position', action_names=ALOHA_JOINTS)
    values.update(changes)
    return NodeConfig(**values)


def test_defaults_and_derived_values():
    config = libero()
    assert config.reference == 'primary'
    assert config.stream_names == ('wrist', 'primary', 'gripper', 'eef')
    assert config.proprio_dim == 9
    assert config.proprio_labels[:3] == ('gripper.position.f1', 'gripper.position.f2', 'eef.x')
    assert config.proprio_labels[-4:] == ('eef.qx', 'eef.qy', 'eef.qz', 'eef.qw')
    assert config.cameras[0].topic == 'wrist/image_raw'
    assert config.cameras[1].topic == 'primary/image_raw/compressed'
    assert config.proprio_sources[0].topic == 'joint_states'
    assert config.proprio_sources[1].topic == 'eef/pose'
    assert libero(cameras=(CameraConfig('a'), CameraConfig('b'))).reference == 'a'


def test_integers_are_accepted_for_float_parameters():
    config = libero(rate=10, sync_tolerance=0)
    assert isinstance(config.rate, float) and config.rate == 10.0


@pytest.mark.parametrize('changes,message', [
    ({'model_path': ''}, '`model_path` must be set'),
    ({'rate': 0.0}, '`rate` must be > 0.0 Hz. Got 0.0'),
    ({'rate': 'fast'}, '`rate` must be a number'),
    ({'rate': float('nan')}, '`rate` must be finite'),
    ({'num_denoising_steps': 0}, '`num_denoising_steps` must be >= 1. Got 0'),
    ({'num_denoising_steps': 2.5}, '`num_denoising_steps` must be an integer'),
    ({'num_candidates': True}, '`num_candidates` must be an integer'),
    ({'seed': -1}, '`seed` must be >= 0'),
    ({'replan_mode': 'sometimes'}, "`replan_mode` must be one of \\['every_tick', "),
    ({'policy_factory': 'no_colon'}, '`policy_factory` must look like'),
    ({'reference_stream': 'nope'}, '`reference_stream` must be one of the streams'),
    ({'action_names': ('a', 'a')}, '`action_names` must be unique'),
    ({'action_names': 'abc'}, '`action_names` must be a list'),
    ({'action_lower_limits': (0.0, 1.0), 'action_upper_limits': (1.0,)}, 'same length'),
    ({'action_lower_limits': (2.0,), 'action_upper_limits': (1.0,)}, 'dimension\\(s\\) \\[0\\]'),
    ({'publish_joint_trajectory': True}, '`publish_joint_trajectory` needs `action_space` '
                                         'joint_position'),
    ({'max_first_step_jump': 0.1}, '`max_first_step_jump` compares actions'),
    ({'cameras': ()}, '`cameras` must name at least one camera'),
    ({'cameras': (CameraConfig('gripper'),)}, 'must be unique'),
])
def test_invalid_values_name_the_parameter(changes, message):
    with pytest.raises(ValueError, match=message):
        libero(**changes)


@pytest.mark.parametrize('build,message', [
    (lambda: CameraConfig('Wrist'), 'lower-case identifiers'),
    (lambda: CameraConfig('wrist', transport='theora'), '`camera.wrist.transport` must be one of'),
    (lambda: ProprioSourceConfig('arm'), '`proprio.arm.joints` must list at least one joint'),
    (lambda: ProprioSourceConfig('arm', joints=('a', 'a')), 'must not repeat'),
    (lambda: ProprioSourceConfig('arm', joints=('a',), field='torque'),
     '`proprio.arm.field` must be one of'),
    (lambda: ProprioSourceConfig('eef', type='pose', joints=('a',)), 'only used by joint_state'),
])
def test_nested_errors_name_the_nested_parameter(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_replace_revalidates():
    config = libero()
    assert config.replace(num_denoising_steps=10).num_denoising_steps == 10
    with pytest.raises(ValueError, match='num_denoising_steps'):
        config.replace(num_denoising_steps=0)


def test_runtime_parameters_are_the_safe_ones():
    runtime = set(NodeConfig.runtime_parameters())
    assert {'num_denoising_steps', 'num_candidates', 'replan_threshold', 'rate',
            'action_lower_limits', 'action_upper_limits', 'limit_mode',
            'max_first_step_jump', 'task'} <= runtime
    assert not {'model_path', 'policy_factory', 'device', 'step_period', 'action_space',
                'publish_joint_trajectory', 'buffer_size'} & runtime
    for name, _, meta in parameter_fields(NodeConfig):
        assert meta['description'], name


def test_seeds_are_deterministic_functions_of_the_stamp():
    assert derive_seed('fixed', 195, 123_456_789) == 195
    assert derive_seed('stamp', 0, 1_700_000_000_000_000_000) == (
        1_700_000_000_000_000_000 % 2 ** 32)
    assert derive_seed('stamp', 7, 2 ** 32 - 3) == 4  # wraps modulo 2**32
    assert libero(seed=3, seed_mode='stamp').seed_for(10) == 13
    with pytest.raises(ValueError, match='seed_mode'):
        derive_seed('random', 0, 0)


def test_bind_layout_resolves_names_and_steps():
    binding = bind_layout(libero(), LatentLayout.preset('libero'))
    assert binding.horizon == 16 and binding.execute_steps == 16
    assert binding.action_names[-1] == 'gripper' and binding.jump_indices == ()
    binding = bind_layout(libero(action_names=(), execute_steps=8),
                          LatentLayout.preset('libero'))
    assert binding.action_names == tuple(f'action_{i}' for i in range(7))
    assert binding.execute_steps == 8


def test_bind_layout_maps_jump_check_onto_joint_positions():
    reordered = ALOHA_JOINTS[7:] + ALOHA_JOINTS[:7]  # actions in another order than proprio
    binding = bind_layout(aloha(action_names=reordered, max_first_step_jump=0.3),
                          LatentLayout.preset('aloha'))
    assert binding.jump_indices == tuple(range(7, 14)) + tuple(range(7))


@pytest.mark.parametrize('config,message', [
    (lambda: libero(cameras=(CameraConfig('wrist'), CameraConfig('agentview'))),
     "`cameras` \\['wrist', 'agentview'\\] must be the cameras of the model layout 'libero'"),
    (lambda: libero(proprio_sources=(ProprioSourceConfig('eef', type='pose'),)),
     'give 7 values .* expects proprio_dim = 9'),
    (lambda: libero(action_names=('dx',)), 'action_dim = 7'),
    (lambda: libero(action_lower_limits=(0.0,) * 6), 'needs one per action dimension \\(7\\)'),
    (lambda: libero(execute_steps=17), '`execute_steps` = 17 exceeds the chunk size 16'),
    (lambda: libero(replan_mode='steps_left', replan_threshold=16), 'smaller than'),
    (lambda: aloha(action_names=('x',) + ALOHA_JOINTS[1:], max_first_step_jump=0.3),
     "\\['x'\\] are not joints"),
])
def test_bind_layout_errors(config, message):
    layout = {'libero': LatentLayout.preset('libero'), 'aloha': LatentLayout.preset('aloha')}
    built = config()
    name = 'aloha' if built.action_space == 'joint_position' else 'libero'
    with pytest.raises(ValueError, match=message):
        bind_layout(built, layout[name])


def test_import_factory():
    assert import_factory('cosmos_policy_ros.testing:load_fake_policy').__name__ == (
        'load_fake_policy')
    with pytest.raises(ValueError, match="cannot import 'no_such_module_xyz'"):
        import_factory('no_such_module_xyz:load')
    with pytest.raises(ValueError, match="has no callable 'nope'"):
        import_factory('cosmos_policy_ros.testing:nope')


def test_config_from_nested_or_dotted_parameters():
    nested = {'model_path': 'm', 'cameras': ['wrist'], 'camera': {'wrist': {'topic': '/c'}},
              'proprio_sources': ['arm'], 'proprio': {'arm': {'joints': ['j1']}}, 'rate': 5}
    dotted = {'model_path': 'm', 'cameras': ['wrist'], 'camera.wrist.topic': '/c',
              'proprio_sources': ['arm'], 'proprio.arm.joints': ['j1'], 'rate': 5}
    assert config_from_parameters(nested) == config_from_parameters(dotted)
    with pytest.raises(ValueError) as raised:
        config_from_parameters(dict(dotted, rat=1, zzz=2, **{'camera.wrsit.topic': 'x'}))
    # Each unknown name with the closest known one, when one is close.
    assert ("unknown parameter(s) 'camera.wrsit.topic' (did you mean 'camera.wrist.topic'?), "
            "'rat' (did you mean 'rate'?), 'zzz': a typo?") in str(raised.value)


@pytest.mark.parametrize('key', ['cameras', 'proprio_sources'])
def test_a_name_where_a_list_belongs_is_named_as_such(key):
    # `cameras: primary` (YAML string) used to be read letter by letter offline.
    parameters = {'model_path': 'm', 'cameras': ['wrist'], 'proprio_sources': ['arm'],
                  'proprio.arm.joints': ['j1']}
    parameters[key] = 'primary'
    with pytest.raises(ValueError, match=f'^parameters: `{key}` must be a list of names, e.g. '
                                         f"\\[primary\\]. Got 'primary'.$"):
        config_from_parameters(parameters)


def test_config_parameters_lists_every_parameter_with_derived_defaults():
    config = config_from_parameters({'model_path': 'm', 'cameras': ['wrist'],
                                     'proprio_sources': ['arm'], 'proprio.arm.joints': ['j1'],
                                     'rate': 5})
    values = config_parameters(config)
    assert values['rate'] == 5.0 and values['cameras'] == ('wrist',)
    assert values['camera.wrist.topic'] == 'wrist/image_raw'  # the derived default
    assert values['proprio.arm.joints'] == ('j1',)
    # Read back, the values give the same configuration.
    assert config_from_parameters(values) == config


PRESETS = {'libero.yaml': 'libero', 'robocasa.yaml': 'robocasa', 'aloha.yaml': 'aloha',
           'demo.yaml': 'aloha'}


@pytest.mark.parametrize('name', sorted(PRESETS))
def test_shipped_presets_fit_their_layouts(name):
    config = load_parameter_file(ROOT / 'config' / name, overrides={'model_path': '/m'})
    layout = LatentLayout.preset(PRESETS[name])
    binding = bind_layout(config, layout)
    assert len(binding.action_names) == layout.action_dim
    if name == 'aloha.yaml':
        assert config.publish_joint_trajectory and config.action_space == 'joint_position'
        assert (config.step_period, config.execute_steps, config.num_denoising_steps) == (
            0.04, 50, 10)
        assert binding.jump_indices == tuple(range(14))
    if name == 'libero.yaml':
        assert config.action_names == ('dx', 'dy', 'dz', 'droll', 'dpitch', 'dyaw', 'gripper')
        assert binding.execute_steps == 16 and config.num_denoising_steps == 5
        assert config.proprio_sources[1].quaternion_order == 'xyzw'
    if name == 'robocasa.yaml':
        assert (binding.horizon, binding.execute_steps) == (32, 16)
    # sim.yaml has the sim's custom layout: test/sim/test_report.py checks it; the fleet
    # files (policy_server's format) are checked by test/fleet/test_config.py.
    shipped = {path.name for path in (ROOT / 'config').glob('*.yaml')
               if not path.name.startswith('fleet_')}
    assert set(PRESETS) | {'sim.yaml'} == shipped


def test_load_parameter_file_errors(tmp_path):
    path = tmp_path / 'p.yaml'
    path.write_text('other_node:\n  ros__parameters: {rate: 1.0}\n')
    with pytest.raises(ValueError, match='no `/\\*\\*` or `cosmos_policy` section'):
        load_parameter_file(path)
    path.write_text('/**:\n  ros__parameters: {model_path: m, cameras: [a], rate: -1.0}\n')
    with pytest.raises(ValueError, match='p.yaml: `rate` must be > 0.0'):
        load_parameter_file(path)
    with pytest.raises(ValueError, match='cannot read parameter file'):
        load_parameter_file(tmp_path / 'missing.yaml')


def test_docs_list_every_parameter():
    text = (ROOT / 'docs' / 'node.md').read_text()
    names = [name for name, _, _ in parameter_fields(NodeConfig)]
    names += [f'camera.<name>.{name}' for name, _, _ in parameter_fields(CameraConfig)]
    names += [f'proprio.<name>.{name}' for name, _, _ in parameter_fields(ProprioSourceConfig)]
    names += ['cameras', 'proprio_sources', 'autostart']
    missing = [name for name in names if f'| `{name}` |' not in text]
    assert not missing, f'docs/node.md has no table row for {missing}'


def test_parameter_files_as_rcl_reads_them(tmp_path):
    path = tmp_path / 'params.yaml'
    path.write_text(
        '/**:\n  ros__parameters:\n    model_path: /models/a\n    rate: 2.0\n'
        '    cameras: [primary]\n    proprio_sources: [arm]\n'
        '    proprio: {arm: {type: joint_state, joints: [j1]}}\n'
        '    qos_overrides:\n      /joint_states:\n        subscription: {depth: 50}\n'
        '/robot1/cosmos_policy:\n  ros__parameters:\n    rate: 4.0\n')
    config = load_parameter_file(path)
    assert config.rate == 4.0  # the namespaced node section wins over the wildcard
    assert config.model_path == '/models/a'
