"""Output message builders, the diagnostics levels and the inference worker (no ROS graph)."""
import threading

import numpy as np
import pytest

pytest.importorskip('rclpy')

pytestmark = pytest.mark.ros

S = 1_000_000_000


def test_action_chunk_message_is_row_major_with_provenance():
    from cosmos_policy_ros.ros import outputs

    actions = np.arange(6, dtype=np.float32).reshape(2, 3)  # (K=2, d=3)
    msg = outputs.action_chunk_msg(
        stamp_ns=12 * S + 345, frame_id='base', action_names=['a', 'b', 'c'], actions=actions,
        step_period=0.05, value=0.5, source_names=['cam', 'joints'],
        source_stamps_ns=[12 * S + 345, 12 * S + 300], seed=7, num_denoising_steps=5,
        inference_time=0.25, model_id='m')
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (12, 345)
    assert (msg.horizon, msg.action_dim) == (2, 3)
    assert list(msg.actions) == [0, 1, 2, 3, 4, 5]  # actions[k * d + j]
    assert [(t.sec, t.nanosec) for t in msg.source_stamps] == [(12, 345), (12, 300)]
    assert (msg.seed, msg.num_denoising_steps, msg.model_id) == (7, 5, 'm')


def test_joint_trajectory_points_keep_their_time():
    from cosmos_policy_ros.ros import outputs

    actions = np.arange(8.0).reshape(4, 2)
    msg = outputs.joint_trajectory_msg(stamp_ns=5 * S, frame_id='', joint_names=['j1', 'j2'],
                                       actions=actions, step_period_ns=40_000_000,
                                       indices=range(2, 4))
    assert (msg.header.stamp.sec, list(msg.joint_names)) == (5, ['j1', 'j2'])
    assert [list(p.positions) for p in msg.points] == [[4.0, 5.0], [6.0, 7.0]]
    assert [(p.time_from_start.sec, p.time_from_start.nanosec) for p in msg.points] == [
        (0, 80_000_000), (0, 120_000_000)]


def test_image_message_round_trips_through_the_converter():
    from cosmos_policy_ros.conversions import image_to_rgb
    from cosmos_policy_ros.ros import outputs

    rgb = np.random.default_rng(1).integers(0, 256, (3, 5, 3), dtype=np.uint8)
    msg = outputs.image_msg(stamp_ns=S, frame_id='cam', rgb=rgb)
    assert msg.encoding == 'rgb8' and msg.step == 15
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)


def snapshot(**changes):
    from cosmos_policy_ros.ros.diagnostics import HealthSnapshot

    values = dict(node_name='/cosmos_policy', lifecycle_state='active', streams=('cam',),
                  input_counts={('cam', 'received'): 10}, watchdog_timeout=5.0,
                  seconds_since_chunk=0.5, ticks=10, latency={'p50': 0.1, 'p95': 0.2,
                                                              'max': 0.3})
    values.update(changes)
    return HealthSnapshot(**values)


def levels(current, previous=None):
    from builtin_interfaces.msg import Time

    from cosmos_policy_ros.ros.diagnostics import diagnostic_array

    msg = diagnostic_array(current, previous, Time())
    return {status.name.split(': ')[1]: (status.level, status.message,
                                         {kv.key: kv.value for kv in status.values})
            for status in msg.status}


def test_diagnostics_ok():
    from cosmos_policy_ros.ros.diagnostics import OK

    parts = levels(snapshot())
    assert {name: level for name, (level, _, _) in parts.items()} == {
        'policy': OK, 'inputs': OK, 'control loop': OK}
    assert parts['policy'][2]['inference_latency_p95_s'] == '0.2'
    assert parts['inputs'][2]['received.cam'] == '10'


def test_diagnostics_watchdog_error_only_when_active():
    from cosmos_policy_ros.ros.diagnostics import ERROR, OK

    level, message, _ = levels(snapshot(seconds_since_chunk=6.0))['policy']
    assert level == ERROR and message.startswith('watchdog: no chunk published for 6.0 s')
    assert levels(snapshot(seconds_since_chunk=6.0, watchdog_timeout=0.0))['policy'][0] == OK
    assert levels(snapshot(lifecycle_state='inactive', seconds_since_chunk=None))[
        'policy'][0] == OK


