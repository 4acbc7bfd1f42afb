"""Initial noise and seeds, drawn exactly as the reference draws them (reference section 4).

The reference's starting state is ``x_T = sigma_max * z`` with
``z = numpy.random.RandomState(seed).standard_normal((B, 16, T, H, W))`` cast to float32: the
same seed gives the same noise on every machine and at every control step. With B > 1 and one
seed, sample i is the i-th slice of that one stream. Best-of-N planning instead wants one seed
per candidate, so a sequence of seeds gives sample i the stream of ``RandomState(seeds[i])`` of
shape (1, 16, T, H, W): a batch with seeds s..s+N-1 equals N single runs.

The optional variance scale (off in every released setting) multiplies sigma_max by U(1, 3)
and sigma_min by U(0.1, 1), both drawn, in that order, from ``torch.manual_seed(seed)``; here
from a private generator seeded the same way, so the caller's global torch RNG is untouched.
"""
import numbers

import numpy as np
import torch

from cosmos_policy_ros.interface import SEED_MODULUS

MAX_SEED = SEED_MODULUS - 1  # numpy.random.RandomState accepts seeds in [0, 2**32 - 1]


def check_seeds(seeds, batch):
    """Validate `seeds`: one int (one stream for the batch) or a sequence of `batch` ints.

    Returns an int, or a tuple of ints (one per sample).
    """
    if _is_seed(seeds):
        return int(seeds)
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, '__len__'):
        raise ValueError(f'`seeds` must be an integer in [0, {MAX_SEED}] or a sequence of '
                         f'them, one per sample. Got {seeds!r}.')
    seeds = tuple(seeds)
    if len(seeds) != batch:
        raise ValueError(f'`seeds` must give one seed per sample: {batch} expected, got '
                         f'{len(seeds)}.')
    for index, seed in enumerate(seeds):
        if not _is_seed(seed):
            raise ValueError(f'`seeds`[{index}] must be an integer in [0, {MAX_SEED}]. Got '
                             f'{seed!r}.')
    return tuple(int(seed) for seed in seeds)


def standard_noise(seeds, shape):
    """Standard normal float32 noise of `shape` = (B, ...) as a CPU tensor.

    seeds: an int (one RandomState stream of the whole shape) or B ints (sample i from
    RandomState(seeds[i]) with shape (1, ...)).
    """
    shape = tuple(int(size) for size in shape)
    seeds = check_seeds(seeds, shape[0])
    if isinstance(seeds, int):
        array = np.random.RandomState(seeds).standard_normal(shape).astype(np.float32)
    else:
        array = np.concatenate([
            np.random.RandomState(seed).standard_normal((1, *shape[1:])).astype(np.float32)
            for seed in seeds])  # B x (1, ...) -> (B, ...)
    return torch.from_numpy(array)


def initial_noise(seeds, shape, *, sigma_max=80.0, sigma_max_scale=1.0):
    """The sampler's starting state x_T (B, ...) float32 on the CPU: z * sigma_max * scale.

    The multiplications are float32 and in the reference's order.
    """
    return standard_noise(seeds, shape) * sigma_max * sigma_max_scale


def variance_scales(seed):
    """(sigma_max_scale, sigma_min_scale) of the reference's `use_variance_scale` for `seed`.

    The same numbers as ``torch.manual_seed(seed)`` followed by ``torch.rand(1).item() * 2 +
    1`` and ``torch.rand(1).item() * 0.9 + 0.1``, without touching the global torch RNG.
    """
    if not _is_seed(seed):
        raise ValueError(f'`seed` must be an integer in [0, {MAX_SEED}]. Got {seed!r}.')
    generator = torch.Generator(device='cpu').manual_seed(int(seed))
    sigma_max_scale = torch.rand(1, generator=generator).item() * 2.0 + 1.0  # U(1, 3)
    sigma_min_scale = torch.rand(1, generator=generator).item() * 0.9 + 0.1  # U(0.1, 1)
    return sigma_max_scale, sigma_min_scale


def _is_seed(value):
    return (isinstance(value, numbers.Integral) and not isinstance(value, bool)
            and 0 <= value <= MAX_SEED)
