"""Closed-loop metrics of simulated episodes (numpy only): smoothness (RMS jerk), chunk-boundary
jumps, the true discounted return at each tick, and the rank correlation of the value estimate
with it."""
import math

import numpy as np


def rms_jerk(positions, dt):
    """RMS over steps of the norm of the third finite difference of positions / dt**3.

    positions: (n, d) joint positions at a fixed step dt. NaN with fewer than 4 samples.
    """
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 2 or len(positions) < 4:
        return math.nan
    jerk = np.diff(positions, n=3, axis=0) / dt ** 3
    return float(np.sqrt(np.mean(np.sum(jerk ** 2, axis=1))))


def boundary_jumps(plans, commands):
    """Action jumps where one chunk hands over to the next, relative to within-chunk steps.

    plans: (n,) id of the chunk each applied command came from (0: no chunk yet, skipped);
    commands: (n, d). A switch is a step whose chunk differs from the previous step's (both
    non-zero); its jump is |command - previous command|. Within-chunk steps are consecutive
    steps of the same chunk whose command changed row. Returns dict(jumps=[...],
    within_median, ratios=[jump / within_median]).
    """
    plans = np.asarray(plans)
    commands = np.asarray(commands, dtype=np.float64)
    jumps, within = [], []
    for k in range(1, len(plans)):
        if plans[k] == 0 or plans[k - 1] == 0:
            continue
        step = float(np.linalg.norm(commands[k] - commands[k - 1]))
        if plans[k] != plans[k - 1]:
            jumps.append(step)
        else:
            within.append(step)
    median = float(np.median(within)) if within else math.nan
    ratios = [jump / median if median > 0 else math.nan for jump in jumps]
    return {'jumps': jumps, 'within_median': median, 'ratios': ratios}


def spearman(x, y):
    """Spearman rank correlation (ties: average ranks) over the pairs where both are finite;
    NaN with fewer than two such pairs or a constant side."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if len(x) != len(y):
        raise ValueError(f'spearman: {len(x)} vs {len(y)} values')
    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 2:
        return math.nan
    return rank_correlation(x[keep], y[keep])


def discounted_returns(tick_steps, success_step, gamma):
    """True discounted return at each tick (step index): gamma**(T - 1 - t) when the episode
    succeeded at step T (the step whose result was success; T counts steps from 1), 0 for a
    failed episode (success_step None; the value scale's floor, the training target's -1)."""
    ticks = np.asarray(tick_steps, dtype=np.float64)
    if success_step is None:
        return np.zeros_like(ticks)
    return np.power(gamma, np.maximum(0.0, success_step - 1 - ticks))


def rank_correlation(a, b):
    """Spearman rank correlation of two equal-length sequences (average ranks for ties)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError('spearman needs two 1-d sequences of equal length >= 2.')
    ranks_a, ranks_b = _ranks(a), _ranks(b)
    if ranks_a.std() == 0 or ranks_b.std() == 0:
        return math.nan
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


def _ranks(values):
    order = np.argsort(values, kind='mergesort')
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=np.float64)
    for value in np.unique(values):  # ties share their mean rank
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks
