"""The generated messages: fields as documented, and a real trip between two processes."""
import math
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

PUBLISHER = textwrap.dedent('''
    import math, sys, time
    import rclpy
    from builtin_interfaces.msg import Time
    from cosmos_policy_ros.msg import ActionChunk
    rclpy.init()
    node = rclpy.create_node('chunk_smoke_publisher')
    pub = node.create_publisher(ActionChunk, 'smoke_chunk', 10)
    msg = ActionChunk()
    msg.header.stamp.sec, msg.header.stamp.nanosec = 12, 345
    msg.header.frame_id = 'base_link'
    msg.action_names = ['dx', 'dy', 'gripper']
    msg.horizon, msg.action_dim, msg.step_period = 2, 3, 0.05
    msg.actions = [0.5, -1.0, 1.0, 0.25, 2.0, -1.0]
    msg.value = math.nan
    msg.source_stamps = [Time(sec=12, nanosec=345), Time(sec=12, nanosec=300)]
    msg.source_names = ['primary', 'joint_states']
    msg.seed, msg.num_denoising_steps, msg.inference_time = 7, 5, 0.125
    msg.model_id = 'smoke'
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pub.publish(msg)
        rclpy.spin_once(node, timeout_sec=0.05)
    ''')


@pytest.mark.ros
def test_message_fields_and_defaults():
    from cosmos_policy_ros.msg import ActionChunk, ValueEstimate
    chunk = ActionChunk()
    for field in ('header', 'action_names', 'horizon', 'action_dim', 'step_period', 'actions',
                  'value', 'source_stamps', 'source_names', 'seed', 'num_denoising_steps',
                  'inference_time', 'model_id'):
        assert hasattr(chunk, field), field
    chunk.actions = np.arange(6, dtype=np.float32)
    assert list(chunk.actions) == [0, 1, 2, 3, 4, 5]
    value = ValueEstimate()
    for field in ('header', 'value', 'candidate_values', 'selected_candidate', 'model_id'):
        assert hasattr(value, field), field
    value.candidate_values = [0.25, 1.0 / 3.0]
    assert list(value.candidate_values) == [0.25, np.float32(1.0 / 3.0)]  # float32[] storage


@pytest.mark.ros
@pytest.mark.slow
def test_action_chunk_crosses_processes(ros_context, ros_env):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from cosmos_policy_ros.msg import ActionChunk

    node = rclpy.create_node('chunk_smoke_subscriber', context=ros_context)
    received = []
    node.create_subscription(ActionChunk, 'smoke_chunk', received.append, 10)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    publisher = subprocess.Popen([sys.executable, '-c', PUBLISHER], env=ros_env,
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 25
        while not received and time.monotonic() < deadline and publisher.poll() is None:
            executor.spin_once(timeout_sec=0.1)
    finally:
        publisher.kill()
        output = publisher.communicate()[0]
        executor.shutdown()
        node.destroy_node()
    assert received, 'no ActionChunk arrived from the publisher process:\n' + output
    msg = received[0]
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (12, 345)
    assert msg.header.frame_id == 'base_link'
    assert list(msg.action_names) == ['dx', 'dy', 'gripper']
    assert (msg.horizon, msg.action_dim) == (2, 3)
    assert msg.step_period == pytest.approx(0.05)
    np.testing.assert_array_equal(np.asarray(msg.actions).reshape(2, 3),
                                  [[0.5, -1.0, 1.0], [0.25, 2.0, -1.0]])
    assert math.isnan(msg.value)
    assert [(t.sec, t.nanosec) for t in msg.source_stamps] == [(12, 345), (12, 300)]
    assert list(msg.source_names) == ['primary', 'joint_states']
    assert (msg.seed, msg.num_denoising_steps, msg.model_id) == (7, 5, 'smoke')
    assert msg.inference_time == pytest.approx(0.125)
