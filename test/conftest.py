"""Shared test set-up: private ROS graph per test process, marker skips, common fixtures."""
import importlib.util
import os

import pytest

# Every test process (and every subprocess it starts) talks only on loopback, in a DDS domain
# of its own, so concurrent test runs on one machine do not see each other.
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.pop('ROS_LOCALHOST_ONLY', None)
os.environ['ROS_DOMAIN_ID'] = str(1 + os.getpid() % 100)
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
