"""bench/bench_stitching.py's replanning loop on policies whose chunks are known by hand."""
import importlib.util
import os
from pathlib import Path
import sys

import numpy as np
import pytest

ROOT = Path(os.environ.get('COSMOS_ROOT', Path(__file__).resolve().parents[2]))


@pytest.fixture(scope='module')
def bench():
    spec = importlib.util.spec_from_file_location('bench_stitching_under_test',
                                                  ROOT / 'bench' / 'bench_stitching.py')
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / 'bench'))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / 'bench'))
    return module


class Constant:
    """Chunk i (seed i) is the constant i; records the known prefixes it is given."""

    def __init__(self):
        self.known = []

    def infer(self, state, seed, known=None):
        self.known.append(None if known is None else np.array(known))
        return np.full((16, 1), float(seed))


@pytest.mark.parametrize('latency_steps', [0, 2, 4])
def test_hard_switch_rows_follow_the_execution_model(bench, latency_steps):
    policy = Constant()
    executed, ids, switches = bench.run_episode(
        policy, 'none', latency_steps * bench.PERIOD_NS, chunks=3, start_state=[0.0], seed=0)
    # Chunk i starts at step 8 i and takes over latency_steps later; rows begin where the
    # first chunk does (step latency_steps), up to step 24.
    np.testing.assert_array_equal(switches, [8, 16])
    np.testing.assert_array_equal(executed[:, 0], ids.astype(float))
    assert executed.shape[0] == 25 - latency_steps and ids[0] == 0
    assert policy.known == [None, None, None]


def test_blend_and_inpaint_see_what_the_robot_was_commanded(bench):
    policy = Constant()
    executed, _, _ = bench.run_episode(policy, 'inpaint+blend', 2 * bench.PERIOD_NS,
                                       chunks=3, start_state=[0.0], seed=0)
    overlap = bench.OVERLAP
    ramp = (np.arange(overlap) + 1) / (overlap + 1)
    # Rows begin at step 2; chunk 1 takes over at step 10 (row 8), chunk 2 at step 18.
    np.testing.assert_allclose(executed[8:8 + overlap, 0], ramp)
    np.testing.assert_allclose(executed[16:16 + overlap, 0], 1 + ramp)
    np.testing.assert_array_equal(executed[8 + overlap:16, 0], 1.0)
    # The prefixes known to chunks 1 and 2: the two steps the robot executes while they are
    # computed (chunk 0's value at steps 8, 9, then chunk 1's value at steps 16, 17).
    assert policy.known[0] is None
    np.testing.assert_array_equal(policy.known[1][:, 0], [0.0, 0.0])
    np.testing.assert_array_equal(policy.known[2][:, 0], [1.0, 1.0])
