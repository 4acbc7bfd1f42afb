"""The installed policy_node as a subprocess with the fake policy: the whole ROS contract."""
import json
import math
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip('rclpy')

pytestmark = [pytest.mark.ros, pytest.mark.slow]

START_TIMEOUT = 60.0  # node start-up on a loaded 2-core machine (usually ~2 s)
S = 1_000_000_000


def libero_frame(client, stamp_ns, *, red=200, proprio=None, wrist_encoding='bgr8'):
    """One synchronized LIBERO-like observation, every stream stamped `stamp_ns`."""
    proprio = np.arange(1.0, 10.0) / 10 if proprio is None else proprio
    wrist = np.zeros((24, 32, 3), np.uint8)
    wrist[:, :, 0], wrist[:, :, 1], wrist[:, :, 2] = red, 20, 10
    client.image('wrist/image_raw', stamp_ns, wrist, encoding=wrist_encoding)
    client.jpeg('primary/image_raw/compressed', stamp_ns, np.full((24, 32, 3), 90, np.uint8))
    client.joints('joint_states', stamp_ns, ['other', 'finger_r', 'finger_l'],
                  [9.0, proprio[1], proprio[0]])
    client.pose('eef_pose', stamp_ns, proprio[2:5], proprio[5:9])
    return proprio


def unit_quaternion_proprio():
    proprio = np.array([0.01, -0.01, 0.4, 0.1, 0.9, 0.0, 0.0, 0.6, 0.8])  # q = (0, 0, .6, .8)
    return proprio


def test_chunks_values_and_provenance(write_setup, start_node, client_factory, harness):
    params = write_setup(harness.libero_parameters(), {'layout': {'preset': 'libero'}})
    node = start_node(params)
    client = client_factory()
    sent = {}

    def publish():
        stamp = harness.now_ns()
        sent[stamp] = libero_frame(client, stamp, proprio=unit_quaternion_proprio())

    assert client.spin_until(lambda: len(client.chunks) >= 2 and len(client.values) >= 2,
                             START_TIMEOUT, every=publish, period=0.05, process=node), (
        node.output)
    first_chunk_after = client.received_at[0] - node.started
    chunk = client.chunks[-1]
    stamp = chunk.header.stamp.sec * S + chunk.header.stamp.nanosec
    assert stamp in sent, 'the chunk stamp must be the stamp of a published observation'
    assert list(chunk.action_names) == harness.LIBERO_ACTIONS
    assert (chunk.horizon, chunk.action_dim) == (16, 7)
    assert chunk.step_period == pytest.approx(0.05)
    actions = np.asarray(chunk.actions).reshape(16, 7)
    # The fake returns proprio[j] + 0.001 k: gripper joints by name, then x y z and qx qy qz qw.
    np.testing.assert_allclose(actions[0], sent[stamp][:7], rtol=1e-6)
    np.testing.assert_allclose(actions[5] - actions[0], 0.005, rtol=1e-4)
    # value = mean R / 255 of the first layout camera (wrist, sent as bgr8 with R = 200).
    assert chunk.value == pytest.approx(200 / 255, rel=1e-6)
    assert list(chunk.source_names) == ['wrist', 'primary', 'gripper', 'eef']
    assert [t.sec * S + t.nanosec for t in chunk.source_stamps] == [stamp] * 4
    assert chunk.seed == stamp % 2 ** 32  # seed_mode stamp, seed 0
    assert chunk.num_denoising_steps == 3
    assert 0 < chunk.inference_time < 30
    assert chunk.model_id == 'fake-libero'
    value = next(v for v in client.values if v.header.stamp == chunk.header.stamp)
    assert value.value == pytest.approx(chunk.value)
    assert (list(value.candidate_values), value.selected_candidate) == ([], 0)
    assert value.model_id == 'fake-libero'
    # Diagnostics: the node reports its own health.
    assert client.spin_until(lambda: client.diagnostic('policy', 'chunks_published', '0') != '0',
                             10, every=publish)
    parts = client.latest_diagnostics()
    assert parts['policy'][2]['lifecycle_state'] == 'active'
    assert parts['policy'][2]['model_id'] == 'fake-libero'
    for key in ('inference_latency_p50_s', 'inference_latency_p95_s', 'inference_latency_max_s',
                'warmup_latency_s'):
        assert float(parts['policy'][2][key].split()[0]) >= 0, key
    assert int(parts['inputs'][2]['received.wrist']) > 0
    for key in ('sync_skew_p50_s', 'observation_age_max_s'):
        assert key in parts['inputs'][2]
    assert float(parts['control loop'][2]['tick_rate_hz']) > 0
    print(f'\nstart-to-first-chunk: {first_chunk_after:.2f} s')  # shown with pytest -s
    assert node.stop(signal.SIGINT) == 0, node.output


