"""Validation happens once, at the boundary: the sampler options when a SamplerConfig is made
(CosmosPolicy.infer makes one for a `num_steps`), the network where the denoiser wraps it;
inner functions trust what they get, and bad input still fails at the boundary, named."""
import numpy as np
import pytest
import torch

from cosmos_policy_ros.engine import denoiser, sampling
from cosmos_policy_ros.engine import generate as generate_module
from cosmos_policy_ros.engine.generate import generate
from cosmos_policy_ros.engine.policy import load_policy
from cosmos_policy_ros.engine.sampling import sample, SamplerConfig
from cosmos_policy_ros.interface import Observation


@pytest.fixture(scope='module')
def policy(libero_model_dir):
    return load_policy(libero_model_dir, device='cpu', dtype='fp32')


@pytest.fixture
def counts(monkeypatch):
    """How often the sampler options and the network are validated (wrapped checks)."""
    calls = {'options': 0, 'net': 0}

    def counted(name, check):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return check(*args, **kwargs)
        return wrapper
    monkeypatch.setattr(sampling, '_check_options', counted('options', sampling._check_options))
    check_net = counted('net', denoiser.check_net)
    monkeypatch.setattr(denoiser, 'check_net', check_net)
    monkeypatch.setattr(generate_module, 'check_net', check_net, raising=False)  # not there
    return calls


def _observation(policy):
    rng = np.random.default_rng(1)
    return Observation(images={camera: rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
                               for camera in policy.layout.cameras},
                       proprio=rng.uniform(-0.5, 0.5, policy.layout.proprio_dim),
                       instruction=policy.text_embeddings.instructions[0], seed=3)


@pytest.mark.parametrize('num_steps, candidates, options', [
    (None, 1, 0),  # the model's SamplerConfig, validated when it was loaded
    (3, 1, 1),     # infer makes one SamplerConfig for the requested steps
    (3, 2, 1),     # best-of-N: the same, once for every candidate
])
def test_an_inference_validates_its_options_and_network_once(policy, counts, num_steps,
                                                             candidates, options):
    output = policy.infer(_observation(policy), num_steps=num_steps, num_candidates=candidates)
    assert np.isfinite(output.actions).all()
    assert counts == {'options': options, 'net': 1}


def test_the_keyword_api_validates_once_and_a_config_is_trusted(counts):
    x0_fn = lambda x, sigma: x * 0.5  # noqa: E731
    noise = torch.randn(2, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    config = SamplerConfig(num_steps=4, solver='heun')
    assert counts['options'] == 1
    expected = sampling.run_sampler(x0_fn, noise * 80.0, config)
    assert counts['options'] == 1  # run_sampler, schedule() and num_evaluations trust it
    assert config.num_evaluations == 3 and len(config.schedule()) == 2
    assert counts['options'] == 1
    got = sample(x0_fn, noise * 80.0, **config.options())  # one SamplerConfig made here
    assert counts['options'] == 2
    assert torch.equal(got, expected)


def _generate_arguments(make_net, layout):
    clean = torch.zeros(2, *layout.latent_shape)
    return dict(net=make_net(), clean_latent=clean, text_embedding=torch.zeros(1, 3, 1024),
                layout=layout, proprio=torch.zeros(2, 9), seeds=[0, 1],
                sampler=SamplerConfig(num_steps=2))


def test_generate_checks_the_network_once_before_using_it(make_net, counts, libero_layout):
    arguments = _generate_arguments(make_net, libero_layout)
    generate(**arguments)
    assert counts == {'options': 1, 'net': 1}  # the options: when the SamplerConfig was made

    class NoDevice:
        dtype = torch.float32

        def __call__(self, *args):
            return args[0]
    with pytest.raises(TypeError, match=r'`net.device` must be a torch.device'):
        generate(**dict(arguments, net=NoDevice()))


def test_given_noise_is_checked_where_it_enters(make_net, libero_layout):
    arguments = _generate_arguments(make_net, libero_layout)
    noise = torch.zeros(2, *libero_layout.latent_shape)
    noise[1, 0, 0, 0, 0] = float('nan')
    with pytest.raises(ValueError, match=r'`noise` has non-finite values'):
        generate(**dict(arguments, seeds=None, noise=noise))
