"""Arrival ticks (tick_on_arrival) without a ROS graph: fake stamps, a fake clock, a stub policy.

A tick on each stored message lets a complete set start its inference at once; the rules say
it never runs two inferences at once (busy), never starts one less than 1 / rate after the
last start (rate_bound: the rate still bounds replanning), never acts on a set stamped after
the clock (ahead_of_clock: a lockstep simulation's timer tick takes it, as before), and never
takes away a replan the timer would have made (the refused set stays unused; timer ticks are
unchanged). Scenarios at the boundaries, then randomized schedules checked event by event
against an oracle built from the replanning rule and a second sync buffer.
"""
import heapq
import random
from types import SimpleNamespace

import numpy as np
import pytest

from cosmos_policy_ros.control_loop import (AHEAD_OF_CLOCK, CHUNK_EXECUTING, ControlLoop,
                                            INFERENCE_BUSY, Job, make_sync_buffer, RATE_BOUND,
                                            replan_due, Skip)
from cosmos_policy_ros.interface import PolicyOutput
from cosmos_policy_ros.layout import LatentLayout
from cosmos_policy_ros.testing import fake_header, STUB_JOINTS, stub_node_config

S = 1_000_000_000
MS = 1_000_000
T0 = 1_700_000_000 * S
LAYOUT = LatentLayout('stub', ('cam',), chunk_size=4, action_dim=2, proprio_dim=2,
                      image_size=16)


class StubPolicy:
    layout = LAYOUT
    model_id = 'stub'

    def infer(self, observation, *, num_steps=None, num_candidates=None):
        return PolicyOutput(actions=np.zeros((4, 2), np.float32), value=0.5,
                            seed=observation.seed, num_steps=num_steps)

    def reset(self):
        pass


def _image(stamp_ns):
    return SimpleNamespace(header=fake_header(stamp_ns), height=2, width=2, encoding='rgb8',
                           is_bigendian=0, step=6, data=bytes(12))


def _joints(stamp_ns):
    return SimpleNamespace(header=fake_header(stamp_ns), name=list(STUB_JOINTS),
                           position=[0.5, 0.25], velocity=[], effort=[])


def _loop(**changes):
    loop = ControlLoop(StubPolicy(), stub_node_config(**changes))  # rate 10 Hz, tolerance 20 ms
    loop.start()
    return loop


def _store(loop, stream, stamp_ns):
    camera, arm = loop.streams
    message = _image(stamp_ns) if stream == 'cam' else _joints(stamp_ns)
    assert loop.receive(camera if stream == 'cam' else arm, message) == ('', '')


def _feed(loop, stamp_ns):
    _store(loop, 'cam', stamp_ns)
    _store(loop, 'arm', stamp_ns)


# --- scenarios -----------------------------------------------------------------------------
def test_the_message_that_completes_a_set_starts_its_inference_at_once():
    loop = _loop()
    assert loop.tick(T0).reason == 'missing'  # the timer: a period begins
    _store(loop, 'cam', T0 + 10 * MS)
    assert loop.tick(T0 + 12 * MS, arrival=True).reason == 'missing'  # no joints yet
    _store(loop, 'arm', T0 + 11 * MS)
    job = loop.tick(T0 + 13 * MS, arrival=True)
    assert isinstance(job, Job) and job.reference_ns == T0 + 10 * MS
    assert job.start_ns == T0 + 13 * MS  # not at the next timer tick (T0 + 100 ms)


def test_an_arrival_starts_no_inference_within_a_period_of_the_last_start():
    loop = _loop()  # rate 10 Hz: 100 ms
    loop.tick(T0)
    _feed(loop, T0 + 10 * MS)
    first = loop.tick(T0 + 12 * MS, arrival=True)
    loop.complete(first, lambda: T0 + 13 * MS)  # done at once: the worker is idle again
    _feed(loop, T0 + 50 * MS)
    assert loop.tick(T0 + 111 * MS, arrival=True) == Skip(RATE_BOUND)  # 99 ms after
    second = loop.tick(T0 + 112 * MS, arrival=True)  # 100 ms after: a period has passed
    assert isinstance(second, Job) and second.reference_ns == T0 + 50 * MS
    loop.complete(second, lambda: T0 + 113 * MS)
    _feed(loop, T0 + 150 * MS)
    assert loop.tick(T0 + 152 * MS, arrival=True) == Skip(RATE_BOUND)
    third = loop.tick(T0 + 160 * MS)  # the refused set goes to the next timer tick
    assert isinstance(third, Job) and third.reference_ns == T0 + 150 * MS
    loop.complete(third, lambda: T0 + 161 * MS)
    _feed(loop, T0 + 200 * MS)  # the timer's start counts as well
    assert loop.tick(T0 + 259 * MS, arrival=True) == Skip(RATE_BOUND)


def test_a_refused_hand_over_leaves_the_period_unused():
    loop = _loop()
    loop.tick(T0)
    _feed(loop, T0 + 10 * MS)
    assert loop.tick(T0 + 12 * MS, arrival=True, submit=lambda job: False) == Skip(
        INFERENCE_BUSY)
    assert isinstance(loop.tick(T0 + 14 * MS, arrival=True), Job)


