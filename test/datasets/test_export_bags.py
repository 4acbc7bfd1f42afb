"""cosmos-policy-dataset export of make-sample bags, every preset, read by an independent reader.

The reader shares no code with the writer: the bags are read with rosbags' AnyReader, the
exported files with h5py (the layouts named here literally, as the upstream classes name them),
JPEG bytes made here with PIL, MP4 decoded here with PyAV.
"""
import dataclasses
import io
import json
from pathlib import Path

import av
import h5py
import numpy as np
from PIL import Image
import pytest
from rosbags.highlevel import AnyReader
from rosbags.typesys import get_typestore, Stores
import yaml

from cosmos_policy_ros.bags import sample_episode as se
from cosmos_policy_ros.bags.sample_robots import ROBOTS
from cosmos_policy_ros.cli.dataset import main as dataset_main
from cosmos_policy_ros.engine.images import ImagePipelineConfig, preprocess_image

STEP_HZ = {'libero': 20.0, 'robocasa': 20.0, 'aloha': 25.0}  # 1 / step_period of the configs
# The upstream names (NVlabs/cosmos-policy datasets/*_dataset.py), per camera of the node.
DEMO_IMAGES = {
    'libero': {'primary': 'data/demo_0/obs/agentview_rgb',
               'wrist': 'data/demo_0/obs/eye_in_hand_rgb'},
    'robocasa': {'primary': 'data/demo_0/obs/robot0_agentview_left_rgb',
                 'secondary': 'data/demo_0/obs/robot0_agentview_right_rgb',
                 'wrist': 'data/demo_0/obs/robot0_eye_in_hand_rgb'},
    'aloha': {'primary': 'observations/images/cam_high',
              'left_wrist': 'observations/images/cam_left_wrist',
              'right_wrist': 'observations/images/cam_right_wrist'}}
VECTORS = {'libero': ('data/demo_0/actions', 'data/demo_0/robot_states'),
           'robocasa': ('data/demo_0/actions', 'data/demo_0/robot_states'),
           'aloha': ('action', 'observations/qpos')}


def make_bag(tmp_path, preset, *, storage='mcap', compressed=False, duration=1.0, size=32):
    # Seed 5: the LIBERO/RoboCasa gripper command changes within the first second (a constant
    # action dimension would fail the check: the classes' normalization divides by max - min).
    config = se.EpisodeConfig(preset=preset, duration=duration, camera_rate=STEP_HZ[preset],
                              joint_rate=50.0, image_size=size, compressed=compressed, seed=5,
                              params_file=se.preset_params_file(preset))
    path = tmp_path / f'{preset}_bag'
    se.make_sample(path, config, storage=storage)
    return path, config


def compressed_config(tmp_path, preset):
    """The preset's parameter file with every camera on its compressed transport."""
    data = yaml.safe_load(Path(se.preset_params_file(preset)).read_text())
    for camera in data['/**']['ros__parameters']['camera'].values():
        camera['transport'] = 'compressed'
        camera['topic'] += '/compressed'
    path = tmp_path / f'{preset}_compressed.yaml'
    path.write_text(yaml.safe_dump(data))
    return str(path)


def export(bag, preset, out, *extra, config=None):
    code = dataset_main(['export', str(bag), '--config', config or se.preset_params_file(preset),
                         '--format', preset, '--out', str(out), '--actions-topic',
                         '/recorded_actions', '--val-fraction', '0', '--t5-stand-in', '0',
                         '--no-progress', *extra])
    assert code == 0
    return json.loads((out / 'export.json').read_text())


def bag_messages(path):
    """{topic: {header stamp ns (log time for arrays): message}} read with rosbags alone."""
    store = get_typestore(Stores.ROS2_KILTED)
    topics = {}
    with AnyReader([Path(path)], default_typestore=store) as reader:
        for connection, log_ns, raw in reader.messages():
            message = reader.deserialize(raw, connection.msgtype)
            header = getattr(message, 'header', None)
            stamp = log_ns if header is None else header.stamp.sec * 10**9 + header.stamp.nanosec
            topics.setdefault(connection.topic, {})[stamp] = message
    return topics


def bag_rgb(message):
    if hasattr(message, 'format'):  # CompressedImage
        return np.asarray(Image.open(io.BytesIO(bytes(message.data))).convert('RGB'))
    return np.frombuffer(bytes(message.data), np.uint8).reshape(message.height, message.width,
                                                                3)


def jpeg95(image):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format='JPEG', quality=95)
    return buffer.getvalue()


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / mse) if mse else np.inf


def expected_proprio(topics, names, stamps, preset):
    """The node's proprio for stamps of its streams, straight from the messages."""
    if preset == 'aloha':
        joints = topics['/joint_states'][stamps['arms']]
        index = [list(joints.name).index(n) for n in names['arms']]
        return np.asarray(joints.position)[index]
    joints = topics['/joint_states'][stamps['gripper']]
    index = [list(joints.name).index(n) for n in names['gripper']]
    pose = topics['/eef_pose'][stamps['eef']].pose
    return np.concatenate([np.asarray(joints.position)[index],
                           [pose.position.x, pose.position.y, pose.position.z,
                            pose.orientation.x, pose.orientation.y, pose.orientation.z,
                            pose.orientation.w]])


