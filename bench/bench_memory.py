"""(g) Activation memory: measured live-tensor peaks vs the formulas, and the 2B estimates.

Measures the peak bytes of the tensors one forward allocates (live_memory.LiveTensorPeak;
weights and inputs excluded) for the DiT at LIBERO size and for the VAE conditioning encode,
compares them with model_cost's formulas, and records memory_estimate's GPU estimates of the
2B model (bf16) with and without planning.
"""
from live_memory import LiveTensorPeak
import memory_estimate
import model_cost
import torch
import workloads

from cosmos_policy_ros.engine.vae import CosmosVAE

NAME = 'memory'
TITLE = 'Activation memory: measured peaks vs formulas; 2B GPU memory estimates'
ORDER = 70


def _peak(fn):
    fn()  # fill the shape caches (RoPE tables, padding mask, VAE prefix) first
    with LiveTensorPeak() as tracker:
        result = fn()
    del result
    return tracker.peak


def run(ctx):
    preset = '2b' if ctx.cuda else 'small'
    size = 112 if ctx.quick else 224
    layout = workloads.layout('libero', size)
    net = workloads.dit(preset, ctx)
    _, frames, height, width = layout.latent_shape
    tokens = frames * height * width // 4
    width_d = net.config.hidden_size
    dit = {}
    for batch in (1, 2):
        inputs = workloads.dit_inputs(layout, ctx, batch=batch)
        measured = _peak(lambda: net(*inputs))
        formula = model_cost.dit_activation_bytes(batch, tokens, width_d, ctx.dtype.itemsize)
        dit[f'batch_{batch}'] = {'measured_mb': round(measured / 1e6, 3),
                                 'formula_mb': round(formula / 1e6, 3),
                                 'measured_over_formula': round(measured / formula, 4)}
    vae_size = 32 if ctx.quick else 64
    torch.manual_seed(0)
    vae = CosmosVAE('wan2.1').eval().to(device=ctx.device, dtype=ctx.dtype)
    vae_layout = workloads.layout('robocasa', vae_size)  # 3 cameras
    images = torch.randint(0, 256, (1, vae_layout.num_cameras, 3, vae_size, vae_size),
                           dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    measured = _peak(lambda: vae.encode_conditioning(images))
    formula = model_cost.vae_conditioning_bytes(vae_layout.num_cameras, vae_size,
                                                vae.config.base_dim, ctx.dtype.itemsize)
    vae_check = {'measured_mb': round(measured / 1e6, 3), 'formula_mb': round(formula / 1e6, 3),
                 'measured_over_formula': round(measured / formula, 4)}
    estimates, reference_style = {}, {}
    for name in ('libero', 'robocasa', 'aloha'):
        for batch, planning in ((1, False), (8, False), (8, True)):
            parts = memory_estimate.estimate(name, batch, planning=planning)
            key = f'{name}_batch{batch}' + ('_planning' if planning else '')
            estimates[key] = round(parts['total'], 2)
        reference_style[name] = round(memory_estimate.estimate(
            name, 1, pipeline='reference')['total'], 2)
    reference_style['planning_one_candidate_per_gpu'] = round(memory_estimate.estimate(
        'aloha', 1, planning=True, pipeline='reference')['total'], 2)
    worst = max(abs(entry['measured_over_formula'] - 1) for entry in dit.values())
    return {
        'preset': f'{preset} DiT at LIBERO {frames}x{height}x{width} ({tokens} tokens); '
                  f'Wan2.1 VAE at {vae_size} px, 3 cameras',
        'headline': f'DiT activation peak = formula within {worst:.1%} '
                    f'({dit["batch_1"]["measured_mb"]} MB at batch 1), VAE within '
                    f'{abs(vae_check["measured_over_formula"] - 1):.1%}; 2B bf16 estimate '
                    f'{estimates["libero_batch1"]} GB LIBERO, {estimates["robocasa_batch1"]} GB '
                    f'RoboCasa, {estimates["aloha_batch8_planning"]} GB ALOHA planning N=8 '
                    f'on one GPU',
        'dit_activation_peak': dit,
        'vae_conditioning_peak': vae_check,
        'estimates_2b_bf16_gb': estimates,
        'estimates_reference_pipeline_gb': reference_style,
        'reference_published_gb': {'libero': 6.8, 'robocasa': 8.9, 'aloha': 6.0,
                                   'planning_per_gpu_one_candidate': 10.0},
    }
