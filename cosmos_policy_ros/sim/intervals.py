"""Bootstrap confidence intervals over episodes, alone and paired (numpy only).

A closed-loop figure (the success rate, the 90th percentile of the boundary jumps pooled over
every switch of every episode, the mean RMS jerk, ...) is a statistic of a set of episodes.
Its interval is the percentile bootstrap over episodes: draw as many episodes as there were,
with replacement, recompute the statistic, `RESAMPLES` times; the interval is the
``(1 - LEVEL) / 2`` and ``(1 + LEVEL) / 2`` quantiles of those values. Episodes are drawn, not
switches: the switches of one episode are not independent of each other.

Two methods measured on the same seeds are compared *paired*: one draw of episode indices
serves both, so what the seeds have in common cancels, and the comparison (a ratio such as
jump p90 of a method / jump p90 of ``none``, or a difference of success rates) gets its own
interval. The draws come from a generator seeded with `SEED`: the same episodes give the same
intervals.

Limits: a percentile bootstrap of a maximum never exceeds the sample's maximum, so the upper
end of a max's interval is the measured max; with tens of episodes the intervals of tail
figures (p90, max) are wide, which is the point of giving them.
"""
from dataclasses import dataclass
import math

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95
SEED = 0


@dataclass(frozen=True)
class Interval:
    """A figure and its bootstrap interval (NaN where the statistic is undefined)."""

    estimate: float
    low: float
    high: float

    def as_list(self):
        """[estimate, low, high] (what the JSON records hold)."""
        return [self.estimate, self.low, self.high]

    def contains(self, value):
        return self.low <= value <= self.high


def resample_indices(count, *, resamples=RESAMPLES, seed=SEED):
    """(resamples, count) int64: each row `count` episode indices drawn with replacement."""
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f'need at least one episode to resample; got {count!r}.')
    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 1:
        raise ValueError(f'`resamples` must be a positive integer. Got {resamples!r}.')
    return np.random.default_rng(seed).integers(0, count, size=(resamples, count))


def bootstrap(statistic, episodes, *, resamples=RESAMPLES, level=LEVEL, seed=SEED):
    """The Interval of statistic(episodes): statistic maps a list of episodes to a number."""
    episodes = list(episodes)
    estimate = _value(statistic(episodes))
    draws = resample_indices(len(episodes), resamples=resamples, seed=seed)
    values = [_value(statistic([episodes[i] for i in row])) for row in draws]
    return Interval(estimate, *_quantiles(values, level))


def paired(statistic, episodes, baseline, combine, *, resamples=RESAMPLES, level=LEVEL,
           seed=SEED):
    """The Interval of combine(statistic(episodes), statistic(baseline)), paired.

    episodes and baseline: the same seeds in the same order (episode i of both ran seed i);
    every draw takes the same indices from both. combine: e.g. `ratio` or `difference`.
    """
    episodes, baseline = list(episodes), list(baseline)
    if len(episodes) != len(baseline):
        raise ValueError(f'a paired comparison needs the same episodes on both sides; got '
                         f'{len(episodes)} and {len(baseline)}.')
    estimate = _value(combine(_value(statistic(episodes)), _value(statistic(baseline))))
    draws = resample_indices(len(episodes), resamples=resamples, seed=seed)
    values = [_value(combine(_value(statistic([episodes[i] for i in row])),
                             _value(statistic([baseline[i] for i in row]))))
              for row in draws]
    return Interval(estimate, *_quantiles(values, level))


def ratio(value, baseline):
    """value / baseline (NaN when the baseline is 0 or NaN)."""
    return value / baseline if baseline and math.isfinite(baseline) else math.nan


def difference(value, baseline):
    return value - baseline


# --- statistics of per-episode records (dicts) ------------------------------------------------
def pooled(key, reduce):
    """statistic(episodes) = reduce(every finite value of episode[key], all episodes pooled);
    NaN when there is none."""
    def statistic(episodes):
        values = np.concatenate([np.asarray(e[key], dtype=np.float64).reshape(-1)
                                 for e in episodes]) if episodes else np.zeros(0)
        values = values[np.isfinite(values)]
        return float(reduce(values)) if values.size else math.nan
    return statistic


def percentile(q):
    """reduce(values) = the q-th percentile (numpy's linear interpolation)."""
    return lambda values: np.percentile(values, q)


def _value(value):
    value = float(value)
    return value if math.isfinite(value) else math.nan


def _quantiles(values, level):
    if not 0 < level < 1:
        raise ValueError(f'`level` must be in (0, 1). Got {level!r}.')
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not values.size:
        return math.nan, math.nan
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)
