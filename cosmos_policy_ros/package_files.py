"""Where the package's non-Python files are: ``share/cosmos_policy_ros`` (config/, msg/, launch/)
and the launchers of the ROS scripts (``policy_node``, ``policy_server``) in
``lib/cosmos_policy_ros``.

Searched in order: the ament index (a sourced colcon workspace or ROS distro), the prefix the
installed package lives in (``<prefix>/lib/pythonX.Y/site-packages/cosmos_policy_ros`` next to
``<prefix>/share/cosmos_policy_ros``: colcon, or pip's data files), ``sys.prefix``, and for
share files last the source checkout (``<repo>/cosmos_policy_ros`` next to ``<repo>/config``
and ``<repo>/msg``).

A core module: stdlib only (``ament_index_python`` is used when it is installed).
"""
import os
from pathlib import Path
import sys

PACKAGE = 'cosmos_policy_ros'


def _ament_share_dirs():
    """share/<PACKAGE> directories that the ament index (AMENT_PREFIX_PATH) lists."""
    prefixes = [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]
    if not prefixes:
        return []
    try:
        from ament_index_python.packages import (  # ROS; pip installs read the index files
            get_package_share_directory, PackageNotFoundError)
    except ImportError:
        marker = Path('share', 'ament_index', 'resource_index', 'packages', PACKAGE)
        return [Path(p, 'share', PACKAGE) for p in prefixes if Path(p, marker).is_file()]
    try:
        return [Path(get_package_share_directory(PACKAGE))]
    except (PackageNotFoundError, ValueError, OSError):
        return []


def source_root():
    """The checkout this module lies in: <repo>/cosmos_policy_ros/package_files.py."""
    return Path(__file__).resolve().parents[1]


def _share_dirs():
    """share/<PACKAGE> candidates: the ament index's, the install prefix's, sys.prefix's."""
    here = Path(__file__).resolve()
    shares = _ament_share_dirs() + [parent / 'share' / PACKAGE for parent in here.parents]
    shares.append(Path(sys.prefix) / 'share' / PACKAGE)
    return _unique(shares)


def _unique(paths):
    unique = []
    for path in paths:
        if path not in unique:
            unique.append(path)
    return unique


def search_paths(relative):
    """Candidate paths of `relative` (e.g. 'config/sim.yaml'), in order of preference."""
    return _unique([share / relative for share in _share_dirs()] + [source_root() / relative])


def _first_file(candidates, what):
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ValueError(f'no {what} found (searched {", ".join(map(str, candidates))})')


def find_file(relative):
    """The first existing file of `search_paths(relative)`; ValueError listing where it looked."""
    return _first_file(search_paths(relative), relative)


def config_file(name):
    """config/<name> of the installed package (or of the checkout), e.g. 'sim.yaml'."""
    return find_file(Path('config', name))


def preset_files():
    """The parameter presets (config/*.yaml) of the installed package (or of the checkout),
    sorted by name; [] when none is found."""
    for directory in search_paths('config'):
        presets = sorted(directory.glob('*.yaml'))
        if presets:
            return presets
    return []


def ros_executable(script):
    """<prefix>/lib/cosmos_policy_ros/<script>: the launcher of a ROS script of the package
    (policy_node, policy_server) that colcon installs beside the package's share directory (a
    built workspace; ValueError without one)."""
    candidates = [share.parents[1] / 'lib' / PACKAGE / script for share in _share_dirs()]
    return _first_file(_unique(candidates), f'{script} launcher (build the workspace)')
