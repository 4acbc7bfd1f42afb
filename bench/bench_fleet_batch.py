"""(issue 25) The policy server's engine alone: several robots' observations in one batched pass.

CosmosPolicy.infer_batch of 1, 2, 4 and 8 simulated arms' observations (each its own scene,
joints, task and seed) with the shipped planar-reach model, interleaved; chunks per second
against batch 1, and each robot's chunk against its own single infer (the same request alone).
bench/fleet_sim.py measures the whole server on the ROS graph; this is the pass it batches.
"""
from harness import ratio
import numpy as np
import torch

NAME = 'fleet_batch'
TITLE = "Policy server engine: infer_batch of 1/2/4/8 robots' observations vs one at a time"
ORDER = 65
SIZES = (1, 2, 4, 8)


def requests(count):
    """`count` simulated arms' InferenceRequests: each arm its own seed, scene and task."""
    from cosmos_policy_ros.interface import InferenceRequest, Observation
    from cosmos_policy_ros.sim.arm import PlanarReachEnv

    out = []
    for arm in range(count):
        env = PlanarReachEnv()
        env.reset(100000 + arm)
        out.append(InferenceRequest(Observation(images=env.render(),
                                                proprio=env.joint_positions(),
                                                instruction=env.task, seed=1000 + 7 * arm)))
    return out


def measure(policy, compare, sizes=SIZES, repetitions=5):
    """{size: {'median_ms', 'chunks_per_s', 'throughput_over_batch1', ...}}; compare(variants,
    repetitions) times the variants interleaved (BenchContext.compare or a stand-in)."""
    batch = requests(max(sizes))
    singles = [policy.infer(request.observation) for request in batch]
    outputs = {}

    def variant(size):
        def call():
            outputs[size] = policy.infer_batch(batch[:size])
        return call
    medians = compare({f'batch_{size}': variant(size) for size in sizes}, repetitions)
    result = {}
    for size in sizes:
        median = medians[f'batch_{size}']
        chunks = outputs[size]
        result[str(size)] = {
            'median_ms': median, 'chunks_per_s': size / (median / 1e3),
            'max_relative_difference_to_single': max(
                float(np.abs(o.actions - s.actions).max() / np.abs(s.actions).max())
                for o, s in zip(chunks, singles)),
            'bit_identical_to_single': all(np.array_equal(o.actions, s.actions)
                                           for o, s in zip(chunks, singles))}
    base = result[str(sizes[0])]['chunks_per_s']
    for row in result.values():
        row['throughput_over_batch1'] = row['chunks_per_s'] / base
    return result


def run(ctx):
    from cosmos_policy_ros.engine.policy import load_policy
    from cosmos_policy_ros.sim.model import model_label, shipped_model_dir

    model = shipped_model_dir()
    if not (model / 'model.json').is_file():
        return {'status': 'skipped', 'reason': 'no shipped planar-reach model'}
    policy = load_policy(model, device=str(ctx.device), dtype='fp32' if not ctx.cuda else 'auto')
    sizes = SIZES[:3] if ctx.quick else SIZES
    rows = measure(policy, lambda variants, repetitions: ctx.compare(
        variants, repetitions=repetitions), sizes, max(2, ctx.repetitions))
    largest = str(sizes[-1])
    return {
        'preset': f'{model_label(model)} (5 steps + its planning pass), 2 x 32 px cameras, '
                  f'batch {"/".join(map(str, sizes))}',
        'headline': f'chunks/s at batch {largest} = '
                    f'{rows[largest]["throughput_over_batch1"]:.2f}x batch 1; each chunk within '
                    f'{max(r["max_relative_difference_to_single"] for r in rows.values()):.1e} '
                    f'of its single infer',
        'medians_ms': {f'batch_{size}': rows[size]['median_ms'] for size in rows},
        'ratios': {f'throughput_batch_{size}_over_1': ratio(rows[size]['chunks_per_s'],
                                                            rows['1']['chunks_per_s'])
                   for size in rows},
        'batches': rows,
        'notes': 'On the CPU the DiT rows are bit-identical at any batch size; the VAE conv3d '
                 'takes another kernel at batch 1 than at batch >= 2, hence ~1e-6.',
        'torch_threads': torch.get_num_threads(),
    }
