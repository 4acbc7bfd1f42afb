"""Opt-in acceleration: compile equality, CUDA-graph replay logic, and no host syncs per step.

The compile tests run inductor on the CPU (one tiny shape, one compile per dtype, shared by the
asserts); the CUDA-graph tests check the replay, shape keying and eviction logic with a fake
graph on the CPU and compare real replays with eager on a GPU where there is one.
"""
import importlib.util

import numpy as np
import pytest
import torch
from torch._dynamo.utils import counters

from cosmos_policy_ros.engine.acceleration import (
    accelerate, AccelerationConfig, compile_network, CompileConfig, CompiledNetwork,
    count_host_syncs, CUDAGraphNetwork, graph_breaks, HostSyncCounter, set_attention_backend,
    SYNC_METHODS)
from cosmos_policy_ros.engine.denoiser import ConditionedDenoiser
from cosmos_policy_ros.engine.dit import CosmosDiT
from cosmos_policy_ros.engine.generate import generate
from cosmos_policy_ros.engine.sampling import sample, SamplerConfig
from cosmos_policy_ros.layout import LatentLayout

BASE = LatentLayout.preset('libero')
LIBERO = LatentLayout(BASE.name, BASE.cameras, BASE.chunk_size, BASE.action_dim,
                      BASE.proprio_dim, image_size=32)  # latent (16, 9, 4, 4): 36 DiT tokens
TEXT_TOKENS = 512  # the released T5 embedding length
FP32_TOLERANCE = 1e-5  # max |compiled - eager| / max |eager| in float32


def _tiny_dit(dtype=torch.float32, seed=0, **options):
    torch.manual_seed(seed)
    net = CosmosDiT('tiny', **options).eval().to(dtype)
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    return net


def _net_inputs(dtype=torch.float32, seed=1, batch=1, layout=LIBERO):
    """Inputs of one DiT call as the denoiser makes them: 4 conditioning frames at t = 0."""
    generator = torch.Generator().manual_seed(seed)
    channels, frames, height, width = layout.latent_shape
    x = torch.randn(batch, channels, frames, height, width, generator=generator)
    timesteps = torch.rand(batch, frames, generator=generator) * 0.2 + 0.8
    mask = torch.zeros(batch, 1, frames, height, width)
    mask[:, :, :layout.num_conditioning_frames] = 1
    timesteps[:, :layout.num_conditioning_frames] = 0
    text = torch.randn(batch, TEXT_TOKENS, 1024, generator=generator)
    text[:, 20:] = 0  # T5 rows past the instruction are zero
    return tuple(value.to(dtype) for value in (x, timesteps, mask, text))


def _pass_inputs(layout=LIBERO, batch=1, seed=2):
    generator = torch.Generator().manual_seed(seed)
    clean = torch.zeros(batch, *layout.latent_shape)
    for camera in layout.cameras:
        clean[:, :, layout.camera_index(camera)] = torch.randn(
            batch, 16, *layout.latent_shape[2:], generator=generator)
    proprio = torch.rand(batch, layout.proprio_dim, generator=generator) * 2 - 1
    text = torch.randn(1, TEXT_TOKENS, 1024, generator=generator)
    return clean, proprio, text


def _relative_error(actual, expected):
    return float((actual.double() - expected.double()).abs().max()
                 / expected.double().abs().max())


# --- configs -------------------------------------------------------------------------------------
def test_configs_name_the_bad_field():
    with pytest.raises(ValueError, match='`mode`.*fast'):
        CompileConfig(mode='fast')
    with pytest.raises(ValueError, match='`fullgraph`'):
        CompileConfig(fullgraph='yes')
    with pytest.raises(ValueError, match='`max_cuda_graphs`.*0'):
        AccelerationConfig(max_cuda_graphs=0)
    with pytest.raises(ValueError, match='`compile_mode`.*reduce-overhead.*cuda_graphs'):
        AccelerationConfig(compile=True, compile_mode='reduce-overhead', cuda_graphs=True)
    with pytest.raises(ValueError, match=r"acceleration: unknown key\(s\) \['compiled'\]"):
        AccelerationConfig.from_dict({'compiled': True})
    with pytest.raises(ValueError, match='params.yaml: `compile` must be true or false'):
        AccelerationConfig.from_dict({'compile': 'on'}, source='params.yaml')
    config = AccelerationConfig.from_dict({'compile': True, 'compile_mode': 'max-autotune'})
    assert config.compile_config() == CompileConfig(mode='max-autotune')


