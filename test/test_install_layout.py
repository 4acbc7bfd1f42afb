"""The package as colcon installs it: messages, Python package, launch/config, console scripts."""
import os
from pathlib import Path
import shlex
import subprocess
import sys
import zipfile

import pytest

import cosmos_policy_ros

ROOT = Path(os.environ.get('COSMOS_ROOT', Path(__file__).resolve().parents[1]))


def _console_scripts():
    lines = (ROOT / 'resource' / 'console_scripts').read_text().splitlines()
    entries = [line.split('=') for line in lines if line.strip() and not line.startswith('#')]
    return {name.strip(): target.strip() for name, target in entries}


def _env_without(prefix):
    """This environment with every path under `prefix` removed (to build a second copy)."""
    env = dict(os.environ)
    for key in ('CMAKE_PREFIX_PATH', 'AMENT_PREFIX_PATH', 'PYTHONPATH', 'LD_LIBRARY_PATH',
                'PATH', 'COLCON_PREFIX_PATH'):
        if key in env:
            env[key] = os.pathsep.join(
                part for part in env[key].split(os.pathsep) if not part.startswith(prefix))
    return env


def test_setup_py_and_cmake_share_the_console_script_list():
    scripts = _console_scripts()
    assert 'policy_node' in scripts
    setup = subprocess.run([sys.executable, 'setup.py', '--quiet', 'egg_info', '--egg-base',
                            os.environ.get('TMPDIR', '/tmp')], cwd=ROOT, capture_output=True,
                           text=True)
    assert setup.returncode == 0, setup.stderr
    egg = Path(os.environ.get('TMPDIR', '/tmp')) / 'cosmos_policy_ros.egg-info'
    declared = (egg / 'entry_points.txt').read_text()
    for name, target in scripts.items():
        assert f'{name} = {target}' in declared


def test_installed_console_scripts_point_at_real_functions():
    prefix = Path(cosmos_policy_ros.__file__).resolve().parents[4]
    for name, target in _console_scripts().items():
        launcher = prefix / 'lib' / 'cosmos_policy_ros' / name
        assert launcher.is_file() and os.access(launcher, os.X_OK), launcher
        module, function = target.split(':')
        assert f'from {module} import {function}' in launcher.read_text()


@pytest.mark.slow
def test_colcon_build_in_a_fresh_workspace(tmp_path):
    build_base = os.environ.get('COSMOS_BUILD', str(ROOT / '.build'))
    env = _env_without(build_base)
    (tmp_path / 'src').mkdir()
    (tmp_path / 'src' / 'cosmos_policy_ros').symlink_to(ROOT)
    build = subprocess.run(
        ['colcon', 'build', '--event-handlers', 'console_direct-',
         '--cmake-args', '-DBUILD_TESTING=OFF'],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]

    share = tmp_path / 'install' / 'cosmos_policy_ros' / 'share' / 'cosmos_policy_ros'
    assert (share / 'package.xml').is_file()
    assert sorted(p.name for p in (share / 'msg').glob('*.msg')) == [
        'ActionChunk.msg', 'StageTimes.msg', 'ValueEstimate.msg']
    assert {p.name for p in (share / 'config').glob('*.yaml')} == {
        p.name for p in (ROOT / 'config').glob('*.yaml')}
    assert {p.name for p in (share / 'launch').iterdir()} == {
        p.name for p in (ROOT / 'launch').iterdir() if p.suffix == '.py'}

    # The workspace's own setup script gives a Python that sees the messages and the engine
    # from the new install, and the message round-trips through its C type support.
    probe = ('import cosmos_policy_ros, cosmos_policy_ros.engine\n'
             'from cosmos_policy_ros.msg import ActionChunk\n'
             'from rclpy.serialization import serialize_message, deserialize_message\n'
             'm = ActionChunk(horizon=3, model_id="ws")\n'
             'back = deserialize_message(serialize_message(m), ActionChunk)\n'
             'assert (back.horizon, back.model_id) == (3, "ws")\n'
             'print(cosmos_policy_ros.__file__)\n')
    run = subprocess.run(
        ['bash', '-c', f'. install/local_setup.bash && cd / && python -c {shlex.quote(probe)}'],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().startswith(str(tmp_path / 'install'))


@pytest.mark.slow
def test_pip_wheel_holds_the_python_part_without_ros(tmp_path):
    # `pip install .` where no ROS is present: core, engine, tools, configs and msg files.
    build = subprocess.run(
        [sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q',
         '-w', str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    wheel = zipfile.ZipFile(next(tmp_path.glob('cosmos_policy_ros-*.whl')))
    names = set(wheel.namelist())
    for module in ('layout.py', 'sync.py', 'engine/policy.py', 'engine/sampling.py',
                   'cli/replay.py', 'cli/convert.py', 'bags/reader.py', 'ros/policy_node.py'):
        assert f'cosmos_policy_ros/{module}' in names, module
    data = {name.split('.data/data/', 1)[-1] for name in names if '.data/data/' in name}
    share = 'share/cosmos_policy_ros/'
    assert {share + 'config/aloha.yaml', share + 'msg/ActionChunk.msg',
            share + 'package.xml'} <= data
    entry_points = next(n for n in names if n.endswith('entry_points.txt'))
    text = wheel.read(entry_points).decode()
    assert 'cosmos-policy-replay = cosmos_policy_ros.cli.entry_points:replay' in text
    assert 'cosmos-policy-train = cosmos_policy_ros.cli.entry_points:train' in text
    # The shipped planar-reach model travels as package data.
    for name in ('model.json', 'dit.safetensors', 'vae.safetensors', 'planning_dit.safetensors',
                 'dataset_statistics.json', 't5_embeddings.safetensors'):
        assert f'cosmos_policy_ros/models/planar_reach/{name}' in names, name
