"""What a robot user types: `ros2 launch cosmos_policy_ros policy.launch.py` with each preset,
then `ros2 lifecycle`, `ros2 param`, `ros2 topic echo` on the running node, and Ctrl-C; and
`policy_server.launch.py` for two robot namespaces, each robot handled by the CLI on its own.

Every command is the real `ros2` CLI as a subprocess, in this test process's private ROS domain
(test/conftest.py). The node runs the fake policy (instant, no weights) through the launch
file's `policy_factory` argument. Needs `ros2` with launch: a sourced ROS distro, or the launch
stack installed with COSMOS_ROS_EXTRAS (scripts/setup_env.sh); when COSMOS_ROS_EXTRAS is set,
a missing `ros2` fails instead of skipping. Waits are deadlines (failure guards), not timings.
"""
import os
import re
import shutil
import signal
import subprocess
import time
from types import SimpleNamespace

import numpy as np
import pytest

pytestmark = [pytest.mark.ros, pytest.mark.slow]

FAKE_FACTORY = 'policy_factory:=cosmos_policy_ros.testing:load_fake_policy'
DEADLINE = 120.0  # seconds for anything to happen on a busy machine


def _ros2():
    ros2 = shutil.which('ros2')
    if ros2 is None:
        if os.environ.get('COSMOS_ROS_EXTRAS'):
            pytest.fail('COSMOS_ROS_EXTRAS is set but `ros2` is not on PATH: the launch stack '
                        'was not installed (see scripts/setup_env.sh)')
        pytest.skip('`ros2` is not on PATH: source a ROS distro, or set COSMOS_ROS_EXTRAS=DIR '
                    'for scripts/setup_env.sh (DIR like ../shared/ros2-launch)')
    return ros2


def _ctrl_c(launched, timeout=DEADLINE):
    """SIGINT to the launch's whole process group, as Ctrl-C in a terminal; the exit code
    (None if it did not end)."""
    os.killpg(launched.process.pid, signal.SIGINT)
    return launched.wait(timeout)


NOT_FOUND = 'Node not found'  # the CLI's graph view does not show the node (yet)


def _unanswered(result):
    return result.returncode is None


def _retryable(result):
    """Nothing was asked of the node: the CLI's discovery had not found it yet (a daemon just
    started, or a direct node that listened too briefly on a busy machine); the verbs check
    this before calling any service, so repeating them is always safe."""
    return NOT_FOUND in result.stderr or NOT_FOUND in result.stdout


