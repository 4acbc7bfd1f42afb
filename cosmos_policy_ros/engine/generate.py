"""One diffusion pass of Cosmos Policy: condition a latent sequence, sample, read the results.

``generate`` ties the engine together for one batch (reference sections 1, 4 and 7):

1. Start from the clean latent sequence (B, 16, T, S, S): image latents on the camera frames
   (from the VAE), anything (e.g. zeros) elsewhere, or the latent a previous pass generated.
2. Inject the normalized proprio into the current-proprio frame (bf16-rounded, like the
   reference) and, in world-model mode, optionally a given normalized action chunk.
3. Mark the conditioning frames of the mode:
   * ``policy``: the first ``layout.num_conditioning_frames`` (blank, proprio, cameras);
     generates the action chunk, future proprio, future images and the value in one pass.
   * ``world_model``: those plus the action frame; generates future state and value.
   * ``value``: every frame but the last (the value). With ``mask_current_state_action``
     (the ALOHA planning model's V(s')), the current proprio, current cameras and the action
     are generated instead, so the value depends only on the future state; the blank frame
     stays conditioning.
4. Draw the initial noise from the seed(s), run the sampler with the x0 denoiser around the
   network, and read the action chunk, future proprio and value back out of the result.

Inpainting (policy mode, ``known_actions``): the first k steps of the chunk are known (the
committed prefix of the executing chunk, normalized). Their elements in the action frame, every
tiled copy including a partial tail copy, are held at the known values noised to the current
sigma at every sampler step (engine.sampling ``known``), so the rest of the chunk is generated
consistent with them; the result's first k steps are the known ones. docs/stitching.md.

For best-of-N planning: pass N samples (the same clean latent repeated) with seeds
``seed..seed+N-1`` to the policy pass; then feed ``result.latent`` back as the clean latent of
the world-model and value passes (with the proprio re-injected, as the reference does), and
compare ``result.value`` per sample.
"""
import dataclasses
from dataclasses import dataclass
from typing import Optional, Tuple, Union

import numpy as np
import torch

from cosmos_policy_ros.engine.denoiser import ConditionedDenoiser
from cosmos_policy_ros.engine.injection import (check_latent, extract_actions, extract_proprio,
                                                extract_value, inject_actions, inject_proprio,
                                                tile_frame)
from cosmos_policy_ros.engine.noise import check_seeds, initial_noise, variance_scales
from cosmos_policy_ros.engine.sampling import run_sampler, SamplerConfig

MODES = ('policy', 'world_model', 'value')


class NonFiniteOutput(ValueError):
    """The network produced NaN or infinite values (bad weights, or inputs out of range)."""


@dataclass(frozen=True)
class GenerateResult:
    """What one pass produced, per sample (B = batch).

    latent: (B, 16, T, S, S) float32 generated sequence on the network's device; its
        conditioning frames are `clean_latent`'s.
    clean_latent: (B, 16, T, S, S) float32 conditioning latent used (with injected proprio).
    condition_frames: (T,) bool per latent frame, True where it was conditioning.
    actions_normalized: (B, K, d) float32 action chunk in [-1, 1] units.
    actions: (B, K, d) float64 chunk in robot units (the reference's numbers: the float32
        chunk unnormalized with the float64 statistics), or None without NormStats.
    value: (B,) float32 value in [0, 1].
    future_proprio_normalized: (B, D) float32; future_proprio: (B, D) float64 in robot units
        or None without NormStats.
    mode, seeds (an int or one per sample; None when the noise was given), sigma_min and
    sigma_max actually used (after any variance scale), num_evaluations (network calls).
    conditioned_steps: the chunk's first steps that were inpainted from `known_actions` (0:
        none, the plain sampler).
    """

    latent: torch.Tensor
    clean_latent: torch.Tensor
    condition_frames: Tuple[bool, ...]
    actions_normalized: np.ndarray
    actions: Optional[np.ndarray]
    value: np.ndarray
    future_proprio_normalized: np.ndarray
    future_proprio: Optional[np.ndarray]
    mode: str
    seeds: Union[int, Tuple[int, ...], None]
    sigma_min: float
    sigma_max: float
    num_evaluations: int
    conditioned_steps: int = 0


def condition_frames(layout, mode, *, mask_current_state_action=False):
    """Which latent frames are conditioning in `mode`: a (T,) tuple of bools.

    mask_current_state_action is only meaningful (and only accepted) in 'value' mode.
    """
    if mode not in MODES:
        raise ValueError(f'unknown `mode` {mode!r}; choose one of {list(MODES)}.')
    if mask_current_state_action and mode != 'value':
        raise ValueError('`mask_current_state_action` applies to the value mode only; got '
                         f'mode {mode!r}.')
    frames = [False] * layout.num_frames
    count = {'policy': layout.num_conditioning_frames,
             'world_model': layout.num_conditioning_frames + 1,  # + the action frame
             'value': layout.num_frames - 1}[mode]  # all but the value frame
    frames[:count] = [True] * count
    if mask_current_state_action:
        masked = [layout.proprio_index, layout.action_index]
        masked += [layout.camera_index(camera) for camera in layout.cameras]
        for index in masked:
            frames[index] = False
    return tuple(frames)


