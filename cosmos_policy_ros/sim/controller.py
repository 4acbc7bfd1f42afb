"""The simulated robot's controller: executes action chunks and trajectories aligned by stamps.

What a joint-position controller on a robot does with the policy node's output, and nothing
more (numpy only, time always an argument):

* a chunk stamped ``t0`` with step period ``p`` commands its step ``i`` from ``t0 + i * p``
  on; at time ``t`` the controller applies the latest step already due,
  ``i = floor((t - t0) / p)``, so steps that elapsed while the chunk was computed or in
  transit are dropped; after its last step it holds that step's position;
* a newer chunk (larger stamp) replaces whatever is left of an older one; a chunk not newer
  than the active one is refused (``out_of_order``);
* a ``JointTrajectory`` is the same with explicit times (header stamp + time_from_start);
* before any chunk, the controller holds the joint positions it was reset with.

Bad input is refused with a reason, counted, and never executed: ``malformed`` (shape fields
that do not match the data, no steps), ``action_dim``, ``names`` (not the robot's joints),
``non_finite`` (NaN/inf in actions or the step period), ``step_period`` (<= 0),
``stale`` (every step already in the past when it arrives), ``out_of_order``.
"""
from dataclasses import dataclass, field
import math
from typing import List, Optional, Sequence, Tuple

import numpy as np

from cosmos_policy_ros.conversions import NS_PER_S as NS

REASONS = ('malformed', 'action_dim', 'names', 'non_finite', 'step_period', 'stale',
           'out_of_order')


@dataclass
class Plan:
    """An accepted chunk or trajectory: positions (n, d) due at times_ns (n,), increasing."""

    stamp_ns: int
    times_ns: np.ndarray
    positions: np.ndarray
    value: float = math.nan
    ident: int = 0
    kind: str = 'chunk'


@dataclass
class Applied:
    """One executed control step: the command applied from time_ns and where it came from."""

    time_ns: int
    command: np.ndarray
    plan: int  # ident of the plan (0: the reset hold)
    index: int  # row of that plan (-1: the reset hold)


@dataclass
class ChunkController:
    """Joint-position controller fed with chunks/trajectories; see the module docstring."""

    joint_names: Tuple[str, ...]
    refused: dict = field(default_factory=dict)
    accepted: int = 0
    plans: List[Plan] = field(default_factory=list)  # every accepted plan, in arrival order
    _active: Optional[Plan] = None
    _hold: Optional[np.ndarray] = None
    _next_ident: int = 1

    def reset(self, positions):
        """Start an episode: forget plans, hold `positions`. Refusal counts are kept."""
        self._active = None
        self._hold = np.asarray(positions, dtype=np.float64).copy()
        self.plans = []

    @property
    def dim(self):
        return len(self.joint_names)

    def _refuse(self, reason, detail):
        self.refused[reason] = self.refused.get(reason, 0) + 1
        return reason, detail

    def _accept(self, stamp_ns, times_ns, positions, value, kind, now_ns):
        if not np.all(np.isfinite(positions)):
            return self._refuse('non_finite', 'actions hold NaN or inf')
        if times_ns[-1] < now_ns:
            late = (now_ns - times_ns[-1]) / NS
            return self._refuse('stale', f'its last step was due {late:.3f} s ago')
        if self._active is not None and stamp_ns <= self._active.stamp_ns:
            return self._refuse('out_of_order', f'stamp {stamp_ns} is not newer than the active '
                                                f'{self._active.stamp_ns}')
        plan = Plan(stamp_ns=stamp_ns, times_ns=times_ns, positions=positions, value=value,
                    ident=self._next_ident, kind=kind)
        self._next_ident += 1
        self._active = plan
        self.plans.append(plan)
        self.accepted += 1
        return '', ''

    def offer_chunk(self, *, stamp_ns, action_names, horizon, action_dim, step_period, actions,
                    now_ns, value=math.nan):
        """Offer an ActionChunk's fields; returns (reason, detail): reason '' when accepted."""
        try:
            flat = np.asarray(actions, dtype=np.float64).reshape(-1)
            horizon, action_dim = int(horizon), int(action_dim)
            step_period = float(step_period)
        except (TypeError, ValueError) as error:
            return self._refuse('malformed', f'unreadable fields: {error}')
        if horizon < 1 or action_dim < 1 or flat.size != horizon * action_dim:
            return self._refuse('malformed', f'{flat.size} values for horizon {horizon} x '
                                             f'action_dim {action_dim}')
        if action_dim != self.dim:
            return self._refuse('action_dim', f'action_dim {action_dim}, the robot has '
                                              f'{self.dim} joints')
        if tuple(action_names) != self.joint_names:
            return self._refuse('names', f'action_names {list(action_names)}, expected '
                                         f'{list(self.joint_names)}')
        if not math.isfinite(step_period):
            return self._refuse('non_finite', f'step_period {step_period}')
        if step_period <= 0:
            return self._refuse('step_period', f'step_period {step_period} <= 0')
        period_ns = round(step_period * NS)
        times = stamp_ns + period_ns * np.arange(horizon, dtype=np.int64)
        return self._accept(int(stamp_ns), times, flat.reshape(horizon, action_dim), value,
                            'chunk', now_ns)

    def offer_trajectory(self, *, stamp_ns, joint_names, points: Sequence, now_ns):
        """Offer a JointTrajectory: points = [(time_from_start_ns, positions), ...]."""
        names = list(joint_names)
        if len(points) == 0:
            return self._refuse('malformed', 'no points')
        if sorted(names) != sorted(self.joint_names) or len(set(names)) != len(names):
            return self._refuse('names', f'joint_names {names}, expected '
                                         f'{list(self.joint_names)}')
        order = [names.index(joint) for joint in self.joint_names]
        offsets, rows = [], []
        for offset_ns, positions in points:
            positions = np.asarray(positions, dtype=np.float64).reshape(-1)
            if positions.size != len(names):
                return self._refuse('malformed', f'a point has {positions.size} positions for '
                                                 f'{len(names)} joints')
            offsets.append(int(offset_ns))
            rows.append(positions[order])
        offsets = np.asarray(offsets, dtype=np.int64)
        if np.any(np.diff(offsets) <= 0) or offsets[0] < 0:
            return self._refuse('malformed', 'time_from_start must be >= 0 and increasing')
        return self._accept(int(stamp_ns), int(stamp_ns) + offsets, np.stack(rows), math.nan,
                            'trajectory', now_ns)

    def command(self, now_ns) -> Applied:
        """The command to apply from `now_ns` on (the latest due step of the active plan).

        A plan whose first step is not yet due (a trajectory starting later) leaves the plan
        before it, or the reset hold, in charge until then.
        """
        if self._hold is None:
            raise RuntimeError('reset() the controller before asking for commands')
        for plan in reversed(self.plans[-2:]):
            if now_ns >= plan.times_ns[0]:
                index = int(np.searchsorted(plan.times_ns, now_ns, side='right')) - 1
                return Applied(int(now_ns), plan.positions[index].copy(), plan.ident, index)
        return Applied(int(now_ns), self._hold.copy(), 0, -1)