def test_joint_trajectory_future_images_and_inference_errors(write_setup, start_node,
                                                             client_factory, harness):
    params = write_setup(
        harness.aloha_parameters(publish_joint_trajectory=True, publish_future_images=True,
                                 max_first_step_jump=0.5, num_candidates=3),
        {'layout': {'preset': 'aloha'}, 'delay': 0.3, 'future_images': True, 'fail_every': 3})
    node = start_node(params)
    client = client_factory(trajectory=True, future_cameras=['primary'])
    joints = np.linspace(-0.5, 0.5, 14)
    primary = np.zeros((20, 24, 3), np.uint8)
    primary[:10] = 255  # top half white: the fake's future image is flipped vertically

    def publish():
        stamp = harness.now_ns()
        for camera in ('left_wrist', 'right_wrist'):
            client.image(f'{camera}/image_raw', stamp, np.full((20, 24, 3), 60, np.uint8))
        client.image('primary/image_raw', stamp, primary)
        client.joints('joint_states', stamp, harness.ALOHA_JOINTS, joints)

    def done():
        return (len(client.trajectories) >= 2 and client.future['primary']
                and client.diagnostic('policy', 'inference_errors', '0') != '0')

    assert client.spin_until(done, START_TIMEOUT, every=publish, process=node), node.output
    trajectory = client.trajectories[-1]
    assert list(trajectory.joint_names) == harness.ALOHA_JOINTS
    chunk = next(c for c in client.chunks if c.header.stamp == trajectory.header.stamp)
    actions = np.asarray(chunk.actions).reshape(50, 14)
    np.testing.assert_allclose(actions[0], joints, rtol=1e-6)
    times = [p.time_from_start.sec + p.time_from_start.nanosec / 1e9 for p in trajectory.points]
    first = round(times[0] / 0.04)
    # Inference takes >= 0.3 s: the points due before publishing (>= 8 of 50) are dropped, the
    # rest keep their place at k * step_period from the observation stamp.
    assert first >= 8 and len(times) == 50 - first
    np.testing.assert_allclose(times, [0.04 * k for k in range(first, 50)], atol=1e-9)
    for point, k in zip(trajectory.points, range(first, 50)):
        np.testing.assert_allclose(point.positions, actions[k], rtol=1e-6)
    future = client.future['primary'][-1]
    assert (future.height, future.width, future.encoding) == (20, 24, 'rgb8')
    pixels = np.frombuffer(bytes(future.data), np.uint8).reshape(20, 24, 3)
    np.testing.assert_array_equal(pixels, primary[::-1])
    # Best-of-N provenance: 3 candidates, the last one selected.
    value = next(v for v in client.values if v.header.stamp == chunk.header.stamp)
    assert len(value.candidate_values) == 3 and value.selected_candidate == 2
    # Every third inference raises: counted, logged once, and the node keeps publishing.
    assert node.output.count('inference failed') == 1, node.output
    assert 'fake failure (fail_every=3)' in client.diagnostic('policy', 'last_error')
    assert node.alive()
    assert node.stop(signal.SIGINT) == 0, node.output


def _count(client, part, key):
    return int(client.diagnostic(part, key, '0'))


