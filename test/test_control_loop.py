"""The control loop's rules without a ROS graph: fake stamps, a fake clock, a stub policy.

Every tick rule (busy, task, replanning, sync, seed, reset, used-once) and every finish rule
(deactivated, task changed, first-step jump, publish age, the safety check, the chunk's fields),
with their exact boundaries; and node-path / offline-path parity on one recorded stream.
"""
from types import SimpleNamespace

import numpy as np
import pytest

from cosmos_policy_ros.control_loop import (CHUNK_EXECUTING, ControlLoop, DEACTIVATED,
                                            DROPPED, INFERENCE_BUSY, Job, NO_TASK, Skip,
                                            STALE_AT_PUBLISH, TASK_CHANGED)
from cosmos_policy_ros.evaluation.offline_node import CHUNK, OfflineNode
from cosmos_policy_ros.interface import PolicyOutput
from cosmos_policy_ros.layout import LatentLayout
from cosmos_policy_ros.ros.worker import InferenceWorker
from cosmos_policy_ros.testing import fake_header, FakePolicy, STUB_JOINTS, stub_node_config

S = 1_000_000_000
MS = 1_000_000
T0 = 1_700_000_000 * S
JOINTS = STUB_JOINTS
LAYOUT = LatentLayout('stub', ('cam',), chunk_size=4, action_dim=2, proprio_dim=2,
                      image_size=16)


class StubPolicy:
    """Returns `actions` (K, d) as given; counts calls and resets."""

    layout = LAYOUT
    model_id = 'stub'

    def __init__(self, actions=None):
        self.actions = np.zeros((4, 2), np.float32) if actions is None else actions
        self.calls, self.resets, self.seeds = 0, 0, []

    def infer(self, observation, *, num_steps=None, num_candidates=None):
        self.calls += 1
        self.seeds.append(observation.seed)
        return PolicyOutput(actions=np.asarray(self.actions, np.float32), value=0.5,
                            seed=observation.seed, num_steps=num_steps)

    def reset(self):
        self.resets += 1


def _image(stamp_ns, red=51):
    data = np.zeros((16, 16, 3), np.uint8)
    data[..., 0] = red
    return SimpleNamespace(header=fake_header(stamp_ns), height=16, width=16, encoding='rgb8',
                           is_bigendian=0, step=48, data=data.tobytes())


def _joints(stamp_ns, positions=(0.5, 0.25)):
    return SimpleNamespace(header=fake_header(stamp_ns), name=list(JOINTS),
                           position=list(positions), velocity=[], effort=[])


def _loop(policy=None, **changes):
    loop = ControlLoop(policy or StubPolicy(), stub_node_config(**changes))
    loop.start()
    return loop


def _feed(loop, stamp_ns, positions=(0.5, 0.25)):
    camera, arm = loop.streams
    assert loop.receive(camera, _image(stamp_ns)) == ('', '')
    assert loop.receive(arm, _joints(stamp_ns, positions)) == ('', '')


def _job(loop, now_ns, **kwargs):
    job = loop.tick(now_ns, **kwargs)
    assert isinstance(job, Job), job
    return job


# --- the tick decision ---------------------------------------------------------------------
def test_busy_is_checked_first_then_the_task():
    loop = _loop(task='')
    assert loop.tick(T0, busy=True) == Skip(INFERENCE_BUSY)
    skip = loop.tick(T0)
    assert skip.reason == NO_TASK and 'task' in skip.detail


def test_a_job_carries_the_set_the_seed_and_the_settings():
    loop = _loop(seed=7, num_denoising_steps=3, num_candidates=2)
    _feed(loop, T0)
    job = _job(loop, T0 + 30 * MS)  # settled: tolerance 20 ms passed
    assert job.reference_ns == T0 and job.stamps == {'cam': T0, 'arm': T0}
    assert job.seed == job.observation.seed == (7 + T0) % 2 ** 32
    assert job.age_ns == 30 * MS and job.skew_ns == 0
    assert (job.num_steps, job.num_candidates, job.task) == (3, 2, 'stack')
    np.testing.assert_array_equal(job.observation.proprio, [0.5, 0.25])
    assert job.observation.instruction == 'stack' and not job.reset_first


def test_sync_reasons_pass_through_and_a_set_is_used_once():
    loop = _loop()
    assert loop.tick(T0).reason == 'missing'
    camera, arm = loop.streams
    loop.receive(camera, _image(T0))
    loop.receive(arm, _joints(T0 - 5 * MS))  # a closer joint state may still come ...
    assert loop.tick(T0 + 20 * MS - 1).reason == 'unsettled'
    assert _job(loop, T0 + 20 * MS).stamps['arm'] == T0 - 5 * MS  # ... until the tolerance
    assert loop.tick(T0 + 21 * MS).reason == 'not_new'
    assert loop.tick(T0 + 501 * MS).reason == 'stale'