JOINTS = {'aloha': {'arms': [f'{side}_{j}' for side in ('left', 'right') for j in (
    'waist', 'shoulder', 'elbow', 'forearm_roll', 'wrist_angle', 'wrist_rotate', 'gripper')]},
    'libero': {'gripper': ['gripper0_finger_joint1', 'gripper0_finger_joint2']},
    'robocasa': {'gripper': ['gripper0_right_finger_joint1', 'gripper0_right_finger_joint2']}}


@pytest.mark.parametrize('preset, storage, bag_storage, compressed', [
    ('libero', 'raw', 'sqlite3', False), ('robocasa', 'jpeg', 'mcap', True),
    ('aloha', 'mp4', 'mcap', False)])
def test_every_exported_value_is_the_bags_message_at_the_chosen_stamp(
        tmp_path, preset, storage, bag_storage, compressed):
    bag, config = make_bag(tmp_path, preset, storage=bag_storage, compressed=compressed)
    out = tmp_path / 'out'
    record = export(bag, preset, out, '--image-storage', storage, '--images', 'none',
                    config=compressed_config(tmp_path, preset) if compressed else None)
    topics = bag_messages(bag)
    frames = len(se.sample_stamps(config.start_ns, STEP_HZ[preset], config.duration))
    (entry,) = record['episodes']
    assert entry['steps'] == frames and entry['skipped_steps'] == {}
    assert entry['task'] == ROBOTS[preset].task and entry['success'] is True
    demo = out / entry['demo_file']
    actions_name, proprio_name = VECTORS[preset]
    with h5py.File(demo, 'r') as h5:
        own = h5['cosmos_policy_ros' if preset == 'aloha' else 'data/demo_0/cosmos_policy_ros']
        streams = list(own.attrs['streams'])
        stamps = own['stamps_ns'][:]
        action_stamps = own['action_stamps_ns'][:]
        actions, proprio = h5[actions_name][:], h5[proprio_name][:]
        assert actions.shape[0] == proprio.shape[0] == frames
        assert np.all(actions.max(0) > actions.min(0)) and np.all(proprio.max(0) >
                                                                  proprio.min(0))
        references = stamps[:, streams.index('primary')]
        assert np.array_equal(references, se.sample_stamps(config.start_ns, STEP_HZ[preset],
                                                           config.duration))
        # The action recorded at the frame's stamp (same rate and start in the sample bag).
        assert np.array_equal(action_stamps, references)
        joint_stamps = np.array(sorted(topics['/joint_states']))
        for t in range(frames):
            chosen = dict(zip(streams, stamps[t]))
            # Proprio members: the joint state closest to the reference frame, the newer on a
            # tie (the sync rule; 50 Hz joints, 20-25 Hz frames: ties happen).
            distance = np.abs(joint_stamps - references[t])
            closest = joint_stamps[distance == distance.min()].max()
            assert all(chosen[name] == closest for name in JOINTS[preset])
            recorded = topics['/recorded_actions'][action_stamps[t]]
            values = (np.asarray(recorded.position) if preset == 'aloha'
                      else np.asarray(recorded.data))
            assert np.array_equal(actions[t], values)  # float64, exact
            assert np.array_equal(proprio[t], expected_proprio(topics, JOINTS[preset], chosen,
                                                               preset))
        for camera, name in DEMO_IMAGES[preset].items():
            topic = se.bag_names(config).camera_topics[camera]
            source = [bag_rgb(topics[topic][stamp])
                      for stamp in stamps[:, streams.index(camera)]]
            if storage == 'raw':
                assert np.array_equal(h5[name][:], np.stack(source))
            elif storage == 'jpeg':
                stored = h5[name + '_jpeg']
                assert all(stored[t].tobytes() == jpeg95(source[t]) for t in range(frames))
            else:
                video = demo.parent / h5[f'observations/video_paths/{name.rsplit("/")[-1]}'][
                    ()].decode()
                with av.open(str(video)) as container:
                    decoded = [f.to_ndarray(format='rgb24') for f in container.decode(video=0)]
                assert len(decoded) == frames
                assert min(psnr(d, s) for d, s in zip(decoded, source)) >= 40.0


def test_the_camera_pipeline_stores_what_the_node_gives_the_model(tmp_path):
    """--images camera (the default): the node's image pipeline before its crop, unflipped:
    for LIBERO a JPEG round trip at quality 95, then 224 x 224."""
    bag, _ = make_bag(tmp_path, 'libero', duration=1.0, size=48)
    out = tmp_path / 'out'
    record = export(bag, 'libero', out)
    topics = bag_messages(bag)
    pipeline = dataclasses.replace(ImagePipelineConfig.preset('libero'), flip_vertical=False,
                                   crop_area=None)
    with h5py.File(out / record['episodes'][0]['demo_file'], 'r') as h5:
        stored = h5['data/demo_0/obs/agentview_rgb'][:]
        own = h5['data/demo_0/cosmos_policy_ros']
        stamps = own['stamps_ns'][:, list(own.attrs['streams']).index('primary')]
    assert stored.shape == (len(stamps), 224, 224, 3)
    for frame, stamp in zip(stored, stamps):
        message = topics['/agentview/image_raw'][stamp]
        assert np.array_equal(frame, preprocess_image(bag_rgb(message), pipeline))