def test_bad_inputs_are_dropped_counted_and_survived(write_setup, start_node, client_factory,
                                                     harness):
    params = write_setup(harness.libero_parameters(max_observation_age=0.5),
                         {'layout': {'preset': 'libero'}})
    node = start_node(params)
    client = client_factory()
    proprio = unit_quaternion_proprio()
    wrist = np.full((24, 32, 3), 100, np.uint8)

    def frame(stamp, *, wrist_kind='good', joints_kind='good', wrist_offset=0):
        if wrist_kind == 'good':
            client.image('wrist/image_raw', stamp + wrist_offset, wrist)
        elif wrist_kind == 'encoding':
            client.image('wrist/image_raw', stamp, wrist, encoding='16UC1')
        elif wrist_kind == 'truncated':
            client.image('wrist/image_raw', stamp, wrist, data=wrist.tobytes()[:-7])
        client.jpeg('primary/image_raw/compressed', stamp, wrist)
        names, values = ['finger_l', 'finger_r'], [proprio[0], proprio[1]]
        if joints_kind == 'nan':
            values = [math.nan, proprio[1]]
        elif joints_kind == 'missing':
            names, values = ['finger_l'], [proprio[0]]
        client.joints('joint_states', stamp, names, values)
        client.pose('eef_pose', stamp, proprio[2:5], proprio[5:9])

    # Wait for the node to be up and matched: valid frames give a first chunk.
    assert client.spin_until(lambda: client.chunks, START_TIMEOUT, process=node,
                             every=lambda: frame(harness.now_ns())), node.output
    cases = [  # (frame arguments, stamp shift, diagnostics part and key that must count it)
        ({'wrist_kind': 'encoding'}, 0, 'inputs', 'dropped.wrist.encoding'),
        ({'wrist_kind': 'truncated'}, 0, 'inputs', 'dropped.wrist.truncated'),
        ({'joints_kind': 'nan'}, 0, 'inputs', 'dropped.gripper.non_finite'),
        ({'joints_kind': 'missing'}, 0, 'inputs', 'dropped.gripper.missing_joint'),
        ({}, -5 * S, 'control loop', 'skipped.stale'),  # 5 s old observations
        # Frames are >= 50 ms apart: a wrist 25 ms late is > 20 ms (sync_tolerance) from any
        # primary stamp.
        ({'wrist_offset': 25 * harness.MS}, 0, 'control loop', 'skipped.skew'),
    ]
    for kwargs, shift, part, key in cases:
        # A gap wider than sync_tolerance, so no bad frame pairs with a previous good one.
        resume = time.monotonic() + 0.1
        client.spin_until(lambda: time.monotonic() > resume, 1.0)
        phase = set()

        def publish():
            stamp = harness.now_ns() + shift
            phase.add(stamp)
            frame(stamp, **kwargs)

        before = _count(client, part, key)
        assert client.spin_until(lambda: _count(client, part, key) >= before + 3, 30,
                                 every=publish, process=node), (key, node.output)
        used = {c.header.stamp.sec * S + c.header.stamp.nanosec for c in client.chunks}
        assert not used & phase, f'a chunk was computed from a bad observation ({key})'
    # Still alive and working.
    count = len(client.chunks)
    assert client.spin_until(lambda: len(client.chunks) > count, 30, process=node,
                             every=lambda: frame(harness.now_ns())), node.output
    parts = client.latest_diagnostics()
    assert parts['inputs'][2]['received.gripper'] != '0'
    assert 'dropped a message on wrist/image_raw (wrist): encoding' in node.output
    assert node.stop(signal.SIGINT) == 0, node.output


def test_slow_inference_never_stalls_inputs_or_overlaps(write_setup, start_node, client_factory,
                                                        harness, tmp_path):
    record = tmp_path / 'record.jsonl'
    params = write_setup(
        harness.libero_parameters(max_publish_age=0.8, watchdog_timeout=1.5),
        {'layout': {'preset': 'libero'}, 'delay': 1.2, 'record_path': str(record)})
    node = start_node(params)
    client = client_factory()
    proprio = unit_quaternion_proprio()

    def served_during_inference():
        """Two reports during one inference with more messages received in between."""
        reports = [harness.diagnostics_values(msg) for msg in client.diagnostics]
        busy = [(r['policy'][2]['inferences'], int(r['inputs'][2]['received.primary']))
                for r in reports if r['policy'][2]['inference_in_flight'] == 'true']
        return any(a[0] == b[0] and b[1] > a[1] for a, b in zip(busy, busy[1:]))

    def done():
        parts = client.latest_diagnostics()
        return (parts and served_during_inference()
                and _count(client, 'policy', 'rejected.stale_at_publish') >= 2
                and parts['policy'][0] == 2  # ERROR: the watchdog
                and parts['policy'][2]['inference_in_flight'] == 'true')

    assert client.spin_until(done, START_TIMEOUT + 30, process=node,
                             every=lambda: libero_frame(client, harness.now_ns(),
                                                        proprio=proprio)), node.output
    level, message, values = client.latest_diagnostics()['policy']
    assert message.startswith('watchdog: no chunk published for')
    assert not client.chunks, 'chunks 1.2 s old exceed max_publish_age 0.8 s'
    assert _count(client, 'control loop', 'skipped.inference_busy') > 0
    # SIGTERM while an inference is running: clean exit.
    assert node.stop(signal.SIGTERM) == 0, node.output
    entries = [json.loads(line) for line in record.read_text().splitlines()]
    calls = [entry for entry in entries if 'call' in entry]
    assert len(calls) >= 3  # warm-up + at least two control-loop inferences
    assert max(entry['in_flight'] for entry in calls) == 1
    spans = sorted((entry['start'], entry['end']) for entry in calls)
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:]))


