"""(f1) Best-of-N: N candidates in one batched policy pass vs N sequential passes.

Same seeds (one stream per candidate), so the batched candidates equal the sequential ones
(up to batched-matmul rounding, reported). The reference runs one candidate per GPU instead.
"""
from harness import ratio
import numpy as np
import torch
import workloads

from cosmos_policy_ros.engine.generate import generate
from cosmos_policy_ros.engine.sampling import SamplerConfig

NAME = 'best_of_n'
TITLE = 'Best-of-N candidates: one batched policy pass vs N sequential passes'
ORDER = 60


def run(ctx):
    preset = '2b' if ctx.cuda else 'tiny'
    candidates = 4 if ctx.quick else 8
    layout = workloads.layout('libero', 224)
    net = workloads.dit(preset, ctx)
    clean, proprio, text = workloads.pass_inputs(layout)
    clean, text = clean.to(ctx.device), text.to(ctx.device)
    seeds = list(range(195, 195 + candidates))
    sampler = SamplerConfig(num_steps=5)

    def batched():
        return generate(net, clean.expand(candidates, -1, -1, -1, -1), text, layout,
                        proprio=proprio.expand(candidates, -1), seeds=seeds, sampler=sampler)

    def sequential():
        return [generate(net, clean, text, layout, proprio=proprio, seeds=[seed],
                         sampler=sampler) for seed in seeds]

    medians = ctx.compare({'batched': batched, 'sequential': sequential},
                          repetitions=max(2, ctx.repetitions - 2))
    together = batched().actions_normalized
    apart = np.concatenate([result.actions_normalized for result in sequential()])
    speedup = ratio(medians['sequential'], medians['batched'])
    return {
        'preset': f'{preset} DiT, LIBERO 9x28x28, N = {candidates}, 5 steps',
        'headline': f'batched {speedup}x sequential for N = {candidates} '
                    f'({medians["sequential"]:.0f} -> {medians["batched"]:.0f} ms)',
        'medians_ms': medians,
        'ratios': {'sequential_over_batched': speedup},
        'candidates': candidates,
        'max_abs_action_difference': float(np.abs(together - apart).max()),
        'notes': 'On a CPU the forward is compute-bound, so batching gains little; on a GPU '
                 'batch 1 leaves most of the device idle.' if not ctx.cuda else '',
        'torch_threads': torch.get_num_threads(),
    }
