"""check_chunk: shape, finiteness, limits (reject / clamp) and the first-step jump."""
import math

import numpy as np
import pytest

from cosmos_policy_ros.safety import check_chunk, ChunkLimits

K, D = 4, 3
NAMES = ('waist', 'elbow', 'gripper')


def chunk(*rows):
    return np.array(rows, dtype=np.float32)


GOOD = chunk([0.0, 0.5, 1.0], [0.1, 0.5, 1.0], [0.2, 0.5, 1.0], [0.3, 0.5, 1.0])


def check(actions, limits=ChunkLimits(), **kwargs):
    return check_chunk(actions, limits, horizon=K, action_dim=D, names=NAMES, **kwargs)


def test_a_good_chunk_passes_unchanged():
    verdict = check(GOOD)
    assert verdict.ok and verdict.reason == '' and verdict.clamped == 0
    assert verdict.actions.dtype == np.float32
    np.testing.assert_array_equal(verdict.actions, GOOD)
    assert math.isnan(verdict.jump)  # not checked


def test_shape_mismatch():
    verdict = check(GOOD[:3])
    assert not verdict.ok and verdict.reason == 'shape' and verdict.actions is None
    assert '(3, 3)' in verdict.detail and '(4, 3)' in verdict.detail


@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf, 1e39])  # 1e39 overflows float32
def test_non_finite_values_are_rejected(bad):
    actions = GOOD.astype(np.float64)
    actions[2, 1] = bad
    verdict = check(actions)
    assert verdict.reason == 'non_finite'
    assert 'first at step 2 elbow' in verdict.detail


def test_infinite_value_estimate_is_rejected_but_nan_is_allowed():
    assert check(GOOD, value=math.nan).ok
    assert check(GOOD, value=math.inf).reason == 'non_finite'


def test_limits_reject_names_the_first_offender():
    limits = ChunkLimits(lower=[-1.0, -1.0, 0.0], upper=[0.25, 1.0, 1.0])
    verdict = check(GOOD, limits)
    # Only waist at step 3 (0.3) is beyond its upper limit 0.25.
    assert verdict.reason == 'limits'
    assert '1 value(s) beyond the upper limits, first waist = 0.3 at step 3' in verdict.detail


def test_limits_clamp_counts_and_keeps_values_inside():
    limits = ChunkLimits(lower=[0.15, -1.0, 0.0], upper=[0.25, 1.0, 0.9], mode='clamp')
    verdict = check(GOOD, limits)
    assert verdict.ok
    # waist: 0.0, 0.1 -> 0.15 (2 values), 0.3 -> 0.25 (1); gripper 1.0 -> 0.9 (4 values).
    assert verdict.clamped == 7
    np.testing.assert_array_equal(verdict.actions[:, 0], np.float32([0.15, 0.15, 0.2, 0.25]))
    np.testing.assert_array_equal(verdict.actions[:, 2], np.float32([0.9] * 4))
    # The published float32 values never leave the float64 limits.
    assert (verdict.actions.astype(np.float64) >= limits.lower).all()
    assert (verdict.actions.astype(np.float64) <= limits.upper).all()


def test_jump_from_current_joint_positions():
    limits = ChunkLimits(max_first_step_jump=0.2)
    current = np.array([0.0, 0.4, 0.85])
    verdict = check(GOOD, limits, current=current)
    assert verdict.ok
    assert verdict.jump == pytest.approx(0.15)  # gripper 1.0 vs 0.85
    verdict = check(GOOD, limits, current=np.array([0.0, 0.2, 1.0]))
    assert verdict.reason == 'jump' and verdict.jump == pytest.approx(0.3)
    assert 'moves elbow by 0.3' in verdict.detail
    # Disabled check, or no current state: not evaluated.
    assert check(GOOD, ChunkLimits(), current=np.zeros(3)).ok
    assert check(GOOD, limits, current=None).ok


def test_jump_is_measured_after_clamping():
    limits = ChunkLimits(upper=[1.0, 1.0, 0.9], mode='clamp', max_first_step_jump=0.05)
    verdict = check(GOOD, limits, current=np.array([0.0, 0.5, 0.9]))
    assert verdict.ok and verdict.jump == pytest.approx(0.0, abs=1e-6)


def test_current_must_match_the_action_dimensions():
    limits = ChunkLimits(max_first_step_jump=1.0)
    assert check(GOOD, limits, current=np.zeros(2)).reason == 'shape'
    assert check(GOOD, limits, current=np.array([0, np.nan, 0])).reason == 'non_finite'


def test_limit_configuration_errors():
    with pytest.raises(ValueError, match='reject or clamp'):
        ChunkLimits(mode='warn')
    with pytest.raises(ValueError, match='same length'):
        ChunkLimits(lower=[0, 0], upper=[1])
    with pytest.raises(ValueError, match='must not exceed'):
        ChunkLimits(lower=[1.0], upper=[0.0])
    with pytest.raises(ValueError, match='max_first_step_jump'):
        ChunkLimits(max_first_step_jump=-1)
    assert ChunkLimits(lower=[]).lower is None  # empty means none
    # Limits of the wrong length for the layout are a shape problem, not a crash.
    assert check(GOOD, ChunkLimits(lower=[0.0, 0.0])).reason == 'shape'


def test_clamped_values_stay_inside_limits_that_float32_cannot_hold():
    # 0.1 and -0.1 have no float32: the nearest ones (0.10000000149..., -0.10000000149...)
    # lie outside. A clamped action is published as float32, so it must be the float32 just
    # inside the limit, and it must pass the same check again.
    limits = ChunkLimits(lower=[-0.1, -0.1, -0.1], upper=[0.1, 0.1, 0.1], mode='clamp')
    actions = np.full((K, D), 0.5, np.float32)
    actions[:, 0] = -0.5
    verdict = check(actions, limits)
    assert verdict.ok and verdict.clamped == K * D
    assert verdict.actions.dtype == np.float32
    published = verdict.actions.astype(np.float64)
    assert (published[:, 1:] <= 0.1).all() and (published[:, 0] >= -0.1).all()
    inside = np.nextafter(np.float32(0.1), np.float32(0))
    np.testing.assert_array_equal(verdict.actions[:, 1:], inside)
    np.testing.assert_array_equal(verdict.actions[:, 0], -inside)
    again = check(verdict.actions, ChunkLimits(lower=limits.lower, upper=limits.upper))
    assert again.ok, again.detail


def test_limits_boundaries_are_inclusive_and_exact():
    # A value equal to a representable limit passes; the next float32 beyond it does not.
    limits = ChunkLimits(lower=[-1.0, -1.0, -1.0], upper=[0.25, 1.0, 1.0])
    at = GOOD.copy()
    at[:, 0] = [0.0, 0.25, 0.2, 0.1]
    assert check(at, limits).ok
    beyond = at.copy()
    beyond[1, 0] = np.nextafter(np.float32(0.25), np.float32(1))
    assert check(beyond, limits).reason == 'limits'
    # float32(0.1) is above 0.1: an action that rounds to it breaks an upper limit of 0.1.
    tight = ChunkLimits(upper=[0.1, 1.0, 1.0])
    rounded = GOOD.copy()
    rounded[:, 0] = np.float32(0.1)
    assert check(rounded, tight).reason == 'limits'
    clamped = check(rounded, ChunkLimits(upper=[0.1, 1.0, 1.0], mode='clamp'))
    assert clamped.ok and clamped.clamped == K and float(clamped.actions[0, 0]) < 0.1
