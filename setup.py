"""Plain-pip install of the Python part of cosmos_policy_ros (core, engine, offline tools).

On a ROS machine the package is built with colcon from CMakeLists.txt, which also generates the
messages; this file serves `pip install .` where no ROS is present (no `msg` module then).
"""
from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = 'cosmos_policy_ros'
ENGINE = ['torch', 'diffusers', 'safetensors']
TOOLS = ['rosbags', 'rosbags-image', 'matplotlib', 'tqdm']
DATASETS = ['h5py', 'av', 'pyarrow']  # cosmos-policy-dataset (with ENGINE and TOOLS)
HERE = Path(__file__).resolve().parent


def console_scripts():
    """Read resource/console_scripts, the list CMakeLists.txt installs too."""
    lines = (HERE / 'resource' / 'console_scripts').read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith('#')]


setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test', 'test.*']),
    # The shipped planar-reach model (cosmos_policy_ros.sim.model.shipped_model_dir).
    package_data={PACKAGE: ['models/*/*']},
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        ('share/' + PACKAGE + '/config', glob('config/*.yaml')),
        ('share/' + PACKAGE + '/launch', glob('launch/*.py')),
        ('share/' + PACKAGE + '/msg', glob('msg/*.msg')),
    ],
    python_requires='>=3.10',
    # The core (layout, sync, safety, configuration) needs only these; the README's Python API
    # (load_policy, the sampler) needs the `engine` extra, cosmos-policy-replay the `tools`
    # extra: pip install '.[engine,tools]' (or '.[all]'). The console scripts name a missing
    # extra in one line (cosmos_policy_ros/cli/entry_points.py). ROS (rclpy, messages) is not on
    # the package index as such: the node needs a ROS 2 distro or scripts/setup_env.sh.
    install_requires=['numpy', 'pyyaml', 'pillow'],
    extras_require={
        'engine': ENGINE,
        'tools': TOOLS,
        'datasets': DATASETS,
        'all': ENGINE + TOOLS + DATASETS,
        'test': ['pytest<9.1', 'pytest-timeout', 'flake8'],
    },
    zip_safe=False,
    maintainer='cosmos_policy_ros developers',
    description='Run NVIDIA Cosmos Policy on robot compute with ROS 2.',
    license='Apache-2.0',
    entry_points={'console_scripts': console_scripts()},
)
