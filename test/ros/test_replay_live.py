"""`cosmos-policy-replay play` on a real (loopback) ROS graph: a player subprocess, this test
process subscribing to what it publishes and publishing what it records."""
import math
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from cosmos_policy_ros.bags import sample_episode as se
from cosmos_policy_ros.bags.reader import read_info, read_messages
from cosmos_policy_ros.bags.sample_robots import EE_ACTION_NAMES, ROBOTS
from cosmos_policy_ros.bags.typestore import make_typestore, ns_to_stamp
from cosmos_policy_ros.bags.writer import BagWriter
from cosmos_policy_ros.conversions import stamp_to_ns

pytestmark = [pytest.mark.ros, pytest.mark.slow]

MS = 1_000_000


@pytest.fixture(scope='module')
def sample_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp('replay') / 'libero'
    se.make_sample(path, se.EpisodeConfig(preset='libero', duration=3.0, camera_rate=10.0,
                                          joint_rate=20.0, image_size=64))
    return path


def _player(env, *args):
    command = [sys.executable, '-m', 'cosmos_policy_ros.cli.replay', 'play', *map(str, args)]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def _spin_until(executor, done, timeout):
    deadline = time.monotonic() + timeout
    while not done() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.02)
    return done()


def _finish(process, timeout=30):
    try:
        output = process.communicate(timeout=timeout)[0]
    except subprocess.TimeoutExpired:
        process.kill()
        output = process.communicate()[0]
        pytest.fail('the player did not finish:\n' + output)
    return process.returncode, output