@pytest.mark.parametrize('bad,message', [
    ({'num_denoising_steps': 0}, '`num_denoising_steps` must be >= 1. Got 0'),
    ({'rate': -2.0}, '`rate` must be > 0.0 Hz. Got -2.0'),
    ({'limit_mode': 'warn'}, "`limit_mode` must be one of ['reject', 'clamp']. Got 'warn'"),
    ({'camera': {'wrist': {'transport': 'theora'}}}, '`camera.wrist.transport` must be one of'),
    ({'rat': 10.0}, "unknown parameter(s) 'rat' (did you mean 'rate'?)"),
    ({'publish_joint_trajectory': True}, '`publish_joint_trajectory` needs `action_space`'),
    ({'cameras': ['wrist', 'primary', 'secondary']},
     "must be the cameras of the model layout 'libero'"),
])
def test_bad_parameter_file_fails_configure_naming_the_parameter(write_setup, start_node,
                                                                 harness, bad, message):
    parameters = harness.libero_parameters()
    for key, value in bad.items():
        if isinstance(value, dict):  # nested: merge into the existing camera entries
            for name, fields in value.items():
                parameters[key][name].update(fields)
        else:
            parameters[key] = value
    node = start_node(write_setup(parameters, {'layout': {'preset': 'libero'}}))
    assert node.wait(START_TIMEOUT) == 1, node.output
    assert 'configure failed' in node.output and message in node.output, node.output


def _set(client, values):
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    request = SetParameters.Request()
    request.parameters = [Parameter(name, value=value).to_parameter_msg()
                          for name, value in values.items()]
    return client.call(SetParameters, 'cosmos_policy/set_parameters', request).results


def test_runtime_parameter_changes(write_setup, start_node, client_factory, harness):
    params = write_setup(harness.libero_parameters(), {'layout': {'preset': 'libero'}})
    node = start_node(params)
    client = client_factory()
    proprio = unit_quaternion_proprio()

    def publish():
        libero_frame(client, harness.now_ns(), proprio=proprio)

    assert client.spin_until(lambda: client.chunks, START_TIMEOUT, every=publish,
                             process=node), node.output
    # Accepted: a safe change applies to the next chunks.
    (result,) = _set(client, {'num_denoising_steps': 7})
    assert result.successful, result.reason
    count = len(client.chunks)
    assert client.spin_until(lambda: len(client.chunks) > count + 1, 30, every=publish)
    assert client.chunks[-1].num_denoising_steps == 7
    # Rejected, with a reason naming the problem.
    rejected = {
        'num_denoising_steps': (0, 'num_denoising_steps'),
        'limit_mode': ('warn', '`limit_mode` must be one of'),
        'action_upper_limits': ([1.0, 1.0], '`action_upper_limits` has 2 values'),
        'replan_threshold': (-3, 'replan_threshold'),
        'model_path': ('/elsewhere', 'read-only'),
        'step_period': (0.1, 'read-only'),
    }
    for name, (value, reason) in rejected.items():
        (result,) = _set(client, {name: value})
        assert not result.successful and reason in result.reason, (name, result.reason)
    # Limits at runtime: the fake's actions are proprio + 0.001 k; z (0.4) is above 0.3.
    upper = [1.0, 1.0, 0.3, 1.0, 1.0, 1.0, 1.0]
    (result,) = _set(client, {'action_upper_limits': upper})
    assert result.successful, result.reason
    assert client.spin_until(lambda: _count(client, 'policy', 'rejected.limits') > 0, 30,
                             every=publish)
    (result,) = _set(client, {'limit_mode': 'clamp'})
    assert result.successful, result.reason
    count = len(client.chunks)
    assert client.spin_until(lambda: len(client.chunks) > count + 1, 30, every=publish)
    actions = np.asarray(client.chunks[-1].actions).reshape(16, 7)
    assert actions[:, 2].max() <= np.float32(0.3)
    assert client.spin_until(lambda: _count(client, 'policy', 'clamped_values') >= 16, 60,
                             every=publish)
    # A new task reaches the policy (seen in the log) and rate changes take effect.
    results = _set(client, {'task': 'open the drawer', 'rate': 5.0})
    assert all(result.successful for result in results), results
    assert client.spin_until(
        lambda: 0 < float(client.diagnostic('control loop', 'tick_rate_hz', '0')) < 7, 30,
        every=publish), client.latest_diagnostics()
    assert "task: 'open the drawer'" in node.output
    assert node.stop(signal.SIGINT) == 0, node.output


