"""Bag I/O: round trips in both storages, type hashes, windows, and every error path."""
import json
import math
import os
from pathlib import Path
import shutil

import numpy as np
import pytest
from rosbags.rosbag2 import Writer
from rosbags.rosbag2.enums import StoragePlugin
from rosbags.typesys import get_types_from_msg

from cosmos_policy_ros.bags.arrays import action_stream_arrays, chunk_arrays
from cosmos_policy_ros.bags.reader import BagMessage, read_info, read_messages
from cosmos_policy_ros.bags.reader import BagReader
from cosmos_policy_ros.bags.storage import bag_size, COMPRESSIONS, storage_files, STORAGES
from cosmos_policy_ros.bags.storage import BagError
from cosmos_policy_ros.bags.typestore import find_msg_dir, make_typestore, ns_to_stamp
from cosmos_policy_ros.bags.writer import BagWriter
from cosmos_policy_ros.conversions import stamp_to_ns
from cosmos_policy_ros.package_files import PACKAGE

T0 = 1_700_000_000 * 1_000_000_000
CHUNK = 'cosmos_policy_ros/msg/ActionChunk'


@pytest.fixture(scope='module')
def store():
    return make_typestore()


def _chunk(store, stamp_ns, index):
    types = store.types
    return types[CHUNK](
        header=types['std_msgs/msg/Header'](stamp=ns_to_stamp(stamp_ns, store),
                                            frame_id='base_link'),
        action_names=['dx', 'dy', 'gripper'], horizon=2, action_dim=3, step_period=0.05,
        actions=np.arange(6, dtype=np.float32) * 0.5 + index, value=math.nan if index == 1
        else 0.25 * index,
        source_stamps=[ns_to_stamp(stamp_ns - 10, store)], source_names=['primary'],
        seed=7 + index, num_denoising_steps=5, inference_time=0.125, model_id=f'model-{index}',
        stitching='blend', conditioned_steps=0, takeover_step=1, blended_steps=2,
        expected_latency=0.05)


def _joint_state(store, stamp_ns, index):
    types = store.types
    return types['sensor_msgs/msg/JointState'](
        header=types['std_msgs/msg/Header'](stamp=ns_to_stamp(stamp_ns, store),
                                            frame_id=''),
        name=['a', 'b'], position=np.array([0.1 * index, -0.2 * index]),
        velocity=np.zeros(0), effort=np.zeros(0))


def _write_mixed(path, store, storage, compression='none'):
    """/task (latched) at T0, /joints every 10 ms x 5, /chunk every 25 ms x 3 (interleaved)."""
    with BagWriter(path, storage=storage, typestore=store, compression=compression) as bag:
        bag.add_topic('/task', 'std_msgs/msg/String', latched=True)
        bag.add_topic('/joints', 'sensor_msgs/msg/JointState')
        bag.add_topic('/chunk', CHUNK)
        bag.write('/task', T0, store.types['std_msgs/msg/String'](data='stack the cups'))
        for i in range(5):
            bag.write('/joints', T0 + 10_000_000 * i, _joint_state(store, T0 + 10_000_000 * i, i))
        for i in range(3):
            bag.write('/chunk', T0 + 5_000_000 + 25_000_000 * i,
                      _chunk(store, T0 + 5_000_000 + 25_000_000 * i, i))
        return dict(bag.counts)


