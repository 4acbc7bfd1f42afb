"""policy.launch.py under launch_pytest: runs where ROS 2 launch is installed (a ROS distro, or
the launch stack installed by scripts/setup_env.sh from COSMOS_ROS_EXTRAS, as .ci/run does).

PyPI has no ROS launch packages: without either, this module is skipped (the node itself is
covered by test_policy_node_process.py); with COSMOS_ROS_EXTRAS set it must import.
"""
import os

import numpy as np
import pytest

if os.environ.get('COSMOS_ROS_EXTRAS'):
    import launch_pytest  # the extras are meant to be installed: fail, never skip
else:
    launch_pytest = pytest.importorskip(
        'launch_pytest', reason='launch_pytest (ROS 2 launch) is not installed: the PyPI ROS '
                                'wheels have no launch packages; source a ROS distro or set '
                                'COSMOS_ROS_EXTRAS=DIR (scripts/setup_env.sh)')

pytestmark = [pytest.mark.ros, pytest.mark.slow]


@pytest.fixture
def setup_files(tmp_path, harness):
    import yaml

    fake = tmp_path / 'fake_policy.yaml'
    fake.write_text('layout: {preset: libero}\n')
    parameters = harness.libero_parameters()
    params = tmp_path / 'params.yaml'
    params.write_text(yaml.safe_dump({'/**': {'ros__parameters': parameters}}))
    return params, fake


@launch_pytest.fixture
def policy_launch(setup_files):
    from ament_index_python.packages import get_package_share_directory
    import launch
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    params, fake = setup_files
    share = get_package_share_directory('cosmos_policy_ros')
    include = launch.actions.IncludeLaunchDescription(
        PythonLaunchDescriptionSource(f'{share}/launch/policy.launch.py'),
        launch_arguments={'config': str(params), 'model': str(fake)}.items())
    return launch.LaunchDescription([include, launch_pytest.actions.ReadyToTest()])


@pytest.mark.launch(fixture=policy_launch)
def test_launch_file_starts_an_active_node_that_publishes_chunks(client_factory, harness):
    client = client_factory()
    assert client.spin_until(
        lambda: client.diagnostic('policy', 'lifecycle_state') == 'active', 120)

    def publish():
        stamp = harness.now_ns()
        client.image('wrist/image_raw', stamp, np.full((24, 32, 3), 100, np.uint8))
        client.jpeg('primary/image_raw/compressed', stamp, np.full((24, 32, 3), 90, np.uint8))
        client.joints('joint_states', stamp, ['finger_l', 'finger_r'], [0.01, -0.01])
        client.pose('eef_pose', stamp, [0.4, 0.1, 0.9], [0.0, 0.0, 0.6, 0.8])

    assert client.spin_until(lambda: client.chunks, 60, every=publish)
    assert client.chunks[0].model_id == 'fake-libero'
