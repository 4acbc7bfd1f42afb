"""Inpainting a known chunk prefix in the sampler (engine level, no ROS; docs/stitching.md)."""
import numpy as np
import pytest
import torch

from cosmos_policy_ros.engine.generate import generate, known_action_mask
from cosmos_policy_ros.engine.noise import initial_noise
from cosmos_policy_ros.engine.planning import plan
from cosmos_policy_ros.engine.policy import CosmosPolicy
from cosmos_policy_ros.engine.sampling import sample, SamplerConfig, sigma_schedule
from cosmos_policy_ros.engine.synthetic_checkpoints import write_synthetic_model
from cosmos_policy_ros.interface import Observation
from cosmos_policy_ros.layout import LatentLayout

SOLVERS = [('2ab', 5), ('euler', 6), ('heun', 7), ('2ab', 2)]
# LIBERO at 32 px: a 256-value action frame holds two full copies of the 16 x 7 chunk and a
# partial one of 32 values; ALOHA at 64 px: one 50 x 14 copy in 1024 values and 324 more.
LIBERO = LatentLayout('libero', ('wrist', 'primary'), chunk_size=16, action_dim=7,
                      proprio_dim=9, image_size=32)
ALOHA = LatentLayout('aloha', ('top', 'left', 'right'), chunk_size=50, action_dim=14,
                     proprio_dim=14, image_size=64)


def _state(shape=(3, 10), seed=0, sigma_max=80.0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=generator, dtype=torch.float64) * sigma_max


class Spy:
    """x0_fn wrapper that records every (x, sigma) it is called with."""

    def __init__(self, x0_fn):
        self.x0_fn, self.calls = x0_fn, []

    def __call__(self, x, sigma):
        self.calls.append((x.clone(), sigma.clone()))
        return self.x0_fn(x, sigma)


def _coupled(x, sigma):
    """A non-elementwise x0_fn: each element is pulled towards the mean of its row."""
    scale = (1 + sigma.reshape(-1, 1) ** 2)
    return torch.tanh(x / scale) + 0.5 * x.mean(dim=1, keepdim=True) / scale


# --- sampler -------------------------------------------------------------------------------
@pytest.mark.parametrize('solver, steps', SOLVERS)
def test_every_evaluation_sees_the_known_values_noised_to_its_sigma(solver, steps):
    x_init = _state()
    mask = torch.zeros(10, dtype=torch.bool)
    mask[[0, 3, 4]] = True
    target = torch.linspace(-1, 1, 10, dtype=torch.float64)
    spy = Spy(_coupled)
    out = sample(spy, x_init, num_steps=steps, solver=solver, known=(mask, target))
    eps = x_init / 80.0
    assert len(spy.calls) == SamplerConfig(num_steps=steps, solver=solver).num_evaluations
    for x, sigma in spy.calls:
        expected = target + sigma[:, None] * eps
        torch.testing.assert_close(x[:, mask], expected[:, mask], rtol=1e-12, atol=1e-12)
    # The last evaluation is at the schedule's last sigma; the sample holds the known values.
    last = float(sigma_schedule(steps, solver=solver)[-1])
    assert float(spy.calls[-1][1][0]) == pytest.approx(last)
    torch.testing.assert_close(out[:, mask], target.expand(3, -1)[:, mask], rtol=0, atol=0)


def test_churn_steps_are_constrained_at_the_raised_sigma():
    x_init = _state(seed=3)
    mask = torch.tensor([True] + [False] * 9)
    spy = Spy(_coupled)
    sample(spy, x_init, num_steps=5, s_churn=2.0, generator=torch.Generator().manual_seed(1),
           known=(mask, torch.full((10,), 0.5, dtype=torch.float64)))
    for x, sigma in spy.calls:
        torch.testing.assert_close(x[:, 0], 0.5 + sigma * x_init[:, 0] / 80.0, rtol=1e-12,
                                   atol=1e-12)


@pytest.mark.parametrize('solver, steps', SOLVERS)
def test_nothing_known_is_the_plain_sampler_bit_for_bit(solver, steps):
    x_init = _state(seed=1)
    plain = sample(_coupled, x_init, num_steps=steps, solver=solver)
    empty = (torch.zeros(10, dtype=torch.bool), torch.zeros(10, dtype=torch.float64))
    assert torch.equal(sample(_coupled, x_init, num_steps=steps, solver=solver, known=None),
                       plain)
    assert torch.equal(sample(_coupled, x_init, num_steps=steps, solver=solver, known=empty),
                       plain)


