"""Shared test set-up: private ROS graph per test process, marker skips, common fixtures."""
import importlib.util
import os

import pytest

_DOMAIN_LOCK = []  # the open lock file of this process's domain: held until the process ends


def _private_domain():
    """A DDS domain (1..100) that no other test process on this machine holds: an exclusive
    lock on a file per domain, released by the OS when this process ends. Two concurrent runs
    in one domain would see each other's nodes (both launch a /cosmos_policy) and share one
    `ros2 daemon`."""
    import fcntl
    import tempfile
    first = os.getpid() % 100
    for offset in range(100):
        domain = 1 + (first + offset) % 100
        path = os.path.join(tempfile.gettempdir(), f'cosmos_policy_ros-domain-{domain}.lock')
        handle = open(path, 'a')
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        _DOMAIN_LOCK.append(handle)
        return domain
    return 1 + first  # all held (100 concurrent runs): share one


# Every test process (and every subprocess it starts) talks only on loopback, in a DDS domain
# of its own, so concurrent test runs on one machine do not see each other.
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.pop('ROS_LOCALHOST_ONLY', None)
os.environ['ROS_DOMAIN_ID'] = str(_private_domain())
# Subprocesses started from the checkout import the installed package, not the source tree.
os.environ['PYTHONSAFEPATH'] = '1'
# One intra-op thread per process (set before torch is imported): test processes, nodes and
# players share 2 cores, and oversubscribed OpenMP makes torch 10x slower, not faster.
os.environ.setdefault('OMP_NUM_THREADS', '1')


def _has_cuda():
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    skips = {}
    if not _has_cuda():
        skips['gpu'] = pytest.mark.skip(reason='needs a CUDA GPU (torch.cuda.is_available() is '
                                               'False)')
    if not os.environ.get('COSMOS_POLICY_CHECKPOINT_DIR'):
        skips['checkpoint'] = pytest.mark.skip(
            reason='needs released weights: set COSMOS_POLICY_CHECKPOINT_DIR to a model directory')
    if importlib.util.find_spec('rclpy') is None:
        skips['ros'] = pytest.mark.skip(reason='rclpy is not importable (plain pip install)')
    for item in items:
        for marker, skip in skips.items():
            if marker in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def ros_env():
    """Environment for subprocesses that join this test process's private ROS graph."""
    return dict(os.environ)


@pytest.fixture
def ros_context():
    """A private, initialized rclpy Context, shut down after the test."""
    import rclpy
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        rclpy.try_shutdown(context=context)
