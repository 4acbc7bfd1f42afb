"""The `cosmos-policy-replay` command line (the subcommands that need no ROS graph)."""
import pytest

from cosmos_policy_ros.bags.reader import read_info
from cosmos_policy_ros.cli import replay


def test_make_sample_and_info(tmp_path, capsys):
    out = tmp_path / 'sample'
    code = replay.main(['make-sample', str(out), '--preset', 'robocasa', '--duration', '1',
                        '--camera-rate', '4', '--image-size', '32', '--seed', '5',
                        '--storage', 'sqlite3', '--compressed'])
    assert code == 0
    printed = capsys.readouterr().out
    assert 'storage:   sqlite3' in printed and 'size:' in printed
    info = read_info(out)
    # config/robocasa.yaml's topic of the secondary camera, its compressed sibling
    assert info.topics['/robot0_agentview_right/image_raw/compressed'].count == 4
    assert info.topics['/joint_states'].count == 50
    assert info.topics['/recorded_actions'].count == 20
    assert replay.main(['info', str(out)]) == 0
    assert '/eef_pose' in capsys.readouterr().out


def test_make_sample_takes_the_topics_of_a_given_parameter_file(tmp_path):
    from cosmos_policy_ros.package_files import config_file

    mine = tmp_path / 'my_robot.yaml'
    mine.write_text(config_file('aloha.yaml').read_text().replace('cam_high/image_raw',
                                                                  'top/image'))
    out = tmp_path / 'sample'
    assert replay.main(['make-sample', str(out), '--config', str(mine), '--duration', '0.5',
                        '--image-size', '16']) == 0
    topics = read_info(out).topics
    assert '/top/image' in topics and '/cam_high/image_raw' not in topics
    assert '/cam_left_wrist/image_raw' in topics


def test_errors_print_one_line_and_exit_2(tmp_path, capsys):
    assert replay.main(['info', str(tmp_path / 'missing')]) == 2
    assert capsys.readouterr().err.strip() == f'error: bag {tmp_path / "missing"} does not exist'
    replay.main(['make-sample', str(tmp_path / 'a'), '--duration', '0.5', '--image-size', '32'])
    capsys.readouterr()
    assert replay.main(['make-sample', str(tmp_path / 'a'), '--duration', '0.5']) == 2
    assert 'already exists' in capsys.readouterr().err
    assert replay.main(['make-sample', str(tmp_path / 'b'), '--image-size', '4']) == 2
    assert '`image_size`' in capsys.readouterr().err
    # Option errors of `play` are found before ROS starts.
    assert replay.main(['play', str(tmp_path / 'a'), '--remap', '/nope']) == 2
    assert 'FROM:=TO' in capsys.readouterr().err
    assert replay.main(['play', str(tmp_path / 'a'), '--remap', '/x:=/y']) == 2
    assert "topic '/x' not in bag" in capsys.readouterr().err


def test_argument_parsing(capsys):
    with pytest.raises(SystemExit):
        replay.main(['play', 'bag', '--rate', '0'])
    assert 'must be > 0' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        replay.main(['play', 'bag', '--start', '-1'])
    assert 'must be >= 0 seconds' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        replay.main([])  # a subcommand is required
    parser = replay.build_parser()
    args = parser.parse_args(['play', 'bag', '--remap', 'a:=b', 'c:=d', '--rate', 'inf'])
    assert args.remap == ['a:=b', 'c:=d'] and args.rate == float('inf')
    assert args.handler is replay.run_play
    assert args.record_topics == ['action_chunk', 'value']
