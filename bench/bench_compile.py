"""(c) torch.compile (and, on CUDA, CUDA-graph replay) vs the eager DiT forward.

Compile time is reported separately from the steady state: the first call with an empty
inductor cache (a fresh cache directory: what a robot pays at its first start-up), then again
with the cache filled (in-memory caches cleared: close to a later start-up), then the median
forward of each variant, interleaved. --quick compiles the tiny preset at a tiny shape with the
default cache directory (which may already hold it).
"""
import tempfile

from harness import ratio
import torch
import workloads

from cosmos_policy_ros.engine.acceleration import (
    accelerate, AccelerationConfig, compile_network, CUDAGraphNetwork, graph_breaks)

NAME = 'compile'
TITLE = 'torch.compile (and CUDA graphs on CUDA) vs eager DiT forward, compile time apart'
ORDER = 30


def _fresh_inductor_cache(directory):
    """Context manager: inductor's caches in `directory`, in-memory caches cleared around it."""
    from torch._inductor.runtime.cache_dir_utils import temporary_cache_dir
    return temporary_cache_dir(directory)


def _clear_in_memory_caches():
    from torch._inductor.utils import clear_caches
    torch._dynamo.reset()
    clear_caches()


def run(ctx):
    if ctx.quick:
        preset, size = 'tiny', 32
    else:
        preset, size = ('2b' if ctx.cuda else 'small'), 224
    layout = workloads.layout('libero', size)
    net = workloads.dit(preset, ctx)
    inputs = workloads.dit_inputs(layout, ctx)
    report = graph_breaks(net, *inputs)
    compile_seconds = {}
    if ctx.quick:
        compiled = compile_network(net)
        compile_seconds['first_call_default_cache'], _ = ctx.once(lambda: compiled(*inputs))
    else:
        with tempfile.TemporaryDirectory() as directory, _fresh_inductor_cache(directory):
            compiled = compile_network(net)
            compile_seconds['first_call_empty_cache'], _ = ctx.once(lambda: compiled(*inputs))
            _clear_in_memory_caches()
            compiled = compile_network(net)
            compile_seconds['first_call_filled_cache'], _ = ctx.once(lambda: compiled(*inputs))
    variants = {'eager': lambda: net(*inputs), 'compiled': lambda: compiled(*inputs)}
    if ctx.cuda:
        graphed = CUDAGraphNetwork(net)
        both = accelerate(net, AccelerationConfig(compile=True, cuda_graphs=True))
        compile_seconds['compiled_cuda_graphs_first_call'], _ = ctx.once(lambda: both(*inputs))
        variants.update({'cuda_graphs': lambda: graphed(*inputs),
                         'compiled_cuda_graphs': lambda: both(*inputs)})
    medians = ctx.compare(variants)
    difference = (compiled(*inputs).float() - net(*inputs).float()).abs().max()
    scale = net(*inputs).float().abs().max()
    _, frames, height, width = layout.latent_shape
    speedups = {name: ratio(medians['eager'], value) for name, value in medians.items()
                if name != 'eager'}
    first = next(iter(compile_seconds.values()))
    return {
        'preset': f'{preset} DiT, LIBERO {frames}x{height}x{width} latent',
        'headline': f'compiled forward {speedups["compiled"]}x eager '
                    f'({medians["eager"]:.1f} -> {medians["compiled"]:.1f} ms); '
                    f'first call (compile) {first:.0f} s; {report.break_count} graph breaks',
        'medians_ms': medians,
        'ratios': {f'eager_over_{name}': value for name, value in speedups.items()},
        'compile_seconds': {name: round(value, 1) for name, value in compile_seconds.items()},
        'graph_count': report.graph_count,
        'graph_breaks': report.break_count,
        'graph_break_reasons': list(report.reasons),
        'max_abs_difference': float(difference),
        'relative_difference': float(difference / scale),
    }
