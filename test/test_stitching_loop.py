"""Stitching in the control loop, without a ROS graph: fake stamps, a fake clock, stub policies.

The loop plans each takeover with the execution model (execution.py), hands the executing
chunk's commands up to it to an inpainting policy, and cross-fades the published rows for
blend; these tests check each with hand-computed numbers (docs/stitching.md has the formulas).
"""
from types import SimpleNamespace

import numpy as np
import pytest

from cosmos_policy_ros.control_loop import ControlLoop, LATENCY_WINDOW
from cosmos_policy_ros.interface import PolicyOutput
from cosmos_policy_ros.layout import LatentLayout
from cosmos_policy_ros.node_config import NodeConfig
from cosmos_policy_ros.testing import fake_header, STUB_JOINTS, stub_node_config

S = 1_000_000_000
MS = 1_000_000
P = 100 * MS  # step period 0.1 s
T0 = 1_700_000_000 * S
JOINTS = STUB_JOINTS
K = 4
LAYOUT = LatentLayout('stub', ('cam',), chunk_size=K, action_dim=2, proprio_dim=2,
                      image_size=16)


class ScriptedPolicy:
    """Returns the next chunk of `chunks` ((K, 2) each); with known_actions (k, 2) the first k
    rows are those (an exact inpainter) and num_conditioned_steps = k. Records what it got."""

    layout = LAYOUT
    model_id = 'scripted'

    def __init__(self, chunks):
        self.chunks = [np.asarray(c, np.float32) for c in chunks]
        self.known = []

    def infer(self, observation, *, num_steps=None, num_candidates=None, known_actions=None):
        actions = self.chunks[len(self.known)].copy()
        self.known.append(None if known_actions is None else np.array(known_actions))
        conditioned = 0 if known_actions is None else len(known_actions)
        actions[:conditioned] = known_actions
        return PolicyOutput(actions=actions, value=0.5, seed=observation.seed, num_steps=1,
                            num_conditioned_steps=conditioned)

    def reset(self):
        pass


class PlainPolicy(ScriptedPolicy):
    """No known_actions keyword at all (a policy without inpainting)."""

    def infer(self, observation, *, num_steps=None, num_candidates=None):
        return super().infer(observation, num_steps=num_steps, num_candidates=num_candidates)


def _feed(loop, stamp_ns):
    camera, arm = loop.streams
    image = SimpleNamespace(header=fake_header(stamp_ns), height=16, width=16,
                            encoding='rgb8', is_bigendian=0, step=48,
                            data=bytes(16 * 16 * 3))
    joints = SimpleNamespace(header=fake_header(stamp_ns), name=list(JOINTS),
                             position=[0.0, 0.0], velocity=[], effort=[])
    assert loop.receive(camera, image) == ('', '')
    assert loop.receive(arm, joints) == ('', '')


def _run(loop, stamp_ns, *, latency_ns=0):
    """Observation at `stamp_ns`, tick then, finish `latency_ns` later: the Finished."""
    _feed(loop, stamp_ns)
    job = loop.tick(stamp_ns)
    finished, _, _ = loop.complete(job, lambda: stamp_ns + latency_ns)
    assert finished.ok, finished
    return job, finished.chunk


def _loop(policy, **changes):
    loop = ControlLoop(policy, stub_node_config(**changes))
    loop.start()
    return loop


A = np.arange(K, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)  # A[k] = (k, k)
B = np.full((K, 2), 10.0, np.float32)


# --- parameters --------------------------------------------------------------------------------
def test_the_stitching_parameters_are_validated_and_runtime():
    config = stub_node_config()
    assert (config.stitching, config.stitching_overlap, config.latency_margin) == (
        'none', 2, 0.0)
    for name in ('stitching', 'stitching_overlap', 'latency_margin'):
        assert name in NodeConfig.runtime_parameters()
    with pytest.raises(ValueError, match='`stitching` must be one of'):
        stub_node_config(stitching='rtc')
    with pytest.raises(ValueError, match='`stitching_overlap` must be >= 0'):
        stub_node_config(stitching_overlap=-1)
    with pytest.raises(ValueError, match='`latency_margin` must be >= 0'):
        stub_node_config(latency_margin=-0.1)
    config = stub_node_config(stitching='inpaint+blend')
    assert config.replace(stitching='blend').stitching == 'blend'


# --- none: today's hard switch -----------------------------------------------------------------
def test_none_publishes_the_policy_output_unchanged_and_reports_the_takeover():
    policy = ScriptedPolicy([A, B])
    loop = _loop(policy, latency_margin=0.2)
    _, first = _run(loop, T0)
    job, second = _run(loop, T0 + P)
    assert policy.known == [None, None]  # no known actions without an inpaint method
    assert np.array_equal(second.actions, B)
    # ready = t1 + 0.2 s (measured 0 on this clock + the margin): j0 = ceil(0.2 / 0.1) = 2.
    assert (second.stitching, second.takeover_step, second.conditioned_steps,
            second.blended_steps) == ('none', 2, 0, 0)
    assert second.expected_latency == pytest.approx(0.2)
    assert job.expected_latency_ns == 200 * MS and job.start_ns == T0 + P


