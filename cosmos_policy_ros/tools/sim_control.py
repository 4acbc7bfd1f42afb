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


@dataclass
class ChunkRecord:
    """An executed chunk as the closed loop saw it."""

    stamp_ns: int
    step: int  # episode step of its observation
    actions: np.ndarray
    value: float = math.nan
    inference_time: float = math.nan
    arrival_delay: float = math.nan  # sim seconds from its stamp to its arrival
    seed: int = 0
    # The ActionChunk's stitching fields (docs/stitching.md); '' for a trajectory.
    stitching: str = ''
    conditioned_steps: int = 0
    takeover_step: int = 0
    blended_steps: int = 0


@dataclass
class EpisodeTrace:
    """What happened in one episode, step by step (step k covers [t0 + k p, t0 + (k+1) p))."""

    seed: int
    task: str
    start_ns: int
    step_period: float
    positions: List[np.ndarray] = field(default_factory=list)  # at the start of each step
    distances: List[float] = field(default_factory=list)
    commands: List[np.ndarray] = field(default_factory=list)
    plans: List[int] = field(default_factory=list)
    chunks: List[ChunkRecord] = field(default_factory=list)
    success_step: Optional[int] = None  # steps done when success was first seen
    steps: int = 0
    refused: dict = field(default_factory=dict)
    frames: List[np.ndarray] = field(default_factory=list)  # primary camera, when recorded

    def record_step(self, positions, distance, applied: Applied):
        self.positions.append(np.asarray(positions, dtype=np.float64).copy())
        self.distances.append(float(distance))
        self.commands.append(applied.command)
        self.plans.append(applied.plan)

    @property
    def success(self):
        return self.success_step is not None

    def summary(self, gamma):
        from cosmos_policy_ros.sim.inprocess import discounted_returns
        from cosmos_policy_ros.tools import sim_metrics

        jumps = sim_metrics.boundary_jumps(self.plans, self.commands) if self.commands else {
            'ratios': [], 'jumps': [], 'within_median': math.nan}
        values = [c.value for c in self.chunks]
        returns = discounted_returns([c.step for c in self.chunks], self.success_step, gamma)
        latencies = [c.inference_time for c in self.chunks if math.isfinite(c.inference_time)]
        ratios = [r for r in jumps['ratios'] if math.isfinite(r)]
        return {
            'seed': self.seed, 'task': self.task, 'success': self.success,
            'steps': self.steps,
            'time_to_success': (self.success_step * self.step_period if self.success
                                else math.nan),
            'final_distance': self.distances[-1] if self.distances else math.nan,
            'rms_jerk': sim_metrics.rms_jerk(np.array(self.positions), self.step_period)
            if self.positions else math.nan,
            'chunks': len(self.chunks),
            'boundary_jump_ratio_mean': float(np.mean(ratios)) if ratios else math.nan,
            'boundary_jump_ratio_max': float(np.max(ratios)) if ratios else math.nan,
            'latency_mean': float(np.mean(latencies)) if latencies else math.nan,
            'latency_max': float(np.max(latencies)) if latencies else math.nan,
            'values': values, 'returns': returns.tolist(),
            'refused': dict(self.refused),
        }


def run_offline_episode(env, seed, chunk_fn, *, joint_names, horizon, step_period,
                        replan_steps, start_ns=0, record_frames=False):
    """One lockstep episode without ROS: chunk_fn(env, step) -> (horizon, d) array or None
    (None: no new chunk, keep executing) every `replan_steps` steps, executed by the same
    ChunkController as the ROS sim node (stamp = the step's time). Returns an EpisodeTrace."""
    env.reset(seed)
    controller = ChunkController(tuple(joint_names))
    controller.reset(env.joint_positions())
    period_ns = round(step_period * NS)
    trace = EpisodeTrace(seed=seed, task=env.task, start_ns=start_ns, step_period=step_period)
    step = 0
    while not env.done:
        now_ns = start_ns + step * period_ns
        if record_frames:
            trace.frames.append(env.render()['primary'])
        if step % replan_steps == 0:
            actions = chunk_fn(env, step)
            if actions is not None:
                actions = np.asarray(actions, dtype=np.float64)
                reason, detail = controller.offer_chunk(
                    stamp_ns=now_ns, action_names=joint_names, horizon=len(actions),
                    action_dim=actions.shape[1], step_period=step_period, actions=actions,
                    now_ns=now_ns)
                if not reason:
                    trace.chunks.append(ChunkRecord(stamp_ns=now_ns, step=step,
                                                    actions=actions, arrival_delay=0.0))
        applied = controller.command(now_ns)
        trace.record_step(env.joint_positions(), env.distance_to_goal(), applied)
        env.step(applied.command, step_period)
        step += 1
        if env.success and trace.success_step is None:
            trace.success_step = step
    trace.steps = step
    trace.refused = dict(controller.refused)
    return trace