def _state(client):
    from lifecycle_msgs.srv import GetState

    return client.call(GetState, 'cosmos_policy/get_state', GetState.Request()).current_state.label


def _transition(client, label, expected):
    """Request a lifecycle transition and wait for the `expected` state.

    The request is sent once (a transition is not idempotent); if its answer is lost, the
    state is polled instead.
    """
    from lifecycle_msgs.srv import ChangeState

    service = client.node.create_client(ChangeState, 'cosmos_policy/change_state')
    assert client.spin_until(service.service_is_ready, 60)
    request = ChangeState.Request()
    request.transition.label = label
    future = service.call_async(request)
    answered = client.spin_until(future.done, 5)
    client.node.destroy_client(service)
    if answered and not future.result().success:
        return False
    return client.spin_until(lambda: _state(client) == expected, 60)


def test_lifecycle_transitions_without_autostart(write_setup, start_node, client_factory,
                                                 harness):
    params = write_setup(harness.libero_parameters(), {'layout': {'preset': 'libero'}})
    node = start_node(params, '-p', 'autostart:=false')
    client = client_factory()
    proprio = unit_quaternion_proprio()

    def publish():
        libero_frame(client, harness.now_ns(), proprio=proprio)

    assert _state(client) == 'unconfigured'
    assert client.spin_until(lambda: client.diagnostic('policy', 'lifecycle_state') ==
                             'unconfigured', 20, process=node)
    assert _transition(client, 'configure', 'inactive')
    # Inactive: inputs are buffered (and counted), nothing is published.
    assert client.spin_until(lambda: _count(client, 'inputs', 'received.primary') > 3, 30,
                             every=publish)
    assert not client.chunks
    assert _transition(client, 'activate', 'active')
    assert client.spin_until(lambda: len(client.chunks) >= 2, 30, every=publish), node.output
    assert _transition(client, 'deactivate', 'inactive')
    client.spin_until(lambda: False, 0.3, every=publish)  # let in-flight messages arrive
    count = len(client.chunks)
    assert client.spin_until(lambda: _count(client, 'inputs', 'received.primary') > 20, 30,
                             every=publish)
    assert len(client.chunks) == count, 'published while inactive'
    assert _transition(client, 'cleanup', 'unconfigured')
    # Configure again after cleanup, then shut down from inactive.
    assert _transition(client, 'configure', 'inactive')
    assert _transition(client, 'shutdown', 'finalized')
    assert node.alive()
    assert node.stop(signal.SIGINT) == 0, node.output


