"""The node's health rules without a ROS graph (health.py): what is counted, what is logged and
when, the watchdog's clock, the snapshot; and the node's configure sequence (policy_loading)."""
from types import SimpleNamespace

import numpy as np
import pytest

from cosmos_policy_ros.control_loop import ControlLoop, DEACTIVATED, Finished, Skip
from cosmos_policy_ros.health import HealthSnapshot, NodeHealth, TICK_GAP_PERIODS
from cosmos_policy_ros.node_config import config_from_parameters
from cosmos_policy_ros.policy_loading import load_control_loop
from cosmos_policy_ros.safety import JUMP

S = 1_000_000_000
PERIOD = 10.0  # seconds between two warnings about one rejection reason


def _config(**changes):
    parameters = {
        'model_path': 'unused', 'cameras': ['cam'], 'proprio_sources': ['arm'],
        'proprio': {'arm': {'type': 'joint_state', 'joints': ['j0', 'j1']}},
        'action_space': 'joint_position', 'action_names': ['j0', 'j1'], 'task': 'stack',
        'rate': 10.0, 'watchdog_timeout': 3.0, 'num_candidates': 2,
    }
    parameters.update(changes)
    return config_from_parameters(parameters)


def _fake_model(tmp_path, **keys):
    path = tmp_path / 'fake.yaml'
    layout = ('{name: stub, cameras: [cam], chunk_size: 4, action_dim: 2, proprio_dim: 2, '
              'image_size: 16}')
    path.write_text(f'layout: {layout}\n' + ''.join(f'{k}: {v}\n' for k, v in keys.items()))
    return str(path)


def _loop(tmp_path, **changes):
    config = _config(model_path=_fake_model(tmp_path),
                     policy_factory='cosmos_policy_ros.testing:load_fake_policy',
                     warmup_iterations=0, **changes)
    loop, _ = load_control_loop(config)
    return loop


def _rejected(reason=JUMP):
    return Finished(reason=reason, detail='because')


def _published():
    return Finished(chunk=object(), clamped=2)


# --- what is logged --------------------------------------------------------------------------
def test_a_rejection_is_warned_about_once_per_period_and_reason():
    health = NodeHealth(reject_log_period=PERIOD)
    first = health.finished(_rejected(), 0.1, 100.0)
    assert first == (f'chunk not published: {JUMP}: because (counted in /diagnostics; '
                     f'throttled to one warning per {PERIOD:g} s)')
    assert health.finished(_rejected(), 0.1, 100.0 + PERIOD - 1e-6) is None
    assert health.finished(_rejected('stale_at_publish'), 0.1, 101.0) is not None  # own reason
    assert health.finished(_rejected(), 0.1, 100.0 + PERIOD) is not None  # the boundary logs
    assert health.counters.fields(0, 1)['rejected'] == {JUMP: 3, 'stale_at_publish': 1}


def test_a_chunk_discarded_by_a_transition_is_counted_never_warned_about():
    health = NodeHealth()
    assert health.finished(_rejected(DEACTIVATED), 0.1, 0.0) is None
    assert health.counters.fields(0, 1)['rejected'] == {DEACTIVATED: 1}
    assert health.finished(_published(), 0.1, 1.0) is None  # nothing to say either


def test_each_distinct_inference_error_is_logged_once_up_to_the_cap():
    health = NodeHealth(max_distinct_errors=2)
    assert health.error(RuntimeError('boom')) == [
        'inference failed (logged once per distinct error, counted in /diagnostics): '
        'RuntimeError: boom']
    assert health.error(RuntimeError('boom')) == []
    assert health.error(ValueError('boom')) == [  # another type is another error; the cap
        'inference failed (logged once per distinct error, counted in /diagnostics): '
        'ValueError: boom',
        '2 distinct inference errors: further new ones are only counted in /diagnostics']
    assert health.error(KeyError('new')) == []  # past the cap: only counted
    fields = health.counters.fields(0, 1)
    assert fields['inference_errors'] == 4 and fields['last_error'] == "KeyError: 'new'"


# --- the watchdog's clock and the counts -----------------------------------------------------
def _snapshot(health, now, state='active', loop=None, now_ns=0):
    return health.snapshot(now_ns, now, node_name='/n', lifecycle_state=state, loop=loop)


def test_the_watchdog_counts_from_activation_then_from_each_published_chunk():
    health = NodeHealth()
    assert _snapshot(health, 50.0).seconds_since_chunk is None  # never activated
    health.activated(100.0)
    assert _snapshot(health, 104.5).seconds_since_chunk == pytest.approx(4.5)
    health.finished(_rejected(), 0.1, 105.0)  # a rejection does not feed the watchdog
    assert _snapshot(health, 106.0).seconds_since_chunk == pytest.approx(6.0)
    health.finished(_published(), 0.1, 107.0)
    assert _snapshot(health, 108.0).seconds_since_chunk == pytest.approx(1.0)
    assert _snapshot(health, 108.0, state='inactive').seconds_since_chunk is None


def test_published_chunks_clamps_and_elapsed_trajectories_are_counted():
    health = NodeHealth()
    health.finished(_published(), 0.25, 1.0, trajectory_elapsed=True)
    health.finished(_published(), 0.75, 2.0)
    fields = health.counters.fields(0, 1)
    assert (fields['chunks_published'], fields['clamped_values'],
            fields['trajectories_elapsed']) == (2, 4, 1)
    assert fields['latency']['max'] == 0.75 and fields['latency']['count'] == 2