@pytest.mark.parametrize('storage', STORAGES)
@pytest.mark.parametrize('compression', COMPRESSIONS)
def test_round_trip_preserves_topics_types_stamps_and_values(
        tmp_path, store, storage, compression):
    counts = _write_mixed(tmp_path / 'bag', store, storage, compression)
    assert counts == {'/task': 1, '/joints': 5, '/chunk': 3}
    with BagReader(tmp_path / 'bag') as bag:
        info = bag.info
        assert info.storage == storage
        assert info.message_count == 9
        assert (info.start_ns, info.end_ns) == (T0, T0 + 55_000_000)
        assert {name: (t.msgtype, t.count, t.latched) for name, t in info.topics.items()} == {
            '/task': ('std_msgs/msg/String', 1, True),
            '/joints': ('sensor_msgs/msg/JointState', 5, False),
            '/chunk': (CHUNK, 3, False)}
        items = list(bag.messages())
    stamps = [item.stamp_ns for item in items]
    assert stamps == sorted(stamps)  # time order across topics
    expected = ([(T0, '/task')] + [(T0 + 10_000_000 * i, '/joints') for i in range(5)]
                + [(T0 + 5_000_000 + 25_000_000 * i, '/chunk') for i in range(3)])
    assert sorted((item.stamp_ns, item.topic) for item in items) == sorted(expected)
    assert [item.topic for item in items][2:4] == ['/chunk', '/joints']  # 5 ms, 10 ms
    chunks = [item.message for item in items if item.topic == '/chunk']
    for index, message in enumerate(chunks):
        expected = _chunk(store, 0, index)
        assert stamp_to_ns(message.header.stamp) == T0 + 5_000_000 + 25_000_000 * index
        assert message.header.frame_id == 'base_link'
        assert list(message.action_names) == ['dx', 'dy', 'gripper']
        assert (message.horizon, message.action_dim) == (2, 3)
        assert message.step_period == 0.05
        np.testing.assert_array_equal(message.actions, expected.actions)
        assert (math.isnan(message.value) if index == 1 else message.value == expected.value)
        assert [stamp_to_ns(s) for s in message.source_stamps] == [
            stamp_to_ns(message.header.stamp) - 10]
        assert (message.seed, message.num_denoising_steps, message.model_id) == (
            7 + index, 5, f'model-{index}')
        assert message.inference_time == 0.125
    joints = [item.message for item in items if item.topic == '/joints']
    np.testing.assert_array_equal(joints[3].position, [0.1 * 3, -0.2 * 3])
    assert [item.message.data for item in items if item.topic == '/task'] == ['stack the cups']


def test_custom_types_hash_like_rosidl(tmp_path, store):
    """The typestore's RIHS01 hashes equal the ones rosidl generated into the install."""
    msg_dir = find_msg_dir()
    generated = sorted(msg_dir.glob('*.json'))
    if not generated:
        pytest.skip(f'no rosidl type description JSON next to {msg_dir} (plain pip install)')
    for path in generated:
        description = json.loads(path.read_text())
        for entry in description['type_hashes']:
            if entry['type_name'].startswith(PACKAGE + '/'):
                assert store.hash_rihs01(entry['type_name']) == entry['hash_string'], path
    _write_mixed(tmp_path / 'bag', store, 'mcap')
    action_chunk = json.loads((msg_dir / 'ActionChunk.json').read_text())['type_hashes'][0]
    with BagReader(tmp_path / 'bag') as bag:  # what the bag records for ros2 bag
        assert bag.info.topics['/chunk'].type_hash == action_chunk['hash_string']


def test_message_definitions_come_from_the_msg_files(tmp_path, monkeypatch):
    msg_dir = find_msg_dir()
    assert (msg_dir / 'ActionChunk.msg').is_file()
    # Without the ament index the installed share/ directory (or the checkout) is still found.
    monkeypatch.delenv('AMENT_PREFIX_PATH', raising=False)
    assert (find_msg_dir() / 'ActionChunk.msg').read_text() == (
        msg_dir / 'ActionChunk.msg').read_text()
    # Every .msg file of the directory is registered under the package name: nothing is
    # hard-coded.
    (tmp_path / 'Extra.msg').write_text('# test\nfloat64 speed\nstring[] names\n')
    custom = make_typestore(tmp_path)
    assert 'cosmos_policy_ros/msg/Extra' in custom.types
    assert CHUNK not in custom.types
    with pytest.raises(BagError, match='no .msg files in'):
        make_typestore(tmp_path / 'missing')


