"""The console scripts name a missing dependency in one line (no traceback)."""
import subprocess
import sys

import pytest

from cosmos_policy_ros.cli.entry_points import missing_dependency_message


def _run_without(function, poisoned, argv=('--help',)):
    """entry_points.<function>() in a fresh interpreter where `poisoned` cannot be imported."""
    code = '\n'.join([
        'import sys',
        f'for name in {poisoned!r}:',
        '    sys.modules[name] = None',
        f'sys.argv = ["script", *{list(argv)!r}]',
        'from cosmos_policy_ros.cli import entry_points',
        f'sys.exit(entry_points.{function}())'])
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                          timeout=120)


def test_policy_node_without_rclpy_says_so_in_one_line():
    result = _run_without('policy_node', ['rclpy'])
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and 'Traceback' not in result.stderr, result.stderr
    assert lines[0].startswith('policy_node: ROS 2 (rclpy) is not importable: source a ROS 2 '
                               'distro')
    assert lines[0].endswith('(missing module: rclpy)')


def test_replay_play_without_rclpy_says_so_in_one_line(tmp_path):
    from cosmos_policy_ros.bags import sample_episode as se
    bag = tmp_path / 'bag'
    se.make_sample(bag, se.EpisodeConfig(preset='libero', duration=0.5, image_size=32))
    result = _run_without('replay', ['rclpy'], argv=('play', str(bag)))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().startswith(
        'cosmos-policy-replay: ROS 2 (rclpy) is not importable'), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_convert_without_torch_names_the_extra():
    result = _run_without('convert', ['torch'])
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        "cosmos-policy-convert: needs torch: pip install 'cosmos_policy_ros[engine]' (from "
        "the checkout: pip install '.[engine]'; or all pinned versions: pip install -r "
        'requirements.txt)')


def test_a_script_with_its_dependencies_runs_its_main():
    result = _run_without('replay', [])
    assert result.returncode == 0, result.stderr
    assert 'make-sample' in result.stdout  # replay's own --help


@pytest.mark.parametrize('name, expected', [
    ('rosbags.rosbag2', "pip install 'cosmos_policy_ros[tools]'"),
    ('matplotlib', "pip install 'cosmos_policy_ros[tools]'"),
    ('diffusers', "pip install 'cosmos_policy_ros[engine]'"),
    ('cosmos_policy_ros.msg', 'ROS 2 (rclpy) is not importable'),
    ('sensor_msgs.msg', 'ROS 2 (rclpy) is not importable'),
])
def test_known_missing_modules_get_a_hint(name, expected):
    assert expected in missing_dependency_message('x', name)


def test_other_missing_modules_are_not_explained_away():
    assert missing_dependency_message('x', 'no_such_module') is None
    assert missing_dependency_message('x', None) is None
