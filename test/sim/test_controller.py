"""The sim's chunk controller (stamp alignment, replacement, refusals) and closed-loop metrics,
against hand-computed cases."""
import math

import numpy as np
import pytest

from cosmos_policy_ros.sim import metrics as sim_metrics
from cosmos_policy_ros.sim.baselines import run_offline_episode
from cosmos_policy_ros.sim.controller import ChunkController
from cosmos_policy_ros.sim.metrics import discounted_returns

NAMES = ('shoulder', 'elbow', 'wrist')
MS = 1_000_000
P = 100 * MS  # step period 0.1 s


def _controller(hold=(0.0, 0.0, 0.0)):
    controller = ChunkController(NAMES)
    controller.reset(hold)
    return controller


def _chunk(controller, stamp_ns, actions, *, now_ns=None, names=NAMES, period=0.1, **fields):
    actions = np.asarray(actions, dtype=np.float64)
    args = dict(stamp_ns=stamp_ns, action_names=names, horizon=len(actions),
                action_dim=actions.shape[1] if actions.ndim == 2 else 3, step_period=period,
                actions=actions.reshape(-1), now_ns=stamp_ns if now_ns is None else now_ns)
    args.update(fields)
    return controller.offer_chunk(**args)


def _rows(k, value=0.0):
    return np.array([[value + i, 10 * i, -i] for i in range(k)], dtype=np.float64)


def test_step_i_applies_from_stamp_plus_i_periods_and_the_last_one_is_held():
    controller = _controller(hold=(7.0, 7.0, 7.0))
    t0 = 1000 * P
    assert controller.command(t0).command.tolist() == [7.0, 7.0, 7.0]  # before any chunk
    assert _chunk(controller, t0, _rows(4)) == ('', '')
    for i in range(4):
        assert controller.command(t0 + i * P).index == i
        assert controller.command(t0 + i * P + P - 1).index == i  # until the next is due
    assert controller.command(t0 + 10 * P).command.tolist() == _rows(4)[3].tolist()