def test_diagnostics_warn_on_new_problems_only():
    from cosmos_policy_ros.ros.diagnostics import OK, WARN

    before = snapshot(input_counts={('cam', 'received'): 10, ('cam', 'truncated'): 2},
                      rejected={'limits': 1}, inference_errors=1)
    same = snapshot(input_counts={('cam', 'received'): 20, ('cam', 'truncated'): 2},
                    rejected={'limits': 1}, inference_errors=1, ticks=20)
    parts = levels(same, before)
    assert parts['inputs'][0] == OK and parts['policy'][0] == OK
    assert parts['inputs'][2]['dropped.cam.truncated'] == '2'
    worse = snapshot(input_counts={('cam', 'received'): 30, ('cam', 'truncated'): 3},
                     rejected={'limits': 2}, inference_errors=1, ticks=30)
    parts = levels(worse, same)
    assert parts['inputs'][0] == WARN and parts['policy'][0] == WARN
    assert parts['policy'][2]['rejected.limits'] == '2'
    # Every tick of the period skipped for lack of an observation: the control loop warns.
    starving = snapshot(ticks=30, skipped={'stale': 20}, last_skip_detail='stale: 3 s old')
    level, message, _ = levels(starving, snapshot(ticks=10))['control loop']
    assert level == WARN and 'stale: 3 s old' in message
    pacing = snapshot(ticks=30, skipped={'inference_busy': 20})
    assert levels(pacing, snapshot(ticks=10))['control loop'][0] == OK
    # Active but no tick since the last report (sim time without /clock): WARN.
    level, message, _ = levels(snapshot(ticks=10), snapshot(ticks=10))['control loop']
    assert level == WARN and 'use_sim_time without /clock' in message
    assert levels(snapshot(ticks=10, lifecycle_state='inactive'),
                  snapshot(ticks=10, lifecycle_state='inactive'))['control loop'][0] == OK


def test_diagnostics_name_a_stream_arriving_but_dropped():
    from cosmos_policy_ros.ros.diagnostics import OK, WARN

    why = "encoding: unsupported encoding '16UC1'"
    dropped = snapshot(input_counts={('cam', 'received'): 10, ('cam', 'encoding'): 10},
                       last_drops={'cam': why}, ticks=20, skipped={'dropped': 10},
                       last_skip_detail=f'dropped: cam: arriving but dropped: {why}')
    # While every message is dropped: WARN naming it, even with no new drop since the last
    # report, never "nothing received" or "missing".
    parts = levels(dropped, dropped)
    level, message, values = parts['inputs']
    assert (level, message) == (WARN, f'cam: arriving but dropped: {why}')
    assert values['last_drop.cam'] == why
    level, message, _ = levels(dropped, snapshot(ticks=10))['control loop']
    assert level == WARN and 'arriving but dropped' in message and 'missing' not in message
    # One kept message: no longer "arriving but dropped".
    kept = snapshot(input_counts={('cam', 'received'): 11, ('cam', 'encoding'): 10},
                    last_drops={'cam': why})
    assert levels(kept, kept)['inputs'][0] == OK


def test_worker_runs_one_job_at_a_time():
    from cosmos_policy_ros.ros.worker import InferenceWorker

    gate = threading.Event()
    done, errors = [], []

    def run(job):
        gate.wait(10)
        if job == 'boom':
            raise RuntimeError('boom')
        done.append(job)

    worker = InferenceWorker(run, errors.append)
    assert worker.submit('a')
    assert worker.busy and not worker.submit('b')  # busy: the second job is refused
    gate.set()
    assert worker.wait_idle(10)
    assert done == ['a'] and not worker.busy
    assert worker.submit('boom') and worker.wait_idle(10)
    assert [str(error) for error in errors] == ['boom']  # reported, thread alive
    assert worker.submit('c') and worker.wait_idle(10) and done == ['a', 'c']
    assert (worker.started, worker.finished) == (3, 3)
    assert worker.stop(10) and not worker.submit('d')
