"""The node's console says what it waits for (cosmos_policy_ros/console_health.py, hooked into
policy_node): a topic nobody publishes is named with its publisher count."""
import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_a_topic_without_publishers_is_named_on_the_console(
        start_node, write_setup, harness, client_factory):
    params = write_setup(harness.libero_parameters(), {'layout': {'preset': 'libero'}})
    node = start_node(params)
    client = client_factory()
    # With no input the watchdog trips too (an error line, then warnings: different levels
    # from one hook, which rclpy allows only from distinct call sites).
    expected = ('waiting for wrist: no message yet on wrist/image_raw for',
                '(0 publishers: is the topic right, or remapped?)',
                'watchdog: ERROR, no chunk published for')
    # Bounded wait (a failure guard): the line comes quiet_after (5 s) after activation.
    assert client.spin_until(lambda: all(part in node.output for part in expected), 120,
                             process=node), node.output
    assert 'watchdog: armed' in node.output
    assert node.stop() == 0, node.output


def test_a_missing_task_and_a_dropped_stream_are_named_at_once(
        start_node, write_setup, harness, client_factory):
    import numpy as np

    params = write_setup(harness.libero_parameters(task=''), {'layout': {'preset': 'libero'}})
    node = start_node(params)
    client = client_factory()
    task_line = ('waiting for a task: publish on `task` (std_msgs/String) or set the `task` '
                 'parameter')
    # The first report after activation (diagnostics_period 1 s) names the missing task.
    assert client.spin_until(lambda: task_line in node.output, 120, process=node), node.output

    def frame():  # every stream arrives; the wrist camera's encoding is not supported
        stamp = harness.now_ns()
        client.image('wrist/image_raw', stamp, np.zeros((24, 32, 3), np.uint8),
                     encoding='yuv422')
        client.jpeg('primary/image_raw/compressed', stamp, np.full((24, 32, 3), 90, np.uint8))
        client.joints('joint_states', stamp, ['finger_l', 'finger_r'], [0.01, -0.01])
        client.pose('eef_pose', stamp, [0.4, 0.1, 0.9], [0.0, 0.0, 0.6, 0.8])

    client.task('stack the cups')
    console = 'wrist: arriving but dropped on wrist/image_raw for'

    def reported():
        parts = client.latest_diagnostics()
        return (console in node.output and parts
                and parts['inputs'][1].startswith('wrist: arriving but dropped: encoding')
                and 'dropped: wrist: arriving but dropped' in parts['control loop'][2].get(
                    'last_skip_detail', ''))

    assert client.spin_until(reported, 120, every=frame, process=node, period=0.1), (
        node.output + str(client.latest_diagnostics()))
    assert 'waiting for wrist' not in node.output  # it arrives: never called missing
    assert node.stop() == 0, node.output
