"""The synthetic sample episode: deterministic, complete, smooth and self-consistent."""
import io
import math

import numpy as np
import pytest

from cosmos_policy_ros.bags import sample_episode as se
from cosmos_policy_ros.bags.reader import read_info, read_messages
from cosmos_policy_ros.bags.sample_robots import FINGER_OPEN_WIDTH, ROBOTS
from cosmos_policy_ros.bags.storage import bag_size, STORAGES
from cosmos_policy_ros.conversions import stamp_to_ns
from cosmos_policy_ros.layout import PRESETS

SMALL = dict(duration=2.0, camera_rate=5.0, joint_rate=20.0, image_size=64)


def _files(path):
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def _by_topic(path):
    topics = {}
    for item in read_messages(path):
        topics.setdefault(item.topic, []).append(item)
    return topics


@pytest.mark.parametrize('storage', STORAGES)
@pytest.mark.parametrize('compressed', [False, True])
def test_same_arguments_give_a_byte_identical_bag(tmp_path, storage, compressed):
    config = se.EpisodeConfig(preset='libero', seed=3, compressed=compressed, **SMALL)
    # The storage file is named after the bag directory: same name, different parents.
    se.make_sample(tmp_path / '1' / 'bag', config, storage=storage)
    se.make_sample(tmp_path / '2' / 'bag', config, storage=storage)
    first, second = _files(tmp_path / '1' / 'bag'), _files(tmp_path / '2' / 'bag')
    assert sorted(first) == ['bag.db3' if storage == 'sqlite3' else 'bag.mcap',
                             'metadata.yaml']
    assert first == second
    other = se.EpisodeConfig(preset='libero', seed=4, compressed=compressed, **SMALL)
    se.make_sample(tmp_path / '3' / 'bag', other, storage=storage)
    third = _files(tmp_path / '3' / 'bag')
    assert third['metadata.yaml'] == first['metadata.yaml']  # same topics, counts, times
    assert third != first  # other shapes and trajectories


@pytest.mark.parametrize('preset', sorted(ROBOTS))
def test_topics_counts_types_and_shapes(tmp_path, preset):
    config = se.EpisodeConfig(preset=preset, **SMALL)
    info = se.make_sample(tmp_path / 'bag', config)
    cameras = PRESETS[preset].cameras
    eef = preset != 'aloha'
    expected = {'/task': ('std_msgs/msg/String', 1),
                '/joint_states': ('sensor_msgs/msg/JointState', 40),
                '/recorded_actions': ('sensor_msgs/msg/JointState' if not eef
                                      else 'std_msgs/msg/Float64MultiArray',
                                      50 if not eef else 40)}  # 2 s x 25 Hz or 20 Hz
    expected.update({f'/{camera}/image_raw': ('sensor_msgs/msg/Image', 10)
                     for camera in cameras})
    if eef:
        expected['/eef_pose'] = ('geometry_msgs/msg/PoseStamped', 40)
    assert {name: (t.msgtype, t.count) for name, t in info.topics.items()} == expected
    assert info.topics['/task'].latched
    assert info.start_ns == se.START_NS

    topics = _by_topic(tmp_path / 'bag')
    assert topics['/task'][0].message.data == ROBOTS[preset].task
    assert topics['/task'][0].stamp_ns == se.START_NS
    for camera in cameras:
        image = topics[f'/{camera}/image_raw'][3].message
        assert (image.height, image.width, image.encoding, image.step) == (64, 64, 'rgb8', 192)
        assert image.data.shape == (64 * 64 * 3,)
        assert image.header.frame_id == f'{camera}_optical_frame'
    joints = topics['/joint_states'][0].message
    assert list(joints.name) == list(ROBOTS[preset].joint_names)
    assert joints.position.shape == joints.velocity.shape == (len(joints.name),)
    if preset == 'aloha':
        assert len(joints.name) == 14 and joints.name[0] == 'left_waist'
        assert joints.name[6] == 'left_gripper' and joints.name[13] == 'right_gripper'
        assert list(topics['/recorded_actions'][0].message.name) == list(joints.name)
    else:
        action = topics['/recorded_actions'][0].message
        assert action.data.shape == (7,)
        assert (action.layout.dim[0].label, action.layout.dim[0].size) == ('action', 7)
    # Header stamps are the log times, on every stamped topic.
    for topic, items in topics.items():
        for item in items:
            if hasattr(item.message, 'header'):
                assert stamp_to_ns(item.message.header.stamp) == item.stamp_ns, topic


