"""Launch a policy server: one model, the robots of a fleet file, their ticks batched.

    ros2 launch cosmos_policy_ros policy_server.launch.py fleet:=fleet_sim.yaml model:=DIR
    ros2 launch cosmos_policy_ros policy_server.launch.py fleet:=cell.yaml robots:=arm_0,arm_1 \\
        device:=cuda:0 server_name:=server_gpu0      # this server's part of the fleet

Each robot becomes the lifecycle node /<namespace>/cosmos_policy (its topics, parameters,
`ros2 param` / `ros2 lifecycle` / `ros2 topic` as for policy_node); the server node is
<namespace>/<server_name>. Arguments: fleet (a fleet file: a path, or a file name in this
package's config/; docs/fleet.md), robots (comma-separated namespaces of the file this server
runs; empty: all), model, device, dtype, policy_factory (override the file's server settings
when set; cosmos_policy_ros.testing:load_fake_policy for a dry run), max_batch (0: the file's),
server_name, namespace (of the server node only), use_sim_time, log_level, autostart. Several
servers (one per GPU) split one fleet by giving each its `robots` and `device`.

As policy.launch.py: the launch logs the fleet file it passes, and exits with code 1 when the
server exits with an error.
"""
from launch_ros.actions import Node

from cosmos_policy_ros.fleet.config import parse_robot_list
from cosmos_policy_ros.ros.launch_files import flag, launch_description, resolve_config, started

ARGUMENTS = (
    ('fleet', 'fleet_sim.yaml', 'Fleet file: a path, or a file name in cosmos_policy_ros/config'),
    ('robots', '', 'Comma-separated robot namespaces of the fleet file this server runs '
                   '(empty: all)'),
    ('model', '', "Model directory (overrides the fleet file's server.model_path when set)"),
    ('device', '', "Device (overrides the fleet file's server.device when set)"),
    ('dtype', '', "Weight dtype (overrides the fleet file's server.dtype when set)"),
    ('policy_factory', '', "Policy factory 'module:function' (overrides the fleet file's "
                           'when set), e.g. cosmos_policy_ros.testing:load_fake_policy'),
    ('max_batch', '0', "Most robots' ticks per batched pass (0: the fleet file's)"),
    ('server_name', 'policy_server', 'Name of the server node'),
    ('namespace', '', 'Namespace of the server node (the robots have their own)'),
    ('use_sim_time', 'false', 'Follow /clock (every robot node too)'),
    ('log_level', 'info', 'Logging level of the process'),
    ('autostart', 'true', 'Configure and activate every robot node on start'),
)


def _server(value):
    fleet, what = resolve_config(value['fleet'], 'fleet')
    parameters = {
        'fleet_file': fleet,
        'robots': list(parse_robot_list(value['robots'])) or [''],  # rcl has no empty list
        'use_sim_time': flag(value['use_sim_time']),
        'autostart': flag(value['autostart']),
        'max_batch': int(value['max_batch']),
    }
    for name, key in (('model', 'model_path'), ('device', 'device'), ('dtype', 'dtype'),
                      ('policy_factory', 'policy_factory')):
        if value[name]:
            parameters[key] = value[name]
    node = Node(
        package='cosmos_policy_ros',
        executable='policy_server',
        name=value['server_name'],
        namespace=value['namespace'],
        parameters=[parameters],
        arguments=['--ros-args', '--log-level', value['log_level']],
        output='screen',
        emulate_tty=True,
        # As policy.launch.py: time for the robots' running inferences to end on Ctrl-C.
        sigterm_timeout='15', sigkill_timeout='15',
    )
    return started(node, fleet, what)


def generate_launch_description():
    return launch_description(ARGUMENTS, _server)
