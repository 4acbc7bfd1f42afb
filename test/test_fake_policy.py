"""The FakePolicy used by node tests: closed-form outputs, failure modes, concurrency record."""
import json
import threading

import numpy as np
import pytest

from cosmos_policy_ros.interface import InferenceRequest, Observation
from cosmos_policy_ros.layout import LatentLayout
from cosmos_policy_ros.testing import FakePolicy, load_fake_policy

LIBERO = LatentLayout.preset('libero')


def observation(red=51, seed=3, proprio=None):
    image = np.zeros((8, 8, 3), np.uint8)
    image[:, :, 0] = red
    return Observation(images={'wrist': image, 'primary': image.copy()},
                       proprio=np.arange(9.0) if proprio is None else proprio,
                       instruction='go', seed=seed)


def test_outputs_follow_the_observation():
    output = FakePolicy(LIBERO).infer(observation(), num_steps=4)
    assert output.actions.shape == (16, 7) and output.actions.dtype == np.float32
    # actions[k, j] = proprio[j mod 9] + 0.001 k
    np.testing.assert_allclose(output.actions[0], np.arange(7.0))
    np.testing.assert_allclose(output.actions[15, 2], 2.0 + 0.015, rtol=1e-6)
    assert output.value == pytest.approx(51 / 255)  # R channel of the first layout camera
    assert (output.seed, output.num_steps) == (3, 4)
    assert output.candidate_values == () and output.future_images is None


def test_candidates_and_future_images():
    policy = FakePolicy(LIBERO, future_images=True)
    output = policy.infer(observation(), num_candidates=3)
    assert output.candidate_values == pytest.approx((0.2, 0.21, 0.22))
    assert output.selected_candidate == 2 and output.value == pytest.approx(0.22)
    assert set(output.future_images) == {'wrist', 'primary'}


def test_failure_modes():
    assert np.isnan(FakePolicy(LIBERO, actions='nan').infer(observation()).actions).sum() == 1
    assert FakePolicy(LIBERO, actions='huge').infer(observation()).actions.min() >= 1e3
    policy = FakePolicy(LIBERO, fail_every=2)
    policy.infer(observation())
    with pytest.raises(RuntimeError, match='fake failure \\(fail_every=2\\)'):
        policy.infer(observation())
    with pytest.raises(ValueError, match='proprio has shape'):
        policy.infer(observation(proprio=np.zeros(3)))
    with pytest.raises(ValueError, match='not the layout cameras'):
        policy.infer(Observation(images={'wrist': np.zeros((2, 2, 3), np.uint8)},
                                 proprio=np.zeros(9)))


def test_infer_batch_gives_each_request_its_own_output_and_fails_alone(tmp_path):
    record = tmp_path / 'calls.jsonl'
    policy = FakePolicy(LIBERO, record_path=str(record))
    requests = [InferenceRequest(observation(seed=1), num_steps=4),
                InferenceRequest(observation(proprio=np.zeros(3))),  # bad: fails alone
                InferenceRequest(observation(red=102, seed=2), num_candidates=2)]
    good, bad, best = policy.infer_batch(requests)
    single = policy.infer(observation(seed=1), num_steps=4)
    np.testing.assert_array_equal(good.actions, single.actions)
    assert (good.seed, good.num_steps, good.batch_size) == (1, 4, 3)
    assert isinstance(bad, ValueError) and 'proprio has shape' in str(bad)
    assert best.selected_candidate == 1 and best.value == pytest.approx(102 / 255 + 0.01)
    assert policy.batches == [3]
    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert lines[0]['batch'] == 3 and lines[0]['seeds'] == [1, 3, 2]


def test_concurrency_is_recorded(tmp_path):
    record = tmp_path / 'record.jsonl'
    policy = FakePolicy(LIBERO, delay=0.2, record_path=str(record))
    threads = [threading.Thread(target=policy.infer, args=(observation(),)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert policy.max_in_flight == 2  # the fake does detect overlapping calls
    entries = [json.loads(line) for line in record.read_text().splitlines()]
    assert sorted(entry['in_flight'] for entry in entries) == [1, 2]


def test_factory_reads_a_yaml_file_or_directory(tmp_path):
    (tmp_path / 'fake_policy.yaml').write_text('layout: {preset: aloha}\ndelay: 0.0\n')
    policy = load_fake_policy(str(tmp_path), device='cpu', dtype='float32')
    assert policy.layout.name == 'aloha' and policy.model_id == 'fake-aloha'
    bad = tmp_path / 'bad.yaml'
    bad.write_text('layout: {preset: aloha}\ndelya: 1\n')
    with pytest.raises(ValueError, match="unknown key\\(s\\) \\['delya'\\]"):
        load_fake_policy(str(bad))
    with pytest.raises(ValueError, match='cannot read fake policy file'):
        load_fake_policy(str(tmp_path / 'missing.yaml'))
