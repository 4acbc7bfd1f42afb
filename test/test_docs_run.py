"""The shell blocks of README.md, docs/node.md, docs/replay.md and docs/sim-eval.md run as
written (a new user copies them verbatim).

Every shell block (```bash, or a ``` block of `$ ` transcript lines) carries an annotation, an
HTML comment on the line before its fence:

    <!-- docs-test: run -->              run it (bash -e) in the page's scratch directory
    <!-- docs-test: background; ready: TEXT -->
                                         a long-running command (a node): started in its own
                                         process group; the next `run` block runs once TEXT
                                         is in its output; then Ctrl-C (SIGINT to the group),
                                         and it must end with 0, never "process has died"
    <!-- docs-test: syntax; REASON -->   only checked with `bash -n` (REASON: it needs real
                                         weights, a GPU, a ROS distro, or runs for minutes)

A transcript block runs its `$` commands and checks that the exit codes are 0 (or what an
`echo $?` line shows) and that every output line it shows (but `...`) was printed. A block
without an annotation fails the test. The scratch directory (one per page, blocks in page
order) holds a copy of config/ as the checkout does, and the demo's model in output/demo/model
when a block names it. Each page runs in this test's private ROS domain; every wait is a
failure guard, never a timing.
"""
import os
from pathlib import Path
import re
import shutil
import signal
import subprocess
import time

import pytest

from cosmos_policy_ros import package_files

ROOT = Path(os.environ.get('COSMOS_ROOT', Path(__file__).resolve().parents[1]))
PAGES = ('README.md', 'docs/node.md', 'docs/replay.md', 'docs/sim-eval.md')
ANNOTATION = re.compile(r'^<!-- docs-test: (run|background|syntax)(?:; (.*?))? -->$')
FENCE = re.compile(r'^```(\w*)$')
DEADLINE = 300.0  # seconds any block may take on a busy machine (a failure guard)
DEMO_MODEL = 'output/demo/model'


class Block:
    """A shell block of a page: its kind, option, text, line number and whether it is a
    transcript."""

    def __init__(self, page, line, kind, option, text, transcript):
        self.page, self.line, self.kind, self.option = page, line, kind, option
        self.text, self.transcript = text, transcript

    def __repr__(self):
        return f'{self.page}:{self.line}'


def shell_blocks(page):
    """The shell blocks of a page, in order (kind None: not annotated)."""
    lines = (ROOT / page).read_text().splitlines()
    blocks, index = [], 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if not match:
            index += 1
            continue
        end = index + 1
        while not lines[end].startswith('```'):
            end += 1
        body = lines[index + 1:end]
        transcript = match.group(1) == '' and any(line.startswith('$ ') for line in body)
        if match.group(1) in ('bash', 'sh') or transcript:
            note = ANNOTATION.match(lines[index - 1]) if index else None
            blocks.append(Block(page, index + 1, note and note.group(1),
                                note and note.group(2), '\n'.join(body) + '\n', transcript))
        index = end + 1
    return blocks


def transcript_steps(text):
    """[(command, shown output lines)] of a `$ ` transcript (continuation lines joined)."""
    steps = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line.startswith('$ '):
            continue
        command = line[2:]
        while command.rstrip().endswith('\\') and index < len(lines):
            command = command.rstrip()[:-1] + ' ' + lines[index].strip()
            index += 1
        shown = []
        while index < len(lines) and not lines[index].startswith('$ '):
            shown.append(lines[index])
            index += 1
        steps.append((command, shown))
    return steps


def test_every_shell_block_is_annotated():
    unannotated = [block for page in PAGES for block in shell_blocks(page) if not block.kind]
    assert not unannotated, f'shell blocks without a docs-test annotation: {unannotated}'
    found = {page: len(shell_blocks(page)) for page in PAGES}
    assert all(found.values()), f'a page lost its shell blocks: {found}'


def test_the_transcript_parser():
    text = '$ a --x \\\n      --y\nout 1\n...\n$ echo $?\n0\n'
    assert transcript_steps(text) == [('a --x  --y', ['out 1', '...']), ('echo $?', ['0'])]


def _scratch(tmp_path, blocks):
    """The page's working directory: config/ as in a checkout, the demo's model if named."""
    work = tmp_path / 'work'
    work.mkdir()
    shutil.copytree(package_files.config_file('aloha.yaml').parent, work / 'config')
    if any(DEMO_MODEL in block.text for block in blocks):
        # torch: only pages that need the demo's model load it
        from cosmos_policy_ros.cli.demo import prepare_model
        prepare_model(work / 'output' / 'demo')
    return work


