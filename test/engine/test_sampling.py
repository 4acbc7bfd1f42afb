"""The sampler against the reference's schedule and step accounting and closed-form oracles."""
import math

import pytest
import torch

from cosmos_policy_ros.engine.sampling import (num_evaluations, sample, SamplerConfig,
                                               sigma_schedule)


class Recorder:
    """An x0_fn that records (x, sigma) of every call and returns `fn(x, sigma)`."""

    def __init__(self, fn=lambda x, sigma: torch.zeros_like(x)):
        self.fn = fn
        self.calls = []

    def __call__(self, x, sigma):
        self.calls.append((x.clone(), sigma.clone()))
        return self.fn(x, sigma)

    @property
    def sigmas(self):
        return [float(sigma[0]) for _, sigma in self.calls]


def _gaussian_denoiser(scale):
    """Optimal x0 for data ~ N(0, scale^2): D(x, sigma) = x s^2 / (s^2 + sigma^2)."""
    def x0_fn(x, sigma):
        sigma = sigma.reshape(-1, *([1] * (x.ndim - 1)))  # (B,) -> (B, 1, ...)
        return x * scale ** 2 / (scale ** 2 + sigma ** 2)
    return x0_fn


def _noise(batch=3, size=200, dtype=torch.float64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, size, generator=generator, dtype=dtype) * 80.0


# --- schedule and step accounting ----------------------------------------------------------------
def test_schedule_values_match_the_reference():
    # Reference section 4 (sigma_min 4, sigma_max 80, rho 7).
    torch.testing.assert_close(sigma_schedule(5), torch.tensor(
        [80, 42.29, 20.97, 9.62, 4], dtype=torch.float64), atol=0.005, rtol=0)
    torch.testing.assert_close(sigma_schedule(10), torch.tensor(
        [80, 60.69, 45.53, 33.73, 24.66, 17.77, 12.59, 8.77, 5.99, 4], dtype=torch.float64),
        atol=0.005, rtol=0)
    assert sigma_schedule(5).dtype == torch.float64
    # One x0 prediction at sigma_max for 1 and 2 steps.
    assert sigma_schedule(1).tolist() == sigma_schedule(2).tolist() == [80.0]
    # Heun: (num_steps - 1) // 2 intervals; 5 steps -> 80, 20.97, 4 (the 4-interval midpoint).
    torch.testing.assert_close(sigma_schedule(5, solver='heun'),
                               torch.tensor([80, 20.97, 4], dtype=torch.float64), atol=0.005,
                               rtol=0)


# Network evaluations for num_steps = 1..10 (the order-2 solver drops a leftover evaluation).
EVALUATIONS = {
    '2ab': [1, 1, 3, 4, 5, 6, 7, 8, 9, 10],
    '1euler': [1, 1, 3, 4, 5, 6, 7, 8, 9, 10],
    'euler': [1, 1, 3, 4, 5, 6, 7, 8, 9, 10],
    '2heun_edm': [1, 1, 3, 3, 5, 5, 7, 7, 9, 9],
    'heun': [1, 1, 3, 3, 5, 5, 7, 7, 9, 9],
}


@pytest.mark.parametrize('solver', sorted(EVALUATIONS))
def test_number_of_network_evaluations(solver):
    for num_steps, expected in enumerate(EVALUATIONS[solver], start=1):
        x0_fn = Recorder()
        sample(x0_fn, _noise(batch=2, size=4), num_steps=num_steps, solver=solver)
        assert len(x0_fn.calls) == expected, (solver, num_steps)
        assert num_evaluations(num_steps, solver) == expected
        assert SamplerConfig(num_steps=num_steps, solver=solver).num_evaluations == expected


def test_sigmas_seen_by_the_network():
    x0_fn = Recorder()
    sample(x0_fn, _noise(), num_steps=5)
    # 4 solver evaluations on the schedule, then the clean one at sigma_min.
    assert x0_fn.sigmas == pytest.approx([80, 42.29, 20.97, 9.62, 4], abs=0.005)
    for steps in (1, 2):
        x0_fn = Recorder()
        sample(x0_fn, _noise(), num_steps=steps)
        assert x0_fn.sigmas == [80.0]
    x0_fn = Recorder()
    sample(x0_fn, _noise(), num_steps=5, solver='heun')
    # Step 80 -> 20.97: at 80 and at 20.97; step 20.97 -> 4: at 20.97 and 4; clean at 4.
    assert x0_fn.sigmas == pytest.approx([80, 20.97, 20.97, 4, 4], abs=0.005)


def test_the_one_step_result_is_the_x0_prediction_at_sigma_max():
    x_init = _noise()
    out = sample(lambda x, sigma: x * 0.25 + sigma[:, None], x_init, num_steps=2)
    torch.testing.assert_close(out, x_init * 0.25 + 80.0, rtol=0, atol=0)


