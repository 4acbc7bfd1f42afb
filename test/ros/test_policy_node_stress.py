"""Many configure/activate/deactivate/cleanup cycles and node shutdowns in one process (issue 14).

The node spins on a MultiThreadedExecutor in a background thread while this thread drives the
lifecycle, so each transition destroys and creates subscriptions, publishers and timers while
executor threads build wait sets; and on the EventsExecutor (`executor: events`), where the
transitions run in the executor's thread (SlicedEventsExecutor.run), as the lifecycle services
run them in policy_node: that executor must not see entities change in another thread. An
inference may be running when cleanup comes. Every cycle must succeed and produce a chunk; no
thread may be left behind.
Waits are conditions with deadlines, never timing assertions: it passes however slow the machine.
"""
import threading

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')

pytestmark = [pytest.mark.ros, pytest.mark.slow, pytest.mark.stress]

NODES = 3  # node objects made, cycled and shut down one after the other
CYCLES = 10  # configure ... cleanup cycles per node


def libero_frame(client, stamp_ns):
    client.image('wrist/image_raw', stamp_ns, np.full((16, 16, 3), 120, np.uint8))
    client.jpeg('primary/image_raw/compressed', stamp_ns, np.full((24, 32, 3), 90, np.uint8))
    client.joints('joint_states', stamp_ns, ['finger_l', 'finger_r'], [0.01, 0.02])
    client.pose('eef_pose', stamp_ns, [0.1, 0.2, 0.3], [0.0, 0.0, 0.0, 1.0])


def inference_threads():
    return [thread for thread in threading.enumerate()
            if thread.name == 'cosmos_policy_inference']


@pytest.mark.parametrize('kind', ['multi_threaded', 'events'])
def test_lifecycle_cycles_and_shutdowns_in_one_process(write_setup, client_factory, harness,
                                                       kind):
    from rclpy.lifecycle import TransitionCallbackReturn

    from cosmos_policy_ros.ros.policy_node import _spin, make_executor, PolicyNode

    success = TransitionCallbackReturn.SUCCESS
    params_file = write_setup(harness.libero_parameters(autostart=False, rate=50.0),
                              {'layout': {'preset': 'libero'}, 'delay': 0.01})
    client = client_factory()
    context = rclpy.Context()
    rclpy.init(context=context, args=['stress', '--ros-args', '--params-file', str(params_file)])
    before = set(inference_threads())
    try:
        for index in range(NODES):
            node = PolicyNode(context=context)
            executor = make_executor(kind, context=context)
            executor.add_node(node)
            errors = []

            def spin(executor=executor, errors=errors):
                try:
                    _spin(executor)
                except BaseException as error:  # reported below, with the cycle
                    errors.append(error)

            spinner = threading.Thread(target=spin, name=f'stress_spin_{index}', daemon=True)
            spinner.start()
            # The EventsExecutor: each transition in its thread (see its docstring).
            run = executor.run if kind == 'events' else (lambda function: function())
            try:
                for cycle in range(CYCLES):
                    where = f'node {index}, cycle {cycle}'
                    assert run(node.trigger_configure) == success, (
                        where, node.health().configure_error)
                    assert run(node.trigger_activate) == success, where
                    seen = len(client.chunks)
                    assert client.spin_until(lambda: len(client.chunks) > seen, 120,
                                             every=lambda: libero_frame(client,
                                                                        harness.now_ns())), (
                        f'{where}: no chunk', node.health())
                    # Deactivate/cleanup while inputs flow and inferences may be running.
                    libero_frame(client, harness.now_ns())
                    assert run(node.trigger_deactivate) == success, where
                    assert run(node.trigger_cleanup) == success, where
                    assert node.health().lifecycle_state == 'unconfigured'
                    assert set(inference_threads()) == before, where  # the worker ended
                    assert spinner.is_alive() and not errors, (where, errors)
                assert run(node.trigger_shutdown) == success
            finally:
                executor.shutdown()
                spinner.join(60)
                node.close()
            assert not spinner.is_alive(), f'node {index}: the executor did not stop'
            assert not errors, errors
    finally:
        rclpy.try_shutdown(context=context)
    assert set(inference_threads()) == before
