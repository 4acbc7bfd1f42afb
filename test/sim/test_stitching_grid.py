"""The stitching grid's arithmetic (sim/stitching_grid.py) on constructed episodes; the grid
itself runs policy_node (test/ros/test_stitching_node.py covers every method through it)."""
import math

import numpy as np
import pytest

from cosmos_policy_ros.sim.episode_trace import ChunkRecord, EpisodeTrace
from cosmos_policy_ros.sim.plots import write_interval_plot
from cosmos_policy_ros.sim.stitching_grid import cell_metrics, grid_record, latency_steps


def test_latency_fractions_become_whole_steps_of_the_executed_part():
    assert [latency_steps(f, 4) for f in (0, 0.25, 0.5, 1.0)] == [0, 1, 2, 4]
    assert latency_steps(0.3, 4) == 1  # 1.2 steps rounds to 1
    with pytest.raises(ValueError):
        latency_steps(-0.25, 4)


def _trace(seed, commands, plans, success_step, conditioned=0):
    trace = EpisodeTrace(seed=seed, task='t', start_ns=0, step_period=0.1)
    trace.commands = [np.array([c, 0.0, 0.0]) for c in commands]
    trace.plans = list(plans)
    trace.positions = [np.array([c, 0.0, 0.0]) for c in commands]
    trace.success_step = success_step
    trace.steps = len(commands)
    trace.chunks = [ChunkRecord(stamp_ns=0, step=0, actions=np.zeros((8, 3)),
                                conditioned_steps=conditioned)]
    return trace


def test_cell_metrics_pool_the_switches_of_every_episode():
    # Episode 1: within-chunk steps 1, 1, 1 (median 1), one switch of 2 -> ratio 2.
    one = _trace(1, [0, 0, 1, 2, 4, 5], [0, 1, 1, 1, 2, 2], success_step=6, conditioned=2)
    # Episode 2: within-chunk steps 2, 2 (median 2), one switch of 1 -> ratio 0.5; failed.
    two = _trace(2, [0, 2, 4, 5, 7], [1, 1, 1, 2, 2], success_step=None)
    metrics = cell_metrics([one, two])
    assert metrics['switches'] == 2
    assert metrics['jump_ratio_median'] == pytest.approx(1.25)
    assert metrics['jump_ratio_max'] == 2 and metrics['jump_ratio_mean'] == pytest.approx(1.25)
    assert (metrics['successes'], metrics['success_rate']) == (1, 0.5)
    assert metrics['time_to_success_mean'] == pytest.approx(0.6)
    assert (metrics['conditioned_chunks'], metrics['chunks']) == (1, 2)
    assert math.isfinite(metrics['rms_jerk_mean'])


def test_the_record_compares_every_method_with_none_on_the_same_seeds(tmp_path):
    flat = _trace(1, [0, 0, 1, 2, 3, 4], [0, 1, 1, 1, 2, 2], success_step=6)  # ratio 1
    jumpy = _trace(1, [0, 0, 1, 2, 5, 6], [0, 1, 1, 1, 2, 2], success_step=6)  # ratio 3
    results = {('none', 0.5): [jumpy], ('blend', 0.5): [flat], ('inpaint', 0.5): [jumpy]}
    record = grid_record(results, {'execute_steps': 4, 'step_period': 0.1, 'overlap': 2,
                                   'mode': 'lockstep'}, seeds=[1], model='m',
                         description='d', command='cmd')
    none, blend, inpaint = record['cells']
    assert (blend['method'], blend['latency_steps'], blend['latency_s']) == ('blend', 2, 0.2)
    assert 'vs_none' not in none
    # One episode: every draw is that episode, so each interval is the estimate itself.
    assert blend['vs_none']['jump_ratio_p90'] == pytest.approx([1 / 3] * 3)
    assert blend['vs_none']['jump_max'] == pytest.approx([1 / 3] * 3)  # |1| vs |3| rad
    assert blend['vs_none']['success_rate'] == [0.0, 0.0, 0.0]  # a difference, not a ratio
    assert inpaint['vs_none']['jump_ratio_max'] == [1.0, 1.0, 1.0]
    jerk = blend['vs_none']['rms_jerk_mean'][0]
    assert jerk == pytest.approx(blend['rms_jerk_mean'] / none['rms_jerk_mean'])
    assert record['headline'].startswith(
        'against none on the same seeds (x none, 95 % interval): 50 %: blend jump p90 '
        '0.33x [0.33, 0.33], max 0.33x [0.33, 0.33], jerk ')
    path = write_interval_plot(tmp_path / 'intervals.png', record['cells'])
    assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_cell_intervals_cover_the_pooled_estimates():
    episodes = [_trace(s, [0, 0, 1, 2, 2 + s, 3 + s], [0, 1, 1, 1, 2, 2], success_step=6)
                for s in range(1, 6)]
    metrics = cell_metrics(episodes)
    for name in ('jump_ratio_p90', 'jump_ratio_max', 'rms_jerk_mean', 'success_rate'):
        estimate, low, high = metrics['intervals'][name]
        assert estimate == metrics[name] and low <= estimate <= high
    # The jumps are s for the episode of seed s: the max's interval ends at the sample max.
    assert metrics['intervals']['jump_max'][2] == 5 and metrics['intervals']['jump_max'][1] < 5
