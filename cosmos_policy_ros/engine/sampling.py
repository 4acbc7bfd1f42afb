"""The Cosmos Policy sampler: Karras sigmas, RES / Euler / Heun steps, a final clean x0.

Reproduces the reference ``CosmosPolicySampler`` (reference section 4) for any x0 denoiser
``x0_fn(x, sigma) -> x0`` with x a batch and sigma a per-sample (B,) tensor:

* Schedule: Karras, ``sigma_i = (sigma_max^(1/rho) + i/n (sigma_min^(1/rho) -
  sigma_max^(1/rho)))^rho`` for i = 0..n, float64, descending from sigma_max to sigma_min.
* ``num_steps`` counts network evaluations, including the final clean evaluation: the solver
  gets ``num_steps - 1`` evaluations and an order-k solver runs ``n = (num_steps - 1) // k``
  steps of k evaluations over a schedule of n + 1 points; leftover evaluations are not used
  (Heun with 4 steps makes 3 evaluations). Then x0_fn is evaluated once more at sigma_min and
  that x0 prediction is the sample.
* ``num_steps`` 1 and 2 both make a single x0 prediction at sigma_max: the reference subtracts
  its clean evaluation from 2 before it tests for the one-step case. (For Heun, the reference
  builds a 0-interval schedule there and evaluates at sigma = NaN; here it is sigma_max.)
* Solvers, with the reference's names: ``2ab`` (default; RES second-order Adams-Bashforth in
  log-sigma, one evaluation per step, the first step Euler), ``1euler`` (alias ``euler``) and
  ``2heun_edm`` (alias ``heun``: an Euler step with the mean of the x0 predictions at both ends).
* Churn as in EDM and the reference: ``eta = min(s_churn / (n + 1), sqrt(1.2) - 1)``; when
  ``s_min < sigma < s_max`` the state gets ``sqrt(sigma_hat^2 - sigma^2) * s_noise`` times
  standard normal noise from ``generator`` and the step starts from ``sigma_hat = (1 + eta)
  sigma``. Off by default (s_churn = 0: deterministic).
* Precision: the state is float64; x0_fn sees x and sigma in the dtype of ``x_init`` and the
  result comes back in that dtype.
* Inpainting (``known``, training-free, RePaint-style; docs/stitching.md): given a mask and
  clean target values, every state handed to x0_fn (also after churn, and the final clean
  evaluation's) has its masked elements replaced by ``target + sigma * eps``, with eps the
  starting noise ``x_init / sigma_max`` (so no extra random numbers), and the returned sample
  holds ``target`` there. Without ``known`` nothing changes, bit for bit.

The options are validated in one place, when a ``SamplerConfig`` is made: ``sample``,
``sigma_schedule`` and ``num_evaluations`` (keyword options, for direct use) make one;
``run_sampler`` and the config's methods, what the engine calls, trust the config they get.
"""
from dataclasses import dataclass
import math
import numbers

import torch

# Solver name -> network evaluations per step.
SOLVERS = {'2ab': 1, '1euler': 1, '2heun_edm': 2}
ALIASES = {'euler': '1euler', 'heun': '2heun_edm'}