def test_compressed_images_decode_to_the_raw_images(tmp_path):
    from PIL import Image
    config = se.EpisodeConfig(preset='libero', **SMALL)
    se.make_sample(tmp_path / 'raw', config)
    se.make_sample(tmp_path / 'jpeg', se.EpisodeConfig(preset='libero', compressed=True,
                                                       **SMALL))
    raw, jpeg = _by_topic(tmp_path / 'raw'), _by_topic(tmp_path / 'jpeg')
    assert '/primary/image_raw/compressed' in jpeg and '/primary/image_raw' not in jpeg
    message = jpeg['/primary/image_raw/compressed'][4].message
    assert message.format == se.JPEG_FORMAT
    decoded = np.asarray(Image.open(io.BytesIO(message.data.tobytes())).convert('RGB'))
    original = raw['/primary/image_raw'][4].message.data.reshape(64, 64, 3)
    assert decoded.shape == original.shape
    # JPEG q90 of flat shapes: small mean error (a wrong channel order would be far larger).
    assert np.mean(np.abs(decoded.astype(float) - original)) < 6.0


def test_images_move_smoothly_and_differ_between_cameras():
    episode = se.make_episode(se.EpisodeConfig(preset='robocasa', duration=10.0,
                                               camera_rate=10.0, image_size=96))
    frames = np.stack([episode.image('wrist', i) for i in range(0, 100)]).astype(float)
    changed = np.mean(np.any(frames[1:] != frames[:-1], axis=3), axis=(1, 2))  # (99,)
    assert np.all(changed > 0)  # every frame differs from the one before
    assert np.max(changed) < 0.1  # ... but only a little: the shapes move smoothly
    assert np.mean(np.any(frames[0] != frames[50], axis=2)) > 0.02  # far apart: clearly
    others = [episode.image(camera, 0) for camera in ('primary', 'secondary')]
    for other in others:
        assert np.mean(np.any(other != frames[0], axis=2)) > 0.5  # other scene, other colours


@pytest.mark.parametrize('preset', ['aloha', 'libero'])
def test_joint_trajectories_are_smooth_and_match_their_velocities(tmp_path, preset):
    se.make_sample(tmp_path / 'bag', se.EpisodeConfig(preset=preset, duration=4.0,
                                                      camera_rate=1.0, image_size=16))
    items = _by_topic(tmp_path / 'bag')['/joint_states']
    t = (np.array([item.stamp_ns for item in items]) - se.START_NS) / 1e9
    q = np.stack([item.message.position for item in items])  # (N, J)
    v = np.stack([item.message.velocity for item in items])
    dt = np.diff(t)
    assert np.allclose(dt, 0.02)
    # Trapezoid rule: q(t+dt) - q(t) = dt (v(t) + v(t+dt)) / 2 + O(dt^3 * q''').
    # With frequencies <= 0.3 Hz and amplitudes <= 0.6: |q'''| <= 0.6 (2 pi 0.3)^3 = 4.0.
    trapezoid = dt[:, None] * (v[1:] + v[:-1]) / 2
    assert np.max(np.abs(np.diff(q, axis=0) - trapezoid)) < 4.0 * 0.02**3 / 12 * 1.01
    assert np.max(np.abs(np.diff(q, axis=0))) < 0.1  # no jumps
    assert np.ptp(q, axis=0).min() > 0.005  # every joint moves
    if preset == 'libero':
        assert np.all(q[:, 0] >= 0) and np.all(q[:, 0] <= FINGER_OPEN_WIDTH / 2 + 1e-12)
        np.testing.assert_array_equal(q[:, 1], -q[:, 0])


def test_aloha_actions_are_the_joint_positions_one_period_ahead(tmp_path):
    se.make_sample(tmp_path / 'bag', se.EpisodeConfig(preset='aloha', duration=3.0,
                                                      camera_rate=1.0, image_size=16))
    topics = _by_topic(tmp_path / 'bag')
    joints = {item.stamp_ns: item.message.position for item in topics['/joint_states']}
    period_ns = 40_000_000  # 25 Hz control
    compared = 0
    for item in topics['/recorded_actions']:
        ahead = joints.get(item.stamp_ns + period_ns)
        if ahead is not None:  # the 50 Hz joint grid holds every action time + 40 ms
            np.testing.assert_allclose(item.message.position, ahead, rtol=0, atol=1e-12)
            compared += 1
    assert compared == 74  # 75 actions, the last one looks past the end of the joint stream


def _rodrigues(vector):
    """Rotation matrix of an axis-angle vector (independent of the quaternion code)."""
    angle = np.linalg.norm(vector)
    if angle < 1e-15:
        return np.eye(3)
    k = vector / angle
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * cross + (1 - math.cos(angle)) * cross @ cross


