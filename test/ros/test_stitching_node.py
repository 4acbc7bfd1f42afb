"""Every stitching method through the real policy_node on the simulated arm, in lockstep.

The stand-in model (real engine, random weights), config/sim.yaml (chunks of 8, 4 executed,
0.1 s steps) and an injected latency of 2 steps: the sim hands each chunk to its controller
0.2 s after receiving it (command_delay) and the node plans for it (latency_margin 0.2). An
episode of 8 steps has chunks stamped at steps 0 and 4, reaching the controller at steps 2
and 6. Lockstep makes every run deterministic, so the methods can be compared row by row: the
first chunk and the robot up to step 4 are the same for every method, hence so is the
observation of the second chunk. No timing assertions.
"""
import numpy as np
import pytest

from cosmos_policy_ros.execution import (blend_weights, ChunkTiming, plan_takeover, stitch,
                                         STITCHING_METHODS)
from cosmos_policy_ros.ros.sim_node import run_sim_episodes
from cosmos_policy_ros.sim.arm import PlanarReachEnv, SimConfig
from cosmos_policy_ros.sim.harness import node_config_path, run_policy
from cosmos_policy_ros.sim.model import make_standin_model

pytestmark = [pytest.mark.ros, pytest.mark.slow]
DELAY_STEPS = 2
OVERLAP = 2


@pytest.fixture(scope='module')
def standin_model(tmp_path_factory):
    return make_standin_model(tmp_path_factory.mktemp('standin'))


@pytest.fixture(scope='module')
def runs(standin_model, tmp_path_factory):
    """method -> the EpisodeTrace of seed 21 (one node process per method)."""
    out = tmp_path_factory.mktemp('stitching')
    traces = {}
    for method in STITCHING_METHODS:
        env = PlanarReachEnv(SimConfig(episode_timeout=0.8))
        result, _ = run_policy(
            standin_model, node_config_path(), [21], out, runner=run_sim_episodes,
            mode='lockstep', env=env,
            command_delay=DELAY_STEPS * 0.1, log_name=f'{method}.log',
            overrides=['num_denoising_steps:=2', f'stitching:={method}',
                       f'stitching_overlap:={OVERLAP}', f'latency_margin:={DELAY_STEPS * 0.1}'])
        traces[method] = result[0]
    return traces


def _chunks(trace):
    first, second = trace.chunks
    return np.asarray(first.actions), np.asarray(second.actions), first, second


def test_every_method_runs_and_reports_itself_in_the_chunk(runs):
    for method, trace in runs.items():
        assert [c.step for c in trace.chunks] == [0, 4] and trace.steps == 8, method
        assert all(c.stitching == method for c in trace.chunks)
        assert [c.takeover_step for c in trace.chunks] == [DELAY_STEPS, DELAY_STEPS]
        # Delivered command_delay after the stamp, executed from the takeover row.
        assert [round(c.arrival_delay, 9) for c in trace.chunks] == [0.2, 0.2]
        assert trace.plans[:2] == [0, 0] and trace.plans[2:] == [1, 1, 1, 1, 2, 2]
        _, second, _, _ = _chunks(trace)
        assert np.array_equal(trace.commands[6], second[DELAY_STEPS])
        assert not trace.refused


def test_the_first_chunk_is_the_same_for_every_method(runs):
    firsts = [_chunks(trace)[0] for trace in runs.values()]
    assert all(np.array_equal(firsts[0], other) for other in firsts[1:])
    assert all(trace.chunks[0].conditioned_steps == 0 and trace.chunks[0].blended_steps == 0
               for trace in runs.values())


def test_inpaint_conditions_the_second_chunk_on_the_committed_commands(runs):
    first, none_second, _, none_meta = _chunks(runs['none'])
    assert (none_meta.conditioned_steps, none_meta.blended_steps) == (0, 0)
    _, second, _, meta = _chunks(runs['inpaint'])
    assert (meta.conditioned_steps, meta.blended_steps) == (DELAY_STEPS, 0)
    # Its steps 0, 1 are due at steps 4, 5, where the robot runs rows 4, 5 of the first chunk.
    assert np.allclose(second[:DELAY_STEPS], first[4:4 + DELAY_STEPS], atol=1e-4)
    # Negative control: the plain sampler's chunk for the same observation does not repeat them.
    assert not np.allclose(none_second[:DELAY_STEPS], first[4:4 + DELAY_STEPS], atol=1e-2)
    assert not np.allclose(second, none_second, atol=1e-3)


def test_blend_cross_fades_from_the_executing_chunk_to_the_plain_one(runs):
    first, none_second, _, _ = _chunks(runs['none'])
    _, second, _, meta = _chunks(runs['blend'])
    assert (meta.conditioned_steps, meta.blended_steps) == (0, OVERLAP)
    w_old, w_new = blend_weights(OVERLAP)
    rows = slice(DELAY_STEPS, DELAY_STEPS + OVERLAP)  # due at steps 6, 7: first's rows 6, 7
    expected = w_old[:, None] * first[6:8] + w_new[:, None] * none_second[rows]
    assert np.allclose(second[rows], expected, atol=1e-6)
    keep = np.r_[0:DELAY_STEPS, DELAY_STEPS + OVERLAP:len(second)]
    assert np.array_equal(second[keep], none_second[keep])


def test_inpaint_blend_is_the_inpainted_chunk_cross_faded(runs):
    first, _, _, _ = _chunks(runs['none'])
    _, inpainted, _, _ = _chunks(runs['inpaint'])
    _, second, _, meta = _chunks(runs['inpaint+blend'])
    assert (meta.conditioned_steps, meta.blended_steps) == (DELAY_STEPS, OVERLAP)
    w_old, w_new = blend_weights(OVERLAP)
    rows = slice(DELAY_STEPS, DELAY_STEPS + OVERLAP)
    assert np.allclose(second[rows], w_old[:, None] * first[6:8]
                       + w_new[:, None] * inpainted[rows], atol=1e-6)
    keep = np.r_[0:DELAY_STEPS, DELAY_STEPS + OVERLAP:len(second)]
    assert np.array_equal(second[keep], inpainted[keep])


def test_ramp_equals_the_offline_stitch_of_the_plain_chunk(runs):
    # The node path (the ControlLoop in policy_node, the chunk over ROS to the sim) equals
    # execution.stitch, what the offline evaluator's ControlLoop applies, on the plain chunk.
    first, none_second, _, _ = _chunks(runs['none'])
    _, second, _, meta = _chunks(runs['ramp'])
    assert (meta.conditioned_steps, meta.blended_steps) == (0, OVERLAP)
    period = round(0.1 * 1e9)
    executing, new = ChunkTiming(0, period, 8), ChunkTiming(4 * period, period, 8)
    takeover = plan_takeover(executing, new, 4 * period, DELAY_STEPS * period)
    offline = stitch('ramp', first, executing, none_second, new, takeover, overlap=OVERLAP)
    np.testing.assert_array_equal(second[DELAY_STEPS:], offline.astype(np.float32))
    np.testing.assert_array_equal(second[:DELAY_STEPS], none_second[:DELAY_STEPS])
    # By hand: the switch is at step 6, the last committed command first[5]; rows 2, 3 are
    # its thirds towards the plain chunk's row 4.
    line = first[5] + np.array([[1 / 3], [2 / 3]]) * (none_second[4] - first[5])
    np.testing.assert_allclose(second[2:4], line, atol=1e-6)
    # What the sim executed: first[5] at step 5, then the ramp.
    np.testing.assert_array_equal(runs['ramp'].commands[5], first[5])
    np.testing.assert_array_equal(runs['ramp'].commands[6], second[2])
