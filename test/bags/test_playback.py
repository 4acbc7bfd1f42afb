"""The player's pacing, without ROS and without sleeping: which message goes out when."""
import math

import pytest

from cosmos_policy_ros.bags.playback import (
    Event, Pacer, parse_remaps, PlayConfig, run_schedule, schedule)
from cosmos_policy_ros.bags.reader import BagMessage

T0 = 1_700_000_000 * 1_000_000_000
MS = 1_000_000


def _messages(offsets_ms, topic='/a'):
    return [BagMessage(topic, 'std_msgs/msg/String', T0 + ms * MS, b'') for ms in offsets_ms]


class FakeClock:
    """Wall time that only moves when the player waits."""

    def __init__(self, start=100.0):
        self.now = start
        self.waits = []

    def __call__(self):
        return self.now

    def wait(self, seconds):
        self.waits.append(seconds)
        self.now += seconds


def test_clock_ticks_fill_the_gaps_between_messages():
    events = list(schedule(_messages([0, 25, 25, 31]), clock_period_ns=10 * MS))
    assert [(e.sim_ns - T0) // MS for e in events] == [0, 10, 20, 25, 25, 30, 31]
    assert [e.message is not None for e in events] == [True, False, False, True, True, False,
                                                       True]
    # Ticks stay on the grid of the window origin, not of each message.
    events = list(schedule(_messages([3, 27]), clock_period_ns=10 * MS, origin_ns=T0))
    assert [(e.sim_ns - T0) // MS for e in events] == [3, 10, 20, 27]
    assert [e.sim_ns for e in schedule(_messages([0, 50]), clock_period_ns=None)] == [
        T0, T0 + 50 * MS]


@pytest.mark.parametrize('rate', [0.5, 1.0, 2.0])
def test_events_are_emitted_at_bag_time_divided_by_the_rate(rate):
    clock = FakeClock()
    pacer = Pacer(rate, clock)
    pacer.start(T0)
    emitted = []
    events = schedule(_messages([0, 100, 150, 1000]), clock_period_ns=None)
    count = run_schedule(events, pacer, clock.wait,
                         lambda event: emitted.append((event.sim_ns, clock.now)))
    assert count == 4
    for sim_ns, wall in emitted:
        assert wall == pytest.approx(100.0 + (sim_ns - T0) / 1e9 / rate, abs=1e-9)


def test_a_window_starts_at_its_first_message_and_inf_rate_never_waits():
    clock = FakeClock()
    pacer = Pacer(2.0, clock)
    pacer.start(T0 + 3000 * MS)  # window start at 3 s
    emitted = []
    run_schedule(schedule(_messages([3000, 3500]), clock_period_ns=None), pacer, clock.wait,
                 lambda event: emitted.append(clock.now))
    assert emitted == [pytest.approx(100.0), pytest.approx(100.25)]
    fast = FakeClock()
    pacer = Pacer(math.inf, fast)
    pacer.start(T0)
    run_schedule(schedule(_messages([0, 500, 9000]), clock_period_ns=10 * MS), pacer,
                 fast.wait, lambda event: None)
    assert fast.waits == [] and fast.now == 100.0


def test_a_late_player_publishes_at_once_without_skipping():
    clock = FakeClock()
    pacer = Pacer(1.0, clock)
    pacer.start(T0)
    emitted = []

    def slow_emit(event):  # every publish takes 300 ms of wall time
        emitted.append((event.sim_ns, clock.now))
        clock.now += 0.3

    run_schedule(schedule(_messages([0, 100, 200, 1500]), clock_period_ns=None), pacer,
                 clock.wait, slow_emit)
    # 100 and 200 ms are overdue when the previous publish ends: sent at once, in order;
    # the player catches up and waits for 1.5 s again.
    assert [(s - T0) // MS for s, _ in emitted] == [0, 100, 200, 1500]
    assert [wall for _, wall in emitted] == pytest.approx([100.0, 100.3, 100.6, 101.5])
    assert sum(clock.waits) == pytest.approx(0.6)


def test_waits_never_overshoot_and_stop_is_honoured():
    clock = FakeClock()
    pacer = Pacer(1.0, clock)
    pacer.start(T0)
    seen = []

    def chunked_wait(seconds):  # a wait that returns early (like spin_once with a timeout)
        assert seconds > 0
        clock.wait(min(seconds, 0.05))

    run_schedule(schedule(_messages([0, 120]), clock_period_ns=None), pacer, chunked_wait,
                 lambda event: seen.append(clock.now))
    assert seen == [pytest.approx(100.0), pytest.approx(100.12)]
    stop_after = []
    emitted = run_schedule(iter([Event(T0, None)] * 5), pacer, clock.wait,
                           lambda event: stop_after.append(1),
                           should_stop=lambda: len(stop_after) >= 2)
    assert emitted == 2


def test_remaps_and_config_validation():
    assert parse_remaps(['/a:=/b', '/c:=d']) == {'/a': '/b', '/c': 'd'}
    for bad in (['/a'], ['/a:='], [':=/b']):
        with pytest.raises(ValueError, match='FROM:=TO'):
            parse_remaps(bad)
    with pytest.raises(ValueError, match='remapped twice'):
        parse_remaps(['/a:=/b', '/a:=/c'])
    with pytest.raises(ValueError, match='`rate` must be > 0'):
        PlayConfig(bag='x', rate=0)
    with pytest.raises(ValueError, match='`record_storage`'):
        PlayConfig(bag='x', record='out', record_storage='bag')
    with pytest.raises(ValueError, match='`record_topics`'):
        PlayConfig(bag='x', record='out', record_topics=())
    assert PlayConfig(bag='x', rate=math.inf).rate == math.inf


def _bag_with_clock(path):
    from cosmos_policy_ros.bags.typestore import make_typestore, ns_to_stamp
    from cosmos_policy_ros.bags.writer import BagWriter
    store = make_typestore()
    with BagWriter(path, typestore=store) as bag:
        bag.add_topic('/clock', 'rosgraph_msgs/msg/Clock')
        bag.add_topic('/task', 'std_msgs/msg/String', latched=True)
        bag.add_topic('/note', 'std_msgs/msg/String')
        for i in range(10):
            bag.write('/clock', T0 + i * 100 * MS, store.types['rosgraph_msgs/msg/Clock'](
                clock=ns_to_stamp(T0 + i * 100 * MS, store)))
            bag.write('/note', T0 + i * 100 * MS, store.types['std_msgs/msg/String'](data=str(i)))
        bag.write('/task', T0 + 50 * MS, store.types['std_msgs/msg/String'](data='first'))
        bag.write('/task', T0 + 250 * MS, store.types['std_msgs/msg/String'](data='second'))
    return path


def test_plan_drops_a_recorded_clock_and_carries_latched_messages(tmp_path):
    import io

    from cosmos_policy_ros.bags.storage import BagError
    from cosmos_policy_ros.ros.player import Player
    path = _bag_with_clock(tmp_path / 'bag')
    out = io.StringIO()
    player = Player(PlayConfig(bag=str(path), start=0.4, end=0.75), out=out, err=io.StringIO())
    try:
        assert player.topics == ['/note', '/task']  # the player publishes /clock itself
        assert 'not replaying the recorded /clock' in out.getvalue()
        assert player.window == (T0 + 400 * MS, T0 + 750 * MS)
        assert player.latched == {'/task'}
        # The last /task before the window (0.25 s) is published at its start.
        assert {t: m.stamp_ns - T0 for t, m in player.carried.items()} == {'/task': 250 * MS}
    finally:
        player.close()
    with pytest.raises(BagError, match='--no-clock'):
        Player(PlayConfig(bag=str(path), topics=('/clock',)), out=io.StringIO())
    player = Player(PlayConfig(bag=str(path), clock=False), out=io.StringIO())
    assert player.topics == ['/clock', '/note', '/task'] and player.carried == {}
    assert player.count == 22
    player.close()


def test_lockstep_steps_group_messages_by_control_period():
    from cosmos_policy_ros.bags.playback import lockstep_steps

    def message(stamp):
        return BagMessage('/t', 'std_msgs/msg/String', stamp, b'')

    stamps = [100, 130, 150, 151, 260, 399]
    steps = list(lockstep_steps(map(message, stamps), 100, 400, 50))
    assert [(clock, [m.stamp_ns for m in batch], full) for clock, batch, full in steps] == [
        (150, [100, 130, 150], True), (200, [151], True), (250, [], True),
        (300, [260], True), (350, [], True), (399, [399], False)]
    # A window ending on a step boundary ends with a full step.
    steps = list(lockstep_steps(map(message, [0, 99]), 0, 101, 50))
    assert [(clock, full) for clock, _, full in steps] == [(50, True), (100, True)]
    with pytest.raises(ValueError, match='step_ns'):
        list(lockstep_steps([], 0, 10, 0))