def test_a_stream_whose_every_message_was_dropped_is_not_called_missing():
    loop = _loop()
    camera, arm = loop.streams
    loop.receive(arm, _joints(T0))
    assert loop.tick(T0).reason == 'missing'
    bad = _image(T0)
    bad.encoding = '16UC1'  # arrives, is dropped
    assert loop.receive(camera, bad)[0] == 'encoding'
    skip = loop.tick(T0 + 30 * MS)
    assert skip.reason == DROPPED
    assert skip.detail.startswith('cam: arriving but dropped: encoding: ') and '16UC1' in (
        skip.detail)
    # With another stream silent, the skip stays `missing` and names both.
    other = _loop()
    other.receive(other.streams[0], bad)
    skip = other.tick(T0)
    assert skip.reason == 'missing' and skip.detail.startswith(
        'no message yet from arm; cam: arriving but dropped: encoding')
    # A kept message ends it.
    loop.receive(camera, _image(T0))
    assert isinstance(loop.tick(T0 + 30 * MS), Job)


def test_a_refused_submit_leaves_the_observation_unused():
    loop = _loop()
    _feed(loop, T0)
    assert loop.tick(T0 + 30 * MS, submit=lambda job: False) == Skip(INFERENCE_BUSY)
    taken = []
    job = _job(loop, T0 + 40 * MS, submit=lambda job: taken.append(job) or True)
    assert taken == [job] and job.reference_ns == T0


def test_a_new_task_resets_the_policy_before_the_next_inference_only():
    policy = StubPolicy()
    loop = _loop(policy)
    assert not loop.set_task('stack') and loop.set_task('unstack')
    _feed(loop, T0)
    first = _job(loop, T0 + 30 * MS)
    assert first.reset_first and first.task == 'unstack'
    loop.complete(first, lambda: T0 + 30 * MS)
    assert policy.resets == 1
    _feed(loop, T0 + 100 * MS)
    assert not _job(loop, T0 + 130 * MS).reset_first


@pytest.mark.parametrize('now_offset, due', [(0, False), (200 * MS - 1, False),
                                             (200 * MS, True), (-S, False), (-S - 1, True)])
def test_steps_left_replans_exactly_at_the_threshold(now_offset, due):
    # 4 executed steps at T0 + k * 100 ms; threshold 2: due once 2 steps elapsed, or when
    # the clock is more than a second behind the chunk (a bag loop).
    loop = _loop(replan_mode='steps_left', replan_threshold=2)
    loop.executing = (T0, 4)
    decision = loop.tick(T0 + now_offset)
    assert (decision.reason != CHUNK_EXECUTING) == due


# --- the finish decision -------------------------------------------------------------------
def _finished(loop, job, now_ns):
    return loop.complete(job, lambda: now_ns)[0]


def test_stopping_or_restarting_discards_a_chunk_in_flight():
    loop = _loop()
    _feed(loop, T0)
    job = _job(loop, T0 + 30 * MS)
    loop.stop()
    assert _finished(loop, job, T0 + 40 * MS).reason == DEACTIVATED
    loop.start()
    assert _finished(loop, job, T0 + 40 * MS).reason == DEACTIVATED
    assert loop.executing is None


def test_a_task_change_during_inference_rejects_the_chunk():
    loop = _loop()
    _feed(loop, T0)
    job = _job(loop, T0 + 30 * MS)
    loop.set_task('other')
    assert _finished(loop, job, T0 + 40 * MS).reason == TASK_CHANGED


@pytest.mark.parametrize('after_ns, reason', [(S, ''), (S + 1, STALE_AT_PUBLISH)])
def test_publish_age_boundary(after_ns, reason):
    loop = _loop()
    _feed(loop, T0)
    job = _job(loop, T0 + 30 * MS)
    assert _finished(loop, job, T0 + after_ns).reason == reason  # max_publish_age 1 s


@pytest.mark.parametrize('limit, reason', [(0.25, ''), (np.nextafter(0.25, 0), 'jump')])
def test_first_step_jump_boundary(limit, reason):
    # current (0.5, 0.25), first action (0.75, 0.25): the jump is exactly 0.25.
    policy = StubPolicy(np.array([[0.75, 0.25]] * 4, np.float32))
    loop = _loop(policy, max_first_step_jump=float(limit))
    _feed(loop, T0)
    finished = _finished(loop, _job(loop, T0 + 30 * MS), T0 + 40 * MS)
    assert finished.reason == reason


def test_the_jump_compares_with_the_newest_joint_state_not_the_synchronized_one():
    policy = StubPolicy(np.array([[0.75, 0.25]] * 4, np.float32))
    loop = _loop(policy, max_first_step_jump=0.1)
    _feed(loop, T0)
    job = _job(loop, T0 + 30 * MS)
    assert loop.receive(loop.streams[1], _joints(T0 + 35 * MS, (0.7, 0.25)))[0] == ''
    assert _finished(loop, job, T0 + 40 * MS).ok  # 0.05 from the newest positions
    loop.buffer.clear()
    _feed(loop, T0 + 100 * MS)
    job = _job(loop, T0 + 130 * MS)
    loop.buffer.clear()
    finished = _finished(loop, job, T0 + 140 * MS)
    assert finished.reason == 'jump' and 'no current joint positions' in finished.detail