def test_accelerate_is_a_no_op_by_default_and_compiles_lazily(make_net):
    net = make_net()
    assert accelerate(net) is net
    compiled = accelerate(net, AccelerationConfig(compile=True))
    assert isinstance(compiled, CompiledNetwork) and compiled.eager is net
    assert (compiled.dtype, compiled.device) == (net.dtype, net.device)
    assert compiled.first_call_seconds == {}  # nothing compiled until the first call
    with pytest.raises(TypeError, match='`net.dtype`'):
        compile_network(lambda *inputs: inputs[0])


def test_attention_backend_is_validated_and_applied():
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry
    with pytest.raises(ValueError, match="`attention_backend`.*Got 'flash_hub'"):
        AccelerationConfig(attention_backend='flash_hub')  # would download kernels
    net, inputs = _tiny_dit(), _net_inputs()
    with torch.no_grad():
        default = net(*inputs)
    try:
        assert accelerate(net, AccelerationConfig(attention_backend='_native_math')) is net
        assert _AttentionBackendRegistry.get_active_backend()[0].value == '_native_math'
        with torch.no_grad():
            assert _relative_error(net(*inputs), default) < FP32_TOLERANCE
        if importlib.util.find_spec('flash_attn') is None:
            with pytest.raises(ValueError, match="'flash' is not usable here.*flash-attn"):
                set_attention_backend(net, 'flash')
    finally:
        set_attention_backend(net, 'native')
    assert _AttentionBackendRegistry.get_active_backend()[0].value == 'native'


# --- graph breaks --------------------------------------------------------------------------------
@pytest.mark.parametrize('dtype, per_frame_adaln', [
    (torch.float32, True), (torch.bfloat16, True), (torch.float32, False)])
def test_the_dit_forward_has_no_graph_break(dtype, per_frame_adaln):
    # bf16 weights switch the parity patches on (RoPE rounding, single-rounding RMSNorm).
    net = _tiny_dit(dtype, per_frame_adaln=per_frame_adaln)
    assert net.bf16_parity == (dtype == torch.bfloat16)
    report = graph_breaks(net, *_net_inputs(dtype))
    assert (report.graph_count, report.break_count) == (1, 0), str(report)


def test_graph_breaks_are_reported_with_their_line():
    class SyncingNet(torch.nn.Module):  # negative control: a host sync inside the forward
        dtype, device = torch.float32, torch.device('cpu')

        def forward(self, x, timesteps, condition_mask, text_embedding):
            scale = float(timesteps.max().item())
            return x * scale

    report = graph_breaks(SyncingNet(), *_net_inputs())
    assert report.break_count >= 1 and report.graph_count >= 2
    assert any('test_acceleration.py' in reason for reason in report.reasons), str(report)


# --- torch.compile equals eager (CPU inductor; slow: one compile per dtype) ----------------------
@pytest.fixture(scope='module')
def compiled_fp32():
    net = _tiny_dit(torch.float32)
    compiled = compile_network(net)
    seconds = compiled.warmup(*_net_inputs(torch.float32))
    return net, compiled, seconds


@pytest.fixture(scope='module')
def compiled_bf16():
    net = _tiny_dit(torch.bfloat16)
    compiled = compile_network(net)
    compiled.warmup(*_net_inputs(torch.bfloat16))
    return net, compiled