@pytest.fixture
def graph(ros_context):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    node = rclpy.create_node('replay_test', context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    try:
        yield node, executor
    finally:
        executor.shutdown(timeout_sec=0.1)
        node.destroy_node()


def test_play_window_with_remap_clock_and_latched_task(sample_bag, graph, ros_env):
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import String

    node, executor = graph
    received = {'image': [], 'joints': [], 'task': [], 'clock': []}
    reliable = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(Image, '/cam/primary', received['image'].append, reliable)
    node.create_subscription(JointState, '/joint_states', received['joints'].append, reliable)
    node.create_subscription(Clock, '/clock', received['clock'].append, reliable)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_subscription(String, '/task', received['task'].append, latched)

    started = time.monotonic()
    player = _player(ros_env, sample_bag, '--rate', 2, '--start', 1.0, '--end', 2.5,
                     '--remap', '/primary/image_raw:=/cam/primary',
                     '--topics', '/primary/image_raw', '/joint_states', '/task',
                     '--delay', 0.2, '--wait-for-subscribers')
    info = read_info(sample_bag)
    start_ns, end_ns = info.start_ns + 1000 * MS, info.start_ns + 2500 * MS
    expected = {topic: [item.stamp_ns for item in read_messages(
        sample_bag, [topic], start_ns=start_ns, end_ns=end_ns, raw=True)]
        for topic in ('/primary/image_raw', '/joint_states')}
    assert len(expected['/primary/image_raw']) == 15 and len(expected['/joint_states']) == 30

    def arrived():
        """Everything the player sent is here (it may still be in flight when it exits)."""
        return (len(received['image']) >= 15 and len(received['joints']) >= 30
                and bool(received['task']) and bool(received['clock'])
                and stamp_to_ns(received['clock'][-1].clock)
                == expected['/joint_states'][-1])

    _spin_until(executor, lambda: player.poll() is not None, 40)
    _spin_until(executor, arrived, 30)  # a deadline; the exact checks follow
    code, output = _finish(player)
    wall = time.monotonic() - started
    assert code == 0, output

    images = [stamp_to_ns(m.header.stamp) for m in received['image']]
    assert images == expected['/primary/image_raw'], output
    assert received['image'][0].height == 64 and received['image'][0].encoding == 'rgb8'
    assert [stamp_to_ns(m.header.stamp) for m in received['joints']] == expected[
        '/joint_states']
    # The task was published at t = 0 s, before the window: carried to its start, latched.
    assert [m.data for m in received['task']] == [ROBOTS['libero'].task]

    clock = np.array([stamp_to_ns(m.clock) for m in received['clock']])
    assert clock[0] == start_ns and clock[-1] == expected['/joint_states'][-1]
    assert np.all(np.diff(clock) > 0)  # monotonic
    assert np.max(np.diff(clock)) <= 10 * MS  # ~100 Hz of bag time between messages
    assert set(images) <= set(clock.tolist())  # /clock showed every message's time
    assert wall > 1.5 / 2  # 1.5 s of bag time at rate 2 took at least 0.75 s
    assert 'published 46 messages' in output  # 15 images + 30 joint states + the task
    assert 'Found remap rule' not in output  # rcl did not parse our FROM:=TO as its own remap


def _chunk(index, stamp_ns):
    from builtin_interfaces.msg import Time

    from cosmos_policy_ros.msg import ActionChunk
    chunk = ActionChunk()
    chunk.header.stamp = Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    chunk.header.frame_id = 'base_link'
    chunk.action_names = list(EE_ACTION_NAMES)
    chunk.horizon, chunk.action_dim, chunk.step_period = 2, 7, 0.05
    chunk.actions = (np.arange(14, dtype=np.float32) * 0.1 + index).tolist()
    chunk.value = 0.1 * index
    chunk.seed, chunk.num_denoising_steps, chunk.inference_time = index, 5, 0.2
    chunk.model_id = f'test-{index}'
    return chunk


def _publish_chunks(node, executor, count, first_stamp_ns, spacing=0.05, values=None):
    """Publish `count` chunks and values once the recorder subscribed.

    Returns the two publishers, or None when the recorder never subscribed.
    """
    from cosmos_policy_ros.msg import ActionChunk, ValueEstimate
    publisher = node.create_publisher(ActionChunk, 'action_chunk', 10)
    values = values or node.create_publisher(ValueEstimate, 'value', 10)
    if not _spin_until(executor, lambda: publisher.get_subscription_count() > 0
                       and values.get_subscription_count() > 0, 30):
        return None
    # Matching is not symmetric in time: give the recorder's side a moment to match us too.
    _spin_until(executor, lambda: False, 0.5)
    for index in range(count):
        publisher.publish(_chunk(index, first_stamp_ns + index * 100 * MS))
        value = ValueEstimate(value=0.1 * index, model_id=f'test-{index}')
        values.publish(value)
        _spin_until(executor, lambda: False, spacing)
    return publisher, values


def _check_recording(path, count, bag_start_ns, bag_end_ns=None):
    info = read_info(path)
    assert info.topics['/action_chunk'].msgtype == 'cosmos_policy_ros/msg/ActionChunk'
    assert info.topics['/action_chunk'].count == count
    assert info.topics['/value'].count == count
    assert info.topics['/action_chunk'].type_hash == make_typestore().hash_rihs01(
        'cosmos_policy_ros/msg/ActionChunk')
    chunks = list(read_messages(path, ['/action_chunk']))
    log_ns = [item.stamp_ns for item in chunks]
    assert log_ns == sorted(log_ns)
    for index, item in enumerate(chunks):  # in the order they were published
        message = item.message
        assert message.model_id == f'test-{index}'
        np.testing.assert_allclose(message.actions, np.arange(14) * 0.1 + index, rtol=1e-6)
        assert math.isclose(message.value, 0.1 * index, rel_tol=1e-6)
        assert list(message.action_names) == list(EE_ACTION_NAMES)
        assert item.stamp_ns >= bag_start_ns  # log time = bag time at arrival
        assert bag_end_ns is None or item.stamp_ns <= bag_end_ns


# The test's best-effort publisher meets the recorder's first, reliable subscription: rclpy
# logs the incompatible QoS through a deprecated call.
@pytest.mark.filterwarnings('ignore::DeprecationWarning:rclpy.event_handler')
def test_record_outputs_while_playing(sample_bag, graph, ros_env, tmp_path):
    from rclpy.qos import qos_profile_sensor_data
    from rosgraph_msgs.msg import Clock

    from cosmos_policy_ros.msg import ValueEstimate
    node, executor = graph
    clock = []
    node.create_subscription(Clock, '/clock', clock.append, 10)
    out = tmp_path / 'outputs'
    player = _player(ros_env, sample_bag, '--delay', 0.5, '--record', out,
                     '--record-topics', 'action_chunk', 'value', '--tail', 2.0,
                     '--record-storage', 'sqlite3')
    info = read_info(sample_bag)
    try:
        # No `value` publisher when playback starts: the recorder subscribes to it reliable.
        # Then a best-effort one appears (a reliable subscription cannot match it): the recorder
        # must switch to best effort.
        playing = _spin_until(executor, lambda: bool(clock), 30)  # the first /clock
        values = node.create_publisher(ValueEstimate, 'value', qos_profile_sensor_data)
        subscribed = _publish_chunks(node, executor, 5, info.start_ns, values=values)
        # One more after the last message, in the tail: logged at the last bag time.
        ended = _spin_until(
            executor, lambda: clock and stamp_to_ns(clock[-1].clock) == info.end_ns, 30)
        if subscribed and ended:
            subscribed[0].publish(_chunk(5, info.end_ns))
            subscribed[1].publish(ValueEstimate(value=0.5, model_id='test-5'))
        _spin_until(executor, lambda: player.poll() is not None, 40)
    finally:
        code, output = _finish(player)
    assert playing and subscribed, 'the player never played or never subscribed:\n' + output
    assert ended, 'the player never reached the end of the bag:\n' + output
    assert code == 0, output
    assert 'recording /value best effort, as its publisher offers' in output
    assert 'recorded /action_chunk 6, /value 6' in output
    _check_recording(out, 6, info.start_ns, info.end_ns)
    tail = list(read_messages(out, ['/action_chunk', '/value'], raw=True))[-2:]
    assert [item.stamp_ns for item in tail] == [info.end_ns] * 2


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM])
def test_signal_ends_the_player_cleanly_and_keeps_the_recording(
        sample_bag, graph, ros_env, tmp_path, signum):
    from rclpy.duration import Duration
    node, executor = graph
    out = tmp_path / 'outputs'
    # A 0.3 s window looped: the chunks, 0.25 s apart, arrive in different passes.
    player = _player(ros_env, sample_bag, '--loop', '--end', 0.3, '--delay', 0.2,
                     '--record', out)
    info = read_info(sample_bag)
    try:
        subscribed = _publish_chunks(node, executor, 3, info.start_ns, spacing=0.25)
        # Every chunk is in the recorder's reader (acknowledged)...
        acked = bool(subscribed) and subscribed[0].wait_for_all_acked(Duration(seconds=30))
        # ...and its callback, which runs whenever the player spins (every 50 ms or less), has
        # taken them: no signal of that leaves the player, so this is a margin, not a deadline.
        _spin_until(executor, lambda: False, 0.5)
        running = player.poll() is None
        player.send_signal(signum)
    finally:
        code, output = _finish(player)
    assert subscribed, 'the recorder never subscribed:\n' + output
    assert acked, 'the recorder never acknowledged the chunks:\n' + output
    assert running, 'the looping player ended by itself:\n' + output
    assert code == 0, output
    assert 'interrupted' in output
    _check_recording(out, 3, info.start_ns)
    log_ns = [item.stamp_ns for item in read_messages(out, ['/action_chunk'], raw=True)]
    assert log_ns[-1] - log_ns[0] > 300 * MS  # bag time unwrapped across the passes


