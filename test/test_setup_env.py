"""scripts/setup_env.sh: one clear line for each thing a bare machine can lack."""
import os
from pathlib import Path
import shutil
import subprocess

import pytest

ROOT = Path(os.environ.get('COSMOS_ROOT', Path(__file__).resolve().parents[1]))
SETUP = ROOT / 'scripts' / 'setup_env.sh'


def _fake_bin(tmp_path, tools):
    """A directory of symlinks to the given real tools (and the coreutils the script uses)."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    for tool in ('bash', 'dirname', 'mkdir', 'cat', 'cp', 'grep', 'sha256sum', 'cut', 'head',
                 'awk', 'sort', 'printf', 'touch', 'rm', 'tr', 'tail', 'echo', *tools):
        real = shutil.which(tool)
        if real:
            (bin_dir / tool).symlink_to(real)
    return bin_dir


def _run_setup(tmp_path, bin_dir, **env):
    full_env = {'PATH': str(bin_dir), 'HOME': str(tmp_path),
                'COSMOS_VENV': str(tmp_path / 'venv'), 'COSMOS_BUILD': str(tmp_path / 'build'),
                **env}
    return subprocess.run(['bash', '-c', f'set -euo pipefail; . {SETUP}'], env=full_env,
                          capture_output=True, text=True, timeout=240)


def _real_python(bin_dir):
    # The interpreter running the tests is 3.10+; expose it as python3 in the fake PATH.
    real = Path(os.environ.get('COSMOS_VENV', '')) / 'bin' / 'python'
    python = shutil.which('python3.11') or shutil.which('python3')
    (bin_dir / 'python3').symlink_to(python if python else real)


def _error_lines(result):
    return [line for line in result.stderr.splitlines() if line.startswith('error:')]


def test_old_python_is_refused(tmp_path):
    bin_dir = _fake_bin(tmp_path, ['cmake', 'cc', 'c++'])
    fake = bin_dir / 'python3'
    fake.write_text('#!/bin/sh\n'
                    'case "$1" in --version) echo "Python 3.8.10";; *) exit 1;; esac\n')
    fake.chmod(0o755)
    result = _run_setup(tmp_path, bin_dir, PYTHON=str(fake))
    assert result.returncode != 0
    assert _error_lines(result) == [
        'error: Python 3.10 or newer with the venv module is required (found: Python 3.8.10)']


def test_missing_cmake_is_named(tmp_path):
    bin_dir = _fake_bin(tmp_path, ['cc', 'c++'])
    _real_python(bin_dir)
    result = _run_setup(tmp_path, bin_dir)
    assert result.returncode != 0
    assert _error_lines(result) == ['error: cmake not found: install cmake 3.21 or newer']


def test_missing_compiler_is_named(tmp_path):
    bin_dir = _fake_bin(tmp_path, ['cmake'])
    _real_python(bin_dir)
    result = _run_setup(tmp_path, bin_dir, CC='no-such-cc')
    assert result.returncode != 0
    assert _error_lines(result) == [
        'error: no C compiler found (cc/gcc): install gcc or build-essential']


@pytest.mark.slow
def test_no_network_to_the_package_index_is_named(tmp_path):
    bin_dir = _fake_bin(tmp_path, ['cmake', 'cc', 'c++', 'gcc', 'g++'])
    _real_python(bin_dir)
    # No pip configuration (no local wheel mirrors) and an index nobody listens on.
    result = _run_setup(tmp_path, bin_dir, PIP_CONFIG_FILE=os.devnull,
                        PIP_INDEX_URL='http://127.0.0.1:9/simple', PIP_FIND_LINKS='')
    assert result.returncode != 0
    lines = _error_lines(result)
    assert len(lines) == 1 and lines[0].startswith('error: no network to the package index'), (
        result.stderr)