@pytest.mark.slow
def test_compiled_fp32_equals_eager(compiled_fp32):
    net, compiled, seconds = compiled_fp32
    assert seconds > 0 and len(compiled.first_call_seconds) == 1
    with torch.no_grad():
        for seed in (1, 5):  # new values, same shapes: replays the compiled graph
            inputs = _net_inputs(torch.float32, seed=seed)
            assert _relative_error(compiled(*inputs), net(*inputs)) < FP32_TOLERANCE
    assert len(compiled.first_call_seconds) == 1  # no new signature, no second compile


@pytest.mark.slow
def test_compiled_fp32_pass_equals_eager_pass(compiled_fp32):
    net, compiled, _ = compiled_fp32
    clean, proprio, text = _pass_inputs()
    options = dict(proprio=proprio, seeds=195, sampler=SamplerConfig(num_steps=5))
    eager = generate(net, clean, text, LIBERO, **options)
    graphs = counters['stats']['unique_graphs']
    fast = generate(compiled, clean, text, LIBERO, **options)
    assert counters['stats']['unique_graphs'] == graphs  # the denoiser's calls reuse the graph
    assert _relative_error(fast.latent, eager.latent) < FP32_TOLERANCE
    np.testing.assert_allclose(fast.actions_normalized, eager.actions_normalized, atol=1e-5)
    np.testing.assert_allclose(fast.value, eager.value, atol=1e-5)


@pytest.mark.slow
def test_compiled_bf16_is_within_bf16_noise(compiled_bf16):
    net, compiled = compiled_bf16
    inputs = _net_inputs(torch.bfloat16, seed=3)
    with torch.no_grad():
        eager, fast = net(*inputs), compiled(*inputs)
        # The oracle: the same weights and (bf16-valued) inputs in float64, parity rounding on.
        oracle = _tiny_dit(torch.bfloat16, parity=True).double()
        reference = oracle(*(value.double() for value in inputs))
    assert fast.dtype == torch.bfloat16
    eager_error, fast_error = _relative_error(eager, reference), _relative_error(fast, reference)
    assert 1e-4 < eager_error < 2e-2  # bf16 noise: about 2**-8 relative
    assert fast_error < 2 * eager_error
    assert _relative_error(fast, eager) < 2e-2


# --- CUDA graphs ---------------------------------------------------------------------------------
class FakeGraph:
    """Stands in for torch.cuda.CUDAGraph: replay() recomputes from the static inputs."""

    def __init__(self, fn, output):
        self.fn, self.output, self.replays = fn, output, 0

    def replay(self):
        self.replays += 1
        self.output.copy_(self.fn())


class FakeCapture:
    """Warm-up and record on the CPU, with the semantics of static buffers."""

    def __init__(self):
        self.warmup_calls = 0
        self.graphs = []

    def warmup(self, fn, iterations):
        for _ in range(iterations):
            self.warmup_calls += 1
            fn()

    def record(self, fn):
        graph = FakeGraph(fn, fn())
        self.graphs.append(graph)
        return graph, graph.output


def test_cuda_graphs_refuse_a_cpu_network_with_a_clear_error(make_net):
    with pytest.raises(ValueError, match=r'CUDA device; net.device is cpu.*cuda_graphs'):
        CUDAGraphNetwork(make_net())
    with pytest.raises(ValueError, match=r'CUDA device; net.device is cpu'):
        accelerate(make_net(), AccelerationConfig(compile=True, cuda_graphs=True))
    with pytest.raises(ValueError, match='`warmup_iterations`'):
        CUDAGraphNetwork(make_net(), warmup_iterations=0, capture=FakeCapture())


