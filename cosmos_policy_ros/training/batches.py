"""One training step's batch, a function of (seed, step) only: which samples, in which mode
(policy or world model), at which noise level and noise (``batch_draws``), and their clean
latents with the layout's injected proprio, actions and value (``clean_batch``)."""
import torch

from cosmos_policy_ros.engine.generate import condition_frames
from cosmos_policy_ros.engine.injection import inject_actions, inject_proprio, inject_value
from cosmos_policy_ros.engine.training import sample_sigma, video_noise_multiplier

POLICY_SHARE = 0.75  # share of policy samples among the samples whose actions are imitated
# Sample modes: indices into clean_batch's condition flags.
POLICY, WORLD_MODEL = range(2)


def clean_batch(samples, latents, index, modes, q_target=False):
    """x0 (B, 16, T, h, w) and condition frames (B, T) of samples `index`. The value frame
    holds the value at the future state (the reference's target), or with `q_target` the
    return from the current state (the planning network's Q(s, a))."""
    layout = samples.layout
    n = layout.num_cameras
    current, future = samples.current[index], samples.future[index]
    batch = len(index)
    x0 = torch.zeros((batch, *layout.latent_shape))
    x0[:, :, :2 + n] = latents[current]
    x0[:, :, 4 + n:4 + 2 * n] = latents[future][:, :, 2:]
    x0 = inject_proprio(x0, layout, samples.proprio[current])
    x0 = inject_actions(x0, layout, samples.actions[index])
    x0 = inject_proprio(x0, layout, samples.proprio[future], future=True)
    x0 = inject_value(x0, layout, (samples.value_now if q_target else samples.value)[index])
    flags = torch.tensor([condition_frames(layout, m) for m in ('policy', 'world_model')])
    return x0, flags[modes]


def batch_draws(seed, step, samples, batch_size, layout, unimitated_policy_share=0.0,
                planning=False):
    """(indices, modes, sigma, eps) of one step: a function of (seed, step) only.

    A sample whose actions are imitated (`Samples.imitate`) is a policy sample with
    probability POLICY_SHARE, any other with probability unimitated_policy_share; the rest are
    world-model samples. With `planning` (the planning network) every sample is a
    world-model sample.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    index = torch.randint(len(samples), (batch_size,), generator=generator)
    draw = torch.rand(batch_size, generator=generator)
    if planning:
        modes = torch.full((batch_size,), WORLD_MODEL)
    else:
        policy = torch.where(samples.imitate[index], draw < POLICY_SHARE,
                             draw < unimitated_policy_share)
        modes = torch.where(policy, POLICY, WORLD_MODEL)
    sigma = sample_sigma(batch_size, generator,
                         multiplier=video_noise_multiplier(layout.num_frames))
    eps = torch.randn((batch_size, *layout.latent_shape), generator=generator)
    return index, modes, sigma, eps


def vae_batch(seed, step, num_states, batch_size):
    """State indices of VAE step `step`: a function of (seed, step) only."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step + 7_000_000_000)
    return torch.randint(num_states, (batch_size,), generator=generator)
