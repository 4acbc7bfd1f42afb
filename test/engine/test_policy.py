"""CosmosPolicy end to end on CPU with tiny random-weight networks in the released formats."""
import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from cosmos_policy_ros.cli.convert import main as convert_main
from cosmos_policy_ros.engine.generate import generate
from cosmos_policy_ros.engine.model_dir import read_spec
from cosmos_policy_ros.engine.planning import (aggregate_values, plan, PlanningConfig,
                                               score_with_planning_net, select_candidate)
from cosmos_policy_ros.engine.policy import CosmosPolicy, load_policy, resolve_device
from cosmos_policy_ros.engine.sampling import num_evaluations, SamplerConfig
from cosmos_policy_ros.engine.stopwatch import Stopwatch
from cosmos_policy_ros.engine.synthetic_checkpoints import write_synthetic_model
from cosmos_policy_ros.engine.text import UnknownInstructionError
from cosmos_policy_ros.interface import Observation
from cosmos_policy_ros.layout import LatentLayout

LAYOUT = dataclasses.replace(LatentLayout.preset('libero'), image_size=32)  # conftest's


@pytest.fixture(scope='module')
def released(libero_released):
    return libero_released


@pytest.fixture(scope='module')
def model_dir(libero_model_dir):
    return libero_model_dir


@pytest.fixture(scope='module')
def planning_model_dir(released, tmp_path_factory):
    planner = tmp_path_factory.mktemp('planner')
    write_synthetic_model(planner, LAYOUT, size='tiny', seed=9, dtype='fp32')
    out = tmp_path_factory.mktemp('models') / 'libero-planning'
    assert convert_main(['--released', str(released), '--planning', str(planner),
                         '--out', str(out)]) == 0
    return out


@pytest.fixture(scope='module')
def policy(model_dir):
    return load_policy(model_dir, device='cpu', dtype='fp32')


def observation(policy, seed=0, **changes):
    rng = np.random.default_rng(1)
    fields = dict(
        images={camera: rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
                for camera in policy.layout.cameras},
        proprio=rng.uniform(-0.5, 0.5, policy.layout.proprio_dim),
        instruction=policy.text_embeddings.instructions[0],
        seed=seed)
    fields.update(changes)
    return Observation(**fields)


def test_infer_gives_a_finite_chunk_deterministically(policy):
    first = policy.infer(observation(policy, seed=3))
    again = policy.infer(observation(policy, seed=3))
    other = policy.infer(observation(policy, seed=4))
    assert first.actions.shape == (16, 7) and first.actions.dtype == np.float32
    assert np.isfinite(first.actions).all()
    assert 0.0 <= first.value <= 1.0
    assert first.future_proprio.shape == (9,) and np.isfinite(first.future_proprio).all()
    np.testing.assert_array_equal(first.actions, again.actions)
    assert first.value == again.value
    assert not np.array_equal(first.actions, other.actions)
    assert (first.seed, first.num_steps, first.candidate_values) == (3, 5, ())


def test_actions_are_unnormalized_with_the_statistics(policy):
    out = policy.infer(observation(policy))
    low, high = policy.stats.actions_min, policy.stats.actions_max
    # Normalized chunks of a random net spread over roughly [-1, 1]: in robot units they
    # must sit around the statistics' range, not around [-1, 1].
    normalized = 2 * (out.actions - low) / (high - low) - 1
    assert np.abs(normalized).max() < 10
    assert not np.allclose(out.actions, normalized)


def test_timings_cover_every_stage_and_evaluation(policy):
    out = policy.infer(observation(policy), num_steps=3)
    assert {'preprocess', 'encode', 'denoise', 'extract', 'total'} <= set(out.timings)
    assert len(out.evaluation_times) == 3 and out.num_steps == 3
    assert all(t > 0 for t in out.evaluation_times)
    assert out.timings['total'] >= out.timings['denoise'] >= sum(out.evaluation_times)


