"""CosmosPolicy.infer_batch: several robots' observations in one pass, each with its own seed.

The oracle of every test is the same request inferred alone (``infer``). On the CPU the engine
is batch-invariant (engine/dit.py, engine/vae.py: the DiT's few-row GEMMs run per sample, a
lone sample is VAE-encoded as a pair), so a batched chunk is its single chunk bit for bit,
whoever shares the batch; the issue's bound elsewhere is 1e-5 relative."""
import dataclasses

import numpy as np
import pytest
import torch

from cosmos_policy_ros.cli.convert import main as convert_main
from cosmos_policy_ros.engine.planning import PlanningConfig
from cosmos_policy_ros.engine.policy import CosmosPolicy, load_policy
from cosmos_policy_ros.engine.synthetic_checkpoints import write_synthetic_model
from cosmos_policy_ros.engine.text import UnknownInstructionError
from cosmos_policy_ros.interface import InferenceRequest, Observation


@pytest.fixture(scope='module')
def policy(libero_model_dir):
    return load_policy(libero_model_dir, device='cpu', dtype='fp32')


@pytest.fixture(scope='module')
def planning_policy(libero_released, libero_layout, tmp_path_factory):
    planner = tmp_path_factory.mktemp('batch_planner')
    write_synthetic_model(planner, libero_layout, size='tiny', seed=5, dtype='fp32')
    out = tmp_path_factory.mktemp('batch_models') / 'libero-planning'
    assert convert_main(['--released', str(libero_released), '--planning', str(planner),
                         '--out', str(out)]) == 0
    policy = load_policy(out, device='cpu', dtype='fp32')
    # A small ensemble keeps it quick; every pass still runs per candidate and robot.
    policy.planning = PlanningConfig(world_model_steps=2, world_model_ensemble=2,
                                     value_steps=2, value_ensemble=2, aggregation='average')
    return policy


def robot(policy, index, seed=None, **changes):
    """Robot `index`'s observation: its own images, joints, task (two tasks) and seed."""
    rng = np.random.default_rng(100 + index)
    instructions = policy.text_embeddings.instructions
    fields = dict(images={camera: rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
                          for camera in policy.layout.cameras},
                  proprio=rng.uniform(-0.5, 0.5, policy.layout.proprio_dim),
                  instruction=instructions[index % len(instructions)],
                  seed=1000 + 17 * index if seed is None else seed)
    fields.update(changes)
    return Observation(**fields)


