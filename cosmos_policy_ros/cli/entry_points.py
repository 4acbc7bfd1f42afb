"""The console scripts (resource/console_scripts): each runs its tool's main() and, when a
dependency is not installed, says in one line what to install instead of a traceback.

    policy_node            ROS 2 (rclpy) and the engine
    policy_server          ROS 2 and the engine (several robots, one model: fleet/)
    cosmos-policy-convert  the engine (pip extra `engine`)
    cosmos-policy-synthetic  the engine
    cosmos-policy-replay   the tools (pip extra `tools`); `play` needs ROS 2, `eval` the engine
    cosmos-policy-train    the engine (trains the simulated arm's model)
    cosmos-policy-sim      ROS 2 and the engine (the simulated arm, closed-loop eval)
    cosmos-policy-dataset  the engine, the tools and the `datasets` extra (h5py, PyAV, pyarrow)

Stdlib only: each console-script module is imported when its script runs.
"""
import importlib
import sys

ROS_HINT = ('ROS 2 (rclpy) is not importable: source a ROS 2 distro (Jazzy or Kilted) and its '
            'workspace, or run `. scripts/setup_env.sh` in the checkout (plain `pip install .` '
            'has no ROS)')
# Top-level module name -> the pip extra of this package that installs it.
EXTRAS = {'torch': 'engine', 'diffusers': 'engine', 'safetensors': 'engine',
          'rosbags': 'tools', 'matplotlib': 'tools', 'tqdm': 'tools',
          'h5py': 'datasets', 'av': 'datasets', 'pyarrow': 'datasets'}
ROS_MODULES = ('rclpy', 'rosidl_runtime_py', 'rcl_interfaces', 'lifecycle_msgs',
               'diagnostic_msgs', 'sensor_msgs', 'std_msgs', 'geometry_msgs',
               'trajectory_msgs', 'rosgraph_msgs', 'builtin_interfaces', 'ament_index_python',
               'cosmos_policy_ros.msg')


def missing_dependency_message(script, name):
    """The one line for `script` when module `name` is missing; None if it is not ours to
    explain (then the error propagates)."""
    if name is None:
        return None
    root = name.split('.')[0]
    if name.startswith('cosmos_policy_ros.msg') or root in ROS_MODULES:
        return f'{script}: {ROS_HINT} (missing module: {name})'
    if root in EXTRAS:
        extra = EXTRAS[root]
        return (f"{script}: needs {root}: pip install 'cosmos_policy_ros[{extra}]' (from the "
                f"checkout: pip install '.[{extra}]'; or all pinned versions: pip install -r "
                'requirements.txt)')
    return None


def run(script, module, function='main'):
    """Import `module`, call `function`; exit code 2 with one line when a dependency is
    missing."""
    try:
        return getattr(importlib.import_module(module), function)()
    except ModuleNotFoundError as error:
        message = missing_dependency_message(script, error.name)
        if message is None:
            raise
        print(message, file=sys.stderr)
        return 2


def policy_node():
    return run('policy_node', 'cosmos_policy_ros.ros.policy_node')


def policy_server():
    return run('policy_server', 'cosmos_policy_ros.ros.policy_server')


def convert():
    return run('cosmos-policy-convert', 'cosmos_policy_ros.cli.convert')


def synthetic():
    return run('cosmos-policy-synthetic', 'cosmos_policy_ros.cli.synthetic')


def replay():
    return run('cosmos-policy-replay', 'cosmos_policy_ros.cli.replay')


def train():
    return run('cosmos-policy-train', 'cosmos_policy_ros.cli.train')


def sim():
    return run('cosmos-policy-sim', 'cosmos_policy_ros.cli.sim')


def dataset():
    return run('cosmos-policy-dataset', 'cosmos_policy_ros.cli.dataset')
