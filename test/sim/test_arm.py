"""The planar reach sim: kinematics, limits, determinism, rendering and the scripted expert."""
import math
import subprocess
import sys

import numpy as np
import pytest

from cosmos_policy_ros.sim.arm import (
    CAMERAS, expert_chunk, forward_kinematics, inverse_kinematics, JOINT_LOWER, JOINT_NAMES,
    JOINT_UPPER, LINK_LENGTHS, PlanarReachEnv, SimConfig, TARGET_RGB, TASKS)


def run_expert(env, seed, horizon=8):
    env.reset(seed)
    chunks = []
    while not env.done:
        chunk = expert_chunk(env, horizon, env.config.step_period)
        chunks.append(chunk)
        for command in chunk:
            env.step(command, env.config.step_period)
            if env.done:
                break
    return chunks


def test_forward_kinematics_closed_form():
    q = np.array([0.3, -0.5, 1.1])
    points = forward_kinematics(q)
    a1, a2, a3 = 0.3, -0.2, 0.9
    l1, l2, l3 = LINK_LENGTHS
    expected = np.array([l1 * math.cos(a1) + l2 * math.cos(a2) + l3 * math.cos(a3),
                         l1 * math.sin(a1) + l2 * math.sin(a2) + l3 * math.sin(a3)])
    np.testing.assert_allclose(points[-1], expected, atol=1e-12)
    np.testing.assert_allclose(points[0], [0, 0])


@pytest.mark.parametrize('target', [(0.5, 0.3), (-0.6, 0.4), (0.0, 0.85), (0.2, 0.55)])
def test_inverse_kinematics_reaches_target_with_radial_last_link(target):
    q = inverse_kinematics(np.array(target))
    assert np.all(q >= JOINT_LOWER) and np.all(q <= JOINT_UPPER)
    np.testing.assert_allclose(forward_kinematics(q)[-1], target, atol=1e-9)
    heading = math.atan2(target[1], target[0])
    assert math.isclose(math.remainder(q.sum() - heading, 2 * math.pi), 0, abs_tol=1e-9)


def test_episode_is_deterministic_and_seed_dependent():
    first, second, other = PlanarReachEnv(), PlanarReachEnv(), PlanarReachEnv()
    chunks_a = run_expert(first, 7)
    chunks_b = run_expert(second, 7)
    assert len(chunks_a) == len(chunks_b)
    for a, b in zip(chunks_a, chunks_b):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(first.joint_positions(), second.joint_positions())
    for camera in CAMERAS:
        np.testing.assert_array_equal(first.render()[camera], second.render()[camera])
    other.reset(8)
    first.reset(7)
    assert not np.array_equal(first.render()['primary'], other.render()['primary'])


def test_expert_solves_the_task_on_many_seeds():
    env = PlanarReachEnv()
    outcomes = []
    for seed in range(200):
        run_expert(env, seed)
        outcomes.append(env.success)
        assert env.done
    assert all(outcomes)


def test_both_instructions_occur_and_name_the_goal():
    env = PlanarReachEnv()
    tasks = set()
    for seed in range(40):
        env.reset(seed)
        tasks.add(env.task)
        assert env.task == f'reach the {env.goal_color} target'
        np.testing.assert_array_equal(env.goal, env.targets[env.goal_color])
    assert tasks == set(TASKS)


def test_velocity_and_joint_limits():
    config = SimConfig(max_joint_velocity=1.5)
    env = PlanarReachEnv(config)
    env.reset(0)
    start = env.joint_positions()
    env.step(start + np.array([10.0, -10.0, 0.01]), 0.1)
    np.testing.assert_allclose(env.joint_positions() - start, [0.15, -0.15, 0.01], atol=1e-12)
    for _ in range(100):
        env.step(np.array([100.0, -100.0, 100.0]), 0.1)
    np.testing.assert_allclose(env.joint_positions(), [JOINT_UPPER[0], JOINT_LOWER[1],
                                                       JOINT_UPPER[2]])
    assert math.isclose(env.time, 10.1)
    assert env.done  # timed out


