"""The execution model on a fake clock (integer ns), stitching rules and smoothness metrics."""
import numpy as np
import pytest

from cosmos_policy_ros.conversions import future_point_indices
from cosmos_policy_ros.execution import (actions_at, blend_ramp, blend_weights, boundary_jumps,
                                         ChunkTiming, jerk, known_prefix, LatencyEstimator,
                                         plan_takeover, ramp_rows, rewritten_steps, stitch,
                                         STITCHING_METHODS)

P = 100  # step period (ns) of the fake clock


def _chunk(count, dim=2, seed=0):
    return np.random.default_rng(seed).normal(size=(count, dim))


# --- timing ----------------------------------------------------------------------------------
@pytest.mark.parametrize('now, pending', [
    (0, 0), (999, 0), (1000, 0),  # action 0 is due at 1000: not elapsed at 1000 itself
    (1001, 1), (1100, 1), (1101, 2), (1700, 7), (1701, 8), (5000, 8)])
def test_first_pending_step_boundaries(now, pending):
    timing = ChunkTiming(1000, P, 8)
    assert timing.first_pending(now) == pending
    assert timing.committed(now) == pending


@pytest.mark.parametrize('latency, committed, start, switch, known', [
    (0, 3, 0, 300, 0),      # ready at the new stamp: nothing of the new chunk elapsed
    (1, 4, 1, 400, 1),      # just after: old step 3 has started, new step 0 is elapsed
    (200, 5, 2, 500, 2),    # ready exactly when old step 5 is due: it is not committed
    (250, 6, 3, 600, 3),
    (300, 6, 3, 600, 3),
    (1300, 16, 13, 1600, 13)])  # the old chunk's last step (15, due at 1500) is covered
def test_takeover_on_an_aligned_grid(latency, committed, start, switch, known):
    executing = ChunkTiming(0, P, 16)
    new = ChunkTiming(300, P, 16)  # observation at old step 3, inference starts then
    takeover = plan_takeover(executing, new, 300, latency)
    assert takeover.ready_ns == 300 + latency
    assert (takeover.committed, takeover.start_index, takeover.switch_ns,
            takeover.known_count) == (committed, start, switch, known)
    assert takeover.switch_ns >= takeover.ready_ns


def test_takeover_index_is_the_nodes_first_trajectory_point():
    # `none` must be what the node publishes: the time-aligned joint_trajectory keeps the
    # points future_point_indices gives at publish time (= when the chunk is ready).
    for stamp in (0, 37, 1000):
        new = ChunkTiming(stamp, P, 16)
        for latency in range(0, 20 * P, 13):
            takeover = plan_takeover(None, new, stamp, latency)
            points = future_point_indices(stamp, P, 16, stamp + latency)
            assert takeover.start_index == (points[0] if len(points) else 16)


def test_known_prefix_is_the_committed_old_steps_when_aligned():
    old = _chunk(16)
    executing = ChunkTiming(0, P, 16)
    for offset in range(0, 6):  # the new observation is at old step `offset`
        new = ChunkTiming(offset * P, P, 16)
        for latency in range(0, 9 * P, 37):
            takeover = plan_takeover(executing, new, offset * P, latency)
            assert takeover.known_count == takeover.committed - offset
            np.testing.assert_array_equal(known_prefix(old, executing, new, takeover),
                                          old[offset:takeover.committed])


def test_known_prefix_stops_where_the_old_chunk_ends():
    executing = ChunkTiming(0, P, 4)  # old steps due at 0, 100, 200, 300
    new = ChunkTiming(300, P, 16)
    takeover = plan_takeover(executing, new, 300, 500)
    assert (takeover.committed, takeover.start_index, takeover.known_count) == (4, 5, 1)
    early = plan_takeover(ChunkTiming(400, P, 4), new, 300, 500)  # old chunk starts later
    assert early.known_count == 0


def test_a_chunk_elapsed_on_arrival_starts_past_its_end():
    new = ChunkTiming(0, P, 4)
    takeover = plan_takeover(None, new, 0, 10 * P)
    assert (takeover.start_index, takeover.switch_ns, takeover.known_count) == (4, 400, 0)
    assert stitch('none', None, None, _chunk(4), new, takeover).shape == (0, 2)


def test_unaligned_grids_interpolate_the_old_chunk():
    old = np.array([[0.0, 10.0], [1.0, 20.0], [3.0, 40.0]])
    executing = ChunkTiming(0, P, 3)
    np.testing.assert_allclose(actions_at(old, executing, [-50, 0, 25, 150, 200, 900]),
                               [[0, 10], [0, 10], [0.25, 12.5], [2, 30], [3, 40], [3, 40]])
    new = ChunkTiming(150, P, 8)
    takeover = plan_takeover(executing, new, 150, 60)  # ready 210: new step 0 (150) elapsed
    assert (takeover.committed, takeover.start_index, takeover.known_count) == (3, 1, 1)
    np.testing.assert_allclose(known_prefix(old, executing, new, takeover), [[2.0, 30.0]])


