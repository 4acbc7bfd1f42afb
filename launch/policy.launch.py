"""Launch the Cosmos Policy node.

    ros2 launch cosmos_policy_ros policy.launch.py config:=aloha.yaml model:=/models/aloha

Arguments: config (a parameter file: a path, or a file name in this package's config/),
model (a model directory; overrides the file's model_path), namespace, use_sim_time,
log_level, autostart (configure and activate the lifecycle node by itself; false leaves it
unconfigured for `ros2 lifecycle set` or a lifecycle manager), policy_factory (overrides the
file's; `cosmos_policy_ros.testing:load_fake_policy` for a dry run without a model).
"""
from launch_ros.actions import LifecycleNode

from cosmos_policy_ros.ros.launch_files import flag, launch_description, resolve_config

ARGUMENTS = (
    ('config', 'demo.yaml', 'Parameter file: a path, or a file name in cosmos_policy_ros/config'),
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
    return [LifecycleNode(
        package='cosmos_policy_ros',
        executable='policy_node',
        name='cosmos_policy',
        namespace=value['namespace'],
        parameters=[resolve_config(value['config']), overrides],
        arguments=['--ros-args', '--log-level', value['log_level']],
        output='screen',
        emulate_tty=True,
    )]


def generate_launch_description():
    return launch_description(ARGUMENTS, _node)