def test_an_elementwise_denoiser_leaves_the_unknown_elements_bit_for_bit():
    x_init = _state(seed=2)
    mask = torch.arange(10) < 4

    def elementwise(x, sigma):
        return torch.tanh(x) / (1 + sigma[:, None])

    plain = sample(elementwise, x_init, num_steps=5)
    known = sample(elementwise, x_init, num_steps=5, known=(mask, torch.ones(10).double()))
    assert torch.equal(known[:, ~mask], plain[:, ~mask])
    assert not torch.equal(known[:, mask], plain[:, mask])


def test_correlated_gaussian_oracle_pulls_the_unknown_towards_the_known():
    """Data x0 = c * ones(8), c ~ N(0, 1): the exact denoiser is ones * sum(x) / (8 + s^2)
    and, given 3 elements equal to a, the others are a too. Replacement inpainting moves the
    unknown elements from the unconditional sample towards a (it is not exact conditioning:
    see docs/stitching.md)."""
    def exact(x, sigma):
        return x.sum(dim=1, keepdim=True).expand_as(x) / (8 + sigma[:, None] ** 2)

    x_init = _state((16, 8), seed=4)
    mask = torch.arange(8) < 3
    a = 0.7
    options = dict(num_steps=30, solver='2ab', sigma_min=0.01)
    plain = sample(exact, x_init, **options)[:, 3:].mean(dim=1)
    known = sample(exact, x_init, known=(mask, torch.full((8,), a).double()),
                   **options)[:, 3:].mean(dim=1)
    # Mean distance to a over 16 draws: about 0.08 inpainted against 0.77 unconditioned.
    assert float((known - a).abs().mean()) < 0.2 * float((plain - a).abs().mean())
    assert float((known - a).abs().max()) < 0.3


def test_bad_known_input_is_refused():
    x_init = _state()
    with pytest.raises(ValueError, match='mask must be a bool tensor'):
        sample(_coupled, x_init, num_steps=3, known=(torch.zeros(10), torch.zeros(10)))
    with pytest.raises(ValueError, match='must broadcast to the state'):
        sample(_coupled, x_init, num_steps=3,
               known=(torch.zeros(7, dtype=torch.bool), torch.zeros(7).double()))
    with pytest.raises(ValueError, match='non-finite'):
        sample(_coupled, x_init, num_steps=3,
               known=(torch.ones(10, dtype=torch.bool), torch.full((10,), float('nan'))))
    with pytest.raises(ValueError, match='a \\(mask, target\\) tuple'):
        sample(_coupled, x_init, num_steps=3, known=torch.zeros(10))


