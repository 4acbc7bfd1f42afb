"""(b) Per-frame vs per-token AdaLN-LoRA modulation in the DiT (same weights, same output).

diffusers expands the per-frame time embedding to every token and runs the three AdaLN-LoRA
MLPs of each block on every token; CosmosDiT runs them once per latent frame (as the reference)
and broadcasts. Expected saving from the FLOP count: ~8.4 % of a forward at 1764 tokens.
"""
from harness import ratio
import model_cost
import workloads

NAME = 'adaln'
TITLE = 'Per-frame vs per-token AdaLN modulation in the DiT forward'
ORDER = 20


def run(ctx):
    preset = '2b' if ctx.cuda else 'small'
    size = 112 if ctx.quick else 224  # LIBERO latents 14 x 14 (441 tokens) or 28 x 28 (1764)
    layout = workloads.layout('libero', size)
    per_frame = workloads.dit(preset, ctx, per_frame_adaln=True)
    per_token = workloads.dit(preset, ctx, per_frame_adaln=False)
    per_token.load_state_dict(per_frame.state_dict())
    inputs = workloads.dit_inputs(layout, ctx)
    medians = ctx.compare({'per_frame': lambda: per_frame(*inputs),
                           'per_token': lambda: per_token(*inputs)})
    difference = (per_frame(*inputs).float() - per_token(*inputs).float()).abs().max()
    _, frames, height, width = layout.latent_shape
    tokens = frames * height * width // 4
    flops = {mode: model_cost.dit_flops(preset, tokens, frames, per_frame_adaln=mode == 'frame')
             for mode in ('frame', 'token')}
    expected = 1 - flops['frame']['total'] / flops['token']['total']
    measured = 1 - medians['per_frame'] / medians['per_token']
    flops_2b = {mode: model_cost.dit_flops('2b', 1764, 9, per_frame_adaln=mode == 'frame')
                for mode in ('frame', 'token')}
    return {
        'preset': f'{preset} DiT, LIBERO {frames}x{height}x{width} latent ({tokens} tokens)',
        'headline': f'per-frame is {measured:.1%} faster (FLOP count predicts {expected:.1%}); '
                    f'outputs differ by {float(difference):.1e}',
        'medians_ms': medians,
        'ratios': {'per_token_over_per_frame': ratio(medians['per_token'],
                                                     medians['per_frame'], 3)},
        'saving_measured': round(measured, 4),
        'saving_expected_from_flops': round(expected, 4),
        'gflops_per_forward': {mode: round(value['total'] / 1e9, 2)
                               for mode, value in flops.items()},
        'tflops_2b_libero': {mode: round(value['total'] / 1e12, 3)
                             for mode, value in flops_2b.items()},
        'max_abs_difference': float(difference),
    }
