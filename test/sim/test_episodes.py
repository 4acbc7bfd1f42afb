"""Demonstration rollouts and their rosbag2 episodes; the in-process closed loop."""
import math
from types import SimpleNamespace

import numpy as np
import pytest

from cosmos_policy_ros.sim.arm import expert_chunk, JOINT_UPPER, PlanarReachEnv
from cosmos_policy_ros.sim.episodes import (
    demonstration_plan, KINDS, policy_rollout, read_episode_bag, record_demonstrations,
    recovery_rollout, rollout, write_episode_bag)
from cosmos_policy_ros.sim.inprocess import expert_source, hold_source, random_source, run_episode
from cosmos_policy_ros.sim.metrics import rank_correlation as spearman


def test_rollout_kinds_succeed_or_fail_as_intended():
    env = PlanarReachEnv()
    outcomes = {kind: [rollout(env, seed, kind).success for seed in range(12)]
                for kind in KINDS}
    assert all(outcomes['expert'])
    assert sum(outcomes['noisy']) >= 9
    assert not any(outcomes['wrong_target'])
    assert sum(outcomes['early_stop']) <= 3


def test_near_misses_hover_beside_the_target():
    """near_miss: mostly failures that end near, not at, the named target (the state the value
    must learn to distrust); the default demonstration mix does not contain them."""
    env = PlanarReachEnv()
    episodes = [rollout(env, seed, 'near_miss') for seed in range(12)]
    failures = [e for e in episodes if not e.success]
    assert len(failures) >= 6
    for episode in failures:
        assert 0.08 < episode.info['final_distance'] < 0.3, episode.info
        assert episode.num_steps == round(env.config.episode_timeout / episode.step_period)
    assert 'near_miss' not in {kind for _, kind in demonstration_plan(100)}


def test_rollout_arrays_are_consistent():
    env = PlanarReachEnv()
    episode = rollout(env, 4, 'expert')
    n = episode.num_steps
    assert episode.joints.shape == (n + 1, 3) and episode.actions.shape == (n, 3)
    for images in episode.images.values():
        assert images.shape == (n + 1, 32, 32, 3)
    # Replaying the recorded actions from the same reset reproduces the recorded states.
    env.reset(4)
    for index, command in enumerate(episode.actions):
        env.step(command, episode.step_period)
        np.testing.assert_array_equal(env.joint_positions(), episode.joints[index + 1])
    assert env.success == episode.success


def test_bag_round_trip(tmp_path):
    env = PlanarReachEnv()
    episode = rollout(env, 2, 'early_stop')
    write_episode_bag(episode, tmp_path / 'bag')
    back = read_episode_bag(tmp_path / 'bag')
    assert (back.seed, back.kind, back.task, back.success) == (
        episode.seed, episode.kind, episode.task, episode.success)
    np.testing.assert_array_equal(back.joints, episode.joints)
    np.testing.assert_array_equal(back.actions, episode.actions)
    for camera, images in episode.images.items():
        np.testing.assert_array_equal(back.images[camera], images)
    assert back.info['steps'] == episode.num_steps


class _ExpertFirstRows:
    """A Policy whose chunks are the expert's first 4 commands, then the joints' upper limits:
    executing more than 4 rows of a chunk throws the arm away from the target."""

    def __init__(self, env):
        self.env = env
        self.seeds = []

    def infer(self, observation, num_steps=None):
        np.testing.assert_array_equal(observation.proprio, self.env.joint_positions())
        np.testing.assert_array_equal(observation.images['primary'],
                                      self.env.render()['primary'])
        self.seeds.append(observation.seed)
        chunk = expert_chunk(self.env, 8, self.env.config.step_period)
        chunk[4:] = JOINT_UPPER
        return SimpleNamespace(actions=chunk, value=len(self.seeds) / 100)


def test_policy_rollout_runs_chunks_as_the_node_does():
    """4 commands per chunk (config/sim.yaml), a new chunk from the reached state, the
    observation of that state, diffusion seed seed * 1000 + tick, every tick's value kept."""
    env = PlanarReachEnv()
    policy = _ExpertFirstRows(env)
    episode = policy_rollout(env, 7, policy, model='m')
    assert episode.success and episode.kind == 'policy' and episode.info['model'] == 'm'
    ticks = episode.info['tick_steps']
    assert len(ticks) >= 2 and ticks == list(range(0, 4 * len(ticks), 4))
    assert policy.seeds == [7000 + k for k in range(len(ticks))]
    assert episode.info['values'] == [(k + 1) / 100 for k in range(len(ticks))]
    assert not (episode.actions == JOINT_UPPER).any()
    assert episode.num_steps == rollout(env, 7, 'expert').num_steps