def generate(net, clean_latent, text_embedding, layout, *, proprio, mode='policy',
             actions=None, seeds=None, noise=None, sampler=SamplerConfig(), stats=None,
             mask_current_state_action=False, variance_scale=False,
             round_proprio_to_bf16=True, generator=None, known_actions=None):
    """Run one conditioned diffusion pass for a batch and read out its predictions.

    net: network callable (protocol in cosmos_policy_ros.engine.denoiser).
    clean_latent: (B, 16, T, S, S) clean latent sequence of `layout`.
    text_embedding: (B, L, 1024) or (1, L, 1024) T5 embedding tensor.
    layout: the LatentLayout.
    proprio: (B, D) normalized proprio (tensor or array) to inject into the current-proprio
        frame, or None to keep that frame of `clean_latent` as it is.
    mode: 'policy', 'world_model' or 'value' (see the module docstring).
    actions: optional (B, K, d) normalized action chunk written into the action frame (modes
        where that frame is conditioning); None keeps the clean latent's action frame.
    seeds: an int (one numpy stream for the batch, as the reference) or B ints (one stream per
        sample); or give noise: (B, 16, T, S, S) starting state already scaled by sigma_max.
    sampler: SamplerConfig (steps, solver, sigmas, churn).
    stats: NormStats to unnormalize actions and future proprio (optional).
    mask_current_state_action: value mode only, see `condition_frames`.
    variance_scale: the reference's `use_variance_scale` (needs a single int seed).
    round_proprio_to_bf16: round the injected proprio to bf16 (the reference does).
    generator: torch.Generator for churn noise (only with sampler.s_churn > 0).
    known_actions: policy mode only: (B, k, d) normalized first k <= K steps of the chunk to
        inpaint (module docstring); None or k = 0 runs the plain sampler.

    Returns a GenerateResult. Every argument is checked once, here or where it is first used
    (the network by the ConditionedDenoiser; the sampler options when the SamplerConfig was
    made).
    """
    flags = condition_frames(layout, mode, mask_current_state_action=mask_current_state_action)
    if not isinstance(sampler, SamplerConfig):
        raise TypeError(f'`sampler` must be a SamplerConfig, got {type(sampler).__name__}.')
    if stats is not None:
        stats.check_layout(layout)
    if actions is not None and not flags[layout.action_index]:
        raise ValueError(f'`actions` were given but the action frame is generated in mode '
                         f'{mode!r}' + (' with mask_current_state_action' if mode == 'value'
                                        else '') + '; they would be ignored.')
    # Condition: the clean latent with the proprio (and any given action chunk) injected.
    latent = condition_latent(clean_latent, layout, proprio=proprio, actions=actions,
                              round_proprio_to_bf16=round_proprio_to_bf16)
    # The x0 denoiser around the network (it holds the latent on the network's device).
    denoiser = ConditionedDenoiser(net, latent, flags, text_embedding)
    known = None if known_actions is None else known_action_mask(latent, layout, known_actions,
                                                                 flags)
    # Starting noise and the sigma range (variance-scaled or not).
    x_init, sigma_min, sigma_max = starting_noise(
        (latent.shape[0], *layout.latent_shape), sampler, seeds=seeds, noise=noise,
        variance_scale=variance_scale)
    if variance_scale:
        sampler = dataclasses.replace(sampler, sigma_min=sigma_min, sigma_max=sigma_max)
    generated = run_sampler(denoiser, x_init.to(net.device), sampler, generator=generator,
                            known=None if known is None else known[:2])
    if not bool(torch.isfinite(generated).all()):
        bad = sorted({int(i) for i in torch.nonzero(~torch.isfinite(generated))[:, 2]})
        raise NonFiniteOutput(f'the network produced non-finite values (latent frames {bad}).')
    # Read the predictions back out.
    actions_normalized = _numpy(extract_actions(generated, layout))
    future_normalized = _numpy(extract_proprio(generated, layout, future=True))
    return GenerateResult(
        latent=generated,
        clean_latent=denoiser.clean_latent,
        condition_frames=flags,
        actions_normalized=actions_normalized,
        actions=None if stats is None else stats.unnormalize_actions(actions_normalized),
        value=_numpy(extract_value(generated, layout)),
        future_proprio_normalized=future_normalized,
        future_proprio=None if stats is None else stats.unnormalize_proprio(future_normalized),
        mode=mode,
        seeds=None if noise is not None else check_seeds(seeds, latent.shape[0]),
        sigma_min=float(sigma_min),
        sigma_max=float(sigma_max),
        num_evaluations=sampler.num_evaluations,
        conditioned_steps=0 if known is None else known[2],
    )


