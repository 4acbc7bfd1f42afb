"""NormStats: the released min/max statistics, both directions, and clear errors."""
import json

import numpy as np
import pytest

from cosmos_policy_ros.layout import LatentLayout
from cosmos_policy_ros.normalization import NormStats

LIBERO = LatentLayout.preset('libero')  # action_dim 7, proprio_dim 9


def _stats_dict(action_dim=7, proprio_dim=9):
    rng = np.random.RandomState(0)
    actions_min = rng.uniform(-2, 0, action_dim)
    proprio_min = rng.uniform(-1, 0.5, proprio_dim)
    return {
        'actions_min': actions_min.tolist(),
        'actions_max': (actions_min + rng.uniform(0.5, 3, action_dim)).tolist(),
        'proprio_min': proprio_min.tolist(),
        'proprio_max': (proprio_min + rng.uniform(0.1, 2, proprio_dim)).tolist(),
        # Released files carry more keys; they must be ignored.
        'actions_mean': [0.0] * action_dim, 'actions_std': [1.0] * action_dim,
        'proprio_median': [0.0] * proprio_dim, 'num_transitions': 1234,
    }


def _write(tmp_path, data, name='libero_dataset_statistics.json'):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_hand_computed_values_both_ways():
    stats = NormStats.from_dict({'actions_min': [-1.0, 0.0], 'actions_max': [3.0, 10.0],
                                 'proprio_min': [2.0], 'proprio_max': [4.0]})
    # min -> -1, max -> +1, midpoint -> 0, a quarter of the range -> -0.5.
    np.testing.assert_allclose(stats.normalize_actions([[-1.0, 0.0], [3.0, 10.0],
                                                        [1.0, 2.5]]),
                               [[-1, -1], [1, 1], [0, -0.5]], atol=1e-15)
    np.testing.assert_allclose(stats.unnormalize_actions([[0.5, -0.2]]), [[2.0, 4.0]],
                               atol=1e-15)
    np.testing.assert_allclose(stats.normalize_proprio([2.5]), [-0.5], atol=1e-15)
    np.testing.assert_allclose(stats.unnormalize_proprio([1.0]), [4.0], atol=1e-15)


def test_round_trips_on_released_shapes(tmp_path):
    stats = NormStats.from_json(_write(tmp_path, _stats_dict()), layout=LIBERO)
    rng = np.random.RandomState(1)
    chunk = rng.uniform(-3, 3, (4, 16, 7))  # (B, K, d), also outside the training range
    np.testing.assert_allclose(stats.unnormalize_actions(stats.normalize_actions(chunk)), chunk,
                               rtol=1e-12, atol=1e-12)
    proprio = rng.uniform(-1, 1, (3, 9))
    np.testing.assert_allclose(stats.normalize_proprio(stats.unnormalize_proprio(proprio)),
                               proprio, rtol=1e-12, atol=1e-12)
    assert stats.normalize_proprio(proprio).dtype == np.float64
    assert (stats.action_dim, stats.proprio_dim) == (7, 9)


def test_float32_chunks_follow_the_reference_promotion():
    # The reference unnormalizes a float32 chunk with float64 statistics:
    # 0.5 * (a + 1) stays float32 (numpy scalars are weak), the product with (max - min) is
    # float64. The result must be that, bit for bit, not the all-float64 computation.
    data = _stats_dict()
    stats = NormStats.from_dict(data)
    chunk = np.random.RandomState(2).uniform(-1, 1, (16, 7)).astype(np.float32)
    low, high = np.array(data['actions_min']), np.array(data['actions_max'])
    reference = 0.5 * (chunk + 1) * (high - low) + low
    assert reference.dtype == np.float64
    np.testing.assert_array_equal(stats.unnormalize_actions(chunk), reference)


def test_statistics_are_read_only():
    stats = NormStats.from_dict(_stats_dict())
    with pytest.raises(ValueError):
        stats.actions_min[0] = 5.0
    with pytest.raises(AttributeError):
        stats.source = 'other'


def test_missing_key_names_file_and_key(tmp_path):
    data = _stats_dict()
    del data['proprio_max']
    path = _write(tmp_path, data)
    with pytest.raises(ValueError, match=r"libero_dataset_statistics\.json.*'proprio_max'"):
        NormStats.from_json(path)


def test_length_mismatch_with_layout(tmp_path):
    path = _write(tmp_path, _stats_dict(action_dim=14, proprio_dim=9))
    with pytest.raises(ValueError, match=r'actions_min.*14 values.*`action_dim` = 7'):
        NormStats.from_json(path, layout=LIBERO)
    path = _write(tmp_path, _stats_dict(action_dim=7, proprio_dim=14), 'b.json')
    with pytest.raises(ValueError, match=r'b\.json.*proprio_min.*14 values.*`proprio_dim` = 9'):
        NormStats.from_json(path, layout=LIBERO)


def test_min_and_max_lengths_differ(tmp_path):
    data = _stats_dict()
    data['actions_max'] = data['actions_max'][:-1]
    with pytest.raises(ValueError, match=r'`actions_min` has 7 values but `actions_max` has 6'):
        NormStats.from_json(_write(tmp_path, data))


def test_min_equal_max_names_the_dimension(tmp_path):
    data = _stats_dict()
    data['proprio_max'][3] = data['proprio_min'][3]
    with pytest.raises(ValueError, match=r'json: proprio dimension 3 has max <= min'):
        NormStats.from_json(_write(tmp_path, data))


def test_non_finite_statistics(tmp_path):
    data = _stats_dict()
    data['actions_min'][2] = float('nan')  # json writes NaN, Python's json reads it back
    with pytest.raises(ValueError, match=r'`actions_min`\[2\] is nan'):
        NormStats.from_json(_write(tmp_path, data))
    data = _stats_dict()
    data['proprio_max'][0] = 'high'
    with pytest.raises(ValueError, match=r'`proprio_max` must be a list of numbers'):
        NormStats.from_dict(data)


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(ValueError, match=r'cannot read dataset statistics .*missing\.json'):
        NormStats.from_json(tmp_path / 'missing.json')
    path = tmp_path / 'broken.json'
    path.write_text('{"actions_min": [1, 2')
    with pytest.raises(ValueError, match=r'broken\.json is not valid JSON'):
        NormStats.from_json(path)
    path.write_text('[1, 2, 3]')
    with pytest.raises(ValueError, match=r'broken\.json: expected a JSON object'):
        NormStats.from_json(path)


def test_bad_inputs_to_the_maps():
    stats = NormStats.from_dict(_stats_dict())
    with pytest.raises(ValueError, match=r'proprio must have 9 values in its last axis'):
        stats.normalize_proprio(np.zeros(8))
    with pytest.raises(ValueError, match=r'normalized actions must have 7 values'):
        stats.unnormalize_actions(np.zeros((16, 14)))
    proprio = np.zeros(9)
    proprio[4] = np.nan
    with pytest.raises(ValueError, match=r'proprio has a non-finite value nan at index \(4,\)'):
        stats.normalize_proprio(proprio)
