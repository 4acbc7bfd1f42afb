"""The figures of one stitching cell (method x latency) with bootstrap intervals, and each
method against ``none`` on the same seeds (numpy only; docs/stitching.md).

A cell is a list of per-episode records (dicts), one per seed in seed order:

    ratios   the episode's boundary jumps / its median within-chunk step, one per switch
    jumps    the same jumps in action units (rad for the sim's joints)
    jerk     the episode's RMS jerk of the joint positions (NaN: too short)
    success  1.0 or 0.0
    time     time to success in seconds (NaN on failure)

`FIGURES` names each figure and its statistic over such a list: jumps are pooled over every
switch of every episode, jerk and time averaged over the episodes that have one.
`cell_figures` gives each figure with its interval (sim.intervals.bootstrap: episodes drawn
with replacement); `versus_baseline` compares a cell with the ``none`` cell of the same
latency, paired (the same draws of seeds on both sides): a ratio for every figure but the
success rate, whose comparison is the difference; `headline` says it in one line. The figure
of them: sim/plots.py `write_interval_plot`.
"""
import math

import numpy as np

from cosmos_policy_ros.sim import intervals

FIGURES = {
    'success_rate': lambda episodes: _mean(episodes, 'success'),
    'time_to_success_mean': lambda episodes: _mean(episodes, 'time'),
    'rms_jerk_mean': lambda episodes: _mean(episodes, 'jerk'),
    'jump_ratio_median': intervals.pooled('ratios', np.median),
    'jump_ratio_mean': intervals.pooled('ratios', np.mean),
    'jump_ratio_p90': intervals.pooled('ratios', intervals.percentile(90)),
    'jump_ratio_max': intervals.pooled('ratios', np.max),
    'jump_p90': intervals.pooled('jumps', intervals.percentile(90)),
    'jump_max': intervals.pooled('jumps', np.max),
}
DIFFERENCES = ('success_rate',)  # compared with the baseline as a difference, not a ratio


def cell_figures(episodes):
    """{figure: Interval} of one cell's per-episode records (every name of FIGURES)."""
    episodes = list(episodes)
    return {name: intervals.bootstrap(statistic, episodes)
            for name, statistic in FIGURES.items()}


def versus_baseline(episodes, baseline):
    """{figure: Interval} of this cell against the baseline cell run on the same seeds:
    figure / baseline's (difference for DIFFERENCES), paired."""
    return {name: intervals.paired(
        statistic, episodes, baseline,
        intervals.difference if name in DIFFERENCES else intervals.ratio)
        for name, statistic in FIGURES.items()}


def headline(cells):
    """One line for a record: per latency, the method whose jump p90 is the lowest against
    ``none`` (cells with `vs_none`), with its p90, max and jerk ratios and their intervals."""
    parts = []
    for fraction in sorted({c['latency_fraction'] for c in cells}):
        compared = [c for c in cells if c['latency_fraction'] == fraction and 'vs_none' in c
                    and _finite(c['vs_none']['jump_ratio_p90'][0])]
        if not compared:
            continue
        best = min(compared, key=lambda c: c['vs_none']['jump_ratio_p90'][0])
        versus = best['vs_none']
        parts.append(f'{100 * fraction:.0f} %: {best["method"]} jump p90 '
                     f'{_times(versus["jump_ratio_p90"])}, max {_times(versus["jump_ratio_max"])}'
                     f', jerk {_times(versus["rms_jerk_mean"])}')
    return ('against none on the same seeds (x none, 95 % interval): ' + '; '.join(parts)
            if parts else 'no method compared with none')


def _mean(episodes, key):
    values = np.array([e[key] for e in episodes], dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else math.nan


def _finite(value):
    return value is not None and math.isfinite(value)


def _times(values):
    estimate, low, high = values
    return f'{estimate:.2f}x [{low:.2f}, {high:.2f}]'