def test_replay_copies_inputs_and_keys_graphs_by_signature(make_net):
    net, capture = make_net(), FakeCapture()
    graphed = CUDAGraphNetwork(net, warmup_iterations=2, max_graphs=2, capture=capture)
    small = [_net_inputs(seed=seed) for seed in (1, 2, 3)]
    wide = [_net_inputs(seed=seed, batch=2) for seed in (4, 5)]
    for inputs in small + wide + small[:1]:
        # Equal to eager for every new value: the inputs went into the static buffers.
        torch.testing.assert_close(graphed(*inputs), net(*inputs), rtol=0, atol=0)
    assert graphed.captures == 2 and len(capture.graphs) == 2  # one graph per signature
    assert capture.warmup_calls == 4  # 2 warm-up calls before each capture
    assert [graph.replays for graph in capture.graphs] == [4, 2]
    assert graphed.signatures[-1][0][0] == (1, 16, 9, 4, 4)  # most recently used last
    # A third signature drops the least recently used graph (batch 2), which then re-captures.
    odd = _net_inputs(seed=6, layout=LatentLayout('odd', ('a',), 4, 2, 3, image_size=32))
    graphed(*odd)
    assert [key[0][0][0] for key in graphed.signatures] == [1, 1]
    graphed(*wide[0])
    assert graphed.captures == 4
    graphed.reset()
    assert graphed.signatures == ()


def test_replay_returns_a_copy_unless_asked_for_the_buffer(make_net):
    inputs = _net_inputs()
    graphed = CUDAGraphNetwork(make_net(), capture=FakeCapture())
    first = graphed(*inputs)
    first.zero_()  # the caller owns its result
    torch.testing.assert_close(graphed(*inputs), make_net()(*inputs))
    shared = CUDAGraphNetwork(make_net(), clone_output=False, capture=FakeCapture())
    assert shared(*inputs) is shared(*_net_inputs(seed=9))  # the static output buffer
    with pytest.raises(TypeError, match='input 3 is str'):
        graphed(*inputs[:3], 'text')


def test_replayed_network_runs_a_whole_pass(make_net):
    net = make_net()
    clean, proprio, text = _pass_inputs(batch=2)
    options = dict(proprio=proprio, seeds=[1, 2], sampler=SamplerConfig(num_steps=5))
    graphed = CUDAGraphNetwork(net, capture=FakeCapture(), clone_output=False)
    expected = generate(net, clean, text, LIBERO, **options)
    result = generate(graphed, clean, text, LIBERO, **options)
    assert torch.equal(result.latent, expected.latent)
    assert graphed.captures == 1


# --- host synchronisations -----------------------------------------------------------------------
def test_host_sync_counter_counts_and_restores():
    before = {name: getattr(torch.Tensor, name) for name in SYNC_METHODS}
    value = torch.tensor([1.5, 2.5])
    with count_host_syncs() as counter:
        value[0].item()
        bool(value[0] > 1)
        float(value[1])
        value.tolist()
        value.numpy()
        torch.nonzero(value)
        value * 2  # not a sync
    assert counter.counts == {'item': 1, '__bool__': 1, '__float__': 1, 'tolist': 1,
                              'numpy': 1, 'torch.nonzero': 1}
    assert {name: getattr(torch.Tensor, name) for name in SYNC_METHODS} == before
    assert 'item' not in torch.Tensor.__dict__
    assert float(value[1]) == 2.5 and counter.total == 6  # counting stopped


class SyncProbe:
    """Wraps a network; records the host-sync total when each call starts and ends."""

    def __init__(self, net, counter):
        self.net, self.counter, self.marks = net, counter, []
        self.dtype, self.device = net.dtype, net.device

    def __call__(self, *inputs):
        self.marks.append(self.counter.total)
        output = self.net(*inputs)
        self.marks.append(self.counter.total)
        return output


def _syncs_during_loop(net, num_steps, **sampler):
    clean, proprio, text = _pass_inputs()
    with HostSyncCounter() as counter:
        probe = SyncProbe(net, counter)
        generate(probe, clean, text, LIBERO, proprio=proprio, seeds=195,
                 sampler=SamplerConfig(num_steps=num_steps, **sampler),
                 generator=torch.Generator().manual_seed(0))
    # From the start of the first network call to the end of the last one: the sampler loop.
    return probe.marks[-1] - probe.marks[0], counter.total, len(probe.marks) // 2


@pytest.mark.parametrize('sampler', [
    {}, {'solver': 'euler'}, {'solver': 'heun'}, {'s_churn': 1.0, 's_max': 50.0}],
    ids=['2ab', 'euler', 'heun', 'churn'])