@pytest.fixture
def cli(ros_env, tmp_path, harness):
    """cli.run('param', 'get', ...) -> CompletedProcess; cli.launch(...) -> OutputProcess."""
    ros2 = _ros2()
    launches = []

    def once(*arguments, timeout=60.0):
        """`ros2 ARGUMENTS` once; returncode None (and 'no answer' on stderr) when it had not
        ended after `timeout` (a service response lost while the server was still matching
        the new client leaves the CLI waiting forever)."""
        try:
            return subprocess.run([ros2, *arguments], env=ros_env, cwd=tmp_path,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as error:
            return subprocess.CompletedProcess(error.cmd, None, '', f'no answer: {error}')

    def run(*arguments, deadline=DEADLINE):
        """An idempotent `ros2 ARGUMENTS` (get, describe, a set to one value): repeated while
        the CLI has not found the node or got no answer, until `deadline` seconds have
        passed; the last result."""
        end = time.monotonic() + deadline
        while True:
            result = once(*arguments)
            if not (_retryable(result) or _unanswered(result)) or time.monotonic() > end:
                return result

    def transition(node, name, before, after):
        """`ros2 lifecycle set NODE NAME`: not idempotent, so it is repeated only when the node
        certainly did not take it: 'Node not found' (nothing was sent), or no answer while
        `ros2 lifecycle get` still reports `before`. When an answer was lost, the state the
        node reached decides. Returns (the last `set` result, the `get` result after it)."""
        end = time.monotonic() + DEADLINE
        lost = False
        while True:
            result = once('lifecycle', 'set', node, name)
            state = run('lifecycle', 'get', node)
            if result.stdout.strip() == 'Transitioning successful':
                return result, state
            if state.stdout.strip() == after and (lost or _unanswered(result)):
                # The node took an earlier (or this) request whose answer was lost.
                return result, state
            lost = lost or _unanswered(result)
            if (not (_retryable(result) or _unanswered(result))
                    or state.stdout.strip() != before or time.monotonic() > end):
                return result, state

    def launch(*arguments, file='policy.launch.py'):
        """`ros2 launch ...` in a process group of its own (as a terminal runs it)."""
        process = harness.OutputProcess(
            [ros2, 'launch', 'cosmos_policy_ros', file, *arguments], ros_env,
            cwd=tmp_path, start_new_session=True)
        launches.append(process)
        return process

    def until(arguments, expected, launched):
        """Repeat `ros2 ARGUMENTS` until its stdout contains `expected` (the node is starting,
        discovery takes a while), at most DEADLINE seconds; the last result."""
        end = time.monotonic() + DEADLINE
        while True:
            result = once(*arguments)
            if expected in result.stdout or time.monotonic() > end:
                return result
            assert launched.alive(), 'the launch ended:\n' + launched.output
            time.sleep(0.5)  # polling period, not a wait for anything

    yield SimpleNamespace(run=run, launch=launch, until=until, transition=transition,
                          ros2=ros2, env=ros_env)
    for process in launches:
        if process.alive():
            os.killpg(process.process.pid, signal.SIGKILL)
            process.wait(30)
    # The graph commands started a ros2 daemon for this test's domain: end it.
    once('daemon', 'stop')


def _demo_frame(client, harness):
    """One observation for demo.yaml (three cameras, 14 joints), stamped now."""
    stamp = harness.now_ns()
    for camera in ('left_wrist', 'right_wrist', 'primary'):
        client.image(f'{camera}/image_raw', stamp, np.full((16, 16, 3), 80, np.uint8))
    client.joints('joint_states', stamp, harness.ALOHA_JOINTS, np.linspace(-0.5, 0.5, 14))


def _preset_files(tmp_path, preset):
    layout = 'aloha' if preset == 'demo' else preset
    model = tmp_path / f'fake_{preset}.yaml'
    model.write_text(f'layout: {{preset: {layout}}}\nmodel_id: fake-{preset}\n')
    return model


PRESET_ARGUMENTS = {
    # preset config -> the other launch arguments a user of that robot would give
    'libero': ['namespace:=arm', 'use_sim_time:=true'],
    'robocasa': ['namespace:=kitchen', 'log_level:=debug'],
    'aloha': ['use_sim_time:=false'],
    'demo': ['namespace:=demo', 'use_sim_time:=true'],
}


@pytest.mark.parametrize('preset', sorted(PRESET_ARGUMENTS))
def test_launch_each_preset_unconfigured_then_lifecycle_set(cli, tmp_path, preset):
    model = _preset_files(tmp_path, preset)
    arguments = PRESET_ARGUMENTS[preset]
    namespace = next((a.split(':=')[1] for a in arguments if a.startswith('namespace:=')), '')
    node = f'/{namespace}/cosmos_policy' if namespace else '/cosmos_policy'
    sim_time = 'use_sim_time:=true' in arguments
    launched = cli.launch(f'config:={preset}.yaml', f'model:={model}', FAKE_FACTORY,
                          'autostart:=false', *arguments)
    try:
        state = cli.until(['lifecycle', 'get', node], 'unconfigured', launched)
        assert state.stdout.strip() == 'unconfigured [1]', state.stdout + state.stderr
        sim = cli.run('param', 'get', node, 'use_sim_time')
        assert sim.stdout.strip() == f'Boolean value is: {sim_time}', sim.stdout + sim.stderr
        before = 'unconfigured [1]'
        for name, after in (('configure', 'inactive [2]'), ('activate', 'active [3]'),
                            ('deactivate', 'inactive [2]'), ('cleanup', 'unconfigured [1]')):
            result, state = cli.transition(node, name, before, after)
            assert state.stdout.strip() == after, (name, result.stdout, result.stderr,
                                                   state.stdout, state.stderr, launched.output)
            # '' when its answer was lost (the state above decides then)
            assert result.stdout.strip() in ('Transitioning successful', ''), result.stdout
            before = after
    finally:
        code = _ctrl_c(launched)
    assert code == 0, launched.output
    assert 'Traceback' not in launched.output, launched.output


def test_running_node_params_topic_echo_and_ctrl_c(cli, tmp_path, client_factory, harness):
    """Default arguments (autostart): the node comes up active; parameters are described, read
    and set (a bad value refused with the reason); `ros2 topic echo --once action_chunk` prints
    a chunk; Ctrl-C ends the launch with exit code 0."""
    model = _preset_files(tmp_path, 'demo')
    launched = cli.launch('config:=demo.yaml', f'model:={model}', FAKE_FACTORY)
    try:
        state = cli.until(['lifecycle', 'get', '/cosmos_policy'], 'active [3]', launched)
        assert state.stdout.strip() == 'active [3]', state.stdout + launched.output

        described = cli.run('param', 'describe', '/cosmos_policy', 'rate')
        assert 'Parameter name: rate' in described.stdout and 'Type: double' in (
            described.stdout), described.stdout + described.stderr
        assert 'Min value: 0.0' in described.stdout and '[Hz]' in described.stdout
        steps = cli.run('param', 'get', '/cosmos_policy', 'num_denoising_steps')
        assert steps.stdout.strip() == 'Integer value is: 5', steps.stdout + steps.stderr

        accepted = cli.run('param', 'set', '/cosmos_policy', 'num_denoising_steps', '7')
        assert accepted.stdout.strip() == 'Set parameter successful', (
            accepted.stdout + accepted.stderr)
        refused = cli.run('param', 'set', '/cosmos_policy', 'num_denoising_steps', '0')
        # Refused with the reason (on stderr), naming the parameter and its range.
        assert refused.stderr.startswith('Setting parameter failed'), (
            refused.stdout + refused.stderr)
        assert 'num_denoising_steps' in refused.stderr and 'Min: 1' in refused.stderr
        read_only = cli.run('param', 'set', '/cosmos_policy', 'model_path', '/elsewhere')
        assert read_only.stderr.startswith('Setting parameter failed'), (
            read_only.stdout + read_only.stderr)
        steps = cli.run('param', 'get', '/cosmos_policy', 'num_denoising_steps')
        assert steps.stdout.strip() == 'Integer value is: 7', steps.stdout + steps.stderr

        # Inputs from this process (demo.yaml: three cameras, 14 joints, the task parameter).
        client = client_factory()
        echoes, printed = [], []

        def start_echo():
            echoes.append(subprocess.Popen(
                [cli.ros2, 'topic', 'echo', '--once', 'action_chunk'], env=cli.env,
                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))

        def echoed():
            """The echo ended; one that ended because its graph view did not show the topic
            yet (it subscribed to nothing, so it missed nothing) is started again."""
            if echoes[-1].poll() is None:
                return False
            printed.append(echoes[-1].communicate(timeout=30)[0])
            if echoes[-1].returncode != 0 and 'Could not determine the type' in printed[-1]:
                start_echo()
                return False
            return True

        start_echo()
        try:
            assert client.spin_until(echoed, DEADLINE, period=0.2,
                                     every=lambda: _demo_frame(client, harness)), (
                'no chunk echoed:\n' + ''.join(printed) + launched.output)
        finally:
            if echoes[-1].poll() is None:
                echoes[-1].kill()
                echoes[-1].wait(10)
        echo, printed = echoes[-1], printed[-1]
        assert echo.returncode == 0, printed
        assert 'model_id: fake-demo' in printed, printed
        assert 'num_denoising_steps: 7' in printed, printed
        assert 'action_dim: 14' in printed and 'horizon: 50' in printed, printed
    finally:
        code = _ctrl_c(launched)
    assert code == 0, launched.output
    assert 'Traceback' not in launched.output, launched.output


def test_policy_server_launch_for_two_namespaces_and_the_cli_per_robot(cli, tmp_path, harness):
    """policy_server.launch.py with a fleet file of three robots and `robots:=` two of them:
    one process, a lifecycle node per robot in its namespace; `ros2 param` reads each robot's
    own parameters and sets one robot's without touching the other's, `ros2 lifecycle`
    deactivates one robot while the other stays active; Ctrl-C ends it all with exit 0."""
    import yaml

    model = _preset_files(tmp_path, 'libero')
    robot = harness.libero_parameters(rate=10.0)
    robot.pop('policy_factory')  # the server's (here: the launch argument)
    fleet = tmp_path / 'fleet.yaml'
    fleet.write_text(yaml.safe_dump({
        'server': {'model_path': '/set/at/launch', 'device': 'cpu'},
        'robot_defaults': robot,
        'robots': {'cell_a': {'parameters': {'task': 'put the bowl on the plate'}},
                   'cell_b': {'parameters': {'task': 'open the drawer', 'seed': 7}},
                   'cell_c': {}}}))
    launched = cli.launch(f'fleet:={fleet}', 'robots:=cell_a,cell_b', f'model:={model}',
                          FAKE_FACTORY, 'use_sim_time:=false', file='policy_server.launch.py')
    try:
        for node in ('/cell_a/cosmos_policy', '/cell_b/cosmos_policy'):
            state = cli.until(['lifecycle', 'get', node], 'active [3]', launched)
            assert state.stdout.strip() == 'active [3]', state.stdout + launched.output
        nodes = cli.run('node', 'list').stdout.split()
        assert {'/cell_a/cosmos_policy', '/cell_b/cosmos_policy', '/policy_server'} <= set(
            nodes) and '/cell_c/cosmos_policy' not in nodes, nodes
        task = cli.run('param', 'get', '/cell_b/cosmos_policy', 'task')
        assert task.stdout.strip() == 'String value is: open the drawer', task.stdout
        seed = cli.run('param', 'get', '/cell_a/cosmos_policy', 'seed')
        assert seed.stdout.strip() == 'Integer value is: 0', seed.stdout
        factory = cli.run('param', 'get', '/cell_a/cosmos_policy', 'policy_factory')
        assert 'cosmos_policy_ros.fleet.engine:shared_policy' in factory.stdout, factory.stdout
        result, state = cli.transition('/cell_b/cosmos_policy', 'deactivate', 'active [3]',
                                       'inactive [2]')
        assert state.stdout.strip() == 'inactive [2]', result.stdout + result.stderr
        other = cli.run('lifecycle', 'get', '/cell_a/cosmos_policy')
        assert other.stdout.strip() == 'active [3]', other.stdout
        rate = cli.run('param', 'set', '/cell_a/cosmos_policy', 'rate', '5.0')
        assert rate.stdout.strip() == 'Set parameter successful', rate.stdout + rate.stderr
        assert cli.run('param', 'get', '/cell_b/cosmos_policy', 'rate').stdout.strip() == (
            'Double value is: 10.0')
    finally:
        code = _ctrl_c(launched)
    assert code == 0, launched.output
    assert 'Traceback' not in launched.output, launched.output
    assert f'parameter file: {fleet} (your file)' in launched.output  # as policy.launch.py


def test_a_fleet_file_that_is_no_file_and_a_failed_server_fail_the_launch(cli, tmp_path):
    """policy_server.launch.py resolves `fleet` and reports a failed server as
    policy.launch.py does: exit code 1 with the reason."""
    launched = cli.launch('fleet:=fleet_sim.yml', FAKE_FACTORY, file='policy_server.launch.py')
    assert launched.wait(DEADLINE) == 1, launched.output
    assert 'fleet:=fleet_sim.yml: not a file here' in launched.output
    assert 'fleet_aloha.yaml, fleet_sim.yaml' in launched.output  # the files it could mean
    # The server cannot start (its fleet file names no robot): launch exits with 1.
    (tmp_path / 'empty.yaml').write_text('server: {model_path: x}\nrobots: {}\n')
    launched = cli.launch('fleet:=empty.yaml', FAKE_FACTORY, file='policy_server.launch.py')
    assert launched.wait(DEADLINE) == 1, launched.output
    assert '`robots` must list at least one robot' in launched.output
    assert 'policy_server-1 exited with code 1' in launched.output


def _node_pid(launched):
    """The pid launch reports for policy_node ('process started with pid [N]')."""
    match = re.search(r'policy_node-\d+\]: process started with pid \[(\d+)\]', launched.output)
    return int(match.group(1)) if match else None


def _until_output(launched, text, timeout=DEADLINE):
    deadline = time.monotonic() + timeout
    while text not in launched.output and launched.alive() and time.monotonic() < deadline:
        time.sleep(0.05)  # polling period
    return text in launched.output


def test_an_edited_copy_of_a_preset_is_the_one_in_effect(cli, tmp_path):
    """README: copy a preset, edit it, launch it by its path: the node runs the copy (the
    launch and the node say which file, the node what differs from the preset)."""
    from cosmos_policy_ros.package_files import config_file

    preset = config_file('aloha.yaml')
    text = preset.read_text()
    assert 'rate: 25.0' in text and 'cam_high/image_raw' in text
    (tmp_path / 'my_robot.yaml').write_text(
        text.replace('rate: 25.0', 'rate: 12.5').replace('cam_high/image_raw', 'top/image'))
    model = _preset_files(tmp_path, 'aloha')
    launched = cli.launch('config:=my_robot.yaml', f'model:={model}', FAKE_FACTORY)
    try:
        rate = cli.until(['param', 'get', '/cosmos_policy', 'rate'], 'Double value is: 12.5',
                         launched)
        assert rate.stdout.strip() == 'Double value is: 12.5', rate.stdout + launched.output
        topic = cli.run('param', 'get', '/cosmos_policy', 'camera.primary.topic')
        assert topic.stdout.strip() == 'String value is: top/image', topic.stdout
        assert _until_output(launched, 'active: control loop at 12.5 Hz'), launched.output
        mine = tmp_path / 'my_robot.yaml'
        assert f'parameter file: {mine} (your file)' in launched.output
        assert f'parameter files read: {mine}' in launched.output
        assert (f'3 values differ from the preset aloha.yaml ({preset}): camera.primary.topic '
                f"'top/image' (preset: 'cam_high/image_raw'); policy_factory") in (
            launched.output)
        assert 'rate 12.5 (preset: 25.0)' in launched.output
    finally:
        code = _ctrl_c(launched)
    assert code == 0, launched.output


def test_a_preset_name_that_is_no_file_and_a_failed_configure_fail_the_launch(cli, tmp_path):
    launched = cli.launch('config:=alohaa.yaml', FAKE_FACTORY)
    assert launched.wait(DEADLINE) == 1, launched.output
    assert 'config:=alohaa.yaml: not a file here' in launched.output
    assert 'aloha.yaml, demo.yaml' in launched.output  # the presets it could have meant
    # The node fails to configure (its model file is missing): launch exits with 1.
    launched = cli.launch('config:=aloha.yaml', f'model:={tmp_path / "missing.yaml"}',
                          FAKE_FACTORY)
    assert launched.wait(DEADLINE) == 1, launched.output
    assert 'configure failed' in launched.output
    assert 'policy_node-1 exited with code 1' in launched.output


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGKILL])
def test_stopping_the_launch_in_any_way_stops_the_node(cli, tmp_path, harness, signum):
    """`kill` (SIGTERM) or SIGKILL of `ros2 launch` itself: launch leaves its children behind,
    the node notices its parent is gone and stops: no policy outlives its launch."""
    model = _preset_files(tmp_path, 'demo')
    launched = cli.launch('config:=demo.yaml', f'model:={model}', FAKE_FACTORY)
    pid = None
    try:
        assert _until_output(launched, 'active: control loop'), launched.output
        pid = _node_pid(launched)
        assert pid is not None and harness.pid_running(pid), launched.output
        launched.process.send_signal(signum)  # the launch process only, not its group
        assert launched.wait(DEADLINE) is not None, launched.output
        assert harness.wait_until_ended(pid, DEADLINE), (
            f'policy_node (pid {pid}) still runs after {signal.Signals(signum).name} of its '
            f'launch:\n{launched.output}')
    finally:
        if pid is not None and harness.pid_running(pid):
            os.kill(pid, signal.SIGKILL)


