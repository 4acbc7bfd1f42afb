"""The pinned pytest loads ROS 2 Kilted launch_testing's pytest plugin (issue 9).

launch_testing registers a pytest11 entry point that every pytest run of the environment loads;
under pytest >= 9.1 it fails plugin validation and every run aborts before collecting.
"""
import importlib.metadata
import importlib.util
import os
from pathlib import Path
import re
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parents[1]


def pinned(name):
    text = (ROOT / 'requirements.txt').read_text()
    match = re.search(rf'^{re.escape(name)}==(\S+)', text, re.MULTILINE)
    assert match, f'{name} is not pinned in requirements.txt'
    return match.group(1)


def version_tuple(text):
    return tuple(int(part) for part in text.split('.')[:2])


def test_pytest_is_pinned_below_9_1_and_installed_as_pinned():
    assert version_tuple(pinned('pytest')) < (9, 1)
    assert importlib.metadata.version('pytest') == pinned('pytest')
    for plugin in ('pytest-timeout', 'pytest-xdist'):
        assert importlib.metadata.version(plugin) == pinned(plugin)


@pytest.mark.skipif(importlib.util.find_spec('launch_testing') is None,
                    reason='launch_testing is not installed (no ROS distro or COSMOS_ROS_EXTRAS)')
def test_a_pytest_run_loads_the_launch_testing_plugin(tmp_path):
    (tmp_path / 'test_plain.py').write_text('def test_plain():\n    pass\n')
    # --confcutdir keeps collection inside tmp_path: without it pytest walks down from the
    # common ancestor of the ini file and tmp_path ('/'), offering every *_test.py in /tmp
    # to launch_testing's hook, which imports (runs) each one.
    done = subprocess.run(
        [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '--trace-config',
         '--rootdir', str(tmp_path), '--confcutdir', str(tmp_path), '-c', os.devnull,
         'test_plain.py'],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert 'PluginValidationError' not in output
    assert re.search(r'launch_testing\.pytest\.hooks', output), output  # it was loaded
    assert '1 passed' in output
