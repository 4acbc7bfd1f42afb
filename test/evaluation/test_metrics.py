"""Evaluation metrics on constructed cases with known errors."""
import csv
import json
import math

import numpy as np
import pytest

from cosmos_policy_ros.evaluation import metrics

T0 = 1_700_000_000 * 1_000_000_000
MS = 1_000_000


def _trajectory(t):
    """(N,) seconds -> (N, 3) smooth recorded actions."""
    return np.stack([np.sin(t), 0.5 * np.cos(2 * t), 0.1 * t], axis=1)


def _recorded(rate=20.0, duration=10.0):
    stamps = T0 + np.arange(int(duration * rate)) * int(1e9 / rate)
    return stamps, _trajectory((stamps - T0) / 1e9)


def test_known_offsets_give_exact_mae_and_rmse():
    stamps, recorded = _recorded()
    period = 0.05  # the recorded rate: every target lands on a recorded stamp
    chunk_stamps = stamps[0:150:10]  # 15 chunks
    horizon, executed = 8, 5
    a = np.array([0.1, 0.02, 0.5])
    chunks = []
    for stamp in chunk_stamps:
        times = (stamp - T0) / 1e9 + np.arange(horizon) * period
        # Errors alternate +a / -3a over the steps of a chunk: |e| = a, 3a, a, 3a, a, ...
        sign = np.where(np.arange(horizon) % 2 == 0, 1.0, -3.0)[:, None]
        chunks.append(_trajectory(times) + sign * a)
    chunks = np.stack(chunks)  # (15, 8, 3)
    match = metrics.match_actions(chunk_stamps, chunks, period, stamps, recorded,
                                  executed=executed)
    assert match.matched.all() and match.predicted.shape == (15 * 5, 3)
    errors = metrics.action_errors(match)
    # Executed steps 0..4 carry errors a, 3a, a, 3a, a: MAE = 9a/5, RMSE = a sqrt(21/5).
    np.testing.assert_allclose(errors.mae, 9 * a / 5, rtol=1e-9)
    np.testing.assert_allclose(errors.rmse, a * math.sqrt(21 / 5), rtol=1e-9)
    assert errors.count == 75
    summary = metrics.summarize(match, action_names=['x', 'y', 'z'])
    assert summary['per_dimension']['z']['mae'] == pytest.approx(0.9)
    assert summary['mae_mean'] == pytest.approx(float(np.mean(9 * a / 5)))
    assert (summary['ticks'], summary['compared_actions'], summary['unmatched_actions']) == (
        15, 75, 0)


def test_only_the_executed_part_is_compared():
    stamps, recorded = _recorded()
    chunk_stamps = stamps[[0, 40]]
    chunks = np.stack([_trajectory((s - T0) / 1e9 + np.arange(6) * 0.05) for s in chunk_stamps])
    chunks[:, 3:] += 100.0  # garbage after the executed part
    chunks[1, :3] += 0.25  # a known error in the executed part of chunk 1 only
    match = metrics.match_actions(chunk_stamps, chunks, 0.05, stamps, recorded,
                                  executed=[3, 3])
    np.testing.assert_allclose(metrics.action_errors(match).mae, [0.125] * 3, rtol=1e-9)
    mae, rmse, count = metrics.tick_errors(match)
    np.testing.assert_allclose(mae, [0.0, 0.25], atol=1e-12)
    np.testing.assert_allclose(rmse, [0.0, 0.25], atol=1e-12)
    np.testing.assert_array_equal(count, [3, 3])
    everything = metrics.match_actions(chunk_stamps, chunks, 0.05, stamps, recorded)
    assert metrics.action_errors(everything).mae.min() > 40  # executed=None: all 6 steps