def test_topic_filter_and_window(tmp_path, store):
    _write_mixed(tmp_path / 'bag', store, 'sqlite3')
    with BagReader(tmp_path / 'bag') as bag:
        only = list(bag.messages(['/joints']))
        assert [m.topic for m in only] == ['/joints'] * 5
        # [10 ms, 30 ms): joints at 10 and 20 ms and the chunk at 30 ms is excluded (end open).
        start_ns, end_ns = bag.window_ns(0.010, 0.030)
        assert (start_ns, end_ns) == (T0 + 10_000_000, T0 + 30_000_000)
        window = list(bag.messages(start_ns=start_ns, end_ns=end_ns))
        assert [(m.topic, m.stamp_ns - T0) for m in window] == [
            ('/joints', 10_000_000), ('/joints', 20_000_000)]
        raw = list(bag.messages(['/chunk'], raw=True))
        assert all(isinstance(m.message, bytes) for m in raw)
        assert store.deserialize_cdr(raw[2].message, CHUNK).model_id == 'model-2'
        with pytest.raises(BagError, match='must be after'):
            bag.window_ns(0.5, 0.2)


def test_missing_topic_lists_the_available_ones(tmp_path, store):
    _write_mixed(tmp_path / 'bag', store, 'mcap')
    with BagReader(tmp_path / 'bag') as bag:
        with pytest.raises(BagError) as error:
            bag.messages(['/joints', '/camera/image'])
    text = str(error.value)
    assert "'/camera/image'" in text and str(tmp_path / 'bag') in text
    assert '/chunk, /joints, /task' in text


@pytest.mark.parametrize('storage', STORAGES)
def test_unknown_message_type_names_type_and_topic(tmp_path, storage):
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    # A bag without embedded definitions (as Humble-era recordings are).
    with Writer(tmp_path / 'bag', version=9, storage_plugin=plugin) as writer:
        connection = writer.add_connection('/mystery', 'my_pkg/msg/Mystery', msgdef='',
                                           rihs01='RIHS01_' + '0' * 64)
        writer.write(connection, T0, b'\x00\x01\x00\x00\x01\x02\x03\x04')
    with BagReader(tmp_path / 'bag') as bag:
        assert bag.info.topics['/mystery'].msgtype == 'my_pkg/msg/Mystery'  # listing works
        with pytest.raises(BagError) as error:
            bag.messages()
        raw = list(bag.messages(raw=True))  # raw bytes need no type
    assert "'my_pkg/msg/Mystery'" in str(error.value) and "'/mystery'" in str(error.value)
    assert raw[0].message == b'\x00\x01\x00\x00\x01\x02\x03\x04'


def test_types_outside_the_typestore_are_read_from_the_bag(tmp_path):
    # A bag written with a type our typestore does not have, but which it embeds.
    writer_store = make_typestore()
    writer_store.register(get_types_from_msg('float64 speed\nstring label\n',
                                             'other_pkg/msg/Thing'))
    with BagWriter(tmp_path / 'bag', storage='mcap', typestore=writer_store) as bag:
        bag.add_topic('/thing', 'other_pkg/msg/Thing')
        bag.write('/thing', T0, writer_store.types['other_pkg/msg/Thing'](speed=1.5,
                                                                          label='fast'))
    reader_store = make_typestore()
    assert 'other_pkg/msg/Thing' not in reader_store.types
    items = list(read_messages(tmp_path / 'bag', typestore=reader_store))
    assert (items[0].message.speed, items[0].message.label) == (1.5, 'fast')


def test_missing_and_non_bag_paths(tmp_path):
    with pytest.raises(BagError, match='does not exist') as error:
        BagReader(tmp_path / 'nowhere')
    assert str(tmp_path / 'nowhere') in str(error.value)
    (tmp_path / 'empty').mkdir()
    with pytest.raises(BagError, match='not a rosbag2 bag'):
        BagReader(tmp_path / 'empty')
    (tmp_path / 'notes.txt').write_text('hello')
    with pytest.raises(BagError, match='not a rosbag2 bag'):
        BagReader(tmp_path / 'notes.txt')
    (tmp_path / 'fake.mcap').write_bytes(b'this is not mcap')
    with pytest.raises(BagError, match='fake.mcap'):
        BagReader(tmp_path / 'fake.mcap').open()