def test_safety_reasons_pass_through_and_clamps_are_counted():
    policy = StubPolicy(np.array([[0.5, 2.0]] * 4, np.float32))
    loop = _loop(policy, action_upper_limits=[1.0, 1.0])
    _feed(loop, T0)
    assert _finished(loop, _job(loop, T0 + 30 * MS), T0 + 40 * MS).reason == 'limits'
    loop.reconfigure(loop.config.replace(limit_mode='clamp'))
    _feed(loop, T0 + 100 * MS)
    finished = _finished(loop, _job(loop, T0 + 130 * MS), T0 + 140 * MS)
    assert finished.ok and finished.clamped == 4
    np.testing.assert_array_equal(finished.chunk.actions[:, 1], 1.0)


def test_the_published_chunk_and_the_executing_state():
    loop = _loop(execute_steps=3, frame_id='base', seed_mode='fixed', seed=11)
    _feed(loop, T0)
    job = _job(loop, T0 + 30 * MS)
    finished, output, elapsed = loop.complete(job, lambda: T0 + 150 * MS,
                                              clock=iter([1.0, 1.25]).__next__)
    chunk = finished.chunk
    assert (chunk.stamp_ns, chunk.frame_id, chunk.seed) == (T0, 'base', 11)
    assert chunk.model_id == 'stub'
    assert chunk.source_names == ('cam', 'arm') and chunk.source_stamps_ns == (T0, T0)
    assert chunk.action_names == JOINTS and chunk.actions.dtype == np.float32
    assert elapsed == chunk.inference_time == 0.25 and chunk.value == 0.5
    assert (chunk.execute_steps, chunk.step_period_ns) == (3, 100 * MS)
    assert list(chunk.trajectory_indices) == [2]  # rows 0, 1 (at 0 and 100 ms) are past
    assert loop.executing == (T0, 3)


# --- parity: the node's path and the offline evaluator's path ----------------------------
def _stream():
    """A recorded stream: camera at 10 Hz, joints at 50 Hz (positions drifting), ticks at 10 Hz
    offset by 15 ms, and a task change in the middle."""
    events = []
    for i in range(20):
        events.append((T0 + i * 100 * MS, 'cam', _image(T0 + i * 100 * MS, red=10 * i)))
    for i in range(100):
        stamp = T0 + i * 20 * MS + 3 * MS
        events.append((stamp, 'arm', _joints(stamp, (0.01 * i, -0.01 * i))))
    events.append((T0 + 1_005 * MS, 'task', 'unstack'))
    events.sort(key=lambda event: event[0])
    ticks = [T0 + i * 100 * MS + 15 * MS for i in range(20)]
    return events, ticks


def _replay(events, ticks, on_message, on_task, on_tick):
    decisions, pending = [], list(events)
    for now in ticks:
        while pending and pending[0][0] <= now:
            _, kind, message = pending.pop(0)
            on_task(message) if kind == 'task' else on_message(kind, message)
        decisions.append(on_tick(now))
    return decisions


def test_node_path_and_offline_path_decide_the_same():
    config = stub_node_config(replan_mode='steps_left', replan_threshold=1, execute_steps=4,
                              max_first_step_jump=0.5, sync_tolerance=0.005)
    events, ticks = _stream()

    # The node's path: callbacks hand messages to loop.receive; the timer ticks with the
    # worker's busy flag and submit; the worker completes the job (the ROS clock = tick time).
    loop = ControlLoop(FakePolicy(LAYOUT), config)
    loop.start()
    streams = {stream.name: stream for stream in loop.streams}
    outcomes = []

    def run(item):
        job, now = item
        finished, output, _ = loop.complete(job, lambda: now)
        outcomes.append(finished)

    worker = InferenceWorker(run, lambda error: outcomes.append(error))

    def node_tick(now):
        decision = loop.tick(now, busy=worker.busy, submit=lambda job: worker.submit((job, now)))
        if isinstance(decision, Skip):
            return decision.reason, None
        assert worker.wait_idle(60)
        finished = outcomes.pop()
        if not finished.ok:
            return finished.reason, None
        return CHUNK, (finished.chunk.stamp_ns, finished.chunk.seed,
                       finished.chunk.actions.tobytes())

    try:
        node = _replay(events, ticks, lambda name, msg: loop.receive(streams[name], msg),
                       loop.set_task, node_tick)
    finally:
        worker.stop(10)

    offline_node = OfflineNode(FakePolicy(LAYOUT), config)
    topic = {'cam': '/cam/image_raw', 'arm': '/joint_states'}

    def offline_tick(now):
        tick = offline_node.tick(now)
        if tick.status != CHUNK:
            return tick.status, None
        return CHUNK, (tick.reference_ns, tick.seed, tick.actions.tobytes())

    offline = _replay(events, ticks, lambda name, msg: offline_node.feed(topic[name], msg),
                      offline_node.set_task, offline_tick)
    assert node == offline
    statuses = {status for status, _ in node}
    assert {CHUNK, CHUNK_EXECUTING}.issubset(statuses), node  # both rules were exercised
    assert offline_node.loop.input_counts.snapshot() == loop.input_counts.snapshot()
