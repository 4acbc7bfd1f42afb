"""ROS 2 Python style (ament_flake8 rules: 99 columns, google import order, single quotes)."""
import os
from pathlib import Path
import subprocess
import sys

ROOT = Path(os.environ.get('COSMOS_ROOT', Path(__file__).resolve().parents[1]))


def test_flake8_clean():
    names = ('cosmos_policy_ros', 'test', 'launch', 'bench', 'setup.py')
    targets = [ROOT / name for name in names]
    targets = [str(path) for path in targets if path.exists()]
    result = subprocess.run(
        [sys.executable, '-m', 'flake8', '--config', str(ROOT / 'setup.cfg'), *targets],
        capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, 'flake8 found problems:\n' + result.stdout + result.stderr


def test_flake8_config_is_ros_style():
    # The lint test above is only as strict as its configuration: make sure it is ROS style.
    config = (ROOT / 'setup.cfg').read_text()
    assert 'max-line-length = 99' in config
    assert 'import-order-style = google' in config
    assert 'inline-quotes = single' in config