def test_use_sim_time_steps_left_replanning_and_bag_loop(write_setup, start_node,
                                                         client_factory, harness):
    # Chunks of 16 of which 8 are executed (0.4 s); replan when 2 steps are left. Diagnostics
    # every 50 ms (steady clock) for the lockstep handshake below.
    params = write_setup(harness.libero_parameters(max_observation_age=0.5, execute_steps=8,
                                                   replan_mode='steps_left',
                                                   replan_threshold=2, diagnostics_period=0.05),
                         {'layout': {'preset': 'libero'}})
    node = start_node(params, '-p', 'use_sim_time:=true')
    client = client_factory()
    proprio = unit_quaternion_proprio()
    sim = {'now': 1000 * S}

    def publish():
        # A bag at 20 Hz in simulated time, far from the wall clock (without use_sim_time
        # every observation would be stale by decades).
        sim['now'] += 50 * harness.MS
        client.clock(sim['now'])
        libero_frame(client, sim['now'] - 10 * harness.MS, proprio=proprio)

    def reported(condition):
        """Spin until the node's diagnostics satisfy condition(part -> values) (a deadline)."""
        def holds():
            parts = client.latest_diagnostics()
            return bool(parts) and condition({part: v[2] for part, v in parts.items()})
        assert client.spin_until(holds, START_TIMEOUT, process=node), (
            client.latest_diagnostics(), node.output)

    def idle(values):
        return (values['policy']['inference_in_flight'] == 'false'
                and int(values['policy']['chunks_published']) == len(client.chunks))

    # Lockstep, as a deterministic bag replay would pace it (the same at any machine speed):
    # each frame is published, and the clock advanced to 10 ms after it, only once the node
    # has reported the frame received and the previous tick done (20 Hz timer: one tick per
    # 50 ms of clock).
    reported(lambda v: v['policy']['lifecycle_state'] == 'active' and 'ticks' in v[
        'control loop'] and idle(v))
    ticks = int(client.diagnostic('control loop', 'ticks'))
    for frame in range(1, 30):
        sim['now'] += 50 * harness.MS
        libero_frame(client, sim['now'] - 10 * harness.MS, proprio=proprio)
        reported(lambda v: min(int(count) for key, count in v['inputs'].items()
                               if key.startswith('received.')) >= frame)
        client.clock(sim['now'])
        reported(lambda v: int(v['control loop']['ticks']) >= ticks + frame and idle(v))
    stamp = client.chunks[-1].header.stamp
    assert 1000 <= stamp.sec < 1100
    # On the simulated clock a new chunk is due once 6 of its 8 steps (0.3 s) have elapsed
    # since the last chunk's stamp, and is computed from the frame of that tick (10 ms older):
    # consecutive chunk stamps are 0.3 s apart, never one frame (every_tick would give 0.05 s).
    # The first chunk comes at the first tick: 1 + 28 // 6 chunks in 29 ticks.
    stamps = [c.header.stamp.sec * S + c.header.stamp.nanosec for c in client.chunks]
    assert stamps[0] == 1000 * S + 40 * harness.MS, stamps
    np.testing.assert_allclose(np.diff(stamps) / S, 0.3, atol=1e-9)
    assert len(stamps) == 1 + 28 // 6
    assert _count(client, 'control loop', 'skipped.chunk_executing') == 29 - len(stamps)
    # The bag loops: simulated time jumps back to 500 s. The buffer drops the old timeline and
    # chunks continue from the new stamps.
    sim['now'] = 500 * S
    assert client.spin_until(lambda: client.chunks[-1].header.stamp.sec < 600, 30,
                             every=publish, process=node), node.output
    assert client.spin_until(lambda: _count(client, 'inputs', 'sync_resets') >= 1, 60,
                             every=publish)
    assert node.stop(signal.SIGINT) == 0, node.output


