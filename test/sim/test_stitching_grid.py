"""The stitching grid's arithmetic (sim/stitching_grid.py) on constructed episodes; the grid
itself runs policy_node (test/ros/test_stitching_node.py covers every method through it)."""
import math

import numpy as np
import pytest

from cosmos_policy_ros.sim.episode_trace import ChunkRecord, EpisodeTrace
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


def test_the_record_names_the_smoothest_method_per_latency():
    flat = _trace(1, [0, 0, 1, 2, 3, 4], [0, 1, 1, 1, 2, 2], success_step=6)  # ratio 1
    jumpy = _trace(1, [0, 0, 1, 2, 5, 6], [0, 1, 1, 1, 2, 2], success_step=6)  # ratio 3
    results = {('none', 0.5): [jumpy], ('blend', 0.5): [flat], ('inpaint', 0.5): [jumpy]}
    record = grid_record(results, {'execute_steps': 4, 'step_period': 0.1, 'overlap': 2,
                                   'mode': 'lockstep'}, seeds=[1], model='m',
                         description='d', command='cmd')
    assert record['headline'].endswith('50 %: none 3.00 -> blend 1.00')
    cell = record['cells'][1]
    assert (cell['method'], cell['latency_steps'], cell['latency_s']) == ('blend', 2, 0.2)
