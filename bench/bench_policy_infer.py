"""(f2) End-to-end CosmosPolicy.infer: where the time goes, and best-of-N through the facade.

A synthetic model directory (released formats, converted with cosmos-policy-convert's code) is
loaded like a real one. Measured in one run: the share of each stage of infer() (images,
VAE encode, diffusion, read-out), the network's share of the diffusion stage (the rest is the
engine: preconditioning, sampler, noise), and infer(num_candidates=N) batched vs N single
infers with the candidates' seeds (same chunks).
"""
import tempfile

from harness import ratio
import numpy as np

from cosmos_policy_ros.engine.conversion import convert, find_released_files
from cosmos_policy_ros.engine.policy import load_policy
from cosmos_policy_ros.engine.synthetic_checkpoints import write_synthetic_model
from cosmos_policy_ros.interface import Observation
from cosmos_policy_ros.layout import LatentLayout

NAME = 'policy_infer'
TITLE = 'End-to-end CosmosPolicy.infer: stage shares, engine vs network, best-of-N batched'
ORDER = 90
STAGES = ('preprocess', 'encode', 'denoise', 'extract')


def _policy(ctx, directory, size, image_size):
    layout = LatentLayout.from_dict({'preset': 'libero', 'image_size': image_size})
    released = f'{directory}/released'
    write_synthetic_model(released, layout, size=size, seed=0, dtype='fp32')
    files = find_released_files(released)
    convert(checkpoint=files['checkpoint'], tokenizer=files['tokenizer'],
            statistics=files['statistics'], t5_embeddings=files['t5_embeddings'],
            out=f'{directory}/model', layout=layout, dit_preset=size, vae_preset='tiny',
            log=lambda *_: None)
    return load_policy(f'{directory}/model', device=str(ctx.device), dtype=ctx.dtype_name)


def run(ctx):
    size = 'tiny' if ctx.quick else 'small'
    image_size = 64 if ctx.quick else 128
    candidates = 4
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as directory:
        policy = _policy(ctx, directory, size, image_size)
        observation = Observation(
            images={camera: rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
                    for camera in policy.layout.cameras},
            proprio=rng.uniform(-0.5, 0.5, policy.layout.proprio_dim),
            instruction=policy.text_embeddings.instructions[0], seed=195)

        def single(seed=195):
            return policy.infer(Observation(observation.images, observation.proprio,
                                            observation.instruction, seed=seed))

        def batched():
            return policy.infer(observation, num_candidates=candidates)

        def sequential():
            return [single(195 + j) for j in range(candidates)]

        for _ in range(ctx.warmup):
            single()
        outputs = [single() for _ in range(ctx.repetitions)]
        medians = ctx.compare({'batched': batched, 'sequential': sequential},
                              repetitions=max(2, ctx.repetitions - 2))
        best = batched()
        alone = single(195 + best.selected_candidate)
    stages = {stage: float(np.median([out.timings[stage] for out in outputs])) * 1e3
              for stage in STAGES}
    total = float(np.median([out.timings['total'] for out in outputs])) * 1e3
    network = float(np.median([sum(out.evaluation_times) for out in outputs])) * 1e3
    shares = {stage: round(value / total, 3) for stage, value in stages.items()}
    speedup = ratio(medians['sequential'], medians['batched'])
    return {
        'preset': f'{size} DiT + tiny VAE, LIBERO layout at {image_size} px, 2 cameras '
                  f'480x640, 5 steps, N = {candidates}',
        'headline': f'network {network / total:.0%} of infer, diffusion engine overhead '
                    f'{(stages["denoise"] - network) / stages["denoise"]:.0%} of the '
                    f'diffusion stage; best-of-{candidates} batched {speedup}x sequential',
        'medians_ms': {'total': total, 'network': network, **stages, **medians},
        'ratios': {'sequential_over_batched': speedup,
                   'network_share_of_total': round(network / total, 3)},
        'stage_shares': shares,
        'selected_equals_single_run': bool(np.allclose(best.actions, alone.actions,
                                                       rtol=1e-5, atol=1e-5)),
        'notes': 'The tiny VAE and small DiT stand in for the 2B DiT and the Wan2.1 VAE: on '
                 'real weights the network dominates (one 2B evaluation is ~6.9 TFLOP).',
    }