@pytest.mark.parametrize('storage', STORAGES)
def test_bag_directory_without_metadata_is_read_from_its_storage_file(
        tmp_path, store, storage):
    _write_mixed(tmp_path / 'bag', store, storage)
    (tmp_path / 'bag' / 'metadata.yaml').unlink()  # a recording killed before closing
    items = list(read_messages(tmp_path / 'bag', typestore=store))
    assert len(items) == 9


def _big_bag(path, store, storage):
    """A bag of 40 images (~1.2 MB) so that truncation hits message data."""
    image = store.types['sensor_msgs/msg/Image']
    with BagWriter(path, storage=storage, typestore=store) as bag:
        bag.add_topic('/image', 'sensor_msgs/msg/Image')
        for i in range(40):
            data = np.full(100 * 100 * 3, i, dtype=np.uint8)
            bag.write('/image', T0 + i * 100_000_000, image(
                header=store.types['std_msgs/msg/Header'](stamp=ns_to_stamp(T0, store),
                                                          frame_id='cam'),
                height=100, width=100, encoding='rgb8', is_bigendian=0, step=300, data=data))


@pytest.mark.parametrize('storage', STORAGES)
@pytest.mark.parametrize('fraction', [0.1, 0.5, 0.9])
def test_truncated_bag_gives_an_error_naming_the_file(tmp_path, store, storage, fraction):
    _big_bag(tmp_path / 'bag', store, storage)
    (storage_file,) = storage_files(tmp_path / 'bag')
    with open(storage_file, 'r+b') as stream:
        stream.truncate(int(storage_file.stat().st_size * fraction))
    with pytest.raises(BagError) as error:
        with BagReader(tmp_path / 'bag', typestore=store) as bag:
            list(bag.messages())
    assert storage_file.name in str(error.value)
    assert 'corrupt or truncated' in str(error.value)


def test_truncation_found_while_reading_names_the_last_good_message(tmp_path, store):
    # sqlite3 opens a slightly truncated database and fails only when it reaches the end.
    _big_bag(tmp_path / 'bag', store, 'sqlite3')
    (storage_file,) = storage_files(tmp_path / 'bag')
    with open(storage_file, 'r+b') as stream:
        stream.truncate(storage_file.stat().st_size - 512)  # the last page of image data
    received = []
    with pytest.raises(BagError, match='corrupt or truncated') as error:
        with BagReader(tmp_path / 'bag', typestore=store) as bag:
            for item in bag.messages():
                received.append(item)
    assert 0 < len(received) < 40  # the messages before the damage were delivered
    assert f"after topic '/image' at log time {received[-1].stamp_ns}" in str(error.value)
    assert storage_file.name in str(error.value)


@pytest.mark.parametrize('storage', STORAGES)
@pytest.mark.parametrize('exception', [RuntimeError, KeyboardInterrupt])
def test_writer_keeps_everything_written_before_an_exception(
        tmp_path, store, storage, exception):
    with pytest.raises(exception):
        with BagWriter(tmp_path / 'bag', storage=storage, typestore=store) as bag:
            bag.add_topic('/joints', 'sensor_msgs/msg/JointState')
            for i in range(7):
                bag.write('/joints', T0 + i * 1_000_000, _joint_state(store, T0, i))
            raise exception('recorder crashed')
    assert (tmp_path / 'bag' / 'metadata.yaml').is_file()
    items = list(read_messages(tmp_path / 'bag', typestore=store))
    assert len(items) == 7
    np.testing.assert_array_equal(items[-1].message.position, [0.1 * 6, -0.2 * 6])