def relative(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


def assert_same(output, single):
    """A batched output is the single-request output, bit for bit."""
    np.testing.assert_array_equal(output.actions, single.actions)
    np.testing.assert_array_equal(output.future_proprio, single.future_proprio)
    assert output.value == single.value


def requests(observations, **options):
    return [InferenceRequest(observation, **options) for observation in observations]


def test_a_chunk_does_not_depend_on_who_shared_its_batch(policy):
    robots = [robot(policy, i) for i in range(4)]
    alone = [policy.infer(observation) for observation in robots]
    with_1 = policy.infer_batch(requests([robots[0], robots[1]]))
    with_2 = policy.infer_batch(requests([robots[0], robots[2]]))
    four = policy.infer_batch(requests([robots[3], robots[1], robots[0], robots[2]]))
    assert [output.batch_size for output in (*with_1, *four)] == [2, 2, 4, 4, 4, 4]
    # Any batch, any partner vs alone: bit for bit, and each robot gets its own chunk.
    for output, index in [(with_1[0], 0), (with_1[1], 1), (with_2[0], 0), (with_2[1], 2),
                          (four[0], 3), (four[1], 1), (four[2], 0), (four[3], 2)]:
        assert_same(output, alone[index])
        assert output.seed == robots[index].seed
    assert relative(four[2].actions, alone[1].actions) > 1e-3  # a real difference is caught


def test_each_robot_keeps_its_own_seed(policy):
    base = robot(policy, 0)
    seeds = [7, 8, 2 ** 32 - 1]
    batch = policy.infer_batch(requests([dataclasses.replace(base, seed=s) for s in seeds]))
    for seed, output in zip(seeds, batch):
        single = policy.infer(dataclasses.replace(base, seed=seed))
        assert output.seed == seed
        assert_same(output, single)
    assert relative(batch[0].actions, batch[1].actions) > 1e-3  # the same observation


def test_best_of_n_and_the_planning_network_run_batched(planning_policy):
    policy = planning_policy
    robots = [robot(policy, i) for i in range(3)]
    for candidates in (1, 3):  # 1: score_single_candidate off, the joint pass's value
        alone = [policy.infer(o, num_candidates=candidates) for o in robots]
        batch = policy.infer_batch(requests(robots, num_candidates=candidates))
        for output, single in zip(batch, alone):
            assert output.batch_size == 3
            assert output.selected_candidate == single.selected_candidate
            assert output.candidate_values == single.candidate_values
            assert_same(output, single)
    scored = dataclasses.replace(policy.planning, score_single_candidate=True)
    policy.planning, before = scored, policy.planning
    try:  # a lone candidate scored by the planning network: plan_batch with N = 1
        alone = [policy.infer(o) for o in robots[:2]]
        batch = policy.infer_batch(requests(robots[:2]))
        for output, single in zip(batch, alone):
            assert output.candidate_values
            assert_same(output, single)
    finally:
        policy.planning = before


def test_inpainted_known_steps_per_robot(policy):
    robots = [robot(policy, i) for i in range(2)]
    rng = np.random.default_rng(3)
    low, high = policy.stats.actions_min, policy.stats.actions_max
    known = [rng.uniform(low, high, (2, policy.layout.action_dim)) for _ in robots]
    batch = policy.infer_batch([InferenceRequest(o, known_actions=k)
                                for o, k in zip(robots, known)])
    for observation, steps, output in zip(robots, known, batch):
        single = policy.infer(observation, known_actions=steps)
        assert output.num_conditioned_steps == 2 and output.batch_size == 2
        np.testing.assert_allclose(output.actions[:2], steps, rtol=1e-5, atol=1e-5)
        assert_same(output, single)


def test_requests_that_cannot_share_a_pass_are_grouped(policy):
    robots = [robot(policy, i) for i in range(3)]
    batch = policy.infer_batch([InferenceRequest(robots[0], num_steps=3),
                                InferenceRequest(robots[1], num_steps=5),
                                InferenceRequest(robots[2], num_steps=3)])
    assert [output.batch_size for output in batch] == [2, 1, 2]
    assert [output.num_steps for output in batch] == [3, 5, 3]
    for observation, output, steps in zip(robots, batch, (3, 5, 3)):
        assert_same(output, policy.infer(observation, num_steps=steps))


def test_a_bad_request_fails_alone(policy):
    good = robot(policy, 0)
    batch = policy.infer_batch(requests([
        good, robot(policy, 1, proprio=np.zeros(3)), robot(policy, 2, instruction='dance'),
        robot(policy, 3, seed=-1)]))
    assert_same(batch[0], policy.infer(good))
    assert isinstance(batch[1], ValueError) and 'proprio must have shape' in str(batch[1])
    assert isinstance(batch[2], UnknownInstructionError)
    assert isinstance(batch[3], ValueError) and 'seed' in str(batch[3])
    with pytest.raises(ValueError, match='proprio must have shape'):
        policy.infer(robot(policy, 1, proprio=np.zeros(3)))  # infer raises it


def test_a_non_finite_network_output_fails_only_its_robot(libero_model_dir):
    """One robot's sample turns non-finite inside the network (here: a zero text embedding
    does it): the pass raises, the engine reruns the batch one request at a time, and the
    other robots' chunks are what they are alone."""
    policy = CosmosPolicy.from_model_dir(libero_model_dir, device='cpu', dtype='fp32')
    dit = policy.dit

    class Poisoned:
        dtype, device = dit.dtype, dit.device

        def __call__(self, x, timesteps, mask, text):
            out = dit(x, timesteps, mask, text)
            poisoned = text.flatten(1).abs().sum(1) == 0  # (B,)
            return torch.where(poisoned[:, None, None, None, None], torch.nan, out)

    policy.dit = Poisoned()
    robots = [robot(policy, 0), robot(policy, 1, instruction=None,
                                      text_embedding=np.zeros((512, 1024), np.float32)),
              robot(policy, 2)]
    batch = policy.infer_batch(requests(robots))
    assert isinstance(batch[1], ValueError) and 'non-finite' in str(batch[1])
    for index in (0, 2):
        assert batch[index].batch_size == 1  # rerun alone
        assert_same(batch[index], policy.infer(robots[index]))


def test_timings_are_the_pass_s(policy):
    batch = policy.infer_batch(requests([robot(policy, i) for i in range(2)], num_steps=3))
    assert batch[0].timings == batch[1].timings
    assert {'preprocess', 'encode', 'denoise', 'extract', 'total'} <= set(batch[0].timings)
    assert len(batch[0].evaluation_times) == 3  # one pass of 3 evaluations for both