# --- dtypes --------------------------------------------------------------------------------------
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_x0_fn_sees_the_input_dtype_and_the_result_has_it(dtype):
    x0_fn = Recorder(lambda x, sigma: torch.tanh(x))
    out = sample(x0_fn, _noise(dtype=dtype), num_steps=4)
    assert out.dtype == dtype
    assert all(x.dtype == dtype and sigma.dtype == dtype for x, sigma in x0_fn.calls)
    assert all(sigma.shape == (3,) for _, sigma in x0_fn.calls)


# --- closed-form oracles -------------------------------------------------------------------------
SCALE = 2.0  # data ~ N(0, 2^2): its probability-flow ODE is not solved exactly by any step


def _exact_result(x_init, sigma_min=4.0, sigma_max=80.0):
    """D(x(sigma_min), sigma_min) with the exact ODE solution x(sigma) = x_T r(sigma)/r(max)."""
    ratio = math.sqrt(SCALE ** 2 + sigma_min ** 2) / math.sqrt(SCALE ** 2 + sigma_max ** 2)
    state = x_init * ratio
    return state * SCALE ** 2 / (SCALE ** 2 + sigma_min ** 2)


def _relative_error(solver, intervals, x_init):
    order = 2 if solver == 'heun' else 1
    out = sample(_gaussian_denoiser(SCALE), x_init, num_steps=intervals * order + 1,
                 solver=solver)
    exact = _exact_result(x_init)
    return float((out - exact).abs().max() / exact.abs().max())


@pytest.mark.parametrize('solver, rate, tolerance', [
    ('euler', 1.0, 1.4e-3),  # first order
    ('2ab', 2.0, 2.5e-5),  # second order (the first Euler step does not spoil it)
    ('heun', 2.0, 5e-6),  # second order
])
def test_gaussian_oracle_convergence(solver, rate, tolerance):
    x_init = _noise()
    errors = [_relative_error(solver, n, x_init) for n in (16, 32, 64, 128)]
    rates = [math.log2(a / b) for a, b in zip(errors, errors[1:])]
    assert all(abs(r - rate) < 0.15 for r in rates), (errors, rates)
    assert errors[-1] < tolerance, errors


def test_constant_x0_is_integrated_exactly():
    # dx/dsigma = (x - c) / sigma has x(t) = c + (t / s)(x(s) - c): every solver is exact.
    constant = 3.0
    x_init = _noise()
    for solver, steps in (('euler', 6), ('2ab', 6), ('heun', 7)):
        x0_fn = Recorder(lambda x, sigma: torch.full_like(x, constant))
        sample(x0_fn, x_init, num_steps=steps, solver=solver)
        final_state = x0_fn.calls[-1][0]  # what the clean evaluation at sigma_min saw
        torch.testing.assert_close(final_state, constant + (4.0 / 80.0) * (x_init - constant),
                                   rtol=1e-12, atol=1e-12)


def _sigma(value):
    return torch.full((3,), value, dtype=torch.float64)


def _nonlinear(x, sigma):
    return 0.3 * torch.tanh(x / sigma[:, None]) + 0.01 * x


def test_first_2ab_step_is_the_ddim_euler_step():
    x_init = _noise()
    x0_fn = Recorder(_nonlinear)
    sample(x0_fn, x_init, num_steps=4)
    s, t = 80.0, float(sigma_schedule(4)[1])
    expected = (t / s) * x_init + (1 - t / s) * _nonlinear(x_init, _sigma(s))
    torch.testing.assert_close(x0_fn.calls[1][0], expected, rtol=1e-13, atol=1e-12)


def test_second_2ab_step_is_the_res_adams_bashforth_formula():
    x0_fn = Recorder(_nonlinear)
    sample(x0_fn, _noise(), num_steps=4)
    sigmas = sigma_schedule(4).tolist()
    (x_prev, _), (x_s, _), (x_t, _) = x0_fn.calls[:3]
    x0_prev = _nonlinear(x_prev, _sigma(sigmas[0]))
    x0_s = _nonlinear(x_s, _sigma(sigmas[1]))
    s_prev, s, t = sigmas[:3]
    h = math.log(s / t)
    c2 = math.log(s / s_prev) / h
    phi1 = (math.exp(-h) - 1) / -h
    phi2 = (phi1 - 1) / -h
    b2 = phi2 / c2
    b1 = phi1 - b2
    expected = (t / s) * x_s + h * (b1 * x0_s + b2 * x0_prev)
    torch.testing.assert_close(x_t, expected, rtol=1e-12, atol=1e-11)


def test_heun_step_averages_both_ends():
    x_init = _noise()
    x0_fn = Recorder(_nonlinear)
    sample(x0_fn, x_init, num_steps=3, solver='heun')  # one step 80 -> 4, then clean
    s, t = 80.0, 4.0
    d_s = _nonlinear(x_init, _sigma(s))
    x_euler = (t / s) * x_init + (1 - t / s) * d_s
    torch.testing.assert_close(x0_fn.calls[1][0], x_euler, rtol=1e-13, atol=1e-12)
    d_t = _nonlinear(x_euler, _sigma(t))
    expected = (t / s) * x_init + (1 - t / s) * (d_s + d_t) / 2
    torch.testing.assert_close(x0_fn.calls[2][0], expected, rtol=1e-13, atol=1e-12)