def test_bf16_weights_give_finite_deterministic_chunks_close_to_fp32(model_dir, policy):
    bf16 = load_policy(model_dir, device='cpu', dtype='bf16')
    assert bf16.dtype == torch.bfloat16
    a = bf16.infer(observation(bf16, seed=2))
    b = bf16.infer(observation(bf16, seed=2))
    reference = policy.infer(observation(policy, seed=2))
    np.testing.assert_array_equal(a.actions, b.actions)
    assert np.isfinite(a.actions).all() and 0 <= a.value <= 1
    scale = policy.stats.actions_max - policy.stats.actions_min
    assert np.abs((a.actions - reference.actions) / scale).max() < 0.1  # bf16 noise, not 0


def test_from_released_equals_the_converted_directory(released, policy):
    direct = CosmosPolicy.from_released(
        checkpoint=released / 'Cosmos-Policy-LIBERO-Predict2-2B.pt',
        tokenizer=released / 'tokenizer' / 'tokenizer.pth',
        statistics=released / 'libero_dataset_statistics.json',
        t5_embeddings=released / 'libero_t5_embeddings.pkl',
        layout=LAYOUT, dit_preset='tiny', vae_preset='tiny', device='cpu', dtype='fp32')
    a = direct.infer(observation(direct, seed=5))
    b = policy.infer(observation(policy, seed=5))
    np.testing.assert_array_equal(a.actions, b.actions)
    assert a.value == b.value


def test_text_embedding_instead_of_instruction(policy):
    embedding = policy.text_embeddings.lookup(policy.text_embeddings.instructions[0])
    by_text = policy.infer(observation(policy))
    by_embedding = policy.infer(observation(policy, instruction=None,
                                            text_embedding=embedding[0].float().numpy()))
    np.testing.assert_array_equal(by_text.actions, by_embedding.actions)


def test_future_images_are_decoded_on_request(model_dir):
    policy = CosmosPolicy.from_model_dir(model_dir, device='cpu', dtype='fp32',
                                         decode_future_images=True)
    out = policy.infer(observation(policy))
    assert set(out.future_images) == {'wrist', 'primary'}
    for image in out.future_images.values():
        assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert 'decode' in out.timings


# --- planning ----------------------------------------------------------------------------------
def _inputs(policy, seed=11):
    obs = observation(policy, seed=seed)
    with torch.no_grad():
        frames = torch.stack([torch.from_numpy(np.ascontiguousarray(
            np.resize(obs.images[c], (32, 32, 3)))).permute(2, 0, 1) for c in LAYOUT.cameras])
        encoded = policy.vae.encode_conditioning(frames[None])  # (1, 16, 4, 4, 4)
    clean = torch.zeros(1, *LAYOUT.latent_shape)
    clean[:, :, :4] = encoded
    proprio = torch.from_numpy(policy.stats.normalize_proprio(obs.proprio)).float()[None]
    text = policy.text_embeddings.lookup(obs.instruction)
    return clean, text, proprio


def test_batched_candidates_equal_single_runs(policy):
    clean, text, proprio = _inputs(policy)
    sampler = SamplerConfig(num_steps=3)
    batched = plan(policy.dit, clean, text, LAYOUT, proprio=proprio, seed=20,
                   num_candidates=3, sampler=sampler, stats=policy.stats)
    for j in range(3):
        single = generate(policy.dit, clean, text, LAYOUT, proprio=proprio, seeds=20 + j,
                          sampler=sampler, stats=policy.stats)
        np.testing.assert_allclose(batched.policy.actions[j], single.actions[0], rtol=1e-5,
                                   atol=1e-6)
        assert batched.values[j] == pytest.approx(float(single.value[0]), abs=1e-6)
    assert batched.selected == int(np.argmax(batched.values))


