"""policy_node's EventsExecutor (SlicedEventsExecutor, the default `executor`): work of another
thread runs in the executor's own, and a node whose entities change that way while it spins
leaves the process to end cleanly (rclpy 9.1.2 aborts when an entity destroyed in another
thread interrupts the executor's registration of callbacks: docs/performance.md section 8).
"""
import subprocess
import sys
import threading

import pytest

rclpy = pytest.importorskip('rclpy')

pytestmark = [pytest.mark.ros]


@pytest.fixture
def spinning():
    """(node, executor) spinning in a background thread; stopped and destroyed afterwards."""
    from cosmos_policy_ros.ros.policy_node import make_executor
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node('events_run', context=context)
    executor = make_executor('events', context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    yield node, executor
    executor.shutdown()
    spinner.join(30)
    node.destroy_node()
    rclpy.try_shutdown(context=context)
    assert not spinner.is_alive()


def test_run_calls_in_the_executor_thread_and_returns_or_raises(spinning):
    _, executor = spinning
    caller = threading.get_ident()
    ran_in = executor.run(threading.get_ident, timeout=30)
    assert ran_in != caller

    def fail():
        raise KeyError('from the executor thread')
    with pytest.raises(KeyError, match='from the executor thread'):
        executor.run(fail, timeout=30)
    assert executor.run(lambda: 7, timeout=30) == 7  # still spinning after an error


CHURN = '''
import sys, threading
import rclpy
from std_msgs.msg import String
from cosmos_policy_ros.ros.policy_node import make_executor
sys.setswitchinterval(1e-6)  # frequent thread switches: the race, were it possible, shows
context = rclpy.Context()
rclpy.init(context=context)
node = rclpy.create_node('churn', context=context)
executor = make_executor('events', context=context)
executor.add_node(node)
errors = []
def spin():
    try:
        executor.spin()
    except Exception as error:
        errors.append(repr(error))
spinner = threading.Thread(target=spin)
spinner.start()
def churn():
    subscriptions = [node.create_subscription(String, f't{i}', lambda m: None, 1)
                     for i in range(5)]
    for subscription in subscriptions:
        node.destroy_subscription(subscription)
for _ in range(2000):
    executor.run(churn, timeout=60)
executor.shutdown()
spinner.join()
node.destroy_node()
del executor
rclpy.try_shutdown(context=context)
print('errors', errors)
'''


def test_entities_changed_through_run_while_spinning_end_cleanly():
    result = subprocess.run([sys.executable, '-c', CHURN], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'errors []' in result.stdout, result.stdout
    assert 'callbacks remaining' not in result.stdout + result.stderr
