"""SyncBuffer: synthetic stamps for every case (time is an argument, no ROS)."""
import numpy as np
import pytest

from cosmos_policy_ros import sync
from cosmos_policy_ros.sync import current_proprio, observation_from_set, SyncBuffer

MS = 1_000_000
S = 1_000_000_000
T0 = 1_000 * S  # an arbitrary non-zero epoch


def make(tolerance_ms=10, max_age_ms=100, capacity=8, streams=('wrist', 'primary', 'joints'),
         reference='primary'):
    return SyncBuffer(streams, reference, capacity=capacity, tolerance_ns=tolerance_ms * MS,
                      max_age_ns=max_age_ms * MS)


def fill(buffer, stamps_ms):
    """stamps_ms: {stream: [ms after T0, ...]}; the payload is the stamp itself."""
    for stream, stamps in stamps_ms.items():
        for ms in stamps:
            assert buffer.add(stream, T0 + ms * MS, ms) == ''


def test_newest_complete_set_within_tolerance():
    buffer = make()
    fill(buffer, {'primary': [0, 33, 66], 'wrist': [2, 35, 70], 'joints': list(range(0, 80, 2))})
    result = buffer.query(T0 + 80 * MS)
    assert result.ok
    assert result.reference_stamp_ns == T0 + 66 * MS
    # Each stream contributes its entry closest to the reference stamp.
    assert result.payloads == {'primary': 66, 'wrist': 70, 'joints': 66}
    assert result.skew_ns == 4 * MS  # wrist at 70 vs reference 66
    assert result.age_ns == 14 * MS  # now 80 - oldest member 66
    assert result.oldest_stamp_ns == T0 + 66 * MS


def test_missing_stream_names_it():
    buffer = make()
    fill(buffer, {'primary': [0], 'wrist': [0]})
    result = buffer.query(T0 + 10 * MS)
    assert not result.ok and result.reason == sync.MISSING
    assert 'joints' in result.detail and 'wrist' not in result.detail


def test_skew_beyond_tolerance_is_rejected_and_older_complete_set_is_used():
    buffer = make(tolerance_ms=10)
    # Newest primary (100) has no wrist within 10 ms (wrist at 50 and 130): no complete set at
    # 100; primary 50 has one.
    fill(buffer, {'primary': [50, 100], 'wrist': [50, 130], 'joints': [50, 100]})
    result = buffer.query(T0 + 140 * MS)
    assert result.ok and result.reference_stamp_ns == T0 + 50 * MS
    buffer = make(tolerance_ms=10)
    fill(buffer, {'primary': [100], 'wrist': [130], 'joints': [100]})
    result = buffer.query(T0 + 140 * MS)
    assert result.reason == sync.SKEW
    assert 'wrist is 0.030 s from primary' in result.detail


def test_tolerance_edge_is_inclusive():
    buffer = make(tolerance_ms=10)
    fill(buffer, {'primary': [100], 'wrist': [110], 'joints': [90]})
    assert buffer.query(T0 + 120 * MS).ok
    buffer = make(tolerance_ms=10)
    fill(buffer, {'primary': [100], 'wrist': [111], 'joints': [100]})
    assert buffer.query(T0 + 120 * MS).reason == sync.SKEW


def test_stale_when_oldest_member_exceeds_max_age():
    buffer = make(max_age_ms=100)
    fill(buffer, {'primary': [100], 'wrist': [95], 'joints': [100]})
    assert buffer.query(T0 + 195 * MS).ok  # oldest 95: age exactly 100 ms is accepted
    result = buffer.query(T0 + 196 * MS)
    assert result.reason == sync.STALE
    assert 'use_sim_time' in result.detail  # the classic bag-replay mistake is named


def test_future_stamps_are_reported():
    buffer = make(max_age_ms=100)
    fill(buffer, {'primary': [500], 'wrist': [500], 'joints': [500]})
    assert buffer.query(T0 + 300 * MS).reason == sync.FUTURE
    assert buffer.query(T0 + 400 * MS).ok  # 100 ms ahead is tolerated (clock offsets)