def test_the_sampler_loop_makes_no_host_sync(sampler):
    net = _tiny_dit()
    inside3, total3, calls3 = _syncs_during_loop(net, 3, **sampler)
    inside9, total9, calls9 = _syncs_during_loop(net, 9, **sampler)
    assert calls9 > calls3 >= 2
    assert inside3 == inside9 == 0  # nothing in the DiT, the denoiser or the sampler steps
    assert total3 == total9 > 0  # the checks before and after the loop happen once per pass


def test_a_syncing_network_is_caught(make_net):
    def formula(x, timesteps, mask, text):  # negative control: one .item() per evaluation
        return x * timesteps.max().item()

    inside3, total3, _ = _syncs_during_loop(make_net(formula), 3)
    inside9, total9, _ = _syncs_during_loop(make_net(formula), 9)
    assert (inside3, inside9) == (3, 9) and total9 - total3 == 6


# --- GPU (skipped without CUDA) ------------------------------------------------------------------
def _cuda_case(dtype):
    net = _tiny_dit(dtype).cuda()
    inputs = tuple(value.cuda() for value in _net_inputs(dtype))
    return net, inputs


@pytest.mark.gpu
@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_cuda_graph_replay_equals_eager_on_cuda(dtype):
    net, inputs = _cuda_case(dtype)
    graphed = CUDAGraphNetwork(net)
    with torch.no_grad():
        for seed in (1, 2):
            inputs = tuple(value.cuda() for value in _net_inputs(dtype, seed=seed))
            torch.testing.assert_close(graphed(*inputs), net(*inputs), rtol=1e-5, atol=1e-5)
        wide = tuple(value.cuda() for value in _net_inputs(dtype, seed=3, batch=2))
        torch.testing.assert_close(graphed(*wide), net(*wide), rtol=1e-5, atol=1e-5)
    assert graphed.captures == 2


@pytest.mark.gpu
def test_cuda_graph_pass_equals_eager_pass_on_cuda():
    net = _tiny_dit(torch.bfloat16).cuda()
    clean, proprio, text = _pass_inputs()
    options = dict(proprio=proprio, seeds=195, sampler=SamplerConfig(num_steps=5))
    eager = generate(net, clean.cuda(), text.cuda(), LIBERO, **options)
    fast = generate(CUDAGraphNetwork(net), clean.cuda(), text.cuda(), LIBERO, **options)
    torch.testing.assert_close(fast.latent, eager.latent, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
def test_no_device_sync_inside_the_loop_on_cuda():
    net = _tiny_dit(torch.bfloat16).cuda()
    clean, proprio, text = _pass_inputs()
    calls = []

    class ErrorOnSync:
        """Turns CUDA's sync debug mode to 'error' from the first call to the end of the last."""

        dtype, device = net.dtype, net.device

        def __call__(self, *inputs):
            calls.append(1)
            torch.cuda.set_sync_debug_mode('error')
            output = net(*inputs)
            if len(calls) == 5:
                torch.cuda.set_sync_debug_mode('default')
            return output

    denoiser = ConditionedDenoiser(ErrorOnSync(), clean.cuda(), torch.tensor(
        [True] * 4 + [False] * 5, device='cuda'), text.cuda())
    x_init = torch.randn(1, *LIBERO.latent_shape, device='cuda') * 80
    try:
        sample(denoiser, x_init, num_steps=5)
    finally:
        torch.cuda.set_sync_debug_mode('default')
    assert len(calls) == 5


@pytest.mark.gpu
@pytest.mark.slow
def test_compile_and_cuda_graphs_on_cuda():
    net, inputs = _cuda_case(torch.bfloat16)
    fast = accelerate(net, AccelerationConfig(compile=True, cuda_graphs=True))
    with torch.no_grad():
        eager = net(*inputs)
        assert _relative_error(fast(*inputs), eager) < 2e-2
        reduce_overhead = compile_network(net, mode='reduce-overhead')
        assert _relative_error(reduce_overhead(*inputs), eager) < 2e-2
