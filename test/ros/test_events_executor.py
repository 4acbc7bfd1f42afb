"""policy_node's EventsExecutor (SlicedEventsExecutor, the default `executor`): work of another
thread runs in the executor's own, and a node whose entities change that way while it spins
leaves the process to end cleanly (rclpy 9.1.2 aborts when an entity destroyed in another
thread interrupts the executor's registration of callbacks: docs/performance.md section 8);
and its ROS-time timers under use_sim_time are called at a lockstep sim's /clock.
"""
import subprocess
import sys
import threading
import time

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


# --- ROS-time timers under use_sim_time (a lockstep sim's /clock) ------------------------------
SIM_PERIOD = 0.1  # s: the control timer of config/sim.yaml (rate 10 Hz)
SIM_STEPS_NS = [2_200_000_000 + k * 400_000_000 for k in range(3)]  # decisions, 4 steps apart


@pytest.fixture
def sim_time():
    """A use_sim_time node with a ROS-time timer made before it spins (as policy_node activates
    before spin_nodes), spun by make_executor('events') in a background thread, and a /clock
    publisher in a context of its own. Yields (node, executor, publish_clock, calls): calls
    maps a timer's name to the ROS times (ns) of its calls."""
    from rclpy.parameter import Parameter
    from rosgraph_msgs.msg import Clock

    from cosmos_policy_ros.ros.policy_node import make_executor
    contexts = [rclpy.Context(), rclpy.Context()]
    for context in contexts:
        rclpy.init(context=context)
    node = rclpy.create_node('sim_time_timers', context=contexts[0],
                             parameter_overrides=[Parameter('use_sim_time', value=True)])
    calls = {'control': []}
    node.create_timer(SIM_PERIOD, lambda: calls['control'].append(
        node.get_clock().now().nanoseconds))
    executor = make_executor('events', context=contexts[0])
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    sim = rclpy.create_node('sim_clock', context=contexts[1])
    publisher = sim.create_publisher(Clock, '/clock', 10)

    def publish_clock(ns):
        message = Clock()
        message.clock.sec, message.clock.nanosec = divmod(ns, 1_000_000_000)
        publisher.publish(message)
    yield node, executor, publish_clock, calls
    executor.shutdown()
    spinner.join(30)
    node.destroy_node()
    sim.destroy_node()
    for context in contexts:
        rclpy.try_shutdown(context=context)
    assert not spinner.is_alive()


def _clock_until(publish_clock, ns, condition, timeout=60.0):
    """Publish /clock `ns` until condition() (resent: the first may precede discovery)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f'nothing after /clock {ns} within {timeout} s'
        publish_clock(ns)
        time.sleep(0.05)


def test_a_timer_made_before_the_first_clock_ticks_at_each_lockstep_clock(sim_time):
    node, _, publish_clock, calls = sim_time
    assert node.get_clock().now().nanoseconds == 0  # sim time, no /clock yet
    for step in SIM_STEPS_NS:
        _clock_until(publish_clock, step, lambda step=step: step in calls['control'])
    # One call per decision, at its clock: nothing before the first /clock, none between.
    assert calls['control'] == SIM_STEPS_NS


def test_a_timer_made_at_sim_time_t_first_ticks_one_period_later(sim_time):
    node, executor, publish_clock, calls = sim_time
    first = SIM_STEPS_NS[0]
    _clock_until(publish_clock, first, lambda: first in calls['control'])
    calls['late'] = []
    executor.run(lambda: node.create_timer(SIM_PERIOD, lambda: calls['late'].append(
        node.get_clock().now().nanoseconds)), timeout=30)
    due = first + round(SIM_PERIOD * 1e9)
    _clock_until(publish_clock, due, lambda: bool(calls['late']))
    # Not at `first` (its clock when made): a lockstep sim that waits for a tick at the time
    # it published last would wait forever; policy_node makes its timer before the first.
    assert calls['late'] == [due]