def test_record_policy_rollouts(tmp_path):
    """Kind 'policy' needs a policy; its bags read back as kind 'policy' with their values."""
    holder = SimpleNamespace(infer=lambda observation, num_steps=None: SimpleNamespace(
        actions=np.repeat(observation.proprio[None], 8, axis=0), value=0.25))
    with pytest.raises(ValueError, match='needs a policy'):
        record_demonstrations(tmp_path / 'none', 1, fractions={'policy': 1.0})
    paths = record_demonstrations(tmp_path / 'rollouts', 2, seed=3, policy=holder,
                                  fractions={'policy': 1.0, 'expert': 1.0})
    episodes = [read_episode_bag(path) for path in paths]
    assert sorted(e.kind for e in episodes) == ['expert', 'policy']
    held = next(e for e in episodes if e.kind == 'policy')
    assert not held.success and held.info['values'] == [0.25] * 10
    np.testing.assert_array_equal(held.joints, held.joints[:1].repeat(len(held.joints), 0))


def test_recovery_starts_where_the_policy_was_and_the_expert_finishes():
    """recovery_rollout: state 0 of the recovery is state `start` of the source episode (its
    images too); from there the expert's commands; it reaches the target."""
    env = PlanarReachEnv()
    held = SimpleNamespace(infer=lambda observation, num_steps=None: SimpleNamespace(
        actions=np.repeat(observation.proprio[None] + 0.05, 8, axis=0), value=0.0))
    source = policy_rollout(env, 11, held)
    assert not source.success
    recovery = recovery_rollout(env, source, 12)
    assert recovery.kind == 'recovery' and recovery.success
    assert recovery.info['start_step'] == 12 and recovery.info['source_kind'] == 'policy'
    np.testing.assert_array_equal(recovery.joints[0], source.joints[12])
    for camera, images in recovery.images.items():
        np.testing.assert_array_equal(images[0], source.images[camera][12])
    env.reset(11)
    for command in source.actions[:12]:
        env.step(command, env.config.step_period)
    np.testing.assert_allclose(recovery.actions[0], expert_chunk(env, 8, 0.1)[0])
    for bad in (0, source.num_steps):
        with pytest.raises(ValueError, match='start'):
            recovery_rollout(env, source, bad)


def test_record_recoveries_after_policy_rollouts(tmp_path):
    """recovery_every K: each policy rollout is followed by recoveries from its states K, 2K,
    ... before its last; other kinds get none."""
    holder = SimpleNamespace(infer=lambda observation, num_steps=None: SimpleNamespace(
        actions=np.repeat(observation.proprio[None], 8, axis=0), value=0.25))
    paths = record_demonstrations(tmp_path, 2, seed=3, policy=holder, recovery_every=16,
                                  fractions={'policy': 1.0, 'expert': 1.0})
    names = [path.name for path in paths]
    assert names == ['episode_000003_policy', 'episode_000003_recovery_16',
                     'episode_000003_recovery_32', 'episode_000004_expert']
    recovery = read_episode_bag(paths[2])
    assert recovery.kind == 'recovery' and recovery.info['start_step'] == 32


def test_demonstration_plan_mixes_kinds():
    plan = demonstration_plan(20, seed=5)
    assert [seed for seed, _ in plan] == list(range(5, 25))
    kinds = [kind for _, kind in plan]
    assert kinds.count('expert') == 14 and kinds.count('wrong_target') == 2
    with pytest.raises(ValueError, match='unknown'):
        demonstration_plan(3, fractions={'teleport': 1.0})


def test_in_process_baselines():
    env = PlanarReachEnv()
    expert = [run_episode(env, expert_source(8), seed) for seed in range(10)]
    hold = [run_episode(env, hold_source(8), seed) for seed in range(10)]
    random = [run_episode(env, random_source(8, seed=1), seed) for seed in range(10)]
    assert all(r.success for r in expert)
    assert not any(r.success for r in hold)
    assert sum(r.success for r in random) <= 2
    first = expert[0]
    assert first.tick_steps[0] == 0 and len(first.values) == len(first.tick_steps)
    assert first.returns(0.5)[-1] == 0.5 ** (first.steps - 1 - first.tick_steps[-1])
    assert math.isclose(first.time_to_success, first.steps * 0.1)


def test_spearman():
    assert math.isclose(spearman([1, 2, 3, 4], [10, 20, 30, 40]), 1.0)
    assert math.isclose(spearman([1, 2, 3, 4], [4, 3, 2, 1]), -1.0)
    # ties: ranks [0.5, 0.5, 2] vs [0, 1, 2] -> Pearson of the ranks
    expected = np.corrcoef([0.5, 0.5, 2.0], [0.0, 1.0, 2.0])[0, 1]
    assert math.isclose(spearman([1, 1, 2], [1, 2, 3]), expected)
