"""The ActionChunk bytes built without a message object against rclpy's own serialization."""
import numpy as np
import pytest

pytest.importorskip('rclpy')

pytestmark = pytest.mark.ros

S = 1_000_000_000
ALPHABET = list('abcdefghijklmnopqrstuvwxyz_0123456789') + ['\u00e9', '\u65e5']


def _text(rng, longest):
    return ''.join(rng.choice(ALPHABET, size=int(rng.integers(0, longest + 1))))


def _fields(rng):
    """outputs.action_chunk_msg's arguments, every length and value drawn at random."""
    horizon, dim, sources = (int(rng.integers(1, 60)), int(rng.integers(1, 20)),
                             int(rng.integers(0, 6)))
    return dict(
        stamp_ns=int(rng.integers(1, 2 * 10**9)) * S + int(rng.integers(0, S)),
        frame_id=_text(rng, 9), action_names=tuple(_text(rng, 7) for _ in range(dim)),
        actions=rng.normal(0, 10, (horizon, dim)).astype(np.float32),
        step_period=float(rng.uniform(1e-3, 1.0)), value=float(rng.normal()),
        source_names=tuple(_text(rng, 11) for _ in range(sources)),
        source_stamps_ns=tuple(int(rng.integers(1, 2 * 10**18)) for _ in range(sources)),
        seed=int(rng.integers(0, 2**32)), num_denoising_steps=int(rng.integers(1, 50)),
        inference_time=float(rng.uniform(0, 5)), model_id=_text(rng, 13),
        stitching=str(rng.choice(['none', 'blend', 'inpaint', 'inpaint+blend', 'ramp'])),
        conditioned_steps=int(rng.integers(0, 9)), takeover_step=int(rng.integers(0, 9)),
        blended_steps=int(rng.integers(0, 9)), expected_latency=float(rng.uniform(0, 2)))


def test_fields_are_the_message_definition_in_order():
    from cosmos_policy_ros.msg import ActionChunk
    from cosmos_policy_ros.ros.action_chunk_wire import FIELDS

    assert FIELDS == tuple(ActionChunk.get_fields_and_field_types())


@pytest.mark.parametrize('seed', range(40))
def test_bytes_are_what_rclpy_serializes(seed):
    """Same length, the same message when rclpy deserializes them, and every byte the same
    except rclpy's padding (left undefined there, zeros here)."""
    from rclpy.serialization import deserialize_message, serialize_message

    from cosmos_policy_ros.msg import ActionChunk
    from cosmos_policy_ros.ros.action_chunk_wire import action_chunk_bytes
    from cosmos_policy_ros.ros.outputs import action_chunk_msg

    fields = _fields(np.random.default_rng(seed))
    ours = action_chunk_bytes(**fields)
    theirs = serialize_message(action_chunk_msg(**fields))
    assert len(ours) == len(theirs)
    assert deserialize_message(ours, ActionChunk) == deserialize_message(theirs, ActionChunk)
    differing = [i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b]
    assert all(ours[i] == 0 for i in differing)
    assert len(differing) <= 3 * (6 + len(fields['action_names']) + len(fields['source_names']))