def _matrix(q):
    x, y, z, w = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def test_libero_delta_actions_integrate_to_the_pose_trajectory(tmp_path):
    # Joints and poses at 100 Hz: every action time + 50 ms is on their grid.
    se.make_sample(tmp_path / 'bag', se.EpisodeConfig(preset='libero', duration=3.0,
                                                      camera_rate=1.0, joint_rate=100.0,
                                                      image_size=16))
    topics = _by_topic(tmp_path / 'bag')
    poses = {item.stamp_ns: item.message.pose for item in topics['/eef_pose']}
    widths = {item.stamp_ns: 2 * item.message.position[0] for item in topics['/joint_states']}
    actions = [(item.stamp_ns, item.message.data) for item in topics['/recorded_actions']]
    assert [a[1].shape for a in actions[:1]] == [(7,)]

    def position(stamp):
        p = poses[stamp].position
        return np.array([p.x, p.y, p.z])

    def rotation(stamp):
        o = poses[stamp].orientation
        return _matrix([o.x, o.y, o.z, o.w])

    first = actions[0][0]
    p, r = position(first), rotation(first)
    assert np.isclose(np.linalg.det(r), 1.0)
    for stamp, action in actions[:-1]:
        p = p + action[:3]
        r = _rodrigues(action[3:6]) @ r  # the rotation vector is in the base frame
        width = widths[stamp + 50_000_000]
        assert action[6] == (1.0 if width < FINGER_OPEN_WIDTH / 2 else -1.0)
    last = actions[-1][0]
    np.testing.assert_allclose(p, position(last), atol=1e-12)
    np.testing.assert_allclose(r, rotation(last), atol=1e-9)
    assert np.linalg.norm(position(last) - position(first)) > 1e-3  # it did move
    gripper = np.array([a[1][6] for a in actions])
    assert set(gripper) == {-1.0, 1.0}  # opens and closes within 3 s


def test_default_sample_is_small(tmp_path):
    info = se.make_sample(tmp_path / 'bag', se.EpisodeConfig(preset='aloha'))  # 10 s, 3 cams
    assert info.topics['/primary/image_raw'].count == 100
    assert bag_size(tmp_path / 'bag') < 3_000_000


def test_config_errors_name_the_field():
    with pytest.raises(ValueError, match='`preset` must be one of'):
        se.EpisodeConfig(preset='franka')
    with pytest.raises(ValueError, match='`camera_rate` must be a positive number'):
        se.EpisodeConfig(camera_rate=0)
    with pytest.raises(ValueError, match='`image_size`'):
        se.EpisodeConfig(image_size=8)
    with pytest.raises(ValueError, match='`seed`'):
        se.EpisodeConfig(seed=-1)
    with pytest.raises(ValueError, match='`action_rate`'):
        se.EpisodeConfig(action_rate=math.inf)


@pytest.mark.parametrize('preset', sorted(ROBOTS))
def test_make_sample_preset_matches_its_config_file(tmp_path, preset):
    """`cosmos-policy-replay make-sample --preset X` writes the topics and joint names of
    config/X.yaml: every input stream the node would subscribe to with that file is in the bag
    with its message type, and the joint states carry the file's joint names."""
    import subprocess
    import sys

    from cosmos_policy_ros.control_loop import input_streams
    from cosmos_policy_ros.node_config import load_parameter_file

    out = tmp_path / 'bag'
    result = subprocess.run(
        [sys.executable, '-m', 'cosmos_policy_ros.cli.replay', 'make-sample', str(out),
         '--preset', preset, '--duration', '1', '--camera-rate', '2', '--joint-rate', '4',
         '--image-size', '32'], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    params = se.preset_params_file(preset)
    assert params.endswith(f'config/{preset}.yaml')
    config = load_parameter_file(params, overrides={'model_path': '/m'})
    info = read_info(out)
    bag_topics = {name: topic.msgtype for name, topic in info.topics.items()}
    for stream in input_streams(config):
        assert bag_topics.get('/' + stream.topic) == stream.msg_type, (stream, bag_topics)
    joint_source = next(p for p in config.proprio_sources if p.type == 'joint_state')
    messages = _by_topic(out)['/' + joint_source.topic]
    assert list(messages[0].message.name) == list(joint_source.joints)
    assert '/' + config.task_topic in bag_topics


def test_params_file_errors_name_the_file_and_what_is_missing(tmp_path):
    params = tmp_path / 'robot.yaml'
    params.write_text('/**:\n  ros__parameters:\n    model_path: /m\n    cameras: [wrist]\n'
                      '    proprio_sources: [gripper]\n'
                      '    proprio: {gripper: {type: joint_state, joints: [a, b]}}\n')
    config = se.EpisodeConfig(preset='libero', params_file=str(params), **SMALL)
    with pytest.raises(ValueError, match=r"robot.yaml: no camera \['primary'\]"):
        se.make_episode(config)
    params.write_text(params.read_text().replace('[wrist]', '[wrist, primary]'))
    with pytest.raises(ValueError, match='robot.yaml: the libero sample needs a pose'):
        se.make_episode(config)
