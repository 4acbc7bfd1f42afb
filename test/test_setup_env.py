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


# --- sourcing it in a shell ----------------------------------------------------------------------
def _user_env(**changes):
    """This environment as a user's shell would have it: no ROS_DOMAIN_ID or discovery setting
    of the test process (test/conftest.py sets private ones), the same venv and build."""
    env = {key: value for key, value in os.environ.items()
           if key not in ('ROS_DOMAIN_ID', 'ROS_AUTOMATIC_DISCOVERY_RANGE', 'ROS_LOCALHOST_ONLY',
                          'COSMOS_ROS_EXTRAS', 'COSMOS_SETUP_QUIET')}
    env.update(changes)
    return env


def _source(script, env, timeout=300):
    """bash -c '<script>' where `. setup_env.sh` in the script stands for sourcing it."""
    return subprocess.run(['bash', '-c', script.replace('SOURCE', f'. {SETUP}')], env=env,
                          capture_output=True, text=True, timeout=timeout)


def _option(output, name):
    return next(line.split()[-1] for line in output.splitlines()
                if line.split() and line.split()[0] == name)


@pytest.mark.slow
@pytest.mark.parametrize('options', ['set -u; set +e', 'set -e; set +u'])
def test_sourcing_keeps_the_callers_options_and_domain_and_puts_the_tools_on_path(options):
    script = (f'{options}; SOURCE; echo "rc=$?"; set -o; '
              'echo "domain=${ROS_DOMAIN_ID-unset}"; '
              'command -v policy_node cosmos-policy-replay cosmos-policy-convert')
    result = _source(script, _user_env())
    assert 'rc=0' in result.stdout, result.stdout + result.stderr
    errexit, nounset = ('on', 'off') if options.startswith('set -e') else ('off', 'on')
    assert _option(result.stdout, 'errexit') == errexit
    assert _option(result.stdout, 'nounset') == nounset
    assert _option(result.stdout, 'pipefail') == 'off'
    assert 'domain=unset' in result.stdout  # never a random domain for a user's shell
    assert ('ROS_DOMAIN_ID=0 (unset: the default domain); ROS_AUTOMATIC_DISCOVERY_RANGE='
            'LOCALHOST (set here') in result.stderr
    found = [line for line in result.stdout.splitlines() if line.startswith('/')]
    assert [Path(line).name for line in found] == [
        'policy_node', 'cosmos-policy-replay', 'cosmos-policy-convert']


@pytest.mark.slow
def test_the_users_domain_and_discovery_are_kept_and_printed():
    env = _user_env(ROS_DOMAIN_ID='42', ROS_AUTOMATIC_DISCOVERY_RANGE='SUBNET')
    result = _source('SOURCE; echo "domain=$ROS_DOMAIN_ID range=$ROS_AUTOMATIC_DISCOVERY_RANGE"',
                     env)
    assert 'domain=42 range=SUBNET' in result.stdout, result.stdout + result.stderr
    assert 'ROS_DOMAIN_ID=42; ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET (your setting)' in (
        result.stderr)


def test_an_error_returns_to_the_sourcing_shell_with_its_options(tmp_path):
    bin_dir = _fake_bin(tmp_path, ['cc', 'c++'])  # no cmake
    _real_python(bin_dir)
    env = {'PATH': str(bin_dir), 'HOME': str(tmp_path), 'COSMOS_VENV': str(tmp_path / 'venv'),
           'COSMOS_BUILD': str(tmp_path / 'build')}
    result = _source('set -u; SOURCE; echo "still here rc=$?"; set -o', env)
    assert 'still here rc=1' in result.stdout, result.stdout + result.stderr
    assert _error_lines(result) == ['error: cmake not found: install cmake 3.21 or newer']
    assert _option(result.stdout, 'nounset') == 'on'
    assert _option(result.stdout, 'errexit') == 'off'


@pytest.mark.slow
def test_reinstall_updates_in_place_and_removes_deleted_files():
    """A second `source` rewrites no unchanged installed file (a running process never sees it
    missing) and removes a file deleted from the source tree."""
    import cosmos_policy_ros
    installed = Path(cosmos_policy_ros.__file__).resolve().parent
    assert str(installed).startswith(os.environ['COSMOS_BUILD']), installed
    probe = ROOT / 'cosmos_policy_ros' / 'zz_setup_env_probe.py'
    before = {name: (installed / name).stat() for name in ('layout.py', 'sync.py')}
    try:
        probe.write_text('VALUE = 1\n')
        result = _source('SOURCE', _user_env(COSMOS_SETUP_QUIET='1'))
        assert result.returncode == 0, result.stderr
        assert (installed / probe.name).read_text() == 'VALUE = 1\n'
    finally:
        probe.unlink(missing_ok=True)
    result = _source('SOURCE', _user_env(COSMOS_SETUP_QUIET='1'))
    assert result.returncode == 0, result.stderr
    assert not (installed / probe.name).exists()
    for name, stat in before.items():
        now = (installed / name).stat()
        assert (now.st_ino, now.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns), name


@pytest.mark.slow
def test_ros_extras_are_installed_once_per_content(tmp_path):
    extras = tmp_path / 'extras'
    extras.mkdir()
    log = tmp_path / 'calls.txt'
    (extras / 'install.sh').write_text(f'echo "$1" >> {log}\n')
    env = _user_env(COSMOS_ROS_EXTRAS=str(extras), COSMOS_SETUP_QUIET='1')
    for _ in range(2):
        result = _source('SOURCE', env)
        assert result.returncode == 0, result.stderr
    assert log.read_text().splitlines() == [os.environ['COSMOS_VENV']]  # once, into the venv
    (extras / 'wheels').mkdir()
    (extras / 'wheels' / 'new.whl').write_text('changed')
    assert _source('SOURCE', env).returncode == 0
    assert len(log.read_text().splitlines()) == 2
    missing = _source('SOURCE', _user_env(COSMOS_ROS_EXTRAS=str(tmp_path / 'none')))
    assert missing.returncode == 1
    assert _error_lines(missing) == [
        f'error: COSMOS_ROS_EXTRAS={tmp_path / "none"} has no install.sh (expected a folder '
        'like ../shared/ros2-launch)']


@pytest.mark.parametrize('with_shared', [True, False])
def test_ci_run_installs_the_shared_launch_stack_when_it_is_beside_the_clone(
        tmp_path, with_shared):
    """.ci/run sets COSMOS_ROS_EXTRAS to ../shared/ros2-launch (when there), then runs the
    README's test command (here a stand-in scripts/test.sh that prints what it got)."""
    clone = tmp_path / 'clone'
    (clone / '.ci').mkdir(parents=True)
    (clone / 'scripts').mkdir()
    shutil.copy(ROOT / '.ci' / 'run', clone / '.ci' / 'run')
    (clone / 'scripts' / 'test.sh').write_text('echo "extras=${COSMOS_ROS_EXTRAS-unset}"\n')
    if with_shared:
        (tmp_path / 'shared' / 'ros2-launch').mkdir(parents=True)
        (tmp_path / 'shared' / 'ros2-launch' / 'install.sh').write_text('exit 0\n')
    env = {key: value for key, value in os.environ.items() if key != 'COSMOS_ROS_EXTRAS'}
    result = subprocess.run(['bash', str(clone / '.ci' / 'run')], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    expected = str(tmp_path / 'shared' / 'ros2-launch') if with_shared else 'unset'
    assert result.stdout.strip() == f'extras={expected}'