@pytest.mark.parametrize('mode,reason', [('nan', 'non_finite'), ('huge', 'jump')])
def test_unsafe_chunks_are_never_published(write_setup, start_node, client_factory, harness,
                                           mode, reason):
    from cosmos_policy_ros.health import REJECT_LOG_PERIOD
    params = write_setup(harness.aloha_parameters(max_first_step_jump=0.5,
                                                  publish_joint_trajectory=True),
                         {'layout': {'preset': 'aloha'}, 'actions': mode})
    started = time.monotonic()
    node = start_node(params)
    client = client_factory(trajectory=True)
    joints = np.zeros(14)

    def publish():
        stamp = harness.now_ns()
        for camera in ('left_wrist', 'right_wrist', 'primary'):
            client.image(f'{camera}/image_raw', stamp, np.full((8, 8, 3), 60, np.uint8))
        client.joints('joint_states', stamp, harness.ALOHA_JOINTS, joints)

    assert client.spin_until(lambda: _count(client, 'policy', f'rejected.{reason}') >= 3,
                             START_TIMEOUT, every=publish, process=node), node.output
    assert not client.chunks and not client.trajectories and not client.values
    logged = node.output.count(f'chunk not published: {reason}')
    # Throttled: one warning per REJECT_LOG_PERIOD at most, however long the rejections took.
    bound = 1 + int((time.monotonic() - started) // REJECT_LOG_PERIOD)
    assert 1 <= logged <= bound, (logged, bound, node.output)
    assert node.stop(signal.SIGINT) == 0, node.output


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM])
def test_signal_during_a_long_configure_exits_cleanly(write_setup, start_node, harness, signum,
                                                      tmp_path):
    # Twenty warm-up inferences of 2 s each: the signal is sent once the first has ended, so it
    # arrives in the middle of configure (the fake records each call when it ends).
    record = tmp_path / 'record.jsonl'
    warmups = 20
    params = write_setup(harness.libero_parameters(warmup_iterations=warmups),
                         {'layout': {'preset': 'libero'}, 'delay': 2.0,
                          'record_path': str(record)})
    node = start_node(params)

    def calls():
        lines = record.read_text().split('\n')[:-1] if record.exists() else []  # whole lines
        return [entry for entry in map(json.loads, lines) if 'call' in entry]

    deadline = time.monotonic() + START_TIMEOUT
    while not calls() and node.alive() and time.monotonic() < deadline:
        time.sleep(0.05)  # polling period
    assert calls(), 'no warm-up inference ended:\n' + node.output
    code = node.stop(signum, timeout=30)
    assert code == 0, node.output
    assert len(calls()) < warmups, 'the node finished its whole configure first'
    assert 'configure failed' not in node.output, node.output


# policy_node's main with rclpy.init sending `signum` to its own process first: the signal
# comes after process_lifetime's handler is installed and before rclpy's (as a Ctrl-C while
# rcl_init and the DDS participant start, long under load).
SIGNAL_DURING_INIT = '''
import os, sys
import rclpy
from cosmos_policy_ros.ros import policy_node
real_init = rclpy.init
def init(*args, **kwargs):
    os.kill(os.getpid(), int(sys.argv[1]))
    return real_init(*args, **kwargs)
rclpy.init = init
sys.exit(policy_node.main(['policy_node', *sys.argv[2:]]))
'''


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_while_rclpy_starts_stops_the_node(write_setup, harness, ros_env, signum):
    params = write_setup(harness.libero_parameters(), {'layout': {'preset': 'libero'}})
    try:
        result = subprocess.run(
            [sys.executable, '-c', SIGNAL_DURING_INIT, str(int(signum)), '--ros-args',
             '--params-file', str(params)], env=ros_env, capture_output=True, text=True,
            timeout=START_TIMEOUT)
    except subprocess.TimeoutExpired as error:  # it ran on: the stop was lost
        pytest.fail(f'still running {START_TIMEOUT:g} s after the signal:\n{error.stdout}'
                    f'{error.stderr}')
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_chunk_computed_for_the_old_task_is_not_published(write_setup, start_node,
                                                            client_factory, harness):
    params = write_setup(harness.libero_parameters(max_publish_age=10.0, rate=5.0),
                         {'layout': {'preset': 'libero'}, 'delay': 1.5})
    node = start_node(params)
    client = client_factory()
    proprio = unit_quaternion_proprio()

    def in_flight():
        parts = client.latest_diagnostics()
        return bool(parts) and parts['policy'][2]['inference_in_flight'] == 'true'

    assert client.spin_until(in_flight, START_TIMEOUT, process=node,
                             every=lambda: libero_frame(client, harness.now_ns(),
                                                        proprio=proprio)), node.output
    client.task('open the drawer')  # the operator changes the task mid-inference
    assert client.spin_until(
        lambda: _count(client, 'policy', 'rejected.task_changed') >= 1, 30, process=node,
        every=lambda: libero_frame(client, harness.now_ns(), proprio=proprio)), node.output
    assert node.stop(signal.SIGINT) == 0, node.output