def test_out_of_order_arrival_is_sorted():
    buffer = make()
    for ms in (30, 10, 20):
        for stream in ('primary', 'wrist', 'joints'):
            assert buffer.add(stream, T0 + ms * MS, ms) == ''
    result = buffer.query(T0 + 40 * MS)
    assert result.ok and result.reference_stamp_ns == T0 + 30 * MS
    # A late arrival older than the newest still becomes available to later queries.
    assert buffer.add('primary', T0 + 25 * MS, 'late') == ''
    assert buffer.newest('primary') == (T0 + 30 * MS, 30)


def test_duplicate_stamp_replaces_payload_and_is_reported():
    buffer = make()
    fill(buffer, {'primary': [10], 'wrist': [10], 'joints': [10]})
    assert buffer.add('primary', T0 + 10 * MS, 'second') == sync.DUPLICATE_STAMP
    assert len(buffer) == 3
    assert buffer.query(T0 + 20 * MS).payloads['primary'] == 'second'


def test_zero_stamp_is_rejected():
    buffer = make()
    assert buffer.add('primary', 0, 'x') == sync.ZERO_STAMP
    assert buffer.add('primary', -5, 'x') == sync.ZERO_STAMP
    assert len(buffer) == 0


def test_bounded_memory_keeps_the_newest():
    buffer = make(capacity=3)
    fill(buffer, {'primary': [1, 2, 3, 4, 5]})
    assert len(buffer) == 3
    assert buffer.newest('primary') == (T0 + 5 * MS, 5)
    # Older than everything in a full ring: not kept.
    assert buffer.add('primary', T0 + 1 * MS, 'old') == sync.TOO_OLD
    assert len(buffer) == 3


def test_per_stream_capacity():
    buffer = SyncBuffer(('cam', 'joints'), 'cam', capacity={'cam': 2, 'joints': 5})
    fill(buffer, {'cam': [1, 2, 3, 4], 'joints': [1, 2, 3, 4, 5, 6]})
    assert len(buffer) == 2 + 5
    with pytest.raises(ValueError, match='every stream'):
        SyncBuffer(('cam', 'joints'), 'cam', capacity={'cam': 2})


def test_stamp_jump_back_discards_the_old_timeline():
    buffer = make(max_age_ms=100)
    fill(buffer, {'primary': [5000], 'wrist': [5000], 'joints': [5000]})
    assert buffer.query(T0 + 5010 * MS).ok
    # The bag loops: stamps start again 5 s earlier. The old messages must not pair with new.
    assert buffer.add('primary', T0 + 10 * MS, 'new') == ''
    assert buffer.resets == 1
    assert len(buffer) == 1
    assert buffer.query(T0 + 20 * MS).reason == sync.MISSING


def test_clock_jump_back_discards_the_old_timeline():
    buffer = make(max_age_ms=100)
    fill(buffer, {'primary': [5000], 'wrist': [5000], 'joints': [5000]})
    assert buffer.query(T0 + 5010 * MS).ok
    result = buffer.query(T0 + 10 * MS)  # /clock went back 5 s
    assert result.reason == sync.MISSING
    assert buffer.resets == 1 and len(buffer) == 0
    # A small step back (under jump_back_ns) is not a jump.
    fill(buffer, {'primary': [20], 'wrist': [20], 'joints': [20]})
    assert buffer.query(T0 + 30 * MS).ok
    assert buffer.query(T0 + 25 * MS).ok
    assert buffer.resets == 1


def test_a_set_is_used_once():
    buffer = make()
    fill(buffer, {'primary': [10], 'wrist': [10], 'joints': [10]})
    result = buffer.query(T0 + 20 * MS)
    buffer.mark_used(result.reference_stamp_ns)
    assert buffer.query(T0 + 30 * MS).reason == sync.NOT_NEW
    fill(buffer, {'primary': [40], 'wrist': [40], 'joints': [40]})
    assert buffer.query(T0 + 50 * MS).reference_stamp_ns == T0 + 40 * MS