def test_planning_scores_equal_single_candidate_scoring(policy):
    clean, text, proprio = _inputs(policy)
    sampler = SamplerConfig(num_steps=2)
    config = PlanningConfig(world_model_steps=3, world_model_ensemble=2, value_steps=2,
                            value_ensemble=2, aggregation='average')
    result = plan(policy.dit, clean, text, LAYOUT, proprio=proprio, seed=7, num_candidates=3,
                  sampler=sampler, planning_net=policy.dit, config=config)
    assert result.predictions.shape == (4, 3)
    for j in range(3):
        single = score_with_planning_net(
            policy.dit, result.policy.latent[j:j + 1], text, LAYOUT, proprio=proprio,
            seeds=[7 + j], sampler=sampler, config=config)
        np.testing.assert_allclose(result.predictions[:, j], single[:, 0], atol=1e-6)
    np.testing.assert_allclose(result.values, np.clip(result.predictions.mean(0), 0, 1))


def test_world_model_values_score_without_value_passes(policy):
    """value_from 'world_model': the predictions are the world-model passes' own values
    Q(s, a) (pass i: its steps and seeds seed_j + i), no value pass runs."""
    clean, text, proprio = _inputs(policy)
    sampler = SamplerConfig(num_steps=2)
    config = PlanningConfig(world_model_steps=3, world_model_ensemble=2, aggregation='average',
                            value_from='world_model')
    result = plan(policy.dit, clean, text, LAYOUT, proprio=proprio, seed=7, num_candidates=2,
                  sampler=sampler, planning_net=policy.dit, config=config)
    assert result.predictions.shape == (2, 2)
    for i, steps in enumerate(config.world_model_schedule):
        for j in range(2):
            alone = generate(policy.dit, result.policy.latent[j:j + 1], text, LAYOUT,
                             proprio=proprio, mode='world_model', seeds=[7 + j + i],
                             sampler=dataclasses.replace(sampler, num_steps=steps))
            assert result.predictions[i, j] == pytest.approx(float(alone.value[0]), abs=1e-6)
    np.testing.assert_allclose(result.values, np.clip(result.predictions.mean(0), 0, 1))


def test_facade_planning_picks_the_best_candidate(planning_model_dir):
    policy = load_policy(planning_model_dir, device='cpu', dtype='fp32')
    assert policy.planning_dit is not None
    assert read_spec(planning_model_dir).planning == PlanningConfig()
    policy.planning = PlanningConfig(world_model_steps=2, world_model_ensemble=1,
                                     value_steps=2, value_ensemble=2)
    out = policy.infer(observation(policy, seed=30), num_candidates=3, num_steps=2)
    assert len(out.candidate_values) == 3
    assert out.selected_candidate == select_candidate(out.candidate_values)
    assert out.value == out.candidate_values[out.selected_candidate]
    # The chosen chunk is the one candidate `selected` would give on its own.
    alone = policy.infer(observation(policy, seed=30 + out.selected_candidate), num_steps=2)
    np.testing.assert_allclose(out.actions, alone.actions, rtol=1e-5, atol=1e-5)
    # All candidates share each network call: one policy pass, one per world-model pass, one
    # per value pass (the E_w future states of a value pass are batched too).
    config = policy.planning
    expected = num_evaluations(2) + sum(num_evaluations(s) for s in config.world_model_schedule)
    expected += sum(num_evaluations(s) for s in config.value_schedule)
    assert len(out.evaluation_times) == expected