def test_writer_errors_name_topic_and_path(tmp_path, store):
    with BagWriter(tmp_path / 'bag', storage='mcap', typestore=store) as bag:
        with pytest.raises(BagError, match="'my_pkg/msg/Nope' is not in the typestore"):
            bag.add_topic('/x', 'my_pkg/msg/Nope')
        with pytest.raises(BagError, match="topic '/y' was not added"):
            bag.write('/y', T0, store.types['std_msgs/msg/String'](data='a'))
        bag.add_topic('/s', 'std_msgs/msg/String')
        with pytest.raises(BagError, match="cannot serialize the message for topic '/s'"):
            bag.write('/s', T0, _joint_state(store, T0, 0))
        with pytest.raises(BagError, match='already has type'):
            bag.add_topic('/s', 'std_msgs/msg/Bool')
    with pytest.raises(BagError, match='already exists'):
        BagWriter(tmp_path / 'bag', typestore=store).open()
    with pytest.raises(BagError, match='`storage` must be one of'):
        BagWriter(tmp_path / 'other', storage='rosbag1', typestore=store)


def test_read_info_and_format(tmp_path, store):
    _write_mixed(tmp_path / 'bag', store, 'mcap')
    info = read_info(tmp_path / 'bag')
    assert info.duration_ns == 55_000_000
    text = info.format()
    assert 'start:     1700000000.000000000' in text
    assert 'end:       1700000000.055000000' in text
    assert '/task' in text and '(latched)' in text
    assert bag_size(tmp_path / 'bag') == sum(
        os.path.getsize(p) for p in Path(tmp_path / 'bag').iterdir())
    # A single storage file can be opened directly as well.
    (storage_file,) = storage_files(tmp_path / 'bag')
    copy = tmp_path / 'copy.mcap'
    shutil.copy(storage_file, copy)
    assert read_info(copy).topics['/joints'].count == 5


def test_chunk_arrays_unpack_row_major_actions(tmp_path, store):
    _write_mixed(tmp_path / 'bag', store, 'mcap')
    items = list(read_messages(tmp_path / 'bag', ['/chunk'], typestore=store))
    arrays = chunk_arrays(items)
    assert arrays.actions.shape == (3, 2, 3)
    # actions[k * action_dim + j] is dimension j of action k.
    np.testing.assert_array_equal(arrays.actions[2], [[2.0, 2.5, 3.0], [3.5, 4.0, 4.5]])
    np.testing.assert_array_equal(arrays.stamps_ns - T0, [5_000_000, 30_000_000, 55_000_000])
    np.testing.assert_array_equal(arrays.log_ns, arrays.stamps_ns)
    assert arrays.action_names == ('dx', 'dy', 'gripper')
    assert math.isnan(arrays.value[1]) and arrays.value[2] == 0.5
    assert list(arrays.step_period) == [0.05] * 3 and arrays.model_ids[0] == 'model-0'
    items[1].message.horizon = 3
    with pytest.raises(BagError, match=f"'/chunk' at log time {T0 + 30_000_000} is 3 x 3"):
        chunk_arrays(items)


def test_action_stream_arrays(tmp_path, store):
    _write_mixed(tmp_path / 'bag', store, 'sqlite3')
    items = list(read_messages(tmp_path / 'bag', ['/joints'], typestore=store))
    stamps, values, names = action_stream_arrays(items, names=['b', 'a'])
    assert names == ('b', 'a')
    np.testing.assert_array_equal(values[4], [-0.2 * 4, 0.1 * 4])  # columns reordered by name
    np.testing.assert_array_equal(stamps - T0, np.arange(5) * 10_000_000)
    with pytest.raises(BagError, match=r"has no joint\(s\) \['c'\]"):
        action_stream_arrays(items, names=['a', 'c'])
    array_type = store.types['std_msgs/msg/Float64MultiArray']
    layout = store.types['std_msgs/msg/MultiArrayLayout'](dim=[], data_offset=0)
    arrays = [BagMessage('/act', 'std_msgs/msg/Float64MultiArray', T0 + i,
                         array_type(layout=layout, data=np.arange(3.0) + i))
              for i in range(4)]
    stamps, values, names = action_stream_arrays(arrays)
    assert names == ('a0', 'a1', 'a2') and values.shape == (4, 3) and stamps[3] == T0 + 3