def test_linear_interpolation_is_exact_on_a_ramp_and_nearest_is_off_by_the_slope():
    # Recorded: a ramp r(t) = 2 t sampled at 10 Hz. Targets fall 30 ms after a sample.
    stamps = T0 + np.arange(50) * 100 * MS
    recorded = 2.0 * ((stamps - T0) / 1e9)[:, None]
    chunk_stamps = stamps[:10] + 30 * MS
    times = (chunk_stamps - T0)[:, None] / 1e9 + np.arange(4)[None] * 0.1  # (10, 4)
    chunks = (2.0 * times)[..., None]  # a perfect prediction of the ramp
    linear = metrics.match_actions(chunk_stamps, chunks, 0.1, stamps, recorded,
                                   method='linear')
    assert linear.matched.all()
    np.testing.assert_allclose(metrics.action_errors(linear).mae, [0.0], atol=1e-12)
    nearest = metrics.match_actions(chunk_stamps, chunks, 0.1, stamps, recorded)
    # The nearest sample is 30 ms earlier: error = slope * 0.03 = 0.06 for every action.
    np.testing.assert_allclose(nearest.error[:, 0], 0.06, rtol=1e-9)
    np.testing.assert_array_equal(nearest.target_ns[:4] - chunk_stamps[0],
                                  [0, 100 * MS, 200 * MS, 300 * MS])


def test_targets_outside_the_recording_or_in_gaps_are_unmatched():
    stamps, recorded = _recorded(rate=10.0, duration=2.0)  # 0.0 .. 1.9 s
    stamps = np.delete(stamps, [10, 11, 12])  # a 0.4 s gap from 0.9 s to 1.3 s
    recorded = np.delete(recorded, [10, 11, 12], axis=0)
    chunk_stamps = T0 + np.array([800, 1700]) * MS
    chunks = np.zeros((2, 5, 3))
    match = metrics.match_actions(chunk_stamps, chunks, 0.1, stamps, recorded)
    assert match.tolerance_s == pytest.approx(0.05)  # half the median period
    # Chunk 0 targets 0.8 .. 1.2 s: the nearest samples of 1.0, 1.1 and 1.2 s are 0.1, 0.2
    # and 0.1 s away (0.9 and 1.3 s): unmatched. Chunk 1 targets 1.7 .. 2.1 s: 2.0 and 2.1 s
    # lie 0.1 and 0.2 s past the last sample (1.9 s).
    expected = [True, True, False, False, False, True, True, True, False, False]
    np.testing.assert_array_equal(match.matched, expected)
    assert np.isnan(match.recorded[~match.matched]).all()
    summary = metrics.summarize(match)
    assert (summary['compared_actions'], summary['unmatched_actions']) == (5, 5)
    loose = metrics.match_actions(chunk_stamps, chunks, 0.1, stamps, recorded,
                                  tolerance_s=0.15)  # now 0.1 s away is close enough
    np.testing.assert_array_equal(
        loose.matched, [True, True, True, False, True, True, True, True, True, False])


def test_per_chunk_step_periods_and_nearest_tie_goes_to_the_earlier_sample():
    stamps = T0 + np.array([0, 100, 200]) * MS
    recorded = np.array([[0.0], [1.0], [2.0]])
    chunks = np.zeros((2, 2, 1))
    match = metrics.match_actions(T0 + np.array([0, 50]) * MS, chunks, [0.2, 0.1], stamps,
                                  recorded, tolerance_s=0.05)
    # Targets: 0, 200 ms (period 0.2) and 50, 150 ms (period 0.1): ties at 50 and 150 ms.
    np.testing.assert_array_equal(match.target_ns - T0, [0, 200 * MS, 50 * MS, 150 * MS])
    np.testing.assert_array_equal(match.recorded[:, 0], [0.0, 2.0, 0.0, 1.0])