# --- inpaint: the executing chunk's commands up to the takeover --------------------------------
def test_inpaint_hands_the_committed_commands_to_the_policy():
    policy = ScriptedPolicy([A, B])
    loop = _loop(policy, stitching='inpaint', latency_margin=0.2)
    _, first = _run(loop, T0)
    assert policy.known == [None]  # nothing executing yet
    _, second = _run(loop, T0 + P)
    # t1 = T0 + p, ready = t1 + 2p: new steps j = 0, 1 are due at T0 + p, T0 + 2p, where A
    # commands A[1], A[2] (aligned grids: exactly those rows).
    assert np.array_equal(policy.known[1], A[1:3])
    assert second.conditioned_steps == 2 and second.takeover_step == 2
    assert np.array_equal(second.actions[:2], A[1:3]) and np.array_equal(second.actions[2:],
                                                                         B[2:])


def test_a_method_changed_during_inference_applies_from_the_next_tick():
    # The chunk in flight was conditioned under inpaint: it is labelled and finished as such
    # (no blend although the loop now says blend); the next tick uses blend.
    policy = ScriptedPolicy([A, B, B])
    loop = _loop(policy, stitching='inpaint', latency_margin=0.2)
    _run(loop, T0)
    _feed(loop, T0 + P)
    job = loop.tick(T0 + P)
    loop.reconfigure(stub_node_config(stitching='blend', latency_margin=0.2))
    finished, _, _ = loop.complete(job, lambda: T0 + P)
    assert finished.ok, finished
    assert (finished.chunk.stitching, finished.chunk.conditioned_steps,
            finished.chunk.blended_steps) == ('inpaint', 2, 0)
    _, third = _run(loop, T0 + 2 * P)
    assert third.stitching == 'blend' and third.blended_steps == 2


def test_inpaint_reads_the_old_chunk_between_its_steps_when_the_grids_differ():
    policy = ScriptedPolicy([A, B])
    loop = _loop(policy, stitching='inpaint', latency_margin=0.2)
    _run(loop, T0)
    _run(loop, T0 + P + 50 * MS)  # half a step off A's grid
    # j = 0, 1 due at T0 + 1.5 p, T0 + 2.5 p: A there is 1.5 and 2.5 (linear between rows).
    assert np.allclose(policy.known[1], [[1.5, 1.5], [2.5, 2.5]])


def test_inpaint_without_overlap_knows_nothing():
    # The takeover is before anything of A is due at the new steps: latency 0, or A too old.
    policy = ScriptedPolicy([A, B, B])
    loop = _loop(policy, stitching='inpaint')  # lockstep-like: latency 0, margin 0
    _run(loop, T0)
    _run(loop, T0 + P)
    assert policy.known[1] is None
    loop.reconfigure(loop.config.replace(latency_margin=0.2))
    _run(loop, T0 + 10 * P)  # the last chunk ended (K = 4 steps) long before
    assert policy.known[2] is None


# --- blend: the cross-fade ---------------------------------------------------------------------
def test_blend_cross_fades_the_published_rows_from_the_takeover():
    policy = ScriptedPolicy([A, B])
    loop = _loop(policy, stitching='blend', stitching_overlap=2, latency_margin=0.1)
    _run(loop, T0)
    _, second = _run(loop, T0 + P)
    # j0 = 1; rows 1, 2 due at T0 + 2p, T0 + 3p where A is 2, 3; w_new = 1/3, 2/3:
    # row 1 = 2/3 * 2 + 1/3 * 10 = 14/3, row 2 = 1/3 * 3 + 2/3 * 10 = 23/3; rows 0, 3: B.
    expected = np.array([10, 14 / 3, 23 / 3, 10], np.float32)[:, None] * np.ones((1, 2))
    assert np.allclose(second.actions, expected, atol=1e-6)
    assert (second.takeover_step, second.blended_steps, second.conditioned_steps) == (1, 2, 0)
    assert policy.known == [None, None]


def test_blend_holds_the_old_chunk_at_its_last_row_and_stops_at_the_horizon():
    policy = ScriptedPolicy([A, B])
    loop = _loop(policy, stitching='blend', stitching_overlap=5, latency_margin=0.1)
    _run(loop, T0)
    _, second = _run(loop, T0 + 2 * P)
    # j0 = 1; rows 1..3 (3 left, overlap 5: w_new = 1/6, 2/6, 3/6) due at T0 + 3p, 4p, 5p:
    # A = 3, then held at 3.
    w = np.array([1, 2, 3]) / 6
    assert np.allclose(second.actions[1:, 0], (1 - w) * 3 + w * 10, atol=1e-6)
    assert second.actions[0, 0] == 10 and second.blended_steps == 3


def test_blend_ignores_a_chunk_that_is_no_longer_executing():
    policy = ScriptedPolicy([A, B])
    loop = _loop(policy, stitching='blend', stitching_overlap=2, latency_margin=0.1)
    _run(loop, T0)
    _, second = _run(loop, T0 + 6 * P)  # switch at T0 + 7p, A ran until T0 + 4p
    assert np.array_equal(second.actions, B) and second.blended_steps == 0


