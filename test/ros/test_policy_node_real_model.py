"""The node with the real engine: a tiny converted model, and the same chunk as CosmosPolicy."""
import signal

import numpy as np
import pytest

pytest.importorskip('rclpy')

pytestmark = [pytest.mark.ros, pytest.mark.slow]

S = 1_000_000_000
START_TIMEOUT = 120.0  # loading torch + the model and one warm-up on a loaded 2-core machine


@pytest.fixture(scope='module')
def tiny_aloha_model(tmp_path_factory):
    from cosmos_policy_ros.engine.synthetic_checkpoints import write_synthetic_model
    from cosmos_policy_ros.layout import LatentLayout
    from cosmos_policy_ros.cli.convert import main as convert

    layout = LatentLayout.from_dict({'preset': 'aloha', 'image_size': 64})  # 50 x 14 fits
    released = tmp_path_factory.mktemp('released')
    write_synthetic_model(released, layout, size='tiny', seed=2, dtype='fp32')
    model = tmp_path_factory.mktemp('model') / 'aloha'
    assert convert(['--released', str(released), '--out', str(model)]) == 0
    return model


def test_node_chunks_equal_direct_inference(tiny_aloha_model, write_setup, start_node,
                                            client_factory, harness):
    from cosmos_policy_ros.engine.policy import load_policy
    from cosmos_policy_ros.interface import Observation
    from cosmos_policy_ros.node_config import derive_seed

    policy = load_policy(tiny_aloha_model, device='cpu', dtype='fp32')
    task = policy.text_embeddings.instructions[0]
    parameters = harness.aloha_parameters(
        policy_factory='cosmos_policy_ros.engine.policy:load_policy',
        model_path=str(tiny_aloha_model), device='cpu', dtype='float32', task=task,
        num_denoising_steps=2, rate=5.0, max_publish_age=30.0, max_observation_age=30.0)
    node = start_node(write_setup(parameters, {'layout': {'preset': 'aloha'}}))
    client = client_factory()
    rng = np.random.default_rng(5)
    sent = {}

    def publish():
        stamp = harness.now_ns()
        images = {camera: rng.integers(0, 256, (24, 40, 3), dtype=np.uint8)
                  for camera in ('left_wrist', 'right_wrist', 'primary')}
        proprio = rng.uniform(-0.3, 0.3, 14)
        for camera, image in images.items():
            client.image(f'{camera}/image_raw', stamp, image)
        client.joints('joint_states', stamp, harness.ALOHA_JOINTS, proprio)
        sent[stamp] = (images, proprio)

    assert client.spin_until(lambda: len(client.chunks) >= 1, START_TIMEOUT, every=publish,
                             period=0.2, process=node), node.output
    chunk = client.chunks[0]
    stamp = chunk.header.stamp.sec * S + chunk.header.stamp.nanosec
    assert stamp in sent
    assert (chunk.horizon, chunk.action_dim, chunk.num_denoising_steps) == (50, 14, 2)
    assert chunk.model_id == policy.model_id
    images, proprio = sent[stamp]
    seed = derive_seed('stamp', 0, stamp)
    assert chunk.seed == seed
    direct = policy.infer(Observation(images=images, proprio=proprio, instruction=task,
                                      seed=seed), num_steps=2)
    # The same observation through ROS messages, the sync buffer and the worker thread gives
    # the chunk CosmosPolicy gives in-process (float32 on the wire).
    np.testing.assert_allclose(np.asarray(chunk.actions).reshape(50, 14), direct.actions,
                               rtol=1e-6, atol=1e-6)
    assert chunk.value == pytest.approx(direct.value, abs=1e-6)
    assert node.stop(signal.SIGINT) == 0, node.output