def test_bag_errors_stop_the_player_before_ros_starts(sample_bag, ros_env, tmp_path):
    player = _player(ros_env, sample_bag, '--topics', '/no/such/topic')
    code, output = _finish(player)
    assert code == 2
    assert "topic '/no/such/topic' not in bag" in output and '/joint_states' in output
    player = _player(ros_env, tmp_path / 'missing')
    code, output = _finish(player)
    assert code == 2 and 'does not exist' in output


def test_nothing_is_lost_when_the_subscriber_lags(graph, ros_env, tmp_path):
    """1 kHz joint states between 224 x 224 images, played as fast as possible, all arrive.

    The image burst overruns the transport; the player's keep-all publishers let DDS resend
    what was dropped (a keep-last queue of 100 lost joint states here).
    """
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image, JointState

    store = make_typestore()
    types = store.types
    start = se.START_NS
    scene = se.make_episode(se.EpisodeConfig(preset='aloha')).scenes[0]
    with BagWriter(tmp_path / 'fast', typestore=store, compression='zstd') as bag:
        bag.add_topic('/joint_states', 'sensor_msgs/msg/JointState')
        bag.add_topic('/image', 'sensor_msgs/msg/Image')
        for i in range(2000):
            header = types['std_msgs/msg/Header'](stamp=ns_to_stamp(start + i * MS, store),
                                                  frame_id='')
            bag.write('/joint_states', start + i * MS, types['sensor_msgs/msg/JointState'](
                header=header, name=['j'], position=np.array([float(i)]), velocity=np.zeros(0),
                effort=np.zeros(0)))
            if i % 5 == 0:
                pixels = scene.render(i / 1000, 224).reshape(-1)  # (224*224*3,)
                bag.write('/image', start + i * MS, types['sensor_msgs/msg/Image'](
                    header=header, height=224, width=224, encoding='rgb8', is_bigendian=0,
                    step=672, data=pixels))
    node, executor = graph
    received, images = [], []
    reliable = QoSProfile(depth=5000, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(JointState, '/joint_states', received.append, reliable)
    node.create_subscription(Image, '/image', images.append, reliable)
    player = _player(ros_env, tmp_path / 'fast', '--rate', 'inf', '--delay', 0.2,
                     '--wait-for-subscribers', '--no-clock')
    _spin_until(executor, lambda: player.poll() is not None, 40)
    _spin_until(executor, lambda: len(received) >= 2000 and len(images) >= 400, 60)
    code, output = _finish(player)
    assert code == 0, output
    assert [m.position[0] for m in received] == list(range(2000))
    assert len(images) == 400