@pytest.mark.parametrize('value_from', ['value_passes', 'world_model'])
def test_a_single_candidate_scored_by_the_planning_net(planning_model_dir, value_from):
    """score_single_candidate: num_candidates 1 keeps the policy pass's chunk bit for bit and
    publishes the planning network's value (the aggregate of its world-model and value passes
    on that pass's latent, rebuilt here from the public steps); without it the joint value."""
    from cosmos_policy_ros.engine.images import preprocess_images
    policy = load_policy(planning_model_dir, device='cpu', dtype='fp32')
    config = PlanningConfig(world_model_steps=2, world_model_ensemble=2, value_steps=2,
                            value_ensemble=2, aggregation='average', value_from=value_from)
    obs = observation(policy, seed=41)
    policy.planning = config
    joint = policy.infer(obs, num_steps=2)
    assert joint.candidate_values == () and len(joint.evaluation_times) == num_evaluations(2)
    policy.planning = dataclasses.replace(config, score_single_candidate=True)
    scored = policy.infer(obs, num_steps=2)
    np.testing.assert_array_equal(scored.actions, joint.actions)
    np.testing.assert_array_equal(scored.future_proprio, joint.future_proprio)
    assert scored.candidate_values == (scored.value,) and scored.selected_candidate == 0
    # Inpainting a committed prefix (the node's `inpaint` stitching) goes through it alike.
    known = joint.actions[:3] + 0.01
    inpainted = policy.infer(obs, num_steps=2, known_actions=known)
    policy.planning = config
    np.testing.assert_array_equal(inpainted.actions,
                                  policy.infer(obs, num_steps=2, known_actions=known).actions)
    assert inpainted.num_conditioned_steps == 3
    policy.planning = dataclasses.replace(config, score_single_candidate=True)
    # The oracle: the policy pass and the planning passes composed by hand.
    with torch.no_grad():
        frames = preprocess_images(obs.images, policy.images, cameras=LAYOUT.cameras)
        pixels = torch.from_numpy(frames).permute(0, 3, 1, 2)  # NHWC -> NCHW
        encoded = policy.vae.encode_conditioning(pixels[None])
        clean = torch.zeros(1, *LAYOUT.latent_shape)
        clean[:, :, :encoded.shape[2]] = encoded
        proprio = torch.from_numpy(policy.stats.normalize_proprio(obs.proprio)).float()[None]
        text = policy.text_embeddings.lookup(obs.instruction)
        sampler = dataclasses.replace(policy.sampler, num_steps=2)
        own = generate(policy.dit, clean, text, LAYOUT, proprio=proprio, seeds=41,
                       sampler=sampler, stats=policy.stats)
        predictions = score_with_planning_net(policy.planning_dit, own.latent, text, LAYOUT,
                                              proprio=proprio, seeds=[41], sampler=sampler,
                                              config=config)
    assert joint.value == pytest.approx(float(own.value[0]), abs=1e-6)
    assert scored.value == pytest.approx(float(aggregate_values(predictions, 'average')[0]),
                                         abs=1e-6)
    assert abs(scored.value - joint.value) > 1e-3  # two different networks
    expected = num_evaluations(2) + sum(num_evaluations(s) for s in config.world_model_schedule)
    if value_from == 'value_passes':
        expected += sum(num_evaluations(s) for s in config.value_schedule)
    assert len(scored.evaluation_times) == expected


@pytest.mark.parametrize('scheme, expected', [
    ('average', [0.5, 0.04]),
    ('lcb', [0.5 - math.sqrt(1 / 3 * (0.09 + 0.01 + 0.01 + 0.09)), 0.04 - 0.0]),
    ('success_vote', [1.0, 0.0]),
    ('majority_mean', [0.5, 0.0]),
])
def test_aggregation_schemes_by_hand(scheme, expected):
    predictions = np.array([[0.2, 0.04], [0.4, 0.04], [0.6, 0.04], [0.8, 0.04]])
    np.testing.assert_allclose(aggregate_values(predictions, scheme), expected, atol=1e-12)


def test_majority_mean_needs_half_above_the_threshold():
    # Two of four above 0.05 (exactly half): the mean of those; one of four: 0.
    np.testing.assert_allclose(
        aggregate_values([[0.9, 0.9], [0.7, 0.0], [0.0, 0.0], [0.01, 0.01]], 'majority_mean'),
        [0.8, 0.0])