def known_action_mask(clean_latent, layout, known_actions, flags):
    """(mask, target, k) over the latent for inpainting the first k chunk steps, or None.

    mask: (B, 16, T, S, S) bool, True on every element of the action frame that holds one of
    the first k steps (all tiled copies, as `inject_actions` writes them); target: the known
    normalized values there (zeros elsewhere). None when k = 0.
    """
    if flags[layout.action_index]:
        raise ValueError('`known_actions` inpaint the generated action frame; it is '
                         'conditioning in this mode.')
    known = torch.as_tensor(np.asarray(known_actions, dtype=np.float64)) if not isinstance(
        known_actions, torch.Tensor) else known_actions.to(torch.float64)
    batch, size, dim = clean_latent.shape[0], layout.chunk_size, layout.action_dim
    if known.ndim != 3 or known.shape[0] != batch or known.shape[2] != dim or not (
            0 <= known.shape[1] <= size):
        raise ValueError(f'`known_actions` must have shape ({batch}, k, {dim}) with 0 <= k <= '
                         f'{size}; got {tuple(known.shape)}.')
    if not bool(torch.isfinite(known).all()):
        raise ValueError('`known_actions` has non-finite values.')
    steps = known.shape[1]
    if steps == 0:
        return None
    chunk = torch.zeros(batch, size, dim, dtype=torch.float64)
    chunk[:, :steps] = known.cpu()
    indicator = torch.zeros(batch, size, dim, dtype=torch.float64)
    indicator[:, :steps] = 1.0
    target = torch.zeros(clean_latent.shape, dtype=torch.float64)
    mask = torch.zeros(clean_latent.shape, dtype=torch.bool)
    frame_shape = (clean_latent.shape[1], *clean_latent.shape[3:])
    # (B, K, d) -> (B, K*d) timestep-major, tiled over the frame as inject_actions does.
    target[:, :, layout.action_index] = tile_frame(chunk.reshape(batch, -1), frame_shape)
    mask[:, :, layout.action_index] = tile_frame(indicator.reshape(batch, -1), frame_shape) > 0
    return mask, target, steps


def condition_latent(clean_latent, layout, *, proprio=None, actions=None,
                     round_proprio_to_bf16=True):
    """The float32 conditioning latent: `clean_latent` with proprio and actions injected.

    clean_latent: (B, 16, T, S, S); proprio: (B, D) normalized, injected bf16-rounded by
    default; actions: (B, K, d) normalized. None leaves the frame as it is. Returns a new
    (B, 16, T, S, S) float32 tensor on clean_latent's device.
    """
    check_latent(clean_latent, layout, 'clean_latent')
    if not bool(torch.isfinite(clean_latent).all()):
        raise ValueError('`clean_latent` has non-finite values.')
    latent = clean_latent.to(torch.float32)
    if proprio is not None:
        latent = inject_proprio(latent, layout, proprio, round_to_bf16=round_proprio_to_bf16)
    if actions is not None:
        latent = inject_actions(latent, layout, actions)
    return latent


def starting_noise(shape, sampler, *, seeds=None, noise=None, variance_scale=False):
    """(x_init, sigma_min, sigma_max): the sampler's starting state and sigma range.

    shape: (B, 16, T, S, S). Exactly one of seeds (an int, or B ints; see
    cosmos_policy_ros.engine.noise) and noise (a given state already scaled by sigma_max).
    variance_scale: scale sigma_max by U(1, 3) and sigma_min by U(0.1, 1) from the (single)
    seed, as the reference's use_variance_scale. x_init is float32 on the CPU for seeds.
    """
    sigma_min, sigma_max = sampler.sigma_min, sampler.sigma_max
    if (seeds is None) == (noise is None):
        raise ValueError('give exactly one of `seeds` and `noise`.')
    if noise is not None:
        if variance_scale:
            raise ValueError('`variance_scale` draws from the seed; it needs `seeds`, not '
                             '`noise`.')
        if not isinstance(noise, torch.Tensor) or tuple(noise.shape) != tuple(shape):
            raise ValueError(f'`noise` must be a tensor of shape {tuple(shape)}, got '
                             f'{tuple(getattr(noise, "shape", ()))}.')
        if not bool(torch.isfinite(noise).all()):
            raise ValueError('`noise` has non-finite values.')
        return noise.to(torch.float32), sigma_min, sigma_max
    seeds = check_seeds(seeds, shape[0])
    max_scale = min_scale = 1.0
    if variance_scale:
        if not isinstance(seeds, int):
            raise ValueError('`variance_scale` scales the sigmas of the whole batch from one '
                             'seed; with per-sample seeds run the samples separately.')
        max_scale, min_scale = variance_scales(seeds)
    x_init = initial_noise(seeds, shape, sigma_max=sigma_max, sigma_max_scale=max_scale)
    return x_init, sigma_min * min_scale, sigma_max * max_scale


def _numpy(tensor):
    return tensor.detach().to(device='cpu', dtype=torch.float32).numpy()
