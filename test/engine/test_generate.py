"""generate(): conditioning per mode, seeds, read-out, and an end-to-end closed-form oracle."""
import math

import numpy as np
import pytest
import torch

from cosmos_policy_ros.engine import denoiser
from cosmos_policy_ros.engine.generate import condition_frames, generate
from cosmos_policy_ros.engine.injection import extract_proprio, inject_actions
from cosmos_policy_ros.engine.noise import initial_noise, variance_scales
from cosmos_policy_ros.engine.sampling import SamplerConfig
from cosmos_policy_ros.layout import LatentLayout
from cosmos_policy_ros.normalization import NormStats

DTYPES = [torch.float32, torch.bfloat16]


def _small(name, image_size):
    base = LatentLayout.preset(name)
    return LatentLayout(base.name, base.cameras, base.chunk_size, base.action_dim,
                        base.proprio_dim, image_size=image_size)


LIBERO = _small('libero', 32)  # latent (16, 9, 4, 4): 256 values per frame
ALOHA = _small('aloha', 64)  # latent (16, 11, 8, 8): 1024 values per frame


def _inputs(layout, batch=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    clean = torch.zeros(batch, *layout.latent_shape)
    for camera in layout.cameras:  # image latents on the camera frames, zeros elsewhere
        index = layout.camera_index(camera)
        clean[:, :, index] = torch.randn(batch, 16, *layout.latent_shape[2:],
                                         generator=generator)
    proprio = torch.rand(batch, layout.proprio_dim, generator=generator) * 2 - 1
    text = torch.randn(1, 5, 1024, generator=generator)
    return clean, proprio, text


def _stats(layout):
    return NormStats.from_dict({
        'actions_min': [-2.0] * layout.action_dim, 'actions_max': [2.0] * layout.action_dim,
        'proprio_min': [0.0] * layout.proprio_dim, 'proprio_max': [10.0] * layout.proprio_dim})


# --- conditioning frames -------------------------------------------------------------------------
def test_condition_frames_per_mode():
    yes, no = True, False
    # LIBERO: blank, proprio, wrist, primary | action, future proprio, 2 future cams, value.
    assert condition_frames(LIBERO, 'policy') == (yes,) * 4 + (no,) * 5
    assert condition_frames(LIBERO, 'world_model') == (yes,) * 5 + (no,) * 4
    assert condition_frames(LIBERO, 'value') == (yes,) * 8 + (no,)
    assert condition_frames(LIBERO, 'value', mask_current_state_action=True) == (
        yes, no, no, no, no, yes, yes, yes, no)
    # ALOHA: blank, proprio, 3 cameras | action, future proprio, 3 future cams, value.
    assert condition_frames(ALOHA, 'policy') == (yes,) * 5 + (no,) * 6
    assert condition_frames(ALOHA, 'world_model') == (yes,) * 6 + (no,) * 5
    assert condition_frames(ALOHA, 'value', mask_current_state_action=True) == (
        yes, no, no, no, no, no, yes, yes, yes, yes, no)


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('mode, masked', [('policy', False), ('world_model', False),
                                          ('value', False), ('value', True)])
def test_network_sees_the_mode_mask_and_time_zero_there(make_net, dtype, mode, masked):
    clean, proprio, text = _inputs(ALOHA)
    net = make_net(dtype=dtype, record=True)
    result = generate(net, clean, text, ALOHA, proprio=proprio, mode=mode, seeds=1,
                      sampler=SamplerConfig(num_steps=3), mask_current_state_action=masked)
    flags = condition_frames(ALOHA, mode, mask_current_state_action=masked)
    assert result.condition_frames == flags
    assert len(net.calls) == 3
    frames = torch.tensor(flags)
    for call in net.calls:
        assert torch.equal(call['mask'][:, 0, :, 0, 0], frames.to(dtype).expand(2, -1))
        assert call['timesteps'][:, frames].eq(0).all()
        assert call['timesteps'][:, ~frames].gt(0.79).all()
    # Conditioning frames come out as the clean latent (with the proprio injected).
    generated = result.latent
    assert generated.dtype == torch.float32
    assert torch.equal(generated[:, :, frames], result.clean_latent[:, :, frames])


@pytest.mark.parametrize('dtype', DTYPES)
def test_policy_pass_keeps_the_cameras_and_injects_bf16_proprio(make_net, dtype):
    clean, proprio, text = _inputs(LIBERO)
    result = generate(make_net(dtype=dtype), clean, text, LIBERO, proprio=proprio, seeds=3,
                      sampler=SamplerConfig(num_steps=5), stats=_stats(LIBERO))
    for camera in LIBERO.cameras:
        index = LIBERO.camera_index(camera)
        assert torch.equal(result.latent[:, :, index], clean[:, :, index])
    current = extract_proprio(result.latent, LIBERO, future=False)
    assert torch.equal(current, proprio.to(torch.bfloat16).float())
    assert torch.count_nonzero(result.latent[:, :, 0]) == 0  # the blank frame stays zero
    # Read-out shapes and the unnormalization with the statistics.
    assert result.actions_normalized.shape == (2, 16, 7)
    assert result.actions.dtype == np.float64
    np.testing.assert_allclose(result.actions, 2.0 * result.actions_normalized, atol=1e-6)
    np.testing.assert_allclose(result.future_proprio,
                               5.0 * (result.future_proprio_normalized + 1), rtol=1e-6)
    assert result.value.shape == (2,) and np.all((result.value >= 0) & (result.value <= 1))
    assert result.num_evaluations == 5 and result.seeds == 3 and result.mode == 'policy'


# --- seeds and determinism -----------------------------------------------------------------------
@pytest.mark.parametrize('dtype', DTYPES)
def test_same_seed_same_bits_different_seed_different(make_net, dtype):
    clean, proprio, text = _inputs(LIBERO)

    def run(seeds):
        return generate(make_net(dtype=dtype), clean, text, LIBERO, proprio=proprio,
                        seeds=seeds, sampler=SamplerConfig(num_steps=4)).latent
    assert torch.equal(run(195), run(195))
    assert not torch.equal(run(195), run(196))


@pytest.mark.parametrize('dtype', DTYPES)
def test_per_sample_seeds_batch_equals_single_runs(make_net, dtype):
    clean, proprio, text = _inputs(LIBERO, batch=1)
    batch = 3
    many = generate(make_net(dtype=dtype), clean.expand(batch, -1, -1, -1, -1), text, LIBERO,
                    proprio=proprio.expand(batch, -1), seeds=[7, 8, 9],
                    sampler=SamplerConfig(num_steps=4), stats=_stats(LIBERO))
    for index, seed in enumerate((7, 8, 9)):
        one = generate(make_net(dtype=dtype), clean, text, LIBERO, proprio=proprio, seeds=seed,
                       sampler=SamplerConfig(num_steps=4), stats=_stats(LIBERO))
        assert torch.equal(many.latent[index], one.latent[0])
        assert np.array_equal(many.actions[index], one.actions[0])
        assert many.value[index] == one.value[0]
    # With one seed the batch is one numpy stream: sample 0 is the single run, sample 1 is not.
    stream = generate(make_net(dtype=dtype), clean.expand(batch, -1, -1, -1, -1), text, LIBERO,
                      proprio=proprio.expand(batch, -1), seeds=7,
                      sampler=SamplerConfig(num_steps=4))
    assert torch.equal(stream.latent[0], many.latent[0])
    assert not torch.equal(stream.latent[1], many.latent[1])


def test_given_noise_equals_the_seeded_noise(make_net):
    clean, proprio, text = _inputs(LIBERO)
    seeded = generate(make_net(), clean, text, LIBERO, proprio=proprio, seeds=11,
                      sampler=SamplerConfig(num_steps=3))
    noise = initial_noise(11, (2, *LIBERO.latent_shape))
    given = generate(make_net(), clean, text, LIBERO, proprio=proprio, noise=noise,
                     sampler=SamplerConfig(num_steps=3))
    assert torch.equal(seeded.latent, given.latent)
    assert given.seeds is None


def test_variance_scale_scales_both_sigmas(make_net):
    clean, proprio, text = _inputs(LIBERO)
    net = make_net(record=True)
    result = generate(net, clean, text, LIBERO, proprio=proprio, seeds=5, variance_scale=True,
                      sampler=SamplerConfig(num_steps=3))
    high, low = variance_scales(5)
    assert result.sigma_max == 80.0 * high and result.sigma_min == 4.0 * low
    # First evaluation at the scaled sigma_max, on noise scaled the same way; the clean
    # evaluation at the scaled sigma_min.
    first_t, last_t = net.calls[0]['timesteps'][0, -1], net.calls[-1]['timesteps'][0, -1]
    assert first_t.item() == pytest.approx(80 * high / (1 + 80 * high), rel=1e-6)
    assert last_t.item() == pytest.approx(4 * low / (1 + 4 * low), rel=1e-6)
    x_init = np.random.RandomState(5).standard_normal((2, *LIBERO.latent_shape)) * 80 * high
    c_in = 1 / (1 + 80 * high)
    np.testing.assert_allclose(net.calls[0]['x'][:, :, -1].numpy(),
                               (x_init * c_in)[:, :, -1], rtol=1e-5, atol=1e-6)


# --- an end-to-end oracle ------------------------------------------------------------------------
def _oracle_error(net, scale=3.0, num_steps=65):
    """Max relative error of the generated frames against the exact Gaussian solution."""
    clean, proprio, text = _inputs(LIBERO)
    result = generate(net, clean, text, LIBERO, proprio=proprio, seeds=21,
                      sampler=SamplerConfig(num_steps=num_steps))
    x_init = np.random.RandomState(21).standard_normal((2, *LIBERO.latent_shape)) * 80.0
    state = x_init * math.sqrt(scale ** 2 + 16) / math.sqrt(scale ** 2 + 80 ** 2)
    exact = (state * scale ** 2 / (scale ** 2 + 16))[:, :, 4:]
    generated = result.latent[:, :, 4:].numpy()
    return np.abs(generated - exact).max() / np.abs(exact).max()


def test_gaussian_oracle_through_the_network_protocol(make_net, gaussian_formula, monkeypatch):
    # With the optimal rectified-flow network for data ~ N(0, s^2) the generated frames must
    # be the exact probability-flow solution x(4) = x_T r(4) / r(80), r(a) = sqrt(s^2 + a^2),
    # denoised once more at sigma 4: D(x, 4) = x s^2 / (s^2 + 16).
    net = make_net(gaussian_formula(3.0))
    assert _oracle_error(net) < 2e-4  # measured 9.6e-5 at 65 steps (3.0e-2 at 5)
    # A bfloat16 network rounds its inputs and t (t near 0.988 has a bf16 spacing of 0.004).
    assert _oracle_error(make_net(gaussian_formula(3.0), dtype=torch.bfloat16)) < 1e-2
    # Negative control: EDM-style preconditioning (c_in = 1 / sqrt(1 + sigma^2)) is far off.
    original = denoiser.rectified_flow_scaling

    def edm_like(sigma):
        c_skip, c_out, _, c_noise = original(sigma)
        return c_skip, c_out, 1 / torch.sqrt(1 + sigma ** 2), c_noise
    monkeypatch.setattr(denoiser, 'rectified_flow_scaling', edm_like)
    assert _oracle_error(net) > 0.05  # measured 0.10


# --- world model and value passes ----------------------------------------------------------------
@pytest.mark.parametrize('dtype', DTYPES)
def test_world_model_pass_conditions_on_the_action_chunk(make_net, dtype):
    clean, proprio, text = _inputs(LIBERO)
    generator = torch.Generator().manual_seed(4)
    actions = torch.rand(2, 16, 7, generator=generator) * 2 - 1
    net = make_net(dtype=dtype, record=True)
    result = generate(net, clean, text, LIBERO, proprio=proprio, mode='world_model',
                      actions=actions, seeds=0, sampler=SamplerConfig(num_steps=3))
    expected = inject_actions(clean, LIBERO, actions)[:, :, LIBERO.action_index]
    assert torch.equal(result.latent[:, :, LIBERO.action_index], expected)
    torch.testing.assert_close(torch.from_numpy(result.actions_normalized), actions, rtol=0,
                               atol=1e-6)
    assert net.calls[0]['timesteps'][:, LIBERO.action_index].eq(0).all()


def test_planning_flow_reuses_the_generated_latent(make_net):
    # Policy pass for 3 candidates, then world-model and value passes on its latents.
    clean, proprio, text = _inputs(ALOHA, batch=1)
    candidates = 3
    clean = clean.expand(candidates, -1, -1, -1, -1)
    proprio = proprio.expand(candidates, -1)
    policy = generate(make_net(), clean, text, ALOHA, proprio=proprio, seeds=[1, 2, 3],
                      sampler=SamplerConfig(num_steps=4))
    world = generate(make_net(), policy.latent, text, ALOHA, proprio=proprio,
                     mode='world_model', seeds=[1, 2, 3], sampler=SamplerConfig(num_steps=3))
    # The generated action frame became conditioning and is carried over unchanged.
    index = ALOHA.action_index
    assert torch.equal(world.latent[:, :, index], policy.latent[:, :, index])
    np.testing.assert_array_equal(world.actions_normalized, policy.actions_normalized)
    value = generate(make_net(), world.latent, text, ALOHA, proprio=proprio, mode='value',
                     mask_current_state_action=True, seeds=[1, 2, 3],
                     sampler=SamplerConfig(num_steps=2))
    assert value.value.shape == (candidates,) and value.num_evaluations == 1
    future = ALOHA.future_proprio_index
    assert torch.equal(value.latent[:, :, future], world.latent[:, :, future])


# --- bad input -----------------------------------------------------------------------------------
def test_bad_input(make_net):
    clean, proprio, text = _inputs(LIBERO)
    net = make_net()

    def call(**overrides):
        arguments = dict(net=net, clean_latent=clean, text_embedding=text, layout=LIBERO,
                         proprio=proprio, seeds=0, sampler=SamplerConfig(num_steps=2))
        arguments.update(overrides)
        return generate(**arguments)

    with pytest.raises(ValueError, match=r"unknown `mode` 'planning'"):
        call(mode='planning')
    with pytest.raises(ValueError, match=r'`clean_latent` must have shape \(B, 16, 9, 4, 4\)'):
        call(clean_latent=torch.zeros(2, 16, 9, 8, 8))
    bad = proprio.clone()
    bad[0, 2] = float('nan')
    with pytest.raises(ValueError, match=r'`proprio` has a non-finite value nan'):
        call(proprio=bad)
    with pytest.raises(ValueError, match=r'`proprio` must have shape \(2, 9\)'):
        call(proprio=proprio[:, :7])
    with pytest.raises(ValueError, match=r'`actions` were given but the action frame is '
                                         r"generated in mode 'policy'"):
        call(actions=torch.zeros(2, 16, 7))
    with pytest.raises(ValueError, match=r'with mask_current_state_action'):
        call(mode='value', mask_current_state_action=True, actions=torch.zeros(2, 16, 7))
    with pytest.raises(ValueError, match=r'`mask_current_state_action` applies to the value'):
        call(mask_current_state_action=True)
    with pytest.raises(ValueError, match=r'give exactly one of `seeds` and `noise`'):
        call(seeds=None)
    with pytest.raises(ValueError, match=r'one seed per sample: 2 expected, got 3'):
        call(seeds=[1, 2, 3])
    with pytest.raises(ValueError, match=r'`variance_scale` scales the sigmas of the whole'):
        call(seeds=[1, 2], variance_scale=True)
    with pytest.raises(ValueError, match=r'`noise` must be a tensor of shape'):
        call(seeds=None, noise=torch.zeros(2, 16, 9, 4))
    with pytest.raises(ValueError, match=r'`text_embedding` must be a \(1 or 2, L, 1024\)'):
        call(text_embedding=torch.zeros(5, 1024))
    with pytest.raises(ValueError, match=r'`action_dim` = 7'):
        call(stats=_stats(ALOHA))
    with pytest.raises(TypeError, match=r'`sampler` must be a SamplerConfig'):
        call(sampler={'num_steps': 2})
    with pytest.raises(ValueError, match=r'network produced non-finite values \(latent frames '
                                         r'\[4, 5, 6, 7, 8\]\)'):
        call(net=make_net(lambda x, t, m, e: x * float('nan')))
