"""policy_server on a real ROS graph: several robots, one model, each robot alone as far as it
can tell.

* Two simulated arms in lockstep through the server with the shipped model, against the same
  two arms each with its own policy_node: the same chunk stamps and seeds, the same chunks bit
  for bit (the engine is batch-invariant on the CPU), the same outcomes.
* One robot fed garbage (broken images, NaN joints, zero stamps) while the other publishes
  good inputs: the other's chunks keep coming, the drops are counted on the bad robot only,
  which recovers once its inputs are good.
* A bad fleet file stops the server at start with one line naming the file, robot and key.
No timing assertions: waits are conditions with generous deadlines (failure guards)."""
import signal

import numpy as np
import pytest
import yaml

from cosmos_policy_ros.sim.arm import SimConfig
from cosmos_policy_ros.sim.harness import node_config_path, replan_steps_of, sim_settings
from cosmos_policy_ros.sim.model import shipped_model

pytestmark = [pytest.mark.ros, pytest.mark.slow]
FAKE_FACTORY = 'cosmos_policy_ros.testing:load_fake_policy'
DEADLINE = 120.0


def server_script(harness):
    return harness.node_script().parent / 'policy_server'


@pytest.fixture
def start_server(ros_env, harness, tmp_path):
    """start_server(fleet mapping) -> the policy_server process of that fleet file."""
    processes = []

    def start(fleet, **parameters):
        fleet_file = tmp_path / 'fleet.yaml'
        fleet_file.write_text(yaml.safe_dump(fleet))
        params = tmp_path / 'server.yaml'
        params.write_text(yaml.safe_dump({'/**': {'ros__parameters': dict(
            fleet_file=str(fleet_file), **parameters)}}))
        process = harness.OutputProcess(
            [str(server_script(harness)), '--ros-args', '--params-file', str(params)], ros_env)
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.alive():
            process.process.send_signal(signal.SIGINT)
        if process.wait(30) is None:
            process.process.kill()
            process.wait(10)


def _lockstep(side, names, model, out, seeds):
    import rclpy

    from cosmos_policy_ros.ros.fleet_sim import FleetSim, start_policies

    config = node_config_path()
    processes = start_policies(side, names, model, out / side, node_config=config,
                               parameters={'diagnostics_period': 0.05})
    context = rclpy.Context()
    rclpy.init(args=[], context=context)

    def check():
        for process in processes:
            process.check()
    fleet = FleetSim(names, sim_settings(
        'lockstep', replan_steps=replan_steps_of(config)), context=context,
        env_config=SimConfig(episode_timeout=1.2), check=check)
    try:
        fleet.wait_for_policies(timeout=600)
        return fleet.run_round(seeds)
    finally:
        fleet.close()
        rclpy.try_shutdown(context=context)
        for process in processes:
            process.close()


def test_two_arms_in_lockstep_through_the_server_equal_their_single_robot_runs(tmp_path):
    model = shipped_model()
    if model is None:
        pytest.skip('no trained model shipped (cosmos_policy_ros/models/planar_reach)')
    names, seeds = ['arm_0', 'arm_1'], [100000, 100001]
    served = _lockstep('server', names, model, tmp_path, seeds)
    alone = _lockstep('separate', names, model, tmp_path, seeds)
    for arm, single in zip(served, alone):
        # 1.2 s at 4 executed steps per chunk: chunks at steps 0, 4 and 8.
        assert [c.step for c in arm.chunks] == [0, 4, 8]
        assert [(c.stamp_ns, c.seed) for c in arm.chunks] == [
            (c.stamp_ns, c.seed) for c in single.chunks]
        for chunk, reference in zip(arm.chunks, single.chunks):
            np.testing.assert_array_equal(chunk.actions, reference.actions)
        assert (arm.success, arm.steps) == (single.success, single.steps)
    # The arms got their own chunks (another seed, another scene).
    assert np.abs(served[0].chunks[0].actions - served[1].chunks[0].actions).max() > 1e-3


def _robot_parameters(harness):
    parameters = harness.libero_parameters(rate=10.0, diagnostics_period=0.1)
    parameters.pop('policy_factory')  # the server's
    return parameters