def test_bad_timing_input_is_refused():
    with pytest.raises(ValueError, match='`period_ns` must be >= 1'):
        ChunkTiming(0, 0, 4)
    with pytest.raises(ValueError, match='`count` must be an integer'):
        ChunkTiming(0, P, 2.5)
    with pytest.raises(ValueError, match='share the step period'):
        plan_takeover(ChunkTiming(0, P, 4), ChunkTiming(0, 2 * P, 4), 0, 0)
    with pytest.raises(ValueError, match='`latency_ns` must be >= 0'):
        plan_takeover(None, ChunkTiming(0, P, 4), 0, -1)
    with pytest.raises(TypeError, match='`new` must be a ChunkTiming'):
        plan_takeover(None, (0, P, 4), 0, 0)


# --- stitching -------------------------------------------------------------------------------
@pytest.mark.parametrize('overlap', [1, 2, 5])
def test_blend_weights_sum_to_one_and_follow_the_continuous_ramp(overlap):
    w_old, w_new = blend_weights(overlap)
    np.testing.assert_allclose(w_old + w_new, 1.0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(w_new, blend_ramp(np.arange(1, overlap + 1), overlap))
    assert np.all(np.diff(w_new) > 0) and 0 < w_new[0] and w_new[-1] < 1
    # Continuity: the ramp is 0 up to the last old-only step, 1 from the first new-only one,
    # and Lipschitz with constant 1 / (overlap + 1) in between (no jump anywhere).
    s = np.linspace(-3, overlap + 4, 20001)
    w = blend_ramp(s, overlap)
    assert w[0] == 0 and w[-1] == 1 and blend_ramp(0, overlap) == 0
    assert blend_ramp(overlap + 1, overlap) == 1
    assert np.max(np.abs(np.diff(w))) <= (s[1] - s[0]) / (overlap + 1) + 1e-12


def test_blend_of_two_constant_chunks_is_a_linear_ramp():
    executing = ChunkTiming(0, P, 16)
    new = ChunkTiming(300, P, 16)
    takeover = plan_takeover(executing, new, 300, 250)  # start index 3
    old, fresh = np.full((16, 2), 1.0), np.full((16, 2), 5.0)
    out = stitch('blend', old, executing, fresh, new, takeover, overlap=3)
    assert out.shape == (13, 2)
    np.testing.assert_allclose(out[:, 0], [2.0, 3.0, 4.0] + [5.0] * 10)
    # The switch moves by (5 - 1) / (overlap + 1) per step instead of 4 at once.
    np.testing.assert_allclose(stitch('none', old, executing, fresh, new, takeover)[:, 0], 5.0)


def test_blend_without_overlap_or_old_chunk_is_the_hard_switch():
    executing, new = ChunkTiming(0, P, 16), ChunkTiming(200, P, 16)
    old, fresh = _chunk(16, seed=1), _chunk(16, seed=2)
    takeover = plan_takeover(executing, new, 200, 120)
    hard = stitch('none', old, executing, fresh, new, takeover)
    np.testing.assert_array_equal(hard, fresh[2:])
    for method in STITCHING_METHODS:
        np.testing.assert_array_equal(
            stitch(method, old, executing, fresh, new, takeover, overlap=0), hard)
        np.testing.assert_array_equal(
            stitch(method, None, None, fresh, new, takeover, overlap=4), hard)
    np.testing.assert_array_equal(stitch('inpaint', old, executing, fresh, new, takeover,
                                         overlap=4), hard)


def test_blend_holds_the_old_chunk_past_its_end():
    executing, new = ChunkTiming(0, P, 4), ChunkTiming(300, P, 8)
    old = np.arange(4, dtype=float)[:, None] * np.ones((1, 2))  # 0, 1, 2, 3
    takeover = plan_takeover(executing, new, 300, 50)  # start index 1, due at 400
    out = stitch('blend', old, executing, np.full((8, 2), 9.0), new, takeover, overlap=2)
    np.testing.assert_allclose(out[:2, 0], [3 + (9 - 3) / 3, 3 + 2 * (9 - 3) / 3])


def test_ramp_rows_are_equal_steps_on_the_straight_line():
    out = ramp_rows([0.0, 1.0], [3.0, -2.0], 2)
    np.testing.assert_array_equal(out, [[1.0, 0.0], [2.0, -1.0]])  # thirds of (3, -3)
    assert ramp_rows([0.0], [4.0], 0).shape == (0, 1)


def test_ramp_joins_the_last_committed_command_to_the_new_chunk_by_hand():
    # A[k] = 10 k (dimension 0), B[j] = 100 + j. New observation at A's step 3, ready 200 ns
    # later: j0 = 2, switch at A's step 5 (due 500), so A's last committed command is A[4] = 40.
    # With overlap 2 the new steps 2, 3 lie on the line from 40 to B[4] = 104 (steps of 64/3);
    # B[4:] is executed as it is.
    executing, new = ChunkTiming(0, P, 8), ChunkTiming(300, P, 8)
    old = np.arange(8, dtype=float)[:, None] * np.array([[10.0, 0.0]])
    fresh = np.stack([100.0 + np.arange(8), np.full(8, 7.0)], axis=1)
    takeover = plan_takeover(executing, new, 300, 200)
    assert (takeover.start_index, takeover.switch_ns) == (2, 500)
    out = stitch('ramp', old, executing, fresh, new, takeover, overlap=2)
    np.testing.assert_allclose(out[:, 0], [40 + 64 / 3, 40 + 128 / 3, 104, 105, 106, 107])
    # Dimension 1: from A's 0 to B's 7 in thirds.
    np.testing.assert_allclose(out[:, 1], [7 / 3, 14 / 3, 7, 7, 7, 7])
    assert rewritten_steps('ramp', 2, executing, takeover, new) == 2
    # The executed sequence A[.., 4], out: every step from the switch on is (104 - 40) / 3 in
    # dimension 0 until B takes over, where the hard switch jumps by B[2] - A[4] = 62.
    assert out[0, 0] - old[4, 0] == pytest.approx(64 / 3)
    assert stitch('none', old, executing, fresh, new, takeover)[0, 0] - old[4, 0] == 62


def test_ramp_stops_before_the_new_chunks_last_step():
    executing, new = ChunkTiming(0, P, 8), ChunkTiming(300, P, 4)
    old = np.zeros((8, 1))
    fresh = np.array([[1.0], [2.0], [3.0], [9.0]])
    for latency, expected in ((200, [4.5, 9.0]),  # j0 = 2: one step left to ramp to B[3]
                              (300, [9.0])):      # j0 = 3: B's last step, nothing to ramp
        takeover = plan_takeover(executing, new, 300, latency)
        out = stitch('ramp', old, executing, fresh, new, takeover, overlap=5)
        np.testing.assert_allclose(out[:, 0], expected)
        assert rewritten_steps('ramp', 5, executing, takeover, new) == len(expected) - 1
    # An old chunk that commanded nothing before the switch (stamped at it) has no last
    # command: the new chunk as it is.
    takeover = plan_takeover(ChunkTiming(500, P, 8), new, 300, 200)
    assert rewritten_steps('ramp', 2, ChunkTiming(500, P, 8), takeover, new) == 0
    np.testing.assert_array_equal(
        stitch('ramp', old, ChunkTiming(500, P, 8), fresh, new, takeover, overlap=2), fresh[2:])


@pytest.mark.parametrize('latency, overlap, start, steps', [
    (0, 2, 0, 1),      # lockstep: nothing elapsed, still one step of ramp
    (100, 2, 1, 1),    # one step elapsed: one step
    (200, 2, 2, 2),    # two: two
    (400, 2, 4, 2),    # four: at most the overlap
    (400, 5, 4, 3),    # ... and never the new chunk's last step (K - 1 - j0 = 3)
    (200, 0, 2, 0)])   # overlap 0: none
def test_the_ramp_window_follows_the_latency(latency, overlap, start, steps):
    executing, new = ChunkTiming(0, P, 8), ChunkTiming(400, P, 8)
    takeover = plan_takeover(executing, new, 400, latency)
    assert takeover.start_index == start
    assert rewritten_steps('ramp', overlap, executing, takeover, new) == steps
    old, fresh = np.zeros((8, 1)), np.arange(8, dtype=float)[:, None] + 10
    out = stitch('ramp', old, executing, fresh, new, takeover, overlap=overlap)
    np.testing.assert_array_equal(out[steps:], fresh[start + steps:])
    if steps:  # A's last committed command is 0 (the zero chunk)
        np.testing.assert_allclose(out[:steps, 0],
                                   (np.arange(steps) + 1) / (steps + 1) * (10 + start + steps))


def test_stitch_refuses_unknown_methods():
    new = ChunkTiming(0, P, 4)
    with pytest.raises(ValueError, match="unknown stitching method 'rtc'"):
        stitch('rtc', None, None, _chunk(4), new, plan_takeover(None, new, 0, 0))


# --- latency ---------------------------------------------------------------------------------
def test_latency_estimate_is_a_running_percentile():
    estimator = LatencyEstimator(window=4, percentile=50, initial=0.25)
    assert estimator.estimate() == 0.25 and estimator.estimate_ns() == 250_000_000
    for seconds in (0.1, 0.4, 0.2, 0.3):
        estimator.add(seconds)
    assert estimator.estimate() == 0.3  # 'higher': the upper middle of 0.1 0.2 0.3 0.4
    estimator.add(0.05)  # the window drops 0.1
    assert len(estimator) == 4 and estimator.estimate() == 0.3
    high = LatencyEstimator(window=10, percentile=100)
    for seconds in (0.2, 0.9, 0.1):
        high.add(seconds)
    assert high.estimate() == 0.9
    with pytest.raises(ValueError, match='finite number of seconds'):
        high.add(float('nan'))
    with pytest.raises(ValueError, match='percentile'):
        LatencyEstimator(percentile=101)


@pytest.mark.parametrize('window', [1, 2, 3, 7, 20])
def test_latency_estimate_matches_numpy_higher_percentile(window):
    """The oracle: np.percentile(window, q, method='higher') after every sample, for the
    node's percentile and others, on random latencies (ties included)."""
    rng = np.random.default_rng(window)
    for percentile in (0, 12.5, 50, 90, 97.3, 100):
        estimator = LatencyEstimator(window=window, percentile=percentile)
        samples = []
        for seconds in np.round(rng.exponential(0.2, 60), 3):
            estimator.add(float(seconds))
            samples = (samples + [float(seconds)])[-window:]
            expected = float(np.percentile(np.array(samples), percentile, method='higher'))
            assert estimator.estimate() == expected, (window, percentile, samples)
    with pytest.raises(ValueError, match='finite number of seconds'):
        estimator.add(-0.001)
    with pytest.raises(ValueError, match='finite number of seconds'):
        estimator.add(float('inf'))


# --- metrics ---------------------------------------------------------------------------------
def test_jerk_of_polynomials():
    t = np.arange(10, dtype=float)[:, None]
    np.testing.assert_allclose(jerk(np.hstack([3 * t, -t]), 1.0), 0.0, atol=1e-12)
    np.testing.assert_allclose(jerk(t ** 3 * 0.001, 0.1), 6.0, rtol=1e-9)  # d3/dt3 of (t/.1)^3


def test_boundary_jump_is_relative_to_the_median_within_chunk_step():
    executed = np.array([[0.0], [1.0], [2.0], [7.0], [8.0], [9.5], [9.5]])
    ids = [0, 0, 0, 1, 1, 1, 1]  # the switch is at row 3: a jump of 5
    jumps, median = boundary_jumps(executed, [3], ids)
    assert median == 1.0  # within-chunk steps 1, 1, 1, 1.5, 0
    np.testing.assert_allclose(jumps, [5.0])
    with pytest.raises(ValueError, match='switch indices'):
        boundary_jumps(executed, [0], ids)


# --- executed_sequence: what a time-aligned controller runs from published chunks ---------------
def test_executed_sequence_switches_at_each_takeover_and_holds_the_last_row():
    from cosmos_policy_ros.execution import executed_sequence

    p = 100
    a = np.arange(4.0)[:, None] + np.zeros((1, 1))  # rows 0, 1, 2, 3
    b = 10 + np.arange(4.0)[:, None]
    # a stamped 0, takeover 1 (runs from 100); b stamped 200, takeover 2 (from 400).
    executed, ids, switches = executed_sequence([0, 200], [a, b], p, [1, 2])
    # t = 100, 200, 300: a's rows 1, 2, 3; t = 400, 500: b's rows 2, 3 (its end).
    assert executed[:, 0].tolist() == [1, 2, 3, 12, 13]
    assert ids.tolist() == [0, 0, 0, 1, 1] and switches.tolist() == [3]
    jumps, median = boundary_jumps(executed, switches, ids)
    assert median == 1 and jumps.tolist() == [9]


def test_executed_sequence_holds_a_chunk_past_its_end_and_the_newer_wins_ties():
    from cosmos_policy_ros.execution import executed_sequence

    a = np.zeros((3, 1))
    b = np.ones((3, 1))
    c = np.full((3, 1), 2.0)
    # a from 0 (rows 0, 1, 2, then held) until b's switch at 500 (stamp 300, takeover 2);
    # c's switch (stamp 450 + 0) is before b's, so it is moved to 500 and c, the newer, takes
    # charge there (its row 0: at 500 its row floor(50 / 100) = 0), until its end at 650.
    executed, ids, switches = executed_sequence([0, 300, 450], [a, b, c], 100, [0, 2, 0])
    assert ids.tolist() == [0] * 5 + [2, 2] and executed[:, 0].tolist() == [0] * 5 + [2, 2]
    assert switches.tolist() == [5]
    # A chunk entirely elapsed at its takeover (j = K) never takes charge.
    executed, ids, _ = executed_sequence([0, 100], [a, b], 100, [0, 3])
    assert ids.tolist() == [0, 0, 0] and executed[:, 0].tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match='increase'):
        executed_sequence([0, 0], [a, b], 100, [0, 0])