# --- generate: the action frame --------------------------------------------------------------
def _inputs(layout, batch=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    clean = torch.randn(batch, *layout.latent_shape, generator=generator)
    proprio = torch.rand(batch, layout.proprio_dim, generator=generator) * 2 - 1
    text = torch.randn(1, 5, 1024, generator=generator)
    known = torch.rand(batch, 5, layout.action_dim, generator=generator) * 2 - 1
    return clean, proprio, text, known


@pytest.mark.parametrize('layout', [LIBERO, ALOHA], ids=['libero', 'aloha'])
def test_mask_covers_every_tiled_copy_of_the_known_steps(layout):
    clean, _, _, known = _inputs(layout)
    flags = (True,) * layout.num_conditioning_frames + (False,) * (
        layout.num_frames - layout.num_conditioning_frames)
    mask, target, steps = known_action_mask(clean, layout, known, flags)
    assert steps == 5
    chunk = layout.chunk_size * layout.action_dim
    frame = mask[:, :, layout.action_index].reshape(2, -1)  # (B, 16*S*S), C-major
    index = torch.arange(frame.shape[1])
    np.testing.assert_array_equal(frame[0].numpy(), (index % chunk < 5 * layout.action_dim))
    per_frame = frame.shape[1]
    copies, tail = divmod(per_frame, chunk)
    assert int(frame[0].sum()) == copies * 5 * layout.action_dim + min(
        tail, 5 * layout.action_dim)
    assert int(mask.sum()) == 2 * int(frame[0].sum())  # nothing outside the action frame
    values = target[:, :, layout.action_index].reshape(2, -1)
    flat = known.reshape(2, -1).double()
    torch.testing.assert_close(values[:, frame[0]], flat[:, index[frame[0]] % chunk])


@pytest.mark.parametrize('layout', [LIBERO, ALOHA], ids=['libero', 'aloha'])
def test_generate_keeps_the_known_prefix(make_net, layout):
    clean, proprio, text, known = _inputs(layout)
    net = make_net(record=True)
    result = generate(net, clean, text, layout, proprio=proprio, seeds=[3, 4],
                      sampler=SamplerConfig(num_steps=4), known_actions=known)
    assert result.conditioned_steps == 5
    np.testing.assert_allclose(result.actions_normalized[:, :5], known.numpy(), rtol=0,
                               atol=1e-6)
    # What the network saw on the known elements: c_in * (known + sigma * eps), eps the
    # seeds' starting noise, at every evaluation (here at the schedule's sigmas).
    x_init = initial_noise([3, 4], (2, *layout.latent_shape))
    mask, target, _ = known_action_mask(clean, layout, known, result.condition_frames)
    sigmas = sigma_schedule(4)
    assert len(net.calls) == len(sigmas)
    for call, sigma in zip(net.calls, sigmas.tolist()):
        want = (target + sigma * x_init.double() / 80.0) / (1 + sigma)
        torch.testing.assert_close(call['x'][mask].double(), want[mask], rtol=1e-5, atol=1e-5)


def test_generate_without_known_actions_is_unchanged_bit_for_bit(make_net):
    clean, proprio, text, known = _inputs(LIBERO)
    options = dict(proprio=proprio, seeds=7, sampler=SamplerConfig(num_steps=5))
    plain = generate(make_net(), clean, text, LIBERO, **options)
    empty = generate(make_net(), clean, text, LIBERO, known_actions=known[:, :0], **options)
    none = generate(make_net(), clean, text, LIBERO, known_actions=None, **options)
    for other in (empty, none):
        assert torch.equal(other.latent, plain.latent) and other.conditioned_steps == 0
    assert plain.conditioned_steps == 0


def test_generate_refuses_known_actions_it_cannot_use(make_net):
    clean, proprio, text, known = _inputs(LIBERO)
    call = dict(proprio=proprio, seeds=0, sampler=SamplerConfig(num_steps=2))
    with pytest.raises(ValueError, match='conditioning in this mode'):
        generate(make_net(), clean, text, LIBERO, mode='world_model',
                 actions=torch.zeros(2, 16, 7), known_actions=known, **call)
    with pytest.raises(ValueError, match=r'must have shape \(2, k, 7\) with 0 <= k <= 16'):
        generate(make_net(), clean, text, LIBERO, known_actions=torch.zeros(2, 17, 7), **call)
    with pytest.raises(ValueError, match='non-finite'):
        generate(make_net(), clean, text, LIBERO,
                 known_actions=torch.full((2, 1, 7), float('inf')), **call)


# --- the facade (tiny random-weight model) ---------------------------------------------------
@pytest.fixture(scope='module')
def policy(tmp_path_factory):
    out = tmp_path_factory.mktemp('released-inpaint')
    write_synthetic_model(out, LIBERO, size='tiny', seed=4, dtype='fp32')
    return CosmosPolicy.from_released(
        checkpoint=out / 'Cosmos-Policy-LIBERO-Predict2-2B.pt',
        tokenizer=out / 'tokenizer' / 'tokenizer.pth',
        statistics=out / 'libero_dataset_statistics.json',
        t5_embeddings=out / 'libero_t5_embeddings.pkl',
        layout=LIBERO, dit_preset='tiny', vae_preset='tiny', device='cpu', dtype='fp32')


def _observation(policy, seed=0):
    rng = np.random.default_rng(2)
    return Observation(images={camera: rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                               for camera in LIBERO.cameras},
                       proprio=rng.uniform(-0.5, 0.5, LIBERO.proprio_dim),
                       instruction=policy.text_embeddings.instructions[0], seed=seed)


@pytest.mark.parametrize('candidates', [1, 2])
def test_infer_conditions_on_known_actions_in_robot_units(policy, candidates):
    obs = _observation(policy)
    plain = policy.infer(obs, num_steps=3, num_candidates=candidates)
    stats = policy.stats
    known = stats.unnormalize_actions(np.linspace(-0.8, 0.8, 4 * 7).reshape(4, 7))
    out = policy.infer(obs, num_steps=3, num_candidates=candidates, known_actions=known)
    assert plain.num_conditioned_steps == 0 and out.num_conditioned_steps == 4
    span = stats.actions_max - stats.actions_min
    np.testing.assert_allclose(out.actions[:4], known, rtol=0, atol=1e-5 * span.max())
    assert not np.allclose(out.actions[4:], plain.actions[4:])  # the DiT mixes the frame
    same = policy.infer(obs, num_steps=3, num_candidates=candidates, known_actions=known[:0])
    np.testing.assert_array_equal(same.actions, plain.actions)


def test_infer_refuses_a_known_prefix_of_the_wrong_shape(policy):
    with pytest.raises(ValueError, match=r'\(k, 7\) with k <= 16'):
        policy.infer(_observation(policy), num_steps=2, known_actions=np.zeros((3, 6)))
    with pytest.raises(ValueError, match=r'must be \(1, k, d\)'):
        plan(policy.dit, torch.zeros(1, *LIBERO.latent_shape), None, LIBERO,
             proprio=torch.zeros(1, 9), seed=0, num_candidates=2,
             sampler=SamplerConfig(num_steps=2), known_actions=np.zeros((4, 7)))