def test_bad_input_on_one_robot_while_the_other_keeps_publishing(
        start_server, client_factory, harness, tmp_path):
    fake = tmp_path / 'fake_policy.yaml'
    fake.write_text('layout: {preset: libero}\ndelay: 0.05\n')
    server = start_server({
        'server': {'model_path': str(fake), 'policy_factory': FAKE_FACTORY, 'max_batch': 4},
        'robot_defaults': _robot_parameters(harness),
        'robots': {'good': {}, 'bad': {'parameters': {'task': 'open the drawer'}}}},
        diagnostics_period=0.2)
    good, bad = client_factory(namespace='good'), client_factory(namespace='bad')
    watcher = client_factory()  # /diagnostics of every node
    for client, name in ((good, 'good'), (bad, 'bad')):
        assert client.spin_until(lambda: client.diagnostic(
            'policy', 'lifecycle_state', node=f'/{name}/cosmos_policy') == 'active',
            DEADLINE, process=server), server.output

    def publish(client, stamp, broken=False):
        image = np.full((24, 32, 3), 100, np.uint8)
        if broken:
            client.image('wrist/image_raw', stamp, image, step=7)  # wrong row size
            client.publisher('compressed', 'primary/image_raw/compressed').publish(
                _garbage_jpeg(client, stamp))
            client.joints('joint_states', stamp, ['finger_l', 'finger_r'], [np.nan, 0.0])
            client.pose('eef_pose', 0, [0.4, 0.1, 0.9], [0.0, 0.0, 0.6, 0.8])  # zero stamp
            return
        client.image('wrist/image_raw', stamp, image)
        client.jpeg('primary/image_raw/compressed', stamp, image)
        client.joints('joint_states', stamp, ['finger_l', 'finger_r'], [0.01, -0.01])
        client.pose('eef_pose', stamp, [0.4, 0.1, 0.9], [0.0, 0.0, 0.6, 0.8])

    def both(bad_broken):
        def step():
            stamp = harness.now_ns()
            publish(good, stamp)
            publish(bad, stamp, broken=bad_broken)
            for client in (good, bad):  # their chunks (the watcher spins itself)
                for _ in range(5):
                    client.executor.spin_once(timeout_sec=0)
        return step

    def dropped(name):
        values = watcher.latest_diagnostics(f'/{name}/cosmos_policy').get('inputs', (0, 0, {}))
        return {key: int(value) for key, value in values[2].items()
                if key.startswith('dropped.')}

    before = len(good.chunks)
    assert watcher.spin_until(lambda: len(good.chunks) >= before + 8 and len(dropped('bad')) >= 4,
                              DEADLINE, every=both(True), period=0.1, process=server), (
        len(good.chunks), dropped('bad'), server.output[-3000:])
    assert not bad.chunks  # nothing of the bad robot's reached the model
    assert set(dropped('bad')) >= {'dropped.wrist.size', 'dropped.primary.decode',
                                   'dropped.gripper.non_finite', 'dropped.eef.zero_stamp'}, (
        dropped('bad'))
    assert dropped('good') == {}
    assert all(msg.model_id == 'fake-libero' for msg in good.chunks)
    # Good inputs again: the bad robot recovers; the good one never stopped.
    before = len(good.chunks)
    assert watcher.spin_until(lambda: len(bad.chunks) >= 3 and len(good.chunks) >= before + 3,
                              DEADLINE, every=both(False), period=0.1, process=server), (
        server.output[-3000:])

    def engine():
        return watcher.latest_diagnostics('/policy_server').get('engine', (0, '', {}))[2]

    # Every chunk was one request to the shared engine (the reports come every 0.2 s).
    published = len(good.chunks) + len(bad.chunks)
    assert watcher.spin_until(lambda: int(engine().get('requests', 0)) >= published,
                              DEADLINE, process=server), engine()
    assert int(engine()['robots']) == 2 and int(engine()['max_batch']) == 4
    assert 'Traceback' not in server.output, server.output


def _garbage_jpeg(client, stamp):
    msg = client._types['compressed']()
    client.stamp(msg, stamp)
    msg.format = 'jpeg'
    msg.data = b'not a jpeg'
    return msg


def test_a_bad_fleet_file_fails_at_start_naming_the_robot_and_the_key(
        start_server, harness, tmp_path):
    fake = tmp_path / 'fake_policy.yaml'
    fake.write_text('layout: {preset: libero}\n')
    robot = _robot_parameters(harness)
    server = start_server({
        'server': {'model_path': str(fake), 'policy_factory': FAKE_FACTORY},
        'robot_defaults': robot,
        'robots': {'left': {}, 'right': {'parameters': {'rate': -1.0}}}})
    assert server.wait(DEADLINE) == 1, server.output
    errors = [line for line in server.output.splitlines() if '[ERROR]' in line]
    assert len(errors) == 1, server.output
    assert 'fleet.yaml: robot right' in errors[0] and '`rate` must be > 0.0' in errors[0]
    assert 'Traceback' not in server.output
