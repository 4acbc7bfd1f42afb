"""parameter_report.py: which parameter files the node read, and how its values differ from
the preset they were copied from (what the node logs at configure, and eval prints)."""
import os
from pathlib import Path

import pytest

from cosmos_policy_ros.node_config import load_parameter_file
from cosmos_policy_ros.parameter_report import (closest_preset, differences, parameter_files,
                                                report_lines)

ROOT = Path(os.environ.get('COSMOS_ROOT', Path(__file__).resolve().parents[1]))
PRESETS = sorted((ROOT / 'config').glob('*.yaml'))


def test_params_files_are_read_from_every_ros_args_section():
    argv = ['policy_node', '--params-file', 'not/ros/args.yaml', '--ros-args', '--log-level',
            'info', '--ros-args', '-r', '__node:=x', '--params-file', 'mine.yaml', '-p', 'a:=1',
            '--params-file', '/tmp/launch_params_1', '--', '--params-file', 'after.yaml']
    assert parameter_files(argv) == [os.path.abspath('mine.yaml'), '/tmp/launch_params_1']
    assert parameter_files(None) == []


def _copy(tmp_path, preset, replacements):
    text = (ROOT / 'config' / preset).read_text()
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / f'my_{preset}'
    path.write_text(text)
    return path


def test_an_edited_copy_is_compared_with_its_preset(tmp_path):
    mine = _copy(tmp_path, 'aloha.yaml', [('rate: 25.0', 'rate: 12.5'),
                                          ('cam_high/image_raw', 'top/image')])
    config = load_parameter_file(mine, overrides={'model_path': '/models/aloha'})
    preset, changed = closest_preset(config, PRESETS, [mine])
    assert preset.name == 'aloha.yaml'
    assert changed == [('camera.primary.topic', 'top/image', 'cam_high/image_raw'),
                       ('rate', 12.5, 25.0)]
    lines = report_lines(config, [str(mine), '/tmp/launch_params_xyz'], PRESETS)
    assert lines[0] == (f'parameter files read: {mine}, /tmp/launch_params_xyz (written by '
                        f'ros2 launch from its arguments)')
    assert lines[1] == (f"2 values differ from the preset aloha.yaml ({ROOT / 'config'}"
                        f"/aloha.yaml): camera.primary.topic 'top/image' (preset: "
                        f"'cam_high/image_raw'); rate 12.5 (preset: 25.0)")


def test_the_preset_itself_and_no_file(tmp_path):
    preset = ROOT / 'config' / 'libero.yaml'
    config = load_parameter_file(preset, overrides={'model_path': '/m'})
    assert report_lines(config, [str(preset)], PRESETS) == [
        f'parameter files read: {preset}',
        f'every value equals the preset libero.yaml ({preset}) (model_path aside)']
    lines = report_lines(config, [], [])
    assert lines == ['parameter files read: none (defaults and -p overrides only)']


def test_a_preset_among_the_files_read_wins_over_a_closer_one(tmp_path):
    near = _copy(tmp_path, 'demo.yaml', [('rate: 2.0', 'rate: 3.0')])
    far = _copy(tmp_path, 'aloha.yaml', [])
    config = load_parameter_file(ROOT / 'config' / 'demo.yaml', overrides={'model_path': '/m'})
    assert closest_preset(config, [far, near], [])[0] == near  # fewest differences
    preset, changed = closest_preset(config, [far, near], [far])  # the node read `far`
    assert preset == far and ('rate', 2.0, 25.0) in changed
    # A list value that differs shows as a list, a parameter the other lacks as not set.
    other = load_parameter_file(ROOT / 'config' / 'demo.yaml',
                                overrides={'model_path': '/m', 'cameras': ['primary']})
    assert ('cameras', ('primary',), ('left_wrist', 'right_wrist', 'primary')) in (
        differences(other, config))
    missing = ('camera.left_wrist.topic', None, 'left_wrist/image_raw')
    assert missing in differences(other, config)
    line = report_lines(other, [], [ROOT / 'config' / 'demo.yaml'])[1]
    assert "cameras ['primary'] (preset: ['left_wrist', 'right_wrist', 'primary'])" in line
    assert "camera.left_wrist.topic (not set) (preset: 'left_wrist/image_raw')" in line


@pytest.mark.parametrize('broken', ['not: [valid', '/**: {ros__parameters: {rat: 1}}'])
def test_unreadable_presets_are_skipped(tmp_path, broken):
    bad = tmp_path / 'bad.yaml'
    bad.write_text(broken)
    config = load_parameter_file(ROOT / 'config' / 'sim.yaml', overrides={'model_path': '/m'})
    assert closest_preset(config, [bad], []) == (None, [])
    preset, changed = closest_preset(config, [bad, *PRESETS], [])
    assert preset.name == 'sim.yaml' and changed == []