def test_the_parameter_files_read_and_the_edits_are_logged(write_setup, start_node, harness,
                                                           tmp_path):
    from cosmos_policy_ros.package_files import config_file

    preset = config_file('aloha.yaml')
    mine = tmp_path / 'my_aloha.yaml'
    mine.write_text(preset.read_text().replace('rate: 25.0', 'rate: 12.5'))
    fake = tmp_path / 'fake.yaml'
    fake.write_text('layout: {preset: aloha}\n')
    node = start_node(mine, '-p', f'model_path:={fake}',
                      '-p', 'policy_factory:=cosmos_policy_ros.testing:load_fake_policy')
    expected = (f'parameter files read: {mine}',
                f'2 values differ from the preset aloha.yaml ({preset}): policy_factory '
                f"'cosmos_policy_ros.testing:load_fake_policy' (preset: "
                f"'cosmos_policy_ros.engine.policy:load_policy'); rate 12.5 (preset: 25.0)",
                'active: control loop at 12.5 Hz')
    deadline = time.monotonic() + START_TIMEOUT
    while not all(line in node.output for line in expected) and node.alive() and (
            time.monotonic() < deadline):
        time.sleep(0.05)  # polling period
    assert all(line in node.output for line in expected), node.output
    assert node.stop(signal.SIGINT) == 0, node.output


def test_more_stop_signals_during_a_slow_shutdown_still_exit_0(write_setup, start_node,
                                                               client_factory, harness,
                                                               tmp_path):
    # Ctrl-C sends SIGINT to the node from the terminal and again from launch; a real model
    # takes a while to shut down. Here an inference of 3 s is running when the signals come:
    # the node waits for it, and every further SIGINT/SIGTERM is absorbed.
    record = tmp_path / 'record.jsonl'
    params = write_setup(harness.libero_parameters(warmup_iterations=0),
                         {'layout': {'preset': 'libero'}, 'delay': 3.0,
                          'record_path': str(record)})
    node = start_node(params)
    client = client_factory()

    def inferring():
        parts = client.latest_diagnostics()
        return parts and parts['policy'][2]['inference_in_flight'] == 'true'

    proprio = unit_quaternion_proprio()
    assert client.spin_until(inferring, START_TIMEOUT + 30, process=node,
                             every=lambda: libero_frame(client, harness.now_ns(),
                                                        proprio=proprio)), node.output
    signals = 0
    while node.alive() and signals < 200:
        node.process.send_signal(signal.SIGTERM if signals % 5 == 4 else signal.SIGINT)
        signals += 1
        time.sleep(0.02)  # pacing of the signals, not a wait for anything
    assert signals > 2, 'the node ended at the first signal: nothing was in flight'
    assert node.wait(60) == 0, node.output
    assert 'Traceback' not in node.output and 'KeyboardInterrupt' not in node.output


def test_the_node_ends_with_the_process_that_started_it(write_setup, harness, ros_env,
                                                        tmp_path):
    # A launcher killed with SIGKILL (or SIGTERM to ros2 launch, which leaves its children):
    # the node notices that its parent is gone and stops by itself.
    import os
    import subprocess
    import sys

    params = write_setup(harness.libero_parameters(), {'layout': {'preset': 'libero'}})
    log = tmp_path / 'node.log'
    launcher = subprocess.Popen(
        [sys.executable, '-c', 'import subprocess, sys, time\n'
         f'node = subprocess.Popen([{str(harness.node_script())!r}, "--ros-args", '
         f'"--params-file", {str(params)!r}], stdout=open({str(log)!r}, "w"), '
         'stderr=subprocess.STDOUT)\n'
         'print(node.pid, flush=True)\n'
         'time.sleep(3600)\n'], env=ros_env, stdout=subprocess.PIPE, text=True)
    node_pid = int(launcher.stdout.readline())
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while 'active: control loop' not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)  # polling period
        assert 'active: control loop' in log.read_text(), log.read_text()
        launcher.kill()
        launcher.wait(30)
        assert harness.wait_until_ended(node_pid, 60), (
            'policy_node kept running after its launcher was killed:\n' + log.read_text())
    finally:
        if harness.pid_running(node_pid):
            os.kill(node_pid, signal.SIGKILL)
    text = log.read_text()
    assert 'the process that started this node' in text and 'has ended: stopping' in text, text