def test_selection_keeps_the_base_seed_unless_strictly_better():
    assert select_candidate([0.5, 0.5, 0.4]) == 0
    assert select_candidate([0.5, 0.6, 0.6]) == 1
    with pytest.raises(ValueError, match='NaN'):
        select_candidate([0.5, math.nan])


def test_world_model_and_value_step_schedules():
    config = PlanningConfig()
    assert config.world_model_schedule == (1, 3, 5)  # reference: linspace(1, 5, 3)
    assert config.value_schedule == (1, 2, 3, 4, 5)
    with pytest.raises(ValueError, match='aggregation'):
        PlanningConfig(aggregation='max')
    with pytest.raises(ValueError, match='score_single_candidate'):
        PlanningConfig(score_single_candidate='yes')
    with pytest.raises(ValueError, match='value_from'):
        PlanningConfig(value_from='q')


# --- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize('changes, error, message', [
    ({'images': {'wrist': np.zeros((8, 8, 3), np.uint8)}}, ValueError, 'missing image'),
    ({'proprio': np.zeros(8)}, ValueError, r'proprio must have shape \(9,\)'),
    ({'proprio': np.full(9, np.nan)}, ValueError, 'non-finite'),
    ({'instruction': None}, ValueError, 'no task'),
    ({'instruction': 'put the bowl on the plat'}, UnknownInstructionError,
     'put the bowl on the plate'),
    ({'instruction': None, 'text_embedding': np.zeros((512, 512))}, ValueError, '1024'),
    ({'seed': -1}, ValueError, 'seed'),
])
def test_bad_observations_are_named(policy, changes, error, message):
    with pytest.raises(error, match=message):
        policy.infer(observation(policy, **changes))


def test_bad_call_options(policy):
    with pytest.raises(ValueError, match='num_candidates'):
        policy.infer(observation(policy), num_candidates=0)
    with pytest.raises(ValueError, match='num_steps'):
        policy.infer(observation(policy), num_steps=0)


def test_model_directory_errors_name_the_file_and_key(model_dir, released, tmp_path):
    with pytest.raises(ValueError, match='cosmos-policy-convert --released'):
        load_policy(released)
    broken = tmp_path / 'broken'
    broken.mkdir()
    spec = json.loads((model_dir / 'model.json').read_text())
    (broken / 'model.json').write_text(json.dumps({**spec, 'horizon': 3}))
    with pytest.raises(ValueError, match=r"model.json: unknown key\(s\) \['horizon'\]"):
        load_policy(broken)
    (broken / 'model.json').write_text(json.dumps(spec))
    with pytest.raises(ValueError, match='missing .*dit.safetensors'):
        load_policy(broken)
    bad_images = dict(spec, images=dict(spec['images'], image_size=64))
    (broken / 'model.json').write_text(json.dumps(bad_images))
    with pytest.raises(ValueError, match='image_size'):
        load_policy(broken)


def test_resolve_device():
    assert resolve_device('cpu', 'auto') == (torch.device('cpu'), torch.float32)
    assert resolve_device('cpu', 'bf16') == (torch.device('cpu'), torch.bfloat16)
    with pytest.raises(ValueError, match='dtype'):
        resolve_device('cpu', 'int8')
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match='CUDA is not available'):
            resolve_device('cuda', 'auto')


def test_stopwatch_with_a_fake_clock():
    class Net:
        dtype, device = torch.float32, torch.device('cpu')

        def __call__(self, x):
            return x

    ticks = iter([0.0, 1.0, 1.5, 4.0, 4.25, 10.0, 20.0, 21.0])
    watch = Stopwatch('cpu', clock=lambda: next(ticks))
    with watch.stage('denoise'):
        net = watch.timed_network(Net())
        assert (net(1), net(2)) == (1, 2)
        assert (net.dtype, net.device) == (torch.float32, torch.device('cpu'))
    with watch.stage('denoise'):  # a repeated stage adds up
        pass
    stages, evaluations = watch.results()
    assert stages == {'denoise': 11.0}
    assert evaluations == (0.5, 0.25)