@dataclass(frozen=True)
class SamplerConfig:
    """Sampler options in one validated place (the arguments of `sample` minus the tensors).

    Defaults are the released inference settings: 5 evaluations, RES 2ab, sigma 80 -> 4.
    Validated when made (ValueError naming the option); a config is trusted from then on.
    """

    num_steps: int = 5
    solver: str = '2ab'
    sigma_min: float = 4.0
    sigma_max: float = 80.0
    rho: float = 7.0
    s_churn: float = 0.0
    s_min: float = 0.0
    s_max: float = math.inf
    s_noise: float = 1.0

    def __post_init__(self):
        resolve_solver(self.solver)
        _check_options(self.num_steps, self.sigma_min, self.sigma_max, self.rho, self.s_churn,
                       self.s_min, self.s_max, self.s_noise)

    def options(self):
        """The keyword arguments of `sample` (and, minus the churn, of `sigma_schedule`)."""
        return dict(num_steps=self.num_steps, sigma_min=self.sigma_min,
                    sigma_max=self.sigma_max, rho=self.rho, solver=self.solver,
                    s_churn=self.s_churn, s_min=self.s_min, s_max=self.s_max,
                    s_noise=self.s_noise)

    @property
    def solver_name(self):
        """The canonical solver name ('2ab', '1euler' or '2heun_edm')."""
        return ALIASES.get(self.solver, self.solver)

    def schedule(self):
        """The float64 sigmas the sampler steps through (see `sigma_schedule`)."""
        if self.num_steps <= 2:
            return torch.tensor([self.sigma_max], dtype=torch.float64)
        intervals = (self.num_steps - 1) // SOLVERS[self.solver_name]
        index = torch.arange(intervals + 1, dtype=torch.float64)
        start, end = self.sigma_max ** (1 / self.rho), self.sigma_min ** (1 / self.rho)
        return (start + index / intervals * (end - start)) ** self.rho

    @property
    def num_evaluations(self):
        """How many times the sampler calls x0_fn with this config."""
        if self.num_steps <= 2:
            return 1
        order = SOLVERS[self.solver_name]
        return (self.num_steps - 1) // order * order + 1


def resolve_solver(solver):
    """Canonical solver name ('2ab', '1euler' or '2heun_edm') for a name or an alias."""
    name = ALIASES.get(solver, solver)
    if name not in SOLVERS:
        raise ValueError(f'unknown `solver` {solver!r}; choose one of '
                         f'{sorted(SOLVERS) + sorted(ALIASES)}.')
    return name


def sigma_schedule(num_steps, *, sigma_min=4.0, sigma_max=80.0, rho=7.0, solver='2ab'):
    """The float64 sigma points (n + 1,) the sampler steps through, descending.

    n = (num_steps - 1) // order intervals; sigmas[-1] = sigma_min is also where the final
    clean evaluation happens. For num_steps 1 and 2 it is just (sigma_max,), the one point of
    the single x0 prediction.
    """
    return SamplerConfig(num_steps=num_steps, solver=solver, sigma_min=sigma_min,
                         sigma_max=sigma_max, rho=rho).schedule()


def num_evaluations(num_steps, solver='2ab'):
    """How many times `sample` calls x0_fn for `num_steps` and `solver`."""
    return SamplerConfig(num_steps=num_steps, solver=solver).num_evaluations


def sample(x0_fn, x_init, *, num_steps, sigma_min=4.0, sigma_max=80.0, rho=7.0, solver='2ab',
           s_churn=0.0, s_min=0.0, s_max=math.inf, s_noise=1.0, generator=None, known=None):
    """Run the sampler from x_init (noise already scaled by sigma_max) and return the final x0.

    x0_fn(x, sigma) -> x0: x (B, ...) and sigma (B,) in x_init's dtype; returns (B, ...).
    x_init: (B, ...) floating tensor. generator: torch.Generator for the churn noise (needed
    only when s_churn > 0). known: optional (mask, target): a bool mask and clean values
    broadcastable to x_init, for inpainting (module docstring). Returns (B, ...) in x_init's
    dtype. See the module docstring.
    """
    sampler = SamplerConfig(num_steps=num_steps, solver=solver, sigma_min=sigma_min,
                            sigma_max=sigma_max, rho=rho, s_churn=s_churn, s_min=s_min,
                            s_max=s_max, s_noise=s_noise)
    _check_state(x_init)
    return run_sampler(x0_fn, x_init, sampler, generator=generator, known=known)


