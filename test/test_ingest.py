"""The ingestion and replanning rules the node and the offline evaluator share."""
from types import SimpleNamespace

import numpy as np

from cosmos_policy_ros.control_loop import input_streams, replan_due
from cosmos_policy_ros.node_config import config_from_parameters
from cosmos_policy_ros.sync import SyncBuffer

S = 1_000_000_000


def _config(**changes):
    parameters = {
        'model_path': '/models/libero',
        'cameras': ['wrist', 'primary'],
        'camera': {'primary': {'transport': 'compressed'}},
        'proprio_sources': ['gripper', 'eef'],
        'proprio': {'gripper': {'type': 'joint_state', 'joints': ['finger_l', 'finger_r']},
                    'eef': {'type': 'pose'}},
        'action_names': ['dx', 'dy', 'dz', 'droll', 'dpitch', 'dyaw', 'gripper'],
    }
    parameters.update(changes)
    return config_from_parameters(parameters)


def _stamp(stamp_ns):
    sec, nanosec = divmod(stamp_ns, S)
    return SimpleNamespace(sec=sec, nanosec=nanosec)


def test_streams_follow_the_configuration_in_order():
    streams = input_streams(_config())
    assert [(s.name, s.topic, s.msg_type) for s in streams] == [
        ('wrist', 'wrist/image_raw', 'sensor_msgs/msg/Image'),
        ('primary', 'primary/image_raw/compressed', 'sensor_msgs/msg/CompressedImage'),
        ('gripper', 'joint_states', 'sensor_msgs/msg/JointState'),
        ('eef', 'eef/pose', 'geometry_msgs/msg/PoseStamped'),
    ]


def test_ingest_converts_and_stores_or_names_the_drop():
    gripper = input_streams(_config())[2]
    buffer = SyncBuffer(['gripper'], 'gripper', tolerance_ns=S, max_age_ns=10 * S)
    msg = SimpleNamespace(header=SimpleNamespace(stamp=_stamp(5 * S)),
                          name=['x', 'finger_r', 'finger_l'], position=[9.0, 0.25, 0.5],
                          velocity=[], effort=[])
    assert gripper.ingest(msg, buffer) == ('', '')
    stamp, payload = buffer.newest('gripper')
    assert stamp == 5 * S
    np.testing.assert_array_equal(payload, [0.5, 0.25])  # configured order, not message order
    msg.header.stamp = _stamp(0)
    assert gripper.ingest(msg, buffer)[0] == 'zero_stamp'
    msg.header.stamp = _stamp(6 * S)
    msg.name = ['finger_l']
    msg.position = [0.1]
    reason, detail = gripper.ingest(msg, buffer)
    assert reason and 'finger_r' in detail
    assert buffer.newest('gripper')[0] == 5 * S  # nothing stored for the bad ones


def test_replan_due_every_tick_and_steps_left():
    every = SimpleNamespace(replan_mode='every_tick')
    assert replan_due(0, (10 * S, 16), every)
    config = SimpleNamespace(replan_mode='steps_left', step_period=0.1, replan_threshold=2)
    executing = (10 * S, 16)  # steps 0..15 run at 10.0, 10.1, ..., 11.5 s
    assert replan_due(10 * S, None, config)
    assert not replan_due(10 * S, executing, config)  # 16 left
    assert not replan_due(11_300_000_000 - 1, executing, config)  # 12 elapsed: 4 left
    assert replan_due(11_400_000_000, executing, config)  # 14 elapsed: 2 left
    assert not replan_due(10 * S - S // 2, executing, config)  # stamped slightly ahead
    assert replan_due(10 * S - S - 1, executing, config)  # clock went back: bag loop


def test_acceleration_parameters_become_the_factory_argument():
    assert _config().acceleration() is None
    assert _config(compile_network=True).acceleration() == {
        'compile': True, 'cuda_graphs': False, 'attention_backend': None}
    assert _config(attention_backend='_native_flash').acceleration()['attention_backend'] == (
        '_native_flash')