def test_input_errors_name_the_argument():
    stamps, recorded = _recorded()
    with pytest.raises(ValueError, match='`chunks` must have shape'):
        metrics.match_actions(stamps[:2], np.zeros((3, 4, 3)), 0.05, stamps, recorded)
    with pytest.raises(ValueError, match='3 dimensions but recorded actions have 2'):
        metrics.match_actions(stamps[:2], np.zeros((2, 4, 3)), 0.05, stamps, recorded[:, :2])
    with pytest.raises(ValueError, match='`method` must be one of'):
        metrics.match_actions(stamps[:2], np.zeros((2, 4, 3)), 0.05, stamps, recorded,
                              method='cubic')
    with pytest.raises(ValueError, match='`executed` must be in'):
        metrics.match_actions(stamps[:2], np.zeros((2, 4, 3)), 0.05, stamps, recorded,
                              executed=5)
    with pytest.raises(ValueError, match='integer nanoseconds'):
        metrics.match_actions(stamps[:2] / 1e9, np.zeros((2, 4, 3)), 0.05, stamps, recorded)
    with pytest.raises(ValueError, match='`step_period` must be positive'):
        metrics.match_actions(stamps[:2], np.zeros((2, 4, 3)), 0.0, stamps, recorded)


def test_latency_statistics_of_a_known_sample():
    latencies = np.arange(1, 101) / 1000.0  # 1 .. 100 ms
    stats = metrics.latency_statistics(np.append(latencies, np.nan))  # NaN is ignored
    assert stats['count'] == 100
    assert stats['mean'] == pytest.approx(0.0505)
    assert stats['p50'] == pytest.approx(0.0505)  # midway between 50 and 51 ms
    # Linear percentile: position 0.95 * 99 = 94.05 between 95 and 96 ms.
    assert stats['p95'] == pytest.approx(0.09505)
    assert stats['max'] == pytest.approx(0.1)
    assert metrics.latency_statistics([])['p95'] is None


def test_value_statistics_skip_nan():
    stats = metrics.value_statistics([np.nan, 0.2, 0.6, np.nan, 0.4])
    assert stats == {'count': 3, 'mean': pytest.approx(0.4), 'min': 0.2, 'max': 0.6,
                     'first': 0.2, 'last': 0.4}


def test_json_and_csv_writers(tmp_path):
    stamps, recorded = _recorded()
    chunk_stamps = stamps[[0, 20, 199]]
    chunks = np.stack([_trajectory((s - T0) / 1e9 + np.arange(3) * 0.05) for s in chunk_stamps])
    chunks += 0.5
    match = metrics.match_actions(chunk_stamps, chunks, 0.05, stamps, recorded)
    summary = metrics.summarize(match, values=[0.5, np.nan, 0.7],
                                latencies_s=[0.1, 0.2, np.nan])
    path = metrics.write_json(tmp_path / 'summary.json', summary)
    loaded = json.loads(path.read_text())  # strict JSON: no NaN tokens
    assert loaded['value']['count'] == 2 and loaded['latency_s']['max'] == 0.2
    assert loaded['per_dimension']['a1']['mae'] == pytest.approx(0.5)
    table = metrics.tick_table(chunk_stamps, match, values=[0.5, np.nan, 0.7])
    metrics.write_csv(tmp_path / 'ticks.csv', table)
    with open(tmp_path / 'ticks.csv', newline='') as stream:
        rows = list(csv.DictReader(stream))
    assert [int(r['stamp_ns']) for r in rows] == list(chunk_stamps)
    assert [float(r['time_s']) for r in rows] == [0.0, 1.0, 9.95]
    assert [int(r['compared']) for r in rows] == [3, 3, 1]  # the last chunk runs off the end
    assert math.isnan(float(rows[1]['value'])) and float(rows[2]['value']) == 0.7
    assert float(rows[0]['mae']) == pytest.approx(0.5)
    with pytest.raises(ValueError, match='equal lengths'):
        metrics.write_csv(tmp_path / 'bad.csv', {'a': [1, 2], 'b': [1]})
    assert json.loads(metrics.write_json(tmp_path / 'x.json', {'v': np.float32(np.inf),
                                                               'n': np.int64(3)}).read_text()
                      ) == {'v': None, 'n': 3}
