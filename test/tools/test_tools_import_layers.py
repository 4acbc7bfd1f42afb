"""The offline tools (bag I/O, sample data, metrics, plots) work with only the pip install:
no rclpy, no ROS message packages, no generated `cosmos_policy_ros.msg`."""
import subprocess
import sys
import textwrap

OFFLINE = ['cosmos_policy_ros.tools.bags', 'cosmos_policy_ros.tools.sample_episode',
           'cosmos_policy_ros.tools.metrics', 'cosmos_policy_ros.tools.plots',
           # These import ROS only inside the functions that talk to the graph.
           'cosmos_policy_ros.tools.player', 'cosmos_policy_ros.tools.replay']
ROS = ['rclpy', 'rosgraph_msgs', 'sensor_msgs', 'std_msgs', 'geometry_msgs',
       'builtin_interfaces', 'diagnostic_msgs', 'cosmos_policy_ros.msg', 'torch']


def _run_poisoned(body, poisoned=ROS):
    code = textwrap.dedent(f'''
        import importlib, sys
        for name in {poisoned!r}:
            sys.modules[name] = None  # any import of it raises ImportError
        for name in {poisoned!r}:
            try:
                importlib.import_module(name)
            except ImportError:
                pass
            else:
                raise SystemExit('poisoning did not work for ' + name)
    ''') + textwrap.dedent(body) + textwrap.dedent(f'''
        leaked = [m for m in sys.modules for p in {poisoned!r}
                  if (m == p or m.startswith(p + '.')) and sys.modules[m] is not None]
        assert not leaked, leaked
    ''')
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)


def test_offline_tools_import_and_work_without_ros(tmp_path):
    body = f'''
        for name in {OFFLINE!r}:
            importlib.import_module(name)
        import numpy as np
        from cosmos_policy_ros.tools import bags, metrics, plots, replay, sample_episode
        # A full offline round: sample bag -> read -> metrics -> plot.
        assert replay.main(['make-sample', {str(tmp_path / 'bag')!r}, '--preset', 'libero',
                            '--duration', '1', '--image-size', '32']) == 0
        items = list(bags.read_messages({str(tmp_path / 'bag')!r}, ['/recorded_actions']))
        stamps = np.array([i.stamp_ns for i in items])
        actions = np.stack([i.message.data for i in items])
        chunks = np.stack([actions[i:i + 4] for i in range(0, 16, 4)])
        match = metrics.match_actions(stamps[0:16:4], chunks, 0.05, stamps, actions)
        assert metrics.summarize(match)['mae_mean'] == 0.0
        plots.plot_value({str(tmp_path / 'v.png')!r}, stamps[:4], [0.1, 0.2, 0.3, 0.4])
    '''
    result = _run_poisoned(body)
    assert result.returncode == 0, result.stdout + result.stderr


def test_poisoning_is_detected():
    # Negative control: importing the ROS side of the player must fail under the poison.
    result = _run_poisoned('''
        from cosmos_policy_ros.tools.player import message_class
        message_class('sensor_msgs/msg/Image', '/image')
    ''')
    assert result.returncode != 0 and 'is not installed for rclpy' in result.stderr
    result = _run_poisoned('import rclpy.node')
    assert result.returncode != 0