def test_expert_chunk_respects_velocity_limit_and_converges():
    env = PlanarReachEnv()
    env.reset(3)
    chunk = expert_chunk(env, 30, 0.1)
    assert chunk.shape == (30, len(JOINT_NAMES))
    steps = np.diff(np.vstack([env.joint_positions(), chunk]), axis=0)
    assert np.abs(steps).max() <= env.config.max_joint_velocity * 0.1 + 1e-12
    np.testing.assert_allclose(chunk[-1], inverse_kinematics(env.goal), atol=1e-3)


def test_success_is_latched():
    env = PlanarReachEnv()
    run_expert(env, 5)
    assert env.success
    env.step(env.joint_positions() + 2.0, 0.1)
    assert env.distance_to_goal() > env.config.success_radius
    assert env.success and env.done


def test_render_shapes_and_colours():
    env = PlanarReachEnv(SimConfig(image_size=32))
    env.reset(1)
    images = env.render()
    assert set(images) == set(CAMERAS)
    for image in images.values():
        assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    primary = images['primary'].astype(int)
    for rgb in TARGET_RGB.values():  # both targets visible in the fixed view
        distance = np.abs(primary - np.array(rgb)).sum(axis=2)
        assert distance.min() < 60


def _has_colour(image, rgb):
    return np.abs(image.astype(int) - np.array(rgb)).sum(axis=2).min() < 60


def test_wrist_view_moves_with_the_end_effector():
    env = PlanarReachEnv()
    env.reset(2)
    goal_rgb = TARGET_RGB[env.goal_color]
    # Straight up and far from both targets: neither is in the wrist view.
    env._q = np.array([math.pi / 2, 0.0, 0.0])
    assert env.distance_to_goal() > 0.3
    assert not any(_has_colour(env.render()['wrist'], rgb) for rgb in TARGET_RGB.values())
    # On the goal: its colour fills the middle of the wrist view, whatever the primary shows.
    env._q = inverse_kinematics(env.goal)
    wrist = env.render()['wrist']
    size = wrist.shape[0]
    assert _has_colour(wrist[size // 3:2 * size // 3, size // 3:2 * size // 3], goal_rgb)


@pytest.mark.parametrize('command', [np.zeros(2), np.array([0.0, np.nan, 0.0])])
def test_bad_command_is_refused(command):
    env = PlanarReachEnv()
    env.reset(0)
    with pytest.raises(ValueError, match='command'):
        env.step(command, 0.1)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match='image_size'):
        SimConfig(image_size=4)
    with pytest.raises(ValueError, match='max_joint_velocity'):
        SimConfig(max_joint_velocity=-1.0)
    env = PlanarReachEnv()
    with pytest.raises(RuntimeError, match='reset'):
        env.step(np.zeros(3), 0.1)
    with pytest.raises(ValueError, match='seed'):
        env.reset(-1)
    env.reset(0)
    with pytest.raises(ValueError, match='dt'):
        env.step(np.zeros(3), 0.0)
    with pytest.raises(ValueError, match='horizon'):
        expert_chunk(env, 0, 0.1)


def test_sim_imports_without_torch_or_rclpy():
    code = ('import sys\n'
            'for name in ("torch", "rclpy"):\n'
            '    sys.modules[name] = None\n'
            'import cosmos_policy_ros.sim.arm\n')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_model_label_names_the_shipped_model_the_same_everywhere(tmp_path):
    from cosmos_policy_ros.sim.model import model_label, shipped_model_dir
    assert model_label(shipped_model_dir()) == 'cosmos_policy_ros/models/planar_reach'
    assert model_label(shipped_model_dir() / '..' / 'planar_reach') == \
        'cosmos_policy_ros/models/planar_reach'
    assert model_label(tmp_path / 'planar_reach') == str(tmp_path / 'planar_reach')
