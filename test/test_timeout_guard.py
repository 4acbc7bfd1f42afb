"""pytest.ini's hang guards, proven on deliberately hung tests run by a child pytest.

A hung test must cost one failure with a stack, never a stalled run: pytest-timeout fails a
test whose thread can still run Python signal handlers (a catastrophically backtracking regex:
`re` checks for signals); a thread spinning in C with the GIL held (what rclpy's C code did in
issue 14) can be stopped only by faulthandler's watchdog, a C thread that needs no GIL.
"""
import configparser
import os
from pathlib import Path
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parents[1]
INI = ROOT / 'pytest.ini'

HUNG_TESTS = '''
import ctypes
import re


def test_backtracking_regex():
    assert re.match(r'(a+)+b', 'a' * 60) is None  # 2**60 steps in C


def test_after_the_regex():
    pass


def test_spins_in_c_holding_the_gil():
    libc = ctypes.PyDLL(None)  # PyDLL: the GIL stays held during the call
    lock = ctypes.c_int(0)
    assert libc.pthread_spin_init(ctypes.byref(lock), 0) == 0
    libc.pthread_spin_lock(ctypes.byref(lock))
    libc.pthread_spin_lock(ctypes.byref(lock))  # never returns: 100 % of a core
'''


def ini_options():
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(INI)
    return parser['pytest']


def test_the_guards_are_configured():
    options = ini_options()
    timeout = float(options['timeout'])
    assert options['timeout_method'] == 'signal'
    assert 0 < timeout <= 600
    # The watchdog comes after pytest-timeout (which fails just one test when it can).
    assert timeout < float(options['faulthandler_timeout']) <= 900
    assert options['faulthandler_exit_on_timeout'] == 'true'
    assert 0 < float(options['session_timeout']) < 90 * 60


def run_child(tmp_path, test_id, timeout, faulthandler_timeout):
    (tmp_path / 'test_hung.py').write_text(HUNG_TESTS)
    # Our pytest.ini (-c), shorter limits; the child must end by itself well before 120 s.
    # --confcutdir keeps collection inside tmp_path (not every *_test.py on the way from '/').
    command = [sys.executable, '-m', 'pytest', '-c', str(INI), '-p', 'no:cacheprovider',
               '-o', f'timeout={timeout}', '-o', f'faulthandler_timeout={faulthandler_timeout}',
               '--rootdir', str(tmp_path), '--confcutdir', str(tmp_path), '-q', *test_id]
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONDONTWRITEBYTECODE='1'))


@pytest.mark.slow
def test_a_backtracking_regex_fails_one_test_and_the_run_goes_on(tmp_path):
    done = run_child(tmp_path, ['test_hung.py::test_backtracking_regex',
                                'test_hung.py::test_after_the_regex'], 2, 60)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert 'Timeout (>2.0s) from pytest-timeout' in output, output
    assert '1 failed, 1 passed' in output, output
    assert "re.match(r'(a+)+b'" in output  # the stack shows where it hung


@pytest.mark.slow
def test_a_c_spin_holding_the_gil_ends_the_run_with_every_stack(tmp_path):
    done = run_child(tmp_path, ['test_hung.py::test_spins_in_c_holding_the_gil'], 2, 4)
    assert done.returncode == 1, done.stdout + done.stderr
    assert 'Timeout (0:00:04)!' in done.stderr, done.stderr
    assert 'in test_spins_in_c_holding_the_gil' in done.stderr, done.stderr
    assert 'pytest_runtest_call' in done.stderr  # the whole stack, not just the last frame
