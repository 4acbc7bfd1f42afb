"""What the package's launch files share (launch/*.launch.py): where a named config file is, and
a launch description of declared arguments and one node built from their values."""
import os


def resolve_config(name):
    """A config file argument: a path as given (made absolute), or a file name in this
    package's share/cosmos_policy_ros/config."""
    if os.path.isabs(name) or os.path.exists(name):
        return os.path.abspath(name)
    # Imported here: ament_index_python is only needed where launch runs.
    from ament_index_python.packages import get_package_share_directory
    return os.path.join(get_package_share_directory('cosmos_policy_ros'), 'config', name)


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


def flag(value):
    """A launch argument 'true' / 'false' (any case) as a bool."""
    return value.lower() == 'true'
