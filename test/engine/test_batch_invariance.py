"""On the CPU a sample's network output and latents are the same bits alone and in any batch.

engine/dit.py runs the few-row GEMMs (time embedding, AdaLN modulation) one sample at a time in
inference; engine/vae.py encodes a lone sample as a pair. The shipped sim model is the case
that needs both: its modulation GEMMs (9 rows a sample) and its conv3d layers take other
kernels for one sample than for a batch on this CPU. Training (gradients on) runs batches as
they come. The test suite runs torch on one thread (conftest.py); the kernels differ with two
threads, as a node or server runs, so each check runs with both."""
import pytest
import torch

from cosmos_policy_ros.engine.policy import load_policy
from cosmos_policy_ros.sim.model import shipped_model_dir

BATCH = 4


@pytest.fixture(scope='module')
def policy():
    return load_policy(shipped_model_dir(), device='cpu', dtype='fp32')


@pytest.fixture(params=[1, 2], ids=['1-thread', '2-threads'])
def threads(request):
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


def network_inputs(policy, batch, seed=0):
    generator = torch.Generator().manual_seed(seed)
    channels, frames, height, width = policy.layout.latent_shape
    x = torch.randn(batch, channels, frames, height, width, generator=generator)
    timesteps = torch.rand(batch, frames, generator=generator)
    mask = (torch.rand(batch, 1, frames, height, width, generator=generator) > 0.5).float()
    text = torch.randn(batch, 16, 1024, generator=generator)
    return x, timesteps, mask, text


def test_the_network_gives_a_sample_the_same_bits_in_any_batch(policy, threads):
    inputs = network_inputs(policy, BATCH)
    with torch.no_grad():
        batched = policy.dit(*inputs)
        pair = policy.dit(*(tensor[1:3] for tensor in inputs))
        alone = [policy.dit(*(tensor[b:b + 1] for tensor in inputs)) for b in range(BATCH)]
    assert torch.equal(batched, torch.cat(alone))
    assert torch.equal(pair, torch.cat(alone[1:3]))
    assert not torch.equal(alone[0], alone[1])  # the samples differ


def test_a_sample_is_encoded_to_the_same_latents_alone_and_in_a_batch(policy, threads):
    size, cameras = policy.layout.image_size, len(policy.layout.cameras)
    generator = torch.Generator().manual_seed(1)
    pixels = torch.randint(0, 256, (BATCH, cameras, 3, size, size), dtype=torch.uint8,
                           generator=generator)
    batched = policy.vae.encode_conditioning(pixels)
    alone = torch.cat([policy.vae.encode_conditioning(pixels[b:b + 1]) for b in range(BATCH)])
    assert batched.shape == (BATCH, 16, 2 + cameras, size // 8, size // 8)
    assert torch.equal(batched, alone)
    assert torch.equal(policy.vae.encode_conditioning(pixels[2:]), alone[2:])


def test_training_runs_the_batch_as_it_comes(policy, monkeypatch):
    """With gradients on, the modulation GEMMs see the whole batch at once (one call per
    layer and pass), in inference one call per sample."""
    calls = []
    linear = policy.dit.transformer.transformer_blocks[0].norm1.linear_1
    monkeypatch.setattr(linear, 'forward',
                        lambda x, forward=linear.forward: calls.append(x.shape[0]) or forward(x))
    inputs = network_inputs(policy, BATCH)
    with torch.no_grad():
        policy.dit(*inputs)
    assert calls == [1] * BATCH
    calls.clear()
    with torch.enable_grad():
        policy.dit(*inputs)
    assert calls == [BATCH]
