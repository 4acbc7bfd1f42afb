"""Whole-chunk checks before anything reaches the robot.

``check_chunk`` validates one action chunk (K, d): shape, finiteness, per-dimension limits
(reject or clamp) and, for absolute joint-position actions, the jump of the first action from
the current joint positions. It returns a ``ChunkVerdict``; a rejected chunk is never published.
"""
from dataclasses import dataclass
import math
from typing import Optional, Sequence

import numpy as np

# Reasons a chunk is rejected (diagnostics count them).
SHAPE = 'shape'
NON_FINITE = 'non_finite'
LIMITS = 'limits'
JUMP = 'jump'


@dataclass(frozen=True)
class ChunkLimits:
    """Safety configuration of a chunk check.

    lower / upper: per-dimension limits (d,) or None. mode: 'reject' or 'clamp'.
    max_first_step_jump: largest |actions[0, j] - current[j]| allowed; 0 disables it.
    """

    lower: Optional[Sequence[float]] = None
    upper: Optional[Sequence[float]] = None
    mode: str = 'reject'
    max_first_step_jump: float = 0.0

    def __post_init__(self):
        if self.mode not in ('reject', 'clamp'):
            raise ValueError(f'`limit_mode` must be reject or clamp. Got {self.mode!r}.')
        if not (self.max_first_step_jump >= 0 and math.isfinite(self.max_first_step_jump)):
            raise ValueError(f'`max_first_step_jump` must be finite and >= 0. '
                             f'Got {self.max_first_step_jump!r}.')
        for name in ('lower', 'upper'):
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value, dtype=np.float64).reshape(-1)
                if not value.size:
                    value = None
                elif np.isnan(value).any():
                    raise ValueError(f'`{name}` limits must not contain NaN.')
            object.__setattr__(self, name, value)
        if self.lower is not None and self.upper is not None:
            if self.lower.shape != self.upper.shape:
                raise ValueError(f'`lower` ({self.lower.size}) and `upper` ({self.upper.size}) '
                                 f'limits must have the same length.')
            if np.any(self.lower > self.upper):
                raise ValueError('`lower` limits must not exceed `upper` limits.')


@dataclass(frozen=True)
class ChunkVerdict:
    """Result of check_chunk.

    ok: publish `actions` (float32 (K, d), clamped in clamp mode). reason: '' or one of
    shape, non_finite, limits, jump; detail: a human-readable explanation.
    clamped: number of values clamped. jump: max |actions[0] - current| (NaN if not checked).
    """

    ok: bool
    actions: Optional[np.ndarray]
    reason: str = ''
    detail: str = ''
    clamped: int = 0
    jump: float = math.nan


def _inward_float32(bound, side):
    """float32 limits rounded towards the allowed side (a clamped float32 stays inside)."""
    rounded = bound.astype(np.float32)
    if side == 'lower':
        outside = rounded.astype(np.float64) < bound
        return np.where(outside, np.nextafter(rounded, np.float32(np.inf)), rounded)
    outside = rounded.astype(np.float64) > bound
    return np.where(outside, np.nextafter(rounded, np.float32(-np.inf)), rounded)


def _reject(reason, detail, jump=math.nan):
    return ChunkVerdict(ok=False, actions=None, reason=reason, detail=detail, jump=jump)


def check_chunk(actions, limits, *, horizon, action_dim, value=math.nan, current=None,
                names=None):
    """Validate an action chunk before publishing it.

    actions: (K, d) array-like; horizon K and action_dim d are what the layout promises.
    limits: ChunkLimits. value: the chunk's value estimate (NaN allowed, infinity is not).
    current: (d,) current joint positions aligned with the action dimensions, for the
    first-step jump check (skipped when None or when the check is disabled).
    names: optional (d,) names used in the detail messages.
    """
    if isinstance(actions, np.ndarray) and actions.dtype == np.float32:
        array = actions.astype(np.float64)  # what gets published (a policy's usual output)
    else:
        with np.errstate(over='ignore'):  # float64 beyond float32's range becomes inf: rejected
            array = np.asarray(actions, dtype=np.float32).astype(np.float64)
    if array.shape != (horizon, action_dim):
        return _reject(SHAPE, f'chunk has shape {array.shape}, expected ({horizon}, '
                              f'{action_dim})')
    names = names if names is not None else [str(j) for j in range(action_dim)]
    finite = np.isfinite(array)
    if not finite.all():
        step, dim = np.argwhere(~finite)[0]
        return _reject(NON_FINITE, f'{int((~finite).sum())} non-finite action value(s), first '
                                   f'at step {step} {names[dim]}')
    if math.isinf(value):
        return _reject(NON_FINITE, f'value estimate is {value}')
    clamped = 0
    for bound, side in ((limits.lower, 'lower'), (limits.upper, 'upper')):
        if bound is None:
            continue
        if bound.shape != (action_dim,):
            return _reject(SHAPE, f'{side} limits have {bound.size} values for {action_dim} '
                                  f'action dimensions')
        outside = array < bound if side == 'lower' else array > bound
        if outside.any():
            if limits.mode == 'reject':
                step, dim = np.argwhere(outside)[0]
                return _reject(LIMITS, f'{int(outside.sum())} value(s) beyond the {side} '
                                       f'limits, first {names[dim]} = {array[step, dim]:.6g} '
                                       f'at step {step} (limit {bound[dim]:.6g})')
            clamped += int(outside.sum())
            inside = _inward_float32(bound, side).astype(np.float64)
            array = np.where(outside, inside, array)  # (K, d) with (d,) broadcast
    jump = math.nan
    if current is not None and limits.max_first_step_jump > 0:
        current = np.asarray(current, dtype=np.float64).reshape(-1)
        if current.shape != (action_dim,):
            return _reject(SHAPE, f'current joint positions have {current.size} values for '
                                  f'{action_dim} action dimensions')
        if not np.isfinite(current).all():
            return _reject(NON_FINITE, 'current joint positions are not finite')
        deltas = np.abs(array[0] - current)
        jump = float(deltas.max())
        if jump > limits.max_first_step_jump:
            dim = int(np.argmax(deltas))
            return _reject(JUMP, f'first action moves {names[dim]} by {jump:.6g} from the '
                                 f'current position (max_first_step_jump '
                                 f'{limits.max_first_step_jump:.6g})', jump)
    return ChunkVerdict(ok=True, actions=array.astype(np.float32), clamped=clamped, jump=jump)