def test_ctrl_c_during_a_slow_shutdown_ends_cleanly(cli, tmp_path, client_factory, harness):
    """Ctrl-C: SIGINT from the terminal and again from launch (here, several more) while an
    inference of 3 s runs: the node absorbs them, finishes, and launch reports a clean exit."""
    model = tmp_path / 'slow.yaml'
    model.write_text('layout: {preset: aloha}\ndelay: 3.0\n')
    launched = cli.launch('config:=demo.yaml', f'model:={model}', FAKE_FACTORY)
    try:
        assert _until_output(launched, 'active: control loop'), launched.output
        client = client_factory()

        def inferring():
            parts = client.latest_diagnostics()
            return parts and parts['policy'][2]['inference_in_flight'] == 'true'

        assert client.spin_until(inferring, DEADLINE, period=0.2,
                                 every=lambda: _demo_frame(client, harness)), (
            launched.output)
    finally:
        os.killpg(launched.process.pid, signal.SIGINT)
        for _ in range(5):
            time.sleep(0.1)  # pacing: a user pressing Ctrl-C again
            if launched.alive():
                os.killpg(launched.process.pid, signal.SIGINT)
        code = launched.wait(DEADLINE)
    assert code == 0, launched.output
    assert 'process has finished cleanly' in launched.output, launched.output
    assert 'process has died' not in launched.output, launched.output