def _env(ros_env):
    env = dict(ros_env)
    env['OMP_NUM_THREADS'] = '1'
    return env


def _run(command, work, env):
    try:
        return subprocess.run(['bash', '-e', '-o', 'pipefail', '-c', command], cwd=work,
                              env=env, capture_output=True, text=True, timeout=DEADLINE)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f'{command!r} did not end within {DEADLINE:g} s: {error.stdout}')


def _check_transcript(block, work, env):
    code = None
    for command, shown in transcript_steps(block.text):
        if command.strip() == 'echo $?':
            assert shown and int(shown[0]) == code, (block, command, code)
            continue
        result = _run(command, work, env)
        output = result.stdout + result.stderr
        code = result.returncode
        expected = [line.strip() for line in shown if line.strip() and line.strip() != '...']
        missing = [line for line in expected if line not in output]
        assert not missing, f'{block}: `{command}` did not print {missing}:\n{output}'
        if any(line.startswith('error:') for line in expected):
            assert code != 0, f'{block}: `{command}` printed an error but exited with 0'
        elif '$ echo $?' not in block.text:
            assert code == 0, f'{block}: `{command}` exited with {code}:\n{output}'


def _start_background(block, work, env):
    process = subprocess.Popen(['bash', '-e', '-c', block.text], cwd=work, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    lines = []
    ready = (block.option or '').removeprefix('ready: ')
    deadline = time.monotonic() + DEADLINE
    for line in process.stdout:  # ends when the process ends
        lines.append(line)
        if ready and ready in line:
            break
        if time.monotonic() > deadline:
            break
    assert ready and any(ready in line for line in lines), (
        f'{block}: {ready!r} never came:\n' + ''.join(lines))
    return process, lines


def _stop_background(block, process, lines):
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in the terminal
    try:
        rest, _ = process.communicate(timeout=DEADLINE)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        rest, _ = process.communicate()
        pytest.fail(f'{block}: did not end after Ctrl-C:\n' + ''.join(lines) + rest)
    output = ''.join(lines) + rest
    assert process.returncode == 0, f'{block}: exit code {process.returncode}:\n{output}'
    assert 'process has died' not in output and 'Traceback' not in output, output
    return output


@pytest.mark.slow
@pytest.mark.parametrize('page', [pytest.param(page, marks=pytest.mark.ros)
                                  if page == 'docs/node.md' else page for page in PAGES])
def test_every_block_runs_as_written(page, tmp_path, ros_env):
    blocks = shell_blocks(page)
    runnable = [block for block in blocks if block.kind != 'syntax']
    env = _env(ros_env)
    for block in blocks:
        if block.kind == 'syntax':
            assert block.option, f'{block}: say why it is only syntax-checked'
            text = '\n'.join(command for command, _ in transcript_steps(block.text)) + '\n' \
                if block.transcript else block.text
            checked = subprocess.run(['bash', '-n'], input=text, capture_output=True,
                                     text=True)
            assert checked.returncode == 0, f'{block}: {checked.stderr}'
    if not runnable:
        return
    if any(block.kind == 'background' for block in runnable) and not shutil.which('ros2'):
        if os.environ.get('COSMOS_ROS_EXTRAS'):
            pytest.fail('COSMOS_ROS_EXTRAS is set but `ros2` is not on PATH')
        pytest.skip('`ros2` (launch) is not installed: source a distro or set '
                    'COSMOS_ROS_EXTRAS (scripts/setup_env.sh)')
    work = _scratch(tmp_path, runnable)
    background = None
    try:
        for block in runnable:
            if block.kind == 'background':
                assert background is None, f'{block}: a background block is still running'
                background = (block, *_start_background(block, work, env))
                continue
            if block.transcript:
                _check_transcript(block, work, env)
            else:
                result = _run(block.text, work, env)
                assert result.returncode == 0, (
                    f'{block}: exit code {result.returncode}:\n{result.stdout}{result.stderr}'
                    + ('' if background is None else ''.join(background[2])))
            if background is not None:
                _stop_background(*background)
                background = None
        assert background is None, f'{background[0]}: no block ran while it ran'
    finally:
        if background is not None and background[1].poll() is None:
            os.killpg(background[1].pid, signal.SIGKILL)
        if any('ros2 ' in block.text for block in runnable) and shutil.which('ros2'):
            # The graph verbs started a ros2 daemon in this test's domain: end it.
            subprocess.run(['ros2', 'daemon', 'stop'], env=env, capture_output=True, timeout=60)
