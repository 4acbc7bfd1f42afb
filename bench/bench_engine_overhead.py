"""(d) Engine overhead: a whole generate() pass with an identity network vs the network alone.

generate() with F = x costs everything of a pass except the network (noise from the seed,
proprio injection, preconditioning, the sampler steps, read-out); it is compared with
num_steps forwards of the DiT alone, and a pass with the DiT with the same forwards.
"""
from harness import ratio
import workloads

from cosmos_policy_ros.engine.generate import generate, starting_noise
from cosmos_policy_ros.engine.sampling import SamplerConfig

NAME = 'engine_overhead'
TITLE = 'generate() with an identity network vs the DiT forwards of a pass (5 and 10 steps)'
ORDER = 40
STEPS = (5, 10)


def run(ctx):
    preset = '2b' if ctx.cuda else 'tiny'
    layout = workloads.layout('libero', 224)  # the real 9 x 28 x 28 latent
    net = workloads.dit(preset, ctx)
    identity = workloads.IdentityNet(ctx.device, ctx.dtype)
    clean, proprio, text = workloads.pass_inputs(layout)
    clean, text = clean.to(ctx.device), text.to(ctx.device)
    inputs = workloads.dit_inputs(layout, ctx)

    def run_pass(network, steps):
        return lambda: generate(network, clean, text, layout, proprio=proprio, seeds=195,
                                sampler=SamplerConfig(num_steps=steps))

    variants = {'dit_forward': lambda: net(*inputs),
                'noise_from_seed': lambda: starting_noise(
                    (1, *layout.latent_shape), SamplerConfig(), seeds=195)}
    for steps in STEPS:
        variants[f'identity_pass_{steps}'] = run_pass(identity, steps)
        variants[f'dit_pass_{steps}'] = run_pass(net, steps)
    medians = ctx.compare(variants, repetitions=2 * ctx.repetitions)
    forward = medians['dit_forward']
    fractions, measured = {}, {}
    for steps in STEPS:
        network_cost = steps * forward
        fractions[steps] = round(medians[f'identity_pass_{steps}'] / network_cost, 4)
        measured[steps] = round(medians[f'dit_pass_{steps}'] / network_cost - 1, 4)
    return {
        'preset': f'{preset} DiT, LIBERO 9x28x28 latent',
        'headline': f'engine overhead {fractions[5]:.1%} (5 steps) / {fractions[10]:.1%} '
                    f'(10 steps) of the {preset} network time '
                    f'({medians["identity_pass_5"]:.1f} / {medians["identity_pass_10"]:.1f} ms '
                    f'vs {forward:.1f} ms per forward)',
        'medians_ms': medians,
        'overhead_fraction_identity_pass': fractions,
        'overhead_fraction_dit_pass_minus_forwards': measured,
        'ratios': {f'dit_pass_{steps}_over_{steps}_forwards':
                   ratio(medians[f'dit_pass_{steps}'], steps * forward, 3) for steps in STEPS},
        'notes': 'The tiny DiT costs far less than the 2B one, so on the CPU these fractions '
                 'are an upper bound for the 2B network.',
    }