def test_used_mark_is_forgotten_after_a_bag_loop():
    buffer = make()
    fill(buffer, {'primary': [5000], 'wrist': [5000], 'joints': [5000]})
    buffer.mark_used(T0 + 5000 * MS)
    fill(buffer, {'primary': [10], 'wrist': [10], 'joints': [10]})  # loop: earlier stamps
    assert buffer.query(T0 + 20 * MS).ok


def test_runtime_limits_change():
    buffer = make(tolerance_ms=10)
    fill(buffer, {'primary': [100], 'wrist': [120], 'joints': [100]})
    assert buffer.query(T0 + 130 * MS).reason == sync.SKEW
    buffer.set_limits(25 * MS, 100 * MS)
    assert buffer.query(T0 + 130 * MS).ok
    with pytest.raises(ValueError, match='tolerance_ns'):
        buffer.set_limits(-1, 100)


def test_closest_match_prefers_newer_on_tie():
    buffer = SyncBuffer(('cam', 'joints'), 'cam', tolerance_ns=10 * MS, max_age_ns=S)
    fill(buffer, {'cam': [100], 'joints': [95, 105]})
    assert buffer.query(T0 + 110 * MS).payloads['joints'] == 105


def test_constructor_errors_name_the_problem():
    with pytest.raises(ValueError, match='reference stream'):
        SyncBuffer(('a', 'b'), 'c')
    with pytest.raises(ValueError, match='unique'):
        SyncBuffer(('a', 'a'), 'a')
    buffer = make()
    with pytest.raises(ValueError, match="unknown stream 'nope'"):
        buffer.add('nope', T0, None)


def test_observation_from_set_concatenates_proprio_in_source_order():
    buffer = SyncBuffer(('primary', 'gripper', 'eef'), 'primary', tolerance_ns=10 * MS,
                        max_age_ns=S)
    image = np.full((4, 6, 3), 7, np.uint8)
    buffer.add('primary', T0, image)
    buffer.add('gripper', T0, np.array([0.01, -0.01]))
    buffer.add('eef', T0, np.arange(7.0))
    result = buffer.query(T0 + MS)
    observation = observation_from_set(result, ('primary',), ('gripper', 'eef'),
                                       instruction='stack', seed=42)
    assert observation.images['primary'] is image
    np.testing.assert_array_equal(observation.proprio, [0.01, -0.01, 0, 1, 2, 3, 4, 5, 6])
    assert (observation.instruction, observation.seed) == ('stack', 42)
    buffer.add('gripper', T0 + 2 * MS, np.array([0.5, 0.5]))
    np.testing.assert_array_equal(current_proprio(buffer, ('gripper', 'eef')),
                                  [0.5, 0.5, 0, 1, 2, 3, 4, 5, 6])
    with pytest.raises(ValueError, match='failed query'):
        observation_from_set(sync.SyncResult(sync.STALE), (), ())


def test_a_set_waits_until_its_members_are_settled():
    # The joint state stamped like the camera frame arrives just after it (the usual order of
    # a bag replay): the frame is used only once it is there, or once the tolerance has passed.
    ms = 1_000_000
    buffer = SyncBuffer(['camera', 'joints'], 'camera', tolerance_ns=50 * ms,
                        max_age_ns=1000 * ms)
    s = 1_000 * ms
    buffer.add('camera', s, 'frame')
    buffer.add('joints', s - 20 * ms, 'early')
    waiting = buffer.query(s + 1 * ms)
    assert (waiting.reason, waiting.detail) == ('unsettled',
                                                'waiting for joints at or after the reference '
                                                'stamp')
    buffer.add('joints', s, 'exact')
    result = buffer.query(s + 1 * ms)
    assert result.ok and result.payloads['joints'] == 'exact'
    # An older frame is used while the newest is unsettled.
    buffer.mark_used(s)
    buffer.add('camera', s + 100 * ms, 'next frame')
    buffer.add('joints', s + 80 * ms, 'before the next frame')
    assert buffer.query(s + 101 * ms).reason == 'not_new'  # that older frame was used
    # After the tolerance, the best message so far is taken even if none came after it.
    late = buffer.query(s + 150 * ms)
    assert late.ok and late.reference_stamp_ns == s + 100 * ms
    assert late.stamps['joints'] == s + 80 * ms