def test_blend_works_with_a_policy_without_inpainting():
    policy = PlainPolicy([A, B])
    loop = _loop(policy, stitching='blend', stitching_overlap=1, latency_margin=0.1)
    _run(loop, T0)
    _, second = _run(loop, T0 + P)
    assert second.actions[1, 0] == pytest.approx(0.5 * 2 + 0.5 * 10)


# --- ramp: the straight line from the last committed command -------------------------------------
def test_ramp_publishes_the_line_from_the_last_committed_command():
    policy = PlainPolicy([A, B, B, B])  # ramp needs no inpainting
    loop = _loop(policy, stitching='ramp', stitching_overlap=1, latency_margin=0.1)
    _, first = _run(loop, T0)
    np.testing.assert_array_equal(first.actions, A)  # nothing executing: the policy's chunk
    assert (first.stitching, first.blended_steps) == ('ramp', 0)
    _, second = _run(loop, T0 + P)
    # j0 = 1, switch at T0 + 2p: A's rows 0, 1 are committed, the last is A[1] = 1. Row 1 is
    # halfway from 1 to B[2] = 10; rows 0, 2, 3 are B's.
    assert second.actions[:, 0].tolist() == [10, 5.5, 10, 10]
    assert (second.takeover_step, second.blended_steps, second.conditioned_steps) == (1, 1, 0)
    # The next ramp starts from the published (ramped) rows: at T0 + 3p the last committed
    # command is second's row 1 (5.5). The window is as long as the latency hid (j0 = 1), not
    # the overlap of 3: row 1 halfway to B[2] = 10.
    loop.reconfigure(loop.config.replace(stitching_overlap=3))
    _, third = _run(loop, T0 + 2 * P)
    np.testing.assert_allclose(third.actions[:, 0], [10, 7.75, 10, 10])
    assert third.blended_steps == 1
    # Two steps of latency: j0 = 2, but only K - 1 - j0 = 1 step is left before B's last: row 2
    # on the line from third's last committed command (its row 2, 10) to B[3] = 10.
    loop.reconfigure(loop.config.replace(latency_margin=0.2))
    _, fourth = _run(loop, T0 + 3 * P)
    assert fourth.actions[:, 0].tolist() == [10] * 4
    assert (fourth.takeover_step, fourth.blended_steps) == (2, 1)


def test_a_restart_forgets_the_executing_chunk():
    policy = ScriptedPolicy([A, B])
    loop = _loop(policy, stitching='inpaint+blend', latency_margin=0.2)
    _run(loop, T0)
    loop.stop()
    loop.start()
    _, second = _run(loop, T0 + P)
    assert policy.known[1] is None and np.array_equal(second.actions, B)


# --- inpaint+blend, and what "executing" means ---------------------------------------------------
def test_the_next_known_prefix_is_read_from_the_published_stitched_rows():
    C = np.full((K, 2), -5.0, np.float32)
    policy = ScriptedPolicy([A, B, C])
    loop = _loop(policy, stitching='inpaint+blend', stitching_overlap=1, latency_margin=0.1)
    _run(loop, T0)
    _, second = _run(loop, T0 + P)
    # Known: j = 0 at T0 + p -> A[1]; j0 = 1; row 1 blended: 1/2 A(T0 + 2p) + 1/2 B[1] = 6.
    assert np.array_equal(policy.known[1], A[1:2])
    assert second.actions[:, 0].tolist() == [1, 6, 10, 10]
    assert (second.conditioned_steps, second.takeover_step, second.blended_steps) == (1, 1, 1)
    _, third = _run(loop, T0 + 2 * P)
    # The executing chunk is `second` as published: at T0 + 2p its row 1 (6), not B[1].
    assert np.array_equal(policy.known[2], [[6, 6]])
    assert third.actions[1, 0] == pytest.approx(0.5 * 10 - 0.5 * 5)


# --- the expected latency ------------------------------------------------------------------------
def test_the_expected_latency_is_the_measured_percentile_plus_the_margin():
    policy = ScriptedPolicy([A] * (LATENCY_WINDOW + 3))
    loop = _loop(policy, latency_margin=0.05)
    job, _ = _run(loop, T0, latency_ns=150 * MS)  # measured on the loop's clock
    assert job.expected_latency_ns == 50 * MS  # nothing measured yet: the margin only
    job, chunk = _run(loop, T0 + P, latency_ns=30 * MS)
    assert job.expected_latency_ns == 200 * MS  # 0.15 s measured + 0.05 s
    assert chunk.takeover_step == 2
    # 90th percentile ('higher') of {0.15, 0.03}: 0.15; the window forgets old measurements.
    for i in range(LATENCY_WINDOW):
        _run(loop, T0 + (2 + i) * P, latency_ns=30 * MS)
    job, _ = _run(loop, T0 + (2 + LATENCY_WINDOW) * P)
    assert job.expected_latency_ns == 80 * MS