def test_acceleration_options_reach_the_networks(model_dir, policy):
    from cosmos_policy_ros.engine.acceleration import CompiledNetwork, set_attention_backend

    compiled = load_policy(model_dir, device='cpu', dtype='fp32',
                           acceleration={'compile': True})
    assert isinstance(compiled.dit, CompiledNetwork)  # compiled lazily, at the first call
    try:
        math_attention = load_policy(model_dir, device='cpu', dtype='fp32',
                                     acceleration={'attention_backend': '_native_math'})
        a = math_attention.infer(observation(math_attention, seed=8))
    finally:
        set_attention_backend(policy.dit, 'native')  # the backend is process-wide
    b = policy.infer(observation(policy, seed=8))
    np.testing.assert_allclose(a.actions, b.actions, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['compile_everything'\]"):
        load_policy(model_dir, device='cpu', acceleration={'compile_everything': True})
    with pytest.raises(ValueError, match='CUDA'):
        load_policy(model_dir, device='cpu', acceleration={'cuda_graphs': True})


def _corrupt_copy(model_dir, tmp_path):
    """A copy of the model directory whose DiT weights were overwritten in place with NaN
    (the file still loads: only its numbers are broken)."""
    import shutil

    from safetensors.torch import load_file, save_file
    copy = tmp_path / 'model'
    shutil.copytree(model_dir, copy)
    weights = load_file(str(copy / 'dit.safetensors'))
    for key, value in weights.items():
        if value.is_floating_point():
            weights[key] = torch.full_like(value, float('nan'))
    save_file(weights, str(copy / 'dit.safetensors'))
    return copy


def test_non_finite_output_right_after_loading_names_the_digest_mismatch(model_dir, tmp_path):
    from cosmos_policy_ros.engine.generate import NonFiniteOutput
    from cosmos_policy_ros.engine.model_dir import file_sha256

    corrupt = _corrupt_copy(model_dir, tmp_path)
    policy = load_policy(corrupt, device='cpu', dtype='fp32')
    with pytest.raises(NonFiniteOutput) as raised:
        policy.infer(observation(policy))
    message = str(raised.value)
    recorded = read_spec(corrupt).source['dit_sha256']
    now = file_sha256(corrupt / 'dit.safetensors')
    assert message.startswith('the network produced non-finite values')
    assert f'right after loading {corrupt}: are its weight files intact' in message
    assert (f'DIGEST MISMATCH: dit.safetensors has sha256 {now[:12]}..., model.json records '
            f'{recorded[:12]}...') in message
    # Digests that match: the hint says so (the files are as converted).
    spec = json.loads((corrupt / 'model.json').read_text())
    spec['source']['dit_sha256'] = now
    (corrupt / 'model.json').write_text(json.dumps(spec))
    policy = load_policy(corrupt, device='cpu', dtype='fp32')
    with pytest.raises(NonFiniteOutput, match='their sha256 match model.json for '
                                              'dit.safetensors'):
        policy.infer(observation(policy))


def test_the_weights_hint_is_given_only_before_the_first_good_inference(model_dir, monkeypatch):
    from cosmos_policy_ros.engine.generate import NonFiniteOutput

    policy = load_policy(model_dir, device='cpu', dtype='fp32')
    policy.infer(observation(policy))  # the weights work

    def broken(*args):
        raise NonFiniteOutput('the network produced non-finite values (latent frames [3]).')

    monkeypatch.setattr(policy, '_run_batch', broken)  # every pass fails
    with pytest.raises(NonFiniteOutput) as raised:
        policy.infer(observation(policy))
    assert str(raised.value) == 'the network produced non-finite values (latent frames [3]).'
