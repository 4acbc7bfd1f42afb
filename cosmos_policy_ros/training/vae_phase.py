"""The VAE phase: the 'tiny' Wan VAE trained as an autoencoder on the demonstrations' camera
images (foreground-weighted reconstruction plus a linear probe reading the disc positions from
the primary latent), then frozen (``train_vae``; the training package docstring)."""
import hashlib
import json
from pathlib import Path
import sys

import torch
from tqdm import tqdm

from cosmos_policy_ros.engine.checkpoint import convert_vae_state_dict
from cosmos_policy_ros.engine.synthetic_checkpoints import random_vae_state_dict
from cosmos_policy_ros.engine.training import position_probe_loss, vae_reconstruction_loss
from cosmos_policy_ros.engine.vae import CosmosVAE
from cosmos_policy_ros.layout import LATENT_CHANNELS, VAE_SPATIAL_FACTOR
from cosmos_policy_ros.sim.arm import BACKGROUND_RGB
from cosmos_policy_ros.sim.model import LAYOUT_CAMERAS
from cosmos_policy_ros.training.batches import vae_batch
from cosmos_policy_ros.training.optimization import (learning_rate, optimizer_step, smooth,
                                                     TrainingState)

VAE_STATE_FILE = 'vae_state.pt'
# The position probe's learning rate relative to --vae-lr.
PROBE_LR_FACTOR = 1.0


def build_vae(seed):
    """The 'tiny' Wan VAE at its seeded random initialization (frozen)."""
    vae = CosmosVAE('tiny')
    converted, _ = convert_vae_state_dict(random_vae_state_dict('tiny', seed=seed))
    vae.vae.load_state_dict(converted, strict=True)
    return vae.float().eval().requires_grad_(False)


def train_vae(vae, pixels, options, log=print, targets=None,
              layout_cameras=LAYOUT_CAMERAS):
    """Train `vae` in place as an autoencoder on `pixels` for options.vae_steps; then freeze it.

    pixels: (states, N, 3, S, S) uint8. Each step draws options.vae_batch_size states
    (vae_batch) and minimizes

        loss = vae_reconstruction_loss + options.vae_probe_weight * position_probe_loss

    with AdamW (cosine schedule of --vae-lr, gradient norm clipped to 1). The probe term (only
    with targets: (states, 4) disc positions, and a weight > 0) reads the normalized disc
    positions linearly from the primary camera's latent. Resumable: --work-dir/vae_state.pt
    every --save-every steps and at the end; with --resume a finished phase is loaded, not
    repeated. Returns the loss history.
    """
    work = Path(options.work_dir)
    key = hashlib.sha256(json.dumps(
        [options.seed, options.vae_steps, options.vae_lr, options.vae_batch_size,
         options.vae_foreground_weight, options.vae_probe_weight, list(pixels.shape),
         float(pixels[::97].float().mean())]).encode()).hexdigest()
    use_probe = targets is not None and options.vae_probe_weight > 0
    camera = layout_cameras.index('primary')
    torch.manual_seed(options.seed + 2)
    probe = torch.nn.Linear(LATENT_CHANNELS * (pixels.shape[-1] // VAE_SPATIAL_FACTOR) ** 2,
                            targets.shape[1] if targets is not None else 1)
    if use_probe:
        targets = (targets - targets.mean(0)) / targets.std(0).clamp_min(1e-6)
    parameters = list(vae.vae.parameters()) + (list(probe.parameters()) if use_probe else [])
    groups = [{'params': list(vae.vae.parameters()), 'scale': 1.0}]
    if use_probe:
        groups.append({'params': list(probe.parameters()), 'scale': PROBE_LR_FACTOR})
    optimizer = torch.optim.AdamW(groups, lr=options.vae_lr, weight_decay=0.0)
    state = TrainingState(work / VAE_STATE_FILE, key,
                          {'vae': vae.vae, 'probe': probe, 'optimizer': optimizer})
    step, history = state.load() if options.resume else (0, [])
    if step:
        log(f'[train] VAE resumed at step {step}')

    background = torch.tensor(BACKGROUND_RGB, dtype=torch.float32) / 127.5 - 1.0
    vae.vae.train().requires_grad_(True)
    smoothed = None
    with tqdm(total=options.vae_steps, initial=step, desc='cosmos-policy-train VAE', unit='step',
              file=sys.stderr, mininterval=2.0, disable=options.quiet) as bar:
        while step < options.vae_steps:
            for group in optimizer.param_groups:
                group['lr'] = group['scale'] * learning_rate(step, base=options.vae_lr,
                                                             steps=options.vae_steps)
            index = vae_batch(options.seed, step, len(pixels), options.vae_batch_size)
            loss, latents = vae_reconstruction_loss(
                vae, pixels[index], background=background,
                foreground_weight=options.vae_foreground_weight, return_latents=True)
            probe_loss = position_probe_loss(probe, latents[:, :, camera], targets[index]) \
                if use_probe else torch.zeros(())
            value = optimizer_step(optimizer, loss + options.vae_probe_weight * probe_loss,
                                   parameters)
            step += 1
            history.append(value)
            smoothed = smooth(smoothed, value)
            bar.update(1)
            bar.set_postfix(loss=f'{smoothed:.4f}', probe=f'{float(probe_loss.detach()):.3f}')
            if step % options.save_every == 0:
                state.save(step, history)
    state.save(step, history)
    vae.vae.eval().requires_grad_(False)
    vae.clear_prefix_cache()
    if history:
        last = smoothed if smoothed is not None else history[-1]
        log(f'[train] VAE trained {step} steps, loss {history[0]:.4f} -> {last:.4f}')
    return history
