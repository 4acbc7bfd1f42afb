"""What the package's launch files share (launch/*.launch.py): where a named config file is."""
import os


def resolve_config(name):
    """A config file argument: a path as given (made absolute), or a file name in this
    package's share/cosmos_policy_ros/config."""
    if os.path.isabs(name) or os.path.exists(name):
        return os.path.abspath(name)
    # Imported here: ament_index_python is only needed where launch runs.
    from ament_index_python.packages import get_package_share_directory
    return os.path.join(get_package_share_directory('cosmos_policy_ros'), 'config', name)
