"""Toy networks with the engine's network protocol (see cosmos_policy_ros.engine.denoiser),
and one tiny LIBERO-layout model in the released format and converted, shared by the tests."""
import dataclasses

import pytest
import torch

from cosmos_policy_ros.cli.convert import main as convert_main
from cosmos_policy_ros.engine.synthetic_checkpoints import write_synthetic_model
from cosmos_policy_ros.layout import LatentLayout

TINY_LIBERO = dataclasses.replace(LatentLayout.preset('libero'), image_size=32)


@pytest.fixture(scope='session')
def libero_layout():
    return TINY_LIBERO


@pytest.fixture(scope='session')
def libero_released(tmp_path_factory):
    """A released-format checkpoint of random tiny networks (read-only for the tests)."""
    out = tmp_path_factory.mktemp('released')
    write_synthetic_model(out, TINY_LIBERO, size='tiny', seed=4, dtype='fp32')
    return out


@pytest.fixture(scope='session')
def libero_model_dir(libero_released, tmp_path_factory):
    """`libero_released` converted to a model directory (read-only for the tests)."""
    out = tmp_path_factory.mktemp('models') / 'libero'
    assert convert_main(['--released', str(libero_released), '--out', str(out)]) == 0
    return out


class ToyNet:
    """net(x, timesteps, condition_mask, text_embedding) -> F with a fixed formula.

    `formula(x, timesteps, mask, text)` computes F in the network's dtype. Every call is
    recorded (inputs cloned) in `calls` when `record` is true.
    """

    def __init__(self, formula, dtype=torch.float32, record=False):
        self.formula = formula
        self.dtype = dtype
        self.device = torch.device('cpu')
        self.record = record
        self.calls = []

    def __call__(self, x, timesteps, condition_mask, text_embedding):
        if self.record:
            self.calls.append(dict(x=x.clone(), timesteps=timesteps.clone(),
                                   mask=condition_mask.clone(), text=text_embedding.clone()))
        return self.formula(x, timesteps, condition_mask, text_embedding)


def smooth_formula(x, timesteps, mask, text):
    """An elementwise, per-sample formula that uses every input (batch-size independent)."""
    # (B, T) -> (B, 1, T, 1, 1) and (B, L, C) -> (B, 1, 1, 1, 1)
    time = timesteps[:, None, :, None, None]
    words = text.mean(dim=(1, 2))[:, None, None, None, None]
    return torch.tanh(x) * 0.5 + time * 0.3 + words * 0.1 + mask * 0.05


def gaussian_velocity_formula(scale):
    """F of the optimal rectified-flow network for data ~ N(0, scale^2) in every element.

    With t = sigma / (1 + sigma) the network sees x_in = x / (1 + sigma); the optimal x0 is
    D = x * s^2 / (s^2 + sigma^2) and the matching output F = (x - (1 + sigma) D) / sigma.
    Computed in float64 from (x_in, t) only; 0 where t = 0 (conditioning frames).
    """
    def formula(x, timesteps, mask, text):
        t = timesteps.to(torch.float64)[:, None, :, None, None]  # (B, T) -> (B, 1, T, 1, 1)
        sigma = t / (1 - t)
        x_sigma = x.to(torch.float64) * (1 + sigma)
        x0 = x_sigma * scale ** 2 / (scale ** 2 + sigma ** 2)
        velocity = (x_sigma - (1 + sigma) * x0) / torch.where(t > 0, sigma, 1.0)
        return torch.where(t > 0, velocity, 0.0).to(x.dtype)
    return formula


@pytest.fixture
def make_net():
    """Factory: make_net(formula=smooth_formula, dtype=torch.float32, record=False)."""
    def factory(formula=smooth_formula, dtype=torch.float32, record=False):
        return ToyNet(formula, dtype=dtype, record=record)
    return factory


@pytest.fixture
def gaussian_formula():
    return gaussian_velocity_formula