@torch.no_grad()
def run_sampler(x0_fn, x_init, sampler, *, generator=None, known=None):
    """`sample` with its options in a SamplerConfig (validated when it was made).

    x_init: a floating (B, ...) tensor with finite values (not checked here). The rest as in
    `sample`.
    """
    name = sampler.solver_name
    s_churn, s_min, s_max = sampler.s_churn, sampler.s_min, sampler.s_max
    constrain = None if known is None else _inpainting(known, x_init, sampler.sigma_max)
    schedule = sampler.schedule()
    levels = schedule.tolist()  # host copy for the churn window test: no device sync per step
    sigmas = schedule.to(x_init.device)
    in_dtype = x_init.dtype
    ones = torch.ones(x_init.shape[0], dtype=torch.float64, device=x_init.device)

    def denoise(x, sigma):
        if constrain is not None:
            x = constrain(x, sigma)
        x0 = x0_fn(x.to(in_dtype), (sigma * ones).to(in_dtype))
        if not isinstance(x0, torch.Tensor) or x0.shape != x.shape:
            raise ValueError(f'x0_fn must return a tensor of shape {tuple(x.shape)}, got '
                             f'{getattr(x0, "shape", type(x0).__name__)}.')
        return x0.to(torch.float64)

    # One evaluation in all (num_steps 1 or 2): the x0 prediction at sigma_max.
    if len(sigmas) == 1:
        return _finish(denoise(x_init.to(torch.float64), sigmas[0]), constrain).to(in_dtype)
    eta = min(s_churn / len(sigmas), math.sqrt(1.2) - 1)  # len(sigmas) = intervals + 1
    if eta > 0 and generator is None:
        raise ValueError('`generator` (a torch.Generator) is required when s_churn > 0.')
    x = x_init.to(torch.float64)
    history = None  # (x0, sigma) of the previous step, for 2ab
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        # Increase the noise temporarily (churn), inside (s_min, s_max) only.
        if eta > 0 and s_min < levels[i] < s_max:
            sigma_hat = sigma + eta * sigma
            noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
            x = x + (sigma_hat ** 2 - sigma ** 2).sqrt() * sampler.s_noise * noise
            sigma = sigma_hat
        if constrain is not None:  # inpainting: the known elements at this sigma
            x = constrain(x, sigma)
        # Denoise at sigma.
        x0 = denoise(x, sigma)
        # Heun: denoise again at the end of the Euler step and average the two predictions.
        if name == '2heun_edm':
            x0 = (x0 + denoise(euler_step(x, sigma, sigma_next, x0), sigma_next)) / 2
        # Step to sigma_next: Adams-Bashforth with the previous x0 (2ab), else Euler.
        if name == '2ab' and history is not None:
            x_next = ab2_step(x, sigma, sigma_next, x0, *history)
        else:
            x_next = euler_step(x, sigma, sigma_next, x0)
        history = (x0, sigma)
        x = x_next
    # Clean evaluation at sigma_min: its x0 prediction is the sample.
    return _finish(denoise(x, sigmas[-1]), constrain).to(in_dtype)


def _inpainting(known, x_init, sigma_max):
    """constrain(x, sigma) for `known` = (mask, target): the masked elements of x set to
    target + sigma * eps (eps = x_init / sigma_max); constrain.mask / .target for the end."""
    if not isinstance(known, tuple) or len(known) != 2:
        raise ValueError('`known` must be a (mask, target) tuple of tensors.')
    mask, target = known
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise ValueError(f'the `known` mask must be a bool tensor, got '
                         f'{getattr(mask, "dtype", type(mask).__name__)}.')
    if not isinstance(target, torch.Tensor) or not target.is_floating_point():
        raise ValueError('the `known` target must be a floating tensor.')
    try:
        mask = torch.broadcast_to(mask.to(x_init.device), x_init.shape)
        target = torch.broadcast_to(target.to(device=x_init.device, dtype=torch.float64),
                                    x_init.shape)
    except RuntimeError:
        raise ValueError(f'the `known` mask {tuple(mask.shape)} and target '
                         f'{tuple(target.shape)} must broadcast to the state '
                         f'{tuple(x_init.shape)}.') from None
    if not bool(torch.isfinite(torch.where(mask, target, 0.0)).all()):
        raise ValueError('the `known` target has non-finite values where the mask is set.')
    eps = x_init.to(torch.float64) / sigma_max

    def constrain(x, sigma):
        return torch.where(mask, target + sigma * eps, x)

    constrain.mask, constrain.target = mask, target
    return constrain


