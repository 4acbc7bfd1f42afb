"""Bootstrap intervals over episodes (sim/intervals.py) against closed forms and by hand."""
import math

import numpy as np
import pytest

from cosmos_policy_ros.sim import intervals


def _mean(key):
    return lambda episodes: float(np.mean([e[key] for e in episodes]))


def test_the_interval_of_a_mean_matches_the_normal_approximation():
    # n = 400 draws of N(0, 1): the bootstrap interval of the mean is close to the textbook
    # mean +- 1.96 s / sqrt(n) (s the sample standard deviation).
    values = np.random.default_rng(3).normal(size=400)
    episodes = [{'x': v} for v in values]
    interval = intervals.bootstrap(_mean('x'), episodes, resamples=4000)
    half = 1.96 * values.std(ddof=1) / math.sqrt(len(values))
    assert interval.estimate == pytest.approx(values.mean())
    assert interval.low == pytest.approx(values.mean() - half, abs=0.1 * half)
    assert interval.high == pytest.approx(values.mean() + half, abs=0.1 * half)
    assert interval.contains(interval.estimate)


def test_a_constant_has_a_point_interval_and_the_max_ends_at_the_sample_max():
    interval = intervals.bootstrap(_mean('x'), [{'x': 2.5}] * 7)
    assert interval.as_list() == [2.5, 2.5, 2.5]
    maximum = intervals.bootstrap(lambda e: max(d['x'] for d in e),
                                  [{'x': v} for v in range(10)])
    assert maximum.estimate == maximum.high == 9 and maximum.low < 9


def test_paired_draws_cancel_what_the_seeds_share():
    # Episode i of both sides shares a large seed effect s_i; the method adds 1. Paired, every
    # draw sees the difference 1 exactly; unpaired, the seed effect would make it wide.
    shared = np.random.default_rng(0).normal(scale=10.0, size=50)
    method = [{'x': s + 1.0} for s in shared]
    baseline = [{'x': s} for s in shared]
    paired = intervals.paired(_mean('x'), method, baseline, intervals.difference)
    assert paired.as_list() == pytest.approx([1.0, 1.0, 1.0])
    alone = intervals.bootstrap(_mean('x'), method)
    assert alone.high - alone.low > 3.0
    # The same sides give a ratio of exactly one.
    same = intervals.paired(_mean('x'), baseline, baseline, intervals.ratio)
    assert same.as_list() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match='same episodes on both sides'):
        intervals.paired(_mean('x'), method, baseline[:-1], intervals.ratio)


def test_pooled_statistics_concatenate_the_episodes_and_skip_non_finite_values():
    episodes = [{'r': [1.0, 2.0]}, {'r': []}, {'r': [3.0, math.nan, 10.0]}]
    assert intervals.pooled('r', np.max)(episodes) == 10.0
    p90 = intervals.pooled('r', intervals.percentile(90))(episodes)
    assert p90 == pytest.approx(np.percentile([1, 2, 3, 10], 90))
    assert math.isnan(intervals.pooled('r', np.max)([{'r': []}]))
    # A statistic undefined in some draws (no switches there) is left out of the quantiles.
    interval = intervals.bootstrap(intervals.pooled('r', np.max), [{'r': []}, {'r': [4.0]}])
    assert interval.as_list() == [4.0, 4.0, 4.0]


def test_draws_are_reproducible_and_inputs_are_checked():
    first = intervals.resample_indices(5, resamples=3)
    assert first.shape == (3, 5) and first.min() >= 0 and first.max() < 5
    np.testing.assert_array_equal(first, intervals.resample_indices(5, resamples=3))
    assert not np.array_equal(first, intervals.resample_indices(5, resamples=3, seed=1))
    with pytest.raises(ValueError, match='at least one episode'):
        intervals.resample_indices(0)
    with pytest.raises(ValueError, match='`level`'):
        intervals.bootstrap(_mean('x'), [{'x': 1.0}], level=1.0)
    assert math.isnan(intervals.ratio(1.0, 0.0)) and intervals.ratio(1.0, 4.0) == 0.25
