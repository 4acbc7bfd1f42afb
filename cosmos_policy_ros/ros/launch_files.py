"""What the package's launch files share (launch/*.launch.py): where a config file argument
points, a launch description of declared arguments and the nodes built from their values, and
launch's exit code 1 when one of those nodes exits with an error."""
import os


class NodeFailed(RuntimeError):
    """A node exited with an error, or its config file is not there: launch reports it and
    exits with code 1."""


def resolve_config(name, argument='config'):
    """(absolute path, what it is) of a config file argument: a path to an existing file, else
    the name of a preset in this package's share/cosmos_policy_ros/config; NodeFailed naming
    `argument` when it is neither."""
    # Imported here: ament_index_python is only needed where launch runs.
    from ament_index_python.packages import get_package_share_directory
    presets = os.path.join(get_package_share_directory('cosmos_policy_ros'), 'config')
    if os.path.isfile(name):
        return os.path.abspath(name), 'your file'
    if os.sep in name or not name:
        raise NodeFailed(f'{argument}:={name}: no such file (relative paths are from '
                         f'{os.getcwd()})')
    path = os.path.join(presets, name)
    if not os.path.isfile(path):
        known = sorted(f for f in os.listdir(presets) if f.endswith('.yaml'))
        raise NodeFailed(f'{argument}:={name}: not a file here ({os.getcwd()}) nor a preset of '
                         f'{presets}: {", ".join(known)}')
    return path, f'the installed preset: copy it to edit it, then {argument}:=<your copy>'


def launch_description(arguments, build):
    """A LaunchDescription declaring `arguments` ((name, default, description) tuples) whose
    actions are build(values): values = {name: the argument's value as a string}."""
    # Imported here: launch is installed only where launch files run.
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration

    def actions(context):
        return build({name: LaunchConfiguration(name).perform(context)
                      for name, _, _ in arguments})
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, default, description in arguments]
        + [OpaqueFunction(function=actions)])


def started(node, config, what):
    """The actions that start `node`: a log line naming its config file (`config`, `what` it
    is: resolve_config), the node, and a handler that fails the launch (exit code 1) when the
    node exits with an error."""
    # Imported here: launch is installed only where launch files run.
    from launch.actions import LogInfo, RegisterEventHandler
    from launch.event_handlers import OnProcessExit

    def check_exit(event, context):
        if event.returncode != 0:
            raise NodeFailed(f'{event.action.name} exited with code {event.returncode} (see its '
                             f'log above)')
    return [LogInfo(msg=f'parameter file: {config} ({what})'), node,
            RegisterEventHandler(OnProcessExit(target_action=node, on_exit=check_exit))]


def flag(value):
    """A launch argument 'true' / 'false' (any case) as a bool."""
    return value.lower() == 'true'
