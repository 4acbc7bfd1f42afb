"""process_lifetime.py without ROS: the parent watch and the stop-signal handlers."""
import os
import signal
import subprocess
import sys
import textwrap
import threading

from cosmos_policy_ros.process_lifetime import ParentWatch

DEADLINE = 60.0  # seconds: a failure guard, not a timing


def test_parent_watch_calls_back_once_when_the_parent_changes():
    parents = [100]
    gone = []
    called = threading.Event()

    def on_gone(pid):
        gone.append(pid)
        called.set()

    watch = ParentWatch(on_gone, period=0.01, getppid=lambda: parents[0]).start()
    assert watch.watching and watch.parent == 100
    parents[0] = 1  # re-parented to init: the parent ended
    assert called.wait(DEADLINE)
    watch.stop()
    assert gone == [100]


def test_nothing_is_watched_without_a_parent():
    watch = ParentWatch(lambda pid: None, getppid=lambda: 1).start()
    assert not watch.watching and watch._thread is None
    watch.stop()


def test_a_second_sigint_during_shutdown_is_absorbed(tmp_path):
    # A child process that handles stop signals as policy_node does (without ROS: the first
    # signal sets the event rclpy's handler would, here the no-op handler only). It keeps
    # shutting down slowly while more SIGINTs come, then ends with 0.
    script = tmp_path / 'child.py'
    script.write_text(textwrap.dedent('''
        import os, signal, sys, time
        from cosmos_policy_ros import process_lifetime
        process_lifetime.absorb_stop_signals()
        print('ready', flush=True)
        sys.stdin.readline()          # the test sends signals, then a line
        time.sleep(0.2)               # a slow shutdown: more signals arrive meanwhile
        process_lifetime.ignore_stop_signals()
        print('done', flush=True)
    '''))
    child = subprocess.Popen([sys.executable, str(script)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    assert child.stdout.readline() == 'ready\n'
    for signum in (signal.SIGINT, signal.SIGINT, signal.SIGTERM):
        child.send_signal(signum)
    child.stdin.write('go\n')
    child.stdin.flush()
    assert child.stdout.readline() == 'done\n'
    child.send_signal(signal.SIGINT)  # during finalization: ignored
    assert child.wait(DEADLINE) == 0


def test_a_stop_signal_absorbed_is_remembered(tmp_path):
    # Before rclpy's handler exists, only this one sees a stop: the node asks stop_requested()
    # once rclpy is up (ros/policy_node.py start_process).
    script = tmp_path / 'child.py'
    script.write_text(textwrap.dedent('''
        import os, signal
        from cosmos_policy_ros import process_lifetime
        process_lifetime.absorb_stop_signals()
        before = process_lifetime.stop_requested()
        os.kill(os.getpid(), signal.SIGTERM)
        print(before, process_lifetime.stop_requested(), flush=True)
    '''))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            env=dict(os.environ), timeout=DEADLINE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['False', 'True']