def test_elapsed_steps_are_dropped_and_a_newer_chunk_replaces_the_rest():
    controller = _controller()
    t0 = 1000 * P
    # Arrives 2.5 steps late: steps 0 and 1 are gone, step 2 runs now.
    assert _chunk(controller, t0, _rows(8), now_ns=t0 + 25 * P // 10) == ('', '')
    applied = controller.command(t0 + 25 * P // 10)
    assert applied.index == 2 and applied.command.tolist() == _rows(8)[2].tolist()
    first = applied.plan
    assert _chunk(controller, t0 + 4 * P, _rows(8, value=100.0)) == ('', '')
    applied = controller.command(t0 + 4 * P)
    assert applied.plan != first and applied.index == 0
    assert applied.command[0] == 100.0


@pytest.mark.parametrize('change, reason', [
    (dict(horizon=5), 'malformed'),                   # 5 x 3 != 12 values
    (dict(horizon=0, actions=np.zeros(0)), 'malformed'),
    (dict(action_dim=4, horizon=3), 'action_dim'),    # 12 values = 3 x 4
    (dict(action_names=('a', 'b', 'c')), 'names'),
    (dict(action_names=('elbow', 'shoulder', 'wrist')), 'names'),  # order matters
    (dict(actions=np.r_[np.zeros(5), np.nan, np.zeros(6)]), 'non_finite'),
    (dict(actions=np.r_[np.zeros(11), np.inf]), 'non_finite'),
    (dict(step_period=math.nan), 'non_finite'),
    (dict(step_period=0.0), 'step_period'),
    (dict(step_period=-0.1), 'step_period'),
    (dict(now_ns=1000 * P + 4 * P), 'stale'),         # last step was due at +3 P
])
def test_bad_chunks_are_refused_counted_and_never_executed(change, reason):
    controller = _controller(hold=(0.5, 0.5, 0.5))
    t0 = 1000 * P
    args = dict(stamp_ns=t0, action_names=NAMES, horizon=4, action_dim=3, step_period=0.1,
                actions=np.full(12, 9.0), now_ns=t0)
    args.update(change)
    got, detail = controller.offer_chunk(**args)
    assert got == reason and detail
    assert controller.refused == {reason: 1} and controller.accepted == 0
    for t in (t0, t0 + P, t0 + 10 * P):
        assert controller.command(t).command.tolist() == [0.5, 0.5, 0.5]


def test_a_chunk_not_newer_than_the_active_one_is_refused():
    controller = _controller()
    t0 = 1000 * P
    assert _chunk(controller, t0 + P, _rows(4)) == ('', '')
    assert _chunk(controller, t0, _rows(4, value=50.0), now_ns=t0 + P)[0] == 'out_of_order'
    assert _chunk(controller, t0 + P, _rows(4, value=50.0))[0] == 'out_of_order'
    assert controller.refused == {'out_of_order': 2}
    assert controller.command(t0 + P).command[0] == 0.0


def test_trajectory_points_are_reordered_by_name_and_aligned_by_time():
    controller = _controller(hold=(1.0, 1.0, 1.0))
    t0 = 1000 * P
    names = ('wrist', 'shoulder', 'elbow')
    points = [(2 * P, [3.0, 1.5, 2.0]), (3 * P, [6.0, 4.5, 5.0])]  # first point at +2 P
    assert controller.offer_trajectory(stamp_ns=t0, joint_names=names, points=points,
                                       now_ns=t0 + P) == ('', '')
    assert controller.command(t0 + P).command.tolist() == [1.0, 1.0, 1.0]  # not yet due
    assert controller.command(t0 + 2 * P).command.tolist() == [1.5, 2.0, 3.0]
    assert controller.command(t0 + 9 * P).command.tolist() == [4.5, 5.0, 6.0]


@pytest.mark.parametrize('joint_names, points, now, reason', [
    (NAMES, [], 0, 'malformed'),
    (NAMES, [(0, [1.0, 2.0])], 0, 'malformed'),
    (NAMES, [(2 * P, [0.0] * 3), (P, [0.0] * 3)], 0, 'malformed'),  # not increasing
    (('a', 'elbow', 'wrist'), [(0, [0.0] * 3)], 0, 'names'),
    (NAMES, [(0, [0.0, math.nan, 0.0])], 0, 'non_finite'),
    (NAMES, [(0, [9.0] * 3), (P, [9.0] * 3)], 2 * P, 'stale'),  # every point in the past
])
def test_bad_trajectories_are_refused(joint_names, points, now, reason):
    controller = _controller(hold=(0.5, 0.5, 0.5))
    t0 = 1000 * P
    got, _ = controller.offer_trajectory(stamp_ns=t0, joint_names=joint_names, points=points,
                                         now_ns=t0 + now)
    assert got == reason and controller.refused == {reason: 1}
    assert controller.command(t0 + 5 * P).command.tolist() == [0.5, 0.5, 0.5]


def test_rms_jerk_of_a_cubic_is_six_times_its_coefficient():
    dt = 0.1
    t = np.arange(20) * dt
    positions = np.stack([2.0 * t ** 3, -0.5 * t ** 3 + t, np.zeros_like(t)], axis=1)
    assert sim_metrics.rms_jerk(positions, dt) == pytest.approx(math.hypot(12.0, 3.0))
    assert sim_metrics.rms_jerk(positions[:3], dt) != sim_metrics.rms_jerk(positions[:3], dt)


def test_boundary_jumps_relative_to_the_median_within_chunk_step():
    plans = [0, 1, 1, 1, 2, 2, 3]
    commands = np.array([[0, 0], [0, 0], [1, 0], [2, 0], [6, 0], [7, 0], [7, 2]], float)
    result = sim_metrics.boundary_jumps(plans, commands)
    assert result['jumps'] == [4.0, 2.0]
    assert result['within_median'] == 1.0
    assert result['ratios'] == [4.0, 2.0]


def test_discounted_returns_and_spearman_hand_cases():
    returns = discounted_returns([0, 4, 8], success_step=10, gamma=0.5)
    assert returns.tolist() == [0.5 ** 9, 0.5 ** 5, 0.5 ** 1]
    assert discounted_returns([0, 4], None, 0.5).tolist() == [0.0, 0.0]
    # ranks x: 1 2 3 4, y: 2 1 4 3 -> d = (1, 1, 1, 1), rho = 1 - 6 * 4 / (4 * 15) = 0.6
    assert sim_metrics.spearman([1, 2, 3, 4], [20, 10, 40, 30]) == pytest.approx(0.6)
    # ties get average ranks: x ranks 1.5 1.5 3, y ranks 1 2 3 -> Pearson of the ranks
    expected = np.corrcoef([1.5, 1.5, 3], [1, 2, 3])[0, 1]
    assert sim_metrics.spearman([5, 5, 7], [1, 2, 3]) == pytest.approx(expected)
    assert math.isnan(sim_metrics.spearman([1, 1, 1], [1, 2, 3]))


def test_offline_episode_runs_the_controller_on_the_stamp_grid():
    class Line:
        """A 1-joint-per-name toy env: positions follow the command exactly."""

        task = 'toy'

        def reset(self, seed):
            self.q = np.zeros(3)
            self.steps = 0

        def joint_positions(self):
            return self.q.copy()

        def distance_to_goal(self):
            return float(abs(5.0 - self.q[0]))

        def step(self, command, dt):
            self.q = np.asarray(command, float).copy()
            self.steps += 1

        @property
        def success(self):
            return self.q[0] >= 5.0

        @property
        def done(self):
            return self.success or self.steps >= 20

    def chunks(env, step):
        return np.array([[step + i + 1.0, 0.0, 0.0] for i in range(8)])

    trace = run_offline_episode(Line(), 3, chunks, joint_names=NAMES, horizon=8,
                                step_period=0.1, replan_steps=4)
    # Step k applies row (k mod 4) of the chunk made at step 4 * (k // 4): command = k + 1.
    assert [c[0] for c in trace.commands] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert trace.success_step == 5 and [c.step for c in trace.chunks] == [0, 4]
    assert trace.plans == [1, 1, 1, 1, 2]
