"""Initial noise and the variance scale, drawn as the reference draws them."""
import numpy as np
import pytest
import torch

from cosmos_policy_ros.engine.noise import (check_seeds, initial_noise, standard_noise,
                                            variance_scales)

SHAPE = (3, 16, 9, 4, 4)


def test_single_seed_is_the_reference_numpy_stream():
    # Reference: RandomState(seed).standard_normal(shape), float32, times sigma_max.
    noise = initial_noise(195, SHAPE)
    expected = np.random.RandomState(195).standard_normal(SHAPE).astype(np.float32) * 80.0
    assert noise.dtype == torch.float32 and noise.shape == SHAPE
    np.testing.assert_array_equal(noise.numpy(), expected)


def test_batch_with_one_seed_is_one_stream():
    batch = standard_noise(7, SHAPE)
    single = standard_noise(7, (1, *SHAPE[1:]))
    # Sample 0 equals a batch-1 run, sample 1 continues the stream: it does not.
    assert torch.equal(batch[:1], single)
    assert not torch.equal(batch[1:2], single)
    stream = np.random.RandomState(7).standard_normal(int(np.prod(SHAPE))).astype(np.float32)
    np.testing.assert_array_equal(batch.numpy().ravel(), stream)


def test_per_sample_seeds_equal_single_runs():
    batch = standard_noise([10, 11, 12], SHAPE)
    for index, seed in enumerate((10, 11, 12)):
        assert torch.equal(batch[index:index + 1], standard_noise(seed, (1, *SHAPE[1:])))
    assert not torch.equal(batch[0], batch[1])


def test_sigma_max_and_scale_multiply_in_float32():
    z = standard_noise(3, SHAPE)
    noise = initial_noise(3, SHAPE, sigma_max=80.0, sigma_max_scale=1.7)
    assert torch.equal(noise, (z * 80.0) * 1.7)
    assert noise.dtype == torch.float32


def test_variance_scales_equal_the_global_torch_draws_and_leave_them_alone():
    saved = torch.random.get_rng_state()
    try:
        torch.manual_seed(42)
        expected_max = torch.rand(1).item() * 2.0 + 1.0
        expected_min = torch.rand(1).item() * 0.9 + 0.1
        torch.manual_seed(1234)
        before = torch.random.get_rng_state()
        assert variance_scales(42) == (expected_max, expected_min)
        assert torch.equal(torch.random.get_rng_state(), before)
    finally:
        torch.random.set_rng_state(saved)
    scales = [variance_scales(seed) for seed in range(50)]
    assert all(1.0 <= high <= 3.0 and 0.1 <= low <= 1.0 for high, low in scales)
    assert len(set(scales)) == 50


@pytest.mark.parametrize('seeds, message', [
    (-1, r'`seeds` must be an integer in \[0, 4294967295\]'),
    (2 ** 32, r'`seeds` must be an integer'),
    (1.5, r'`seeds` must be an integer'),
    (True, r'`seeds` must be an integer'),
    ([1, 2], r'one seed per sample: 3 expected, got 2'),
    ([1, 2, -5], r'`seeds`\[2\] must be an integer'),
])
def test_bad_seeds(seeds, message):
    with pytest.raises(ValueError, match=message):
        check_seeds(seeds, 3)


def test_good_seeds_are_normalized():
    assert check_seeds(np.int64(5), 3) == 5
    assert check_seeds(range(3), 3) == (0, 1, 2)
    with pytest.raises(ValueError, match=r'`seed` must be an integer'):
        variance_scales(-3)