# --- churn ---------------------------------------------------------------------------------------
def test_churn_raises_sigma_by_eta_and_adds_generator_noise():
    x_init = _noise()
    x0_fn = Recorder(_nonlinear)
    sample(x0_fn, x_init, num_steps=5, s_churn=0.4, generator=torch.Generator().manual_seed(3))
    eta = 0.4 / 5  # s_churn / (intervals + 1) = 0.08, below the cap sqrt(1.2) - 1 = 0.0954
    assert x0_fn.sigmas[:4] == pytest.approx(
        [s * (1 + eta) for s in sigma_schedule(5).tolist()[:4]], rel=1e-12)
    assert x0_fn.sigmas[4] == pytest.approx(4.0)  # the clean evaluation is not churned
    noise = torch.randn(x_init.shape, generator=torch.Generator().manual_seed(3),
                        dtype=torch.float64)
    expected = x_init + math.sqrt(86.4 ** 2 - 80.0 ** 2) * noise
    torch.testing.assert_close(x0_fn.calls[0][0], expected, rtol=1e-12, atol=1e-10)


def test_churn_cap_and_window():
    x0_fn = Recorder()
    sample(x0_fn, _noise(), num_steps=5, s_churn=40.0, s_max=50.0,
           generator=torch.Generator().manual_seed(0))
    cap = math.sqrt(1.2) - 1
    schedule = sigma_schedule(5).tolist()
    # 80 is outside (s_min, s_max) = (0, 50): not churned; the others are, by the capped eta.
    assert x0_fn.sigmas[:4] == pytest.approx(
        [80.0] + [s * (1 + cap) for s in schedule[1:4]], rel=1e-12)


def test_churn_is_reproducible_and_no_churn_leaves_the_generator_alone():
    def run(seed):
        return sample(_nonlinear, _noise(), num_steps=5, s_churn=1.0,
                      generator=torch.Generator().manual_seed(seed))
    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))
    generator = torch.Generator().manual_seed(7)
    state = generator.get_state()
    deterministic = sample(_nonlinear, _noise(), num_steps=5, generator=generator)
    assert torch.equal(generator.get_state(), state)
    assert torch.equal(deterministic, sample(_nonlinear, _noise(), num_steps=5))


# --- configuration and bad input -----------------------------------------------------------------
def test_config_defaults_are_the_released_ones():
    config = SamplerConfig()
    assert (config.num_steps, config.solver, config.sigma_min, config.sigma_max, config.rho) == (
        5, '2ab', 4.0, 80.0, 7.0)
    torch.testing.assert_close(config.schedule(), sigma_schedule(5))
    x0_fn = Recorder()
    sample(x0_fn, _noise(), **SamplerConfig(num_steps=3, solver='heun').options())
    assert len(x0_fn.calls) == 3


@pytest.mark.parametrize('kwargs, message', [
    (dict(num_steps=0), r'`num_steps` must be an integer >= 1\. Got 0'),
    (dict(num_steps=2.5), r'`num_steps` must be an integer >= 1\. Got 2\.5'),
    (dict(num_steps=True), r'`num_steps` must be an integer'),
    (dict(solver='dpm'), r"unknown `solver` 'dpm'"),
    (dict(sigma_min=0.0), r'`sigma_min` must be a finite number > 0'),
    (dict(sigma_min=80.0), r'`sigma_max` must be greater than `sigma_min`'),
    (dict(sigma_max=math.inf), r'`sigma_max` must be a finite number'),
    (dict(rho=-1.0), r'`rho` must be a finite number > 0'),
    (dict(s_churn=-1.0), r'`s_churn` must be a finite number >= 0'),
    (dict(s_min=math.nan), r'`s_min` must be a number'),
])
def test_bad_options(kwargs, message):
    options = dict(num_steps=5)
    options.update(kwargs)
    with pytest.raises(ValueError, match=message):
        sample(Recorder(), _noise(), **options)
    with pytest.raises(ValueError, match=message):
        SamplerConfig(**options)


def test_bad_tensors_and_functions():
    with pytest.raises(ValueError, match=r'`x_init` must be a floating'):
        sample(Recorder(), torch.zeros(2, 3, dtype=torch.int64), num_steps=3)
    bad = _noise()
    bad[1, 5] = math.nan
    with pytest.raises(ValueError, match=r'`x_init` has non-finite values'):
        sample(Recorder(), bad, num_steps=3)
    with pytest.raises(ValueError, match=r'x0_fn must return a tensor of shape \(3, 200\)'):
        sample(lambda x, sigma: x[:, :10], _noise(), num_steps=3)
    with pytest.raises(ValueError, match=r'`generator`.*required when s_churn > 0'):
        sample(Recorder(), _noise(), num_steps=3, s_churn=1.0)
