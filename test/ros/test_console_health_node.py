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