def test_ticks_count_skips_by_reason_and_the_rate_reads_zero_after_a_gap(tmp_path):
    loop = _loop(tmp_path)  # rate 10 Hz: a 0.1 s period
    health = NodeHealth()
    for k in range(11):
        health.tick(k * S // 10, Skip('missing', 'no wrist image'))
    period_ns = S // 10
    last = 10 * period_ns
    snapshot = _snapshot(health, 0.0, loop=loop, now_ns=last + TICK_GAP_PERIODS * period_ns)
    assert snapshot.tick_rate == pytest.approx(10.0)
    assert (snapshot.ticks, snapshot.skipped) == (11, {'missing': 11})
    assert snapshot.last_skip_detail == 'missing: no wrist image'
    late = _snapshot(health, 0.0, loop=loop, now_ns=last + TICK_GAP_PERIODS * period_ns + 1)
    assert late.tick_rate == 0.0


# --- the snapshot ----------------------------------------------------------------------------
def test_the_snapshot_of_an_unconfigured_node_has_the_defaults():
    snapshot = NodeHealth().snapshot(0, 0.0, node_name='/n', lifecycle_state='unconfigured',
                                     configure_error='`rate` must be > 0')
    assert snapshot == HealthSnapshot(node_name='/n', configure_error='`rate` must be > 0')


def test_the_snapshot_reads_the_loop_and_the_warmup(tmp_path):
    loop = _loop(tmp_path)
    snapshot = NodeHealth((0.5, 0.25)).snapshot(0, 0.0, node_name='/n',
                                                lifecycle_state='inactive', loop=loop)
    assert (snapshot.model_id, snapshot.task) == ('fake-stub', 'stack')
    assert snapshot.streams == ('cam', 'arm')
    assert (snapshot.watchdog_timeout, snapshot.num_candidates) == (3.0, 2)
    assert (snapshot.inferences, snapshot.inference_in_flight) == (0, False)
    assert snapshot.warmup_latencies == (0.5, 0.25)


def test_a_tick_and_its_inference_show_up_together():
    """The sequence the node goes through, snapshot after snapshot: a tick that hands out a job
    is counted with the job in flight; the job stays in flight until its chunk is counted
    (job_done comes after finished); a skipped tick starts nothing. The lockstep sim steps on
    'tick counted, nothing in flight, chunks published = chunks received', so a snapshot with
    the tick but not the job (the worker's busy flag read apart from the counters) let it step
    before the chunk arrived."""
    health = NodeHealth()
    job = SimpleNamespace(skew_ns=0, age_ns=0)  # a Job: no `reason`

    def state():
        s = health.snapshot(0, 0.0, node_name='/n', lifecycle_state='active')
        return s.ticks, s.inferences, s.inference_in_flight, s.chunks_published

    health.tick(0, job)
    assert state() == (1, 1, True, 0)
    health.finished(Finished(chunk=object()), 0.1, 1.0)
    assert state() == (1, 1, True, 1)
    health.job_done()
    assert state() == (1, 1, False, 1)
    health.tick(1, Skip('chunk_executing'))
    assert state() == (2, 1, False, 1)
    health.tick(2, job)
    health.finished(Finished(reason='stale_at_publish', detail='old'), 0.1, 2.0)
    health.job_done()
    assert state() == (3, 2, False, 1)


# --- configure: the loop of a config, warmed up ------------------------------------------------
def test_load_control_loop_warms_up_and_returns_the_loop(tmp_path):
    config = _config(model_path=_fake_model(tmp_path),
                     policy_factory='cosmos_policy_ros.testing:load_fake_policy',
                     warmup_iterations=3)
    checks = []
    loop, latencies = load_control_loop(config, check=lambda: checks.append(1))
    assert isinstance(loop, ControlLoop) and loop.config is config
    assert len(latencies) == 3 and all(np.isfinite(latencies))
    assert len(checks) == 1 + 3 + 1  # after loading, before each inference, at the end


def test_load_control_loop_stops_when_check_raises_and_names_bad_parameters(tmp_path):
    config = _config(model_path=_fake_model(tmp_path),
                     policy_factory='cosmos_policy_ros.testing:load_fake_policy',
                     warmup_iterations=3)

    def shutdown():
        raise RuntimeError('shutdown requested during configure')
    with pytest.raises(RuntimeError, match='shutdown'):
        load_control_loop(config, check=shutdown)
    with pytest.raises(ValueError, match='`policy_factory`'):
        load_control_loop(config.replace(policy_factory='no_such_module:load'))
    with pytest.raises(ValueError, match='`action_names`'):  # checked against the layout
        load_control_loop(config.replace(action_names=('j0', 'j1', 'j2')))


def test_stored_and_arriving_but_dropped_read_the_input_counts():
    snapshot = HealthSnapshot(
        node_name='n', streams=('cam', 'arm', 'gripper'),
        input_counts={('cam', 'received'): 5, ('cam', 'encoding'): 3, ('cam', 'size'): 2,
                      ('arm', 'received'): 4, ('arm', 'non_finite'): 1},
        last_drops={'cam': 'size: 3 bytes short', 'arm': 'non_finite: nan'})
    assert (snapshot.stored('cam'), snapshot.stored('arm'), snapshot.stored('gripper')) == (
        0, 3, 0)
    # gripper received nothing (missing, not dropped); arm keeps some of its messages.
    assert snapshot.arriving_but_dropped() == {'cam': 'size: 3 bytes short'}
