"""The offline capabilities (bag I/O, sample data, playback pacing, offline evaluation, metrics,
plots) and cosmos-policy-replay's offline subcommands work with only the pip install: no rclpy,
no ROS message packages, no generated `cosmos_policy_ros.msg`."""
import subprocess
import sys
import textwrap

OFFLINE = ['cosmos_policy_ros.bags.reader', 'cosmos_policy_ros.bags.writer',
           'cosmos_policy_ros.bags.sample_episode', 'cosmos_policy_ros.bags.playback',
           'cosmos_policy_ros.evaluation.evaluate', 'cosmos_policy_ros.evaluation.metrics',
           'cosmos_policy_ros.evaluation.plots',
           # play imports the ROS player only when it runs.
           'cosmos_policy_ros.cli.replay']
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
        from cosmos_policy_ros.bags.reader import read_messages
        from cosmos_policy_ros.cli import replay
        from cosmos_policy_ros.evaluation import metrics, plots
        # A full offline round: sample bag -> read -> metrics -> plot.
        assert replay.main(['make-sample', {str(tmp_path / 'bag')!r}, '--preset', 'libero',
                            '--duration', '1', '--image-size', '32']) == 0
        items = list(read_messages({str(tmp_path / 'bag')!r}, ['/recorded_actions']))
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
    # Negative control: the ROS side of the player must fail to import under the poison.
    result = _run_poisoned('import cosmos_policy_ros.ros.player')
    assert result.returncode != 0 and 'import of rclpy halted' in result.stderr
    result = _run_poisoned('import rclpy.node')
    assert result.returncode != 0