def test_busy_and_the_replanning_rule_hold_for_arrival_ticks():
    loop = _loop(replan_mode='steps_left', replan_threshold=1, execute_steps=4)
    loop.tick(T0)
    _feed(loop, T0 + 10 * MS)
    assert loop.tick(T0 + 12 * MS, arrival=True, busy=True) == Skip(INFERENCE_BUSY)
    loop.executing = (T0, 4)  # steps at T0 + k * 100 ms: due once 3 steps elapsed (+300 ms)
    assert loop.tick(T0 + 299 * MS, arrival=True) == Skip(CHUNK_EXECUTING)
    job = loop.tick(T0 + 300 * MS, arrival=True)
    assert isinstance(job, Job) and job.reference_ns == T0 + 10 * MS


def test_a_set_stamped_after_the_clock_waits_for_the_timer_tick_at_its_time():
    # Lockstep simulation: the observation of step t comes before /clock reaches t.
    loop = _loop(max_observation_age=5.0)
    loop.tick(T0)
    _feed(loop, T0 + 100 * MS)
    assert loop.tick(T0, arrival=True) == Skip(AHEAD_OF_CLOCK)
    job = loop.tick(T0 + 100 * MS)
    assert isinstance(job, Job) and job.start_ns == T0 + 100 * MS


def test_timer_ticks_are_never_refused_for_the_rate():
    loop = _loop()
    loop.tick(T0)
    _feed(loop, T0 + 10 * MS)
    loop.complete(loop.tick(T0 + 12 * MS, arrival=True), lambda: T0 + 13 * MS)
    _feed(loop, T0 + 14 * MS)
    job = loop.tick(T0 + 15 * MS)  # a timer tick (even an early one) begins a new period
    assert isinstance(job, Job) and job.reference_ns == T0 + 14 * MS


def test_start_forgets_the_last_start():
    loop = _loop()
    loop.tick(T0)
    _feed(loop, T0 + 10 * MS)
    loop.complete(loop.tick(T0 + 12 * MS, arrival=True), lambda: T0 + 13 * MS)
    loop.stop()
    loop.start()
    _feed(loop, T0 + 20 * MS)
    assert isinstance(loop.tick(T0 + 22 * MS, arrival=True), Job)


# --- randomized schedules, checked at every event --------------------------------------
def _schedule(rng, seconds, rate):
    """(arrival ns, kind, stamp ns) events: camera at ~30 Hz and joints at ~100 Hz with
    jittered stamps, each delivered 0-8 ms after its stamp (in order per stream), and
    timer ticks every 1 / rate from a random phase, some of them late."""
    events = []
    for kind, period in (('cam', 33 * MS), ('arm', 10 * MS)):
        stamp, last = T0 + rng.randrange(period), 0
        while stamp < T0 + seconds * S:
            arrival = max(last + 1, stamp + rng.randrange(8 * MS))
            events.append((arrival, kind, stamp))
            last = arrival
            stamp += period + rng.randrange(-3 * MS, 3 * MS)
    tick = T0 + rng.randrange(round(S / rate))
    while tick < T0 + seconds * S:
        events.append((tick + rng.choice([0, 0, 0, 30 * MS]), 'timer', 0))
        tick += round(S / rate)
    return sorted(events)


@pytest.mark.parametrize('seed', range(6))
@pytest.mark.parametrize('mode', ['every_tick', 'steps_left'])
def test_random_schedules_never_overlap_never_exceed_the_rate_never_skip_a_due_replan(
        seed, mode):
    rng = random.Random(seed)
    rate = 10.0
    period = round(S / rate)
    loop = _loop(replan_mode=mode, replan_threshold=1, execute_steps=3, rate=rate)
    shadow = make_sync_buffer(loop.config)  # the oracle's own view of the inputs
    pending = _schedule(rng, 4, rate)
    heapq.heapify(pending)
    in_flight = None  # (job, end ns)
    starts, ends = [], []
    arrival_starts = 0

    def submit(job, now):
        nonlocal in_flight
        duration = rng.choice([1 * MS, 30 * MS, 80 * MS, 150 * MS, 260 * MS])
        in_flight = (job, now + duration)
        heapq.heappush(pending, (now + duration, 'done', 0))
        return True

    while pending:
        now, kind, stamp = heapq.heappop(pending)
        if kind == 'done':
            job, end = in_flight
            assert end == now
            loop.complete(job, lambda: now)
            in_flight = None
            ends.append(now)
            continue
        arrival = kind != 'timer'
        if arrival:
            _store(loop, kind, stamp)
            assert shadow.add(kind, stamp, object()) == ''
        # The oracle: may an inference start now?
        idle = in_flight is None
        due = replan_due(now, loop.executing, loop.config)
        ready = shadow.query(now)
        recent = bool(starts) and now - starts[-1] < period
        allowed = idle and due and ready.ok and (not arrival or (
            not recent and ready.reference_stamp_ns <= now))
        decision = loop.tick(now, busy=not idle, submit=lambda job: submit(job, now),
                             arrival=arrival)
        assert isinstance(decision, Job) == allowed, (now - T0, kind, decision, ready)
        if not arrival:
            assert getattr(decision, 'reason', '') not in (RATE_BOUND, AHEAD_OF_CLOCK)
        if isinstance(decision, Job):
            assert decision.reference_ns == ready.reference_stamp_ns  # the newest set
            if arrival and starts:
                assert now - starts[-1] >= period  # the rate bounds replanning
            shadow.mark_used(decision.reference_ns)
            starts.append(now)
            arrival_starts += arrival
    assert all(start >= end for start, end in zip(starts[1:], ends))  # never two at once
    assert arrival_starts >= 3  # arrival ticks started inferences ...
    if mode == 'every_tick':  # ... and the rate sent sets to the timer's ticks
        assert len(starts) > arrival_starts