def test_select_rebuilds_a_recorded_set_exactly():
    buffer = make()
    fill(buffer, {'primary': [0, 33], 'wrist': [2, 35], 'joints': [0, 30, 34]})
    chosen = {'primary': T0 + 33 * MS, 'wrist': T0 + 35 * MS, 'joints': T0 + 30 * MS}
    result = buffer.select(chosen)  # not the closest joints (34): exactly the recorded one
    assert result.ok and result.payloads == {'primary': 33, 'wrist': 35, 'joints': 30}
    assert result.reference_stamp_ns == T0 + 33 * MS and result.skew_ns == 3 * MS
    missing = buffer.select({**chosen, 'joints': T0 + 31 * MS})
    assert missing.reason == 'missing' and 'joints' in missing.detail
    with pytest.raises(ValueError, match='every stream'):
        buffer.select({'primary': T0})


def test_a_dead_camera_becomes_stale_not_just_not_new():
    buffer = make(tolerance_ms=10, max_age_ms=100)
    fill(buffer, {'primary': [0], 'wrist': [0], 'joints': [0]})
    assert buffer.query(T0 + 5 * MS).ok
    buffer.mark_used(T0)
    assert buffer.query(T0 + 50 * MS).reason == 'not_new'
    assert buffer.query(T0 + 500 * MS).reason == 'stale'  # the camera stopped: say so


def test_query_anchored_at_one_reference_frame():
    # Frames every 10 ms with a 50 ms tolerance: the newest set is not the one asked for.
    buffer = make(tolerance_ms=50, max_age_ms=1000)
    fill(buffer, {'primary': [0, 10, 20], 'wrist': [0, 10, 20], 'joints': [0, 10, 20]})
    assert buffer.query(T0 + 70 * MS).reference_stamp_ns == T0 + 20 * MS
    anchored = buffer.query(T0 + 70 * MS, reference_ns=T0)
    assert anchored.ok and anchored.stamps == {name: T0 for name in ('primary', 'wrist',
                                                                     'joints')}
    assert buffer.query(T0 + 70 * MS, reference_ns=T0 + 5 * MS).reason == 'missing'


@pytest.mark.parametrize('seed', range(4))
def test_has_new_reference_is_false_only_where_a_query_gives_no_set(seed):
    """The arrival ticks' cheap test against the query itself, on random arrivals, uses,
    clock steps and jumps back: False implies the query fails; the two buffers (one asked
    has_new_reference, one queried) forget the same messages on a jump back."""
    rng = np.random.default_rng(seed)
    asked, queried = make(max_age_ms=400), make(max_age_ms=400)
    now = T0
    falses = 0
    for _ in range(400):
        now += int(rng.integers(1, 15)) * MS
        jump = rng.random() < 0.02
        if jump:
            now -= 3 * S  # a bag loop: the clock goes back before any message says so
        else:
            stream = str(rng.choice(asked.streams))
            stamp = now - int(rng.integers(0, 30)) * MS
            for buffer in (asked, queried):
                buffer.add(stream, stamp, stamp)
        new = asked.has_new_reference(now)
        result = queried.query(now)
        assert new or not result.ok, (now, result)
        falses += not new
        assert len(asked) == len(queried) and asked.resets == queried.resets
        if result.ok and rng.random() < 0.5:
            for buffer in (asked, queried):
                buffer.mark_used(result.reference_stamp_ns)
    assert falses > 20 and asked.resets > 0  # both branches and jumps were reached


def test_has_new_reference_after_use():
    buffer = make()
    assert not buffer.has_new_reference(T0)  # nothing yet
    fill(buffer, {'primary': [0], 'wrist': [1], 'joints': [0]})
    assert buffer.has_new_reference(T0 + 20 * MS)
    buffer.mark_used(T0)
    assert not buffer.has_new_reference(T0 + 20 * MS)
    fill(buffer, {'wrist': [40], 'joints': [40]})  # new members, no new reference frame
    assert not buffer.has_new_reference(T0 + 45 * MS)
    fill(buffer, {'primary': [40]})
    assert buffer.has_new_reference(T0 + 45 * MS)