def _finish(x0, constrain):
    """The sample: x0, with the known targets on the masked elements when inpainting."""
    if constrain is None:
        return x0
    return torch.where(constrain.mask, constrain.target, x0)


def euler_step(x, sigma, sigma_next, x0):
    """Euler (DDIM-like) step of the probability-flow ODE in x0 form, from sigma to sigma_next.

    x_next = (sigma_next / sigma) * x + (1 - sigma_next / sigma) * x0, computed as the
    reference does.
    """
    coef_x0 = (sigma - sigma_next) / sigma
    coef_x = sigma_next / sigma
    return coef_x0 * x0 + coef_x * x


def ab2_step(x, sigma, sigma_next, x0, x0_prev, sigma_prev):
    """RES second-order Adams-Bashforth step in log-sigma with the previous (x0, sigma).

    h = ln(sigma / sigma_next), c2 = ln(sigma / sigma_prev) / h (negative),
    phi1(z) = (e^z - 1) / z, phi2(z) = (phi1(z) - 1) / z, b2 = phi2(-h) / c2,
    b1 = phi1(-h) - b2, x_next = e^-h x + h (b1 x0 + b2 x0_prev).
    """
    log_s, log_t, log_prev = -torch.log(sigma), -torch.log(sigma_next), -torch.log(sigma_prev)
    h = log_t - log_s
    c2 = (log_prev - log_s) / h
    phi1 = torch.expm1(-h) / -h
    phi2 = (phi1 - 1.0) / -h
    b1 = torch.nan_to_num(phi1 - 1.0 / c2 * phi2, nan=0.0)
    b2 = torch.nan_to_num(1.0 / c2 * phi2, nan=0.0)
    return torch.exp(-h) * x + h * (b1 * x0 + b2 * x0_prev)


def _check_options(num_steps, sigma_min=4.0, sigma_max=80.0, rho=7.0, s_churn=0.0, s_min=0.0,
                   s_max=math.inf, s_noise=1.0):
    if (isinstance(num_steps, bool) or not isinstance(num_steps, numbers.Integral)
            or num_steps < 1):
        raise ValueError(f'`num_steps` must be an integer >= 1. Got {num_steps!r}.')
    for field, value in (('sigma_min', sigma_min), ('sigma_max', sigma_max), ('rho', rho)):
        if not _real(value) or not math.isfinite(value) or value <= 0:
            raise ValueError(f'`{field}` must be a finite number > 0. Got {value!r}.')
    if not sigma_max > sigma_min:
        raise ValueError(f'`sigma_max` must be greater than `sigma_min`. Got sigma_max = '
                         f'{sigma_max!r}, sigma_min = {sigma_min!r}.')
    for field, value in (('s_churn', s_churn), ('s_noise', s_noise)):
        if not _real(value) or not math.isfinite(value) or value < 0:
            raise ValueError(f'`{field}` must be a finite number >= 0. Got {value!r}.')
    for field, value in (('s_min', s_min), ('s_max', s_max)):
        if not _real(value) or math.isnan(value):
            raise ValueError(f'`{field}` must be a number. Got {value!r}.')


def _check_state(x_init):
    if not isinstance(x_init, torch.Tensor) or not x_init.is_floating_point() or x_init.ndim < 1:
        raise ValueError(f'`x_init` must be a floating (B, ...) tensor, got '
                         f'{getattr(x_init, "dtype", type(x_init).__name__)}.')
    if not bool(torch.isfinite(x_init).all()):
        raise ValueError('`x_init` has non-finite values.')


def _real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
