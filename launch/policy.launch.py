"""Launch the Cosmos Policy node.

    ros2 launch cosmos_policy_ros policy.launch.py config:=./my_robot.yaml model:=/models/aloha

Arguments: config (a parameter file: a path to your own file, e.g. an edited copy of a preset,
or the name of a preset in this package's config/), model (a model directory; overrides the
file's model_path), namespace, use_sim_time, log_level, autostart (configure and activate the
lifecycle node by itself; false leaves it unconfigured for `ros2 lifecycle set` or a lifecycle
manager), policy_factory (overrides the file's; `cosmos_policy_ros.testing:load_fake_policy`
for a dry run without a model).

The launch logs the parameter file it passes (full path); the node logs it again with the
values that differ from the preset. When the node exits with an error (a failed configure,
exit code 1), `ros2 launch` exits with code 1 too, so a script can tell a failed start.
"""
from launch_ros.actions import LifecycleNode

from cosmos_policy_ros.ros.launch_files import flag, launch_description, resolve_config, started

ARGUMENTS = (
    ('config', 'demo.yaml', 'Parameter file: a path to your own file (an edited copy of a '
                            'preset), or the name of a preset in cosmos_policy_ros/config'),
    ('model', '', 'Model directory (overrides model_path of the config file when set)'),
    ('namespace', '', 'Namespace of the node and its topics'),
    ('use_sim_time', 'false', 'Follow /clock (rosbag replay) instead of the system clock'),
    ('log_level', 'info', 'Logging level of the node'),
    ('autostart', 'true', 'Configure and activate the lifecycle node on start'),
    ('policy_factory', '', "Policy factory 'module:function' (overrides the config file's when "
                           'set), e.g. cosmos_policy_ros.testing:load_fake_policy'),
)


def _node(value):
    overrides = {'use_sim_time': flag(value['use_sim_time']),
                 'autostart': flag(value['autostart'])}
    if value['model']:
        overrides['model_path'] = value['model']
    if value['policy_factory']:
        overrides['policy_factory'] = value['policy_factory']
    config, what = resolve_config(value['config'])
    node = LifecycleNode(
        package='cosmos_policy_ros',
        executable='policy_node',
        name='cosmos_policy',
        namespace=value['namespace'],
        parameters=[config, overrides],
        arguments=['--ros-args', '--log-level', value['log_level']],
        output='screen',
        emulate_tty=True,
        # On Ctrl-C launch sends SIGINT, then SIGTERM and SIGKILL after these many seconds; the
        # node waits up to 10 s for a running inference (policy_node.STOP_TIMEOUT) before it
        # exits, so it is not killed in the middle of a clean stop.
        sigterm_timeout='15', sigkill_timeout='15',
    )
    return started(node, config, what)


def generate_launch_description():
    return launch_description(ARGUMENTS, _node)
