"""`cosmos-policy-replay eval`: the node's rules on bag time, metrics on a known case, errors."""
import json
import math

import numpy as np
import pytest
import yaml

from cosmos_policy_ros.bags.arrays import chunk_arrays
from cosmos_policy_ros.bags.reader import BagReader
from cosmos_policy_ros.bags.storage import BagError
from cosmos_policy_ros.bags.typestore import make_typestore, ns_to_stamp
from cosmos_policy_ros.bags.writer import BagWriter
from cosmos_policy_ros.cli.replay import main as replay_main
from cosmos_policy_ros.evaluation.evaluate import evaluate
from cosmos_policy_ros.evaluation.offline_node import OfflineNode
from cosmos_policy_ros.evaluation.parity import compare_chunks
from cosmos_policy_ros.node_config import config_from_parameters
from cosmos_policy_ros.testing import FakePolicy

S = 1_000_000_000
T0 = 1_700_000_000 * S
CAMERAS = ('left_wrist', 'right_wrist', 'primary')
JOINTS = tuple(f'{side}_{joint}' for side in ('left', 'right') for joint in (
    'waist', 'shoulder', 'elbow', 'forearm_roll', 'wrist_angle', 'wrist_rotate', 'gripper'))
POSITIONS = 0.1 * np.arange(14)  # constant joint positions c_j
OFFSETS = 1.0 + np.arange(14)  # recorded action = c_j + d_j
EXECUTE = 10


def _parameters(**changes):
    parameters = {
        'model_path': 'unused', 'policy_factory': 'cosmos_policy_ros.testing:load_fake_policy',
        'cameras': list(CAMERAS), 'proprio_sources': ['arms'],
        'proprio': {'arms': {'type': 'joint_state', 'joints': list(JOINTS)}},
        'action_space': 'joint_position', 'action_names': list(JOINTS),
        'step_period': 0.04, 'execute_steps': EXECUTE, 'rate': 5.0, 'task': 'stack the cups',
        'max_observation_age': 0.5, 'max_publish_age': 5.0,
        'recorded_actions_topic': '/recorded_actions',
    }
    parameters.update(changes)
    return parameters


def _write_bag(path, *, camera_end_s=1.0, action_end_s=3.5, storage='mcap'):
    """Cameras (R = 51) and joints until camera_end_s; constant recorded actions beyond it."""
    store = make_typestore()
    types = store.types

    def header(stamp):
        return types['std_msgs/msg/Header'](stamp=ns_to_stamp(stamp, store), frame_id='')

    events = []
    for i in range(int(camera_end_s * 10)):
        for camera in CAMERAS:
            image = np.zeros((8, 8, 3), np.uint8)
            image[:, :, 0] = 51
            events.append((T0 + i * S // 10, f'/{camera}/image_raw', types[
                'sensor_msgs/msg/Image'](header=header(T0 + i * S // 10), height=8, width=8,
                                         encoding='rgb8', is_bigendian=0, step=24,
                                         data=image.reshape(-1))))
    for i in range(int(camera_end_s * 50)):
        stamp = T0 + i * S // 50
        events.append((stamp, '/joint_states', types['sensor_msgs/msg/JointState'](
            header=header(stamp), name=list(JOINTS), position=POSITIONS.copy(),
            velocity=np.zeros(0), effort=np.zeros(0))))
    for i in range(int(action_end_s * 25)):
        stamp = T0 + i * 40_000_000
        events.append((stamp, '/recorded_actions', types['sensor_msgs/msg/JointState'](
            header=header(stamp), name=list(JOINTS), position=POSITIONS + OFFSETS,
            velocity=np.zeros(0), effort=np.zeros(0))))
    events.sort(key=lambda event: event[0])
    with BagWriter(path, storage=storage, typestore=store) as writer:
        for topic in [f'/{c}/image_raw' for c in CAMERAS]:
            writer.add_topic(topic, 'sensor_msgs/msg/Image')
        writer.add_topic('/joint_states', 'sensor_msgs/msg/JointState')
        writer.add_topic('/recorded_actions', 'sensor_msgs/msg/JointState')
        for stamp, topic, message in events:
            writer.write(topic, stamp, message)
    return path


@pytest.fixture(scope='module')
def constructed_bag(tmp_path_factory):
    return _write_bag(tmp_path_factory.mktemp('eval') / 'episode')


def _fake():
    from cosmos_policy_ros.layout import LatentLayout
    return FakePolicy(LatentLayout.preset('aloha'), model_id='fake-aloha')


def test_metrics_on_a_constructed_case(constructed_bag, tmp_path):
    # The fake predicts a_k = c_j + 0.001 k; the demonstrator did c_j + d_j: each executed
    # action is off by exactly 0.001 k - d_j, k = 0..9.
    config = config_from_parameters(_parameters())
    report = evaluate(constructed_bag, _fake(), config, tmp_path / 'out', plots=True)
    actions = report.summary['actions']
    k = np.arange(EXECUTE)
    for j, name in enumerate(JOINTS):
        errors = 0.001 * k - OFFSETS[j]
        assert actions['per_dimension'][name]['mae'] == pytest.approx(
            np.abs(errors).mean(), rel=1e-5)
        assert actions['per_dimension'][name]['rmse'] == pytest.approx(
            math.sqrt((errors ** 2).mean()), rel=1e-5)
    chunks = report.chunks
    # Ticks every 0.2 s of bag time until the end of the recorded actions (3.5 s). The last
    # camera frame is at 0.9 s: the tick at 1.0 s uses it, the next two find nothing new, and
    # from 1.6 s on that set is older than max_observation_age (0.5 s): stale.
    assert [tick.time_ns - T0 for tick in chunks] == [200 * 10**6 * i for i in range(1, 6)]
    statuses = [tick.status for tick in report.ticks]
    assert len(statuses) == 17 and statuses[5:7] == ['not_new'] * 2
    assert set(statuses[7:]) == {'stale'}
    references = [tick.reference_ns - T0 for tick in chunks]
    assert references == [200 * 10**6 * i for i in range(1, 5)] + [900 * 10**6]
    assert actions['compared_actions'] == len(chunks) * EXECUTE
    assert report.summary['value']['mean'] == pytest.approx(0.2)  # R = 51 of 255
    assert report.summary['ticks_by_status'] == {'chunk': 5, 'not_new': 2, 'stale': 10}
    written = json.loads((tmp_path / 'out' / 'metrics.json').read_text())
    assert written['complete'] is True and written['chunks'] == len(chunks)
    for name in ('actions.png', 'value.png', 'latency.png', 'ticks.csv', 'chunks.csv'):
        assert (tmp_path / 'out' / name).stat().st_size > 0
    # The chunk bag: one ActionChunk per chunk, stamped with its observation.
    with BagReader(tmp_path / 'out' / 'chunks') as reader:
        arrays = chunk_arrays(reader.messages(['/action_chunk']))
        assert reader.info.topics['/value'].count == len(chunks)
    np.testing.assert_array_equal(arrays.stamps_ns, [tick.reference_ns for tick in chunks])
    matched, missing, worst = compare_chunks(arrays, chunks)
    assert len(matched) == len(chunks) and not missing and worst == 0.0
    assert arrays.model_ids[0] == 'fake-aloha'
    assert list(arrays.action_names) == list(JOINTS)


def test_observation_ticks_give_one_chunk_per_reference_frame(constructed_bag, tmp_path):
    config = config_from_parameters(_parameters())
    report = evaluate(constructed_bag, _fake(), config, tmp_path / 'out',
                      tick_mode='observations', plots=False)
    # The primary camera's 10 frames, each ticked sync_tolerance (50 ms) after its stamp.
    assert [tick.reference_ns - T0 for tick in report.chunks] == [i * S // 10 for i in range(10)]
    assert all(t.time_ns == t.reference_ns + 50_000_000 for t in report.chunks)


def test_same_bag_twice_gives_identical_chunks_with_the_real_engine(tmp_path):
    from cosmos_policy_ros.cli.convert import main as convert
    from cosmos_policy_ros.engine.policy import load_policy
    from cosmos_policy_ros.engine.synthetic_checkpoints import write_synthetic_model
    from cosmos_policy_ros.layout import LatentLayout

    layout = LatentLayout.from_dict({'preset': 'aloha', 'image_size': 64})
    write_synthetic_model(tmp_path / 'released', layout, size='tiny', seed=3, dtype='fp32')
    assert convert(['--released', str(tmp_path / 'released'), '--out',
                    str(tmp_path / 'model')]) == 0
    policy = load_policy(tmp_path / 'model', device='cpu', dtype='fp32')
    bag = _write_bag(tmp_path / 'bag', camera_end_s=0.6, action_end_s=0.6)
    config = config_from_parameters(_parameters(
        policy_factory='cosmos_policy_ros.engine.policy:load_policy',
        model_path=str(tmp_path / 'model'), task=policy.text_embeddings.instructions[0],
        num_denoising_steps=2))
    first = evaluate(bag, policy, config, tmp_path / 'one', plots=False)
    second = evaluate(bag, policy, config, tmp_path / 'two', plots=False)
    assert len(first.chunks) >= 2
    matched, missing, worst = compare_chunks(first.chunks, second.chunks, atol=0, rtol=0)
    assert len(matched) == len(first.chunks) and not missing and worst == 0.0
    assert len({tick.seed for tick in first.chunks}) == len(first.chunks)  # stamp seeds


def test_an_interrupted_run_keeps_what_it_wrote(constructed_bag, tmp_path):
    class Interrupting(FakePolicy):
        def infer(self, observation, **kwargs):
            if self.calls == 3:
                raise KeyboardInterrupt
            return super().infer(observation, **kwargs)

    from cosmos_policy_ros.layout import LatentLayout
    config = config_from_parameters(_parameters())
    with pytest.raises(KeyboardInterrupt):
        evaluate(constructed_bag, Interrupting(LatentLayout.preset('aloha')), config,
                 tmp_path / 'out', plots=False)
    written = json.loads((tmp_path / 'out' / 'metrics.json').read_text())
    assert written['complete'] is False and 'KeyboardInterrupt' in written['error']
    assert written['chunks'] == 3
    with BagReader(tmp_path / 'out' / 'chunks') as reader:
        assert reader.info.topics['/action_chunk'].count == 3


def test_inference_errors_are_ticks_not_crashes(constructed_bag, tmp_path):
    from cosmos_policy_ros.layout import LatentLayout
    config = config_from_parameters(_parameters())
    policy = FakePolicy(LatentLayout.preset('aloha'), fail_every=2)
    report = evaluate(constructed_bag, policy, config, tmp_path / 'out', plots=False)
    statuses = [tick.status for tick in report.ticks]
    # Five observations as before; calls 2 and 4 fail and the loop goes on.
    assert statuses[:5] == ['chunk', 'inference_error', 'chunk', 'inference_error', 'chunk']
    assert 'fake failure' in next(t.detail for t in report.ticks
                                  if t.status == 'inference_error')


def test_bad_inputs_name_the_topic_or_file(constructed_bag, tmp_path):
    fake = _fake()
    missing = config_from_parameters(_parameters(camera={'primary': {'topic': 'front/image'}}))
    with pytest.raises(BagError, match=r'no topic /front/image \(input stream '
                       r"'primary'\)"):
        evaluate(constructed_bag, fake, missing, tmp_path / 'a', plots=False)
    wrong_type = config_from_parameters(_parameters(camera={'primary': {
        'transport': 'compressed', 'topic': 'primary/image_raw'}}))
    with pytest.raises(BagError, match='sensor_msgs/msg/CompressedImage'):
        evaluate(constructed_bag, fake, wrong_type, tmp_path / 'b', plots=False)
    no_actions = config_from_parameters(_parameters(recorded_actions_topic='/demo'))
    with pytest.raises(BagError, match='no recorded-actions topic /demo'):
        evaluate(constructed_bag, fake, no_actions, tmp_path / 'c', plots=False)
    corrupt = tmp_path / 'corrupt.mcap'
    corrupt.write_bytes(b'\x89MCAP0\r\n' + b'garbage' * 10)
    with pytest.raises(BagError, match='corrupt.mcap'):
        evaluate(corrupt, fake, config_from_parameters(_parameters()), tmp_path / 'd')
    (tmp_path / 'e').mkdir()
    (tmp_path / 'e' / 'keep.txt').write_text('mine')
    with pytest.raises(ValueError, match='not empty'):
        evaluate(constructed_bag, fake, config_from_parameters(_parameters()), tmp_path / 'e')
    assert (tmp_path / 'e' / 'keep.txt').read_text() == 'mine'


def test_offline_node_replans_like_the_node():
    config = config_from_parameters(_parameters(replan_mode='steps_left', replan_threshold=2))
    node = OfflineNode(_fake(), config)
    node.executing = (T0, EXECUTE)
    assert node.tick(T0 + 5 * 40_000_000).status == 'chunk_executing'  # 5 of 10 left


def test_cli_eval(constructed_bag, tmp_path, capsys):
    fake = tmp_path / 'fake.yaml'
    fake.write_text('layout: {preset: aloha}\n')
    params = tmp_path / 'params.yaml'
    params.write_text(yaml.safe_dump({'/**': {'ros__parameters': _parameters(
        model_path=str(fake))}}))
    code = replay_main(['eval', str(constructed_bag), '--config', str(params), '--out',
                        str(tmp_path / 'out'), '-p', 'rate:=2.5', '--no-plots'])
    out = capsys.readouterr().out
    assert code == 0, out
    assert 'actions vs recorded: MAE' in out and 'metrics.json' in out
    summary = json.loads((tmp_path / 'out' / 'metrics.json').read_text())
    assert summary['ticks'] == int(3.5 * 2.5)  # ticks every 0.4 s of the 3.5 s bag
    assert replay_main(['eval', str(constructed_bag), '--config', str(params), '--out',
                        str(tmp_path / 'out2'), '-p', 'rate']) == 2


def test_recorded_sets_are_rebuilt_exactly(constructed_bag, tmp_path):
    config = config_from_parameters(_parameters())
    sets = {T0 + 300 * 10**6: {'left_wrist': T0 + 300 * 10**6, 'right_wrist': T0 + 300 * 10**6,
                               'primary': T0 + 300 * 10**6, 'arms': T0 + 280 * 10**6}}
    report = evaluate(constructed_bag, _fake(), config, tmp_path / 'out',
                      tick_mode='observations', references=sets, plots=False)
    assert len(report.chunks) == 1
    assert report.chunks[0].stamps == sets[T0 + 300 * 10**6]


def test_two_proprio_sources_on_one_topic(constructed_bag, tmp_path):
    config = config_from_parameters(_parameters(
        proprio_sources=['left', 'right'],
        proprio={'left': {'type': 'joint_state', 'joints': list(JOINTS[:7])},
                 'right': {'type': 'joint_state', 'joints': list(JOINTS[7:])}}))
    report = evaluate(constructed_bag, _fake(), config, tmp_path / 'out', plots=False)
    assert len(report.chunks) == 5
    assert report.summary['received_by_stream'] == {
        'left': 50, 'right': 50, 'left_wrist': 10, 'primary': 10, 'right_wrist': 10}


def test_observation_ticks_take_their_own_frame_with_a_wide_tolerance(constructed_bag,
                                                                      tmp_path):
    # sync_tolerance 0.15 s > the 0.1 s frame period: the newest set at a frame's tick would
    # be the next frame; each tick must still compute its own frame.
    config = config_from_parameters(_parameters(sync_tolerance=0.15))
    report = evaluate(constructed_bag, _fake(), config, tmp_path / 'out',
                      tick_mode='observations', plots=False)
    assert [tick.reference_ns - T0 for tick in report.chunks] == [i * S // 10
                                                                  for i in range(10)]
    missing = evaluate(constructed_bag, _fake(), config, tmp_path / 'two',
                       tick_mode='observations', plots=False, references={T0 + 123})
    assert [(tick.status, tick.reference_ns) for tick in missing.ticks] == [
        ('reference_not_found', T0 + 123)]


def _cli_params(tmp_path, **changes):
    fake = tmp_path / 'fake.yaml'
    fake.write_text('layout: {preset: aloha}\n')
    params = tmp_path / 'params.yaml'
    params.write_text(yaml.safe_dump({'/**': {'ros__parameters': _parameters(
        model_path=str(fake), **changes)}}))
    return params


def test_cli_eval_says_plainly_when_it_cannot_compare(constructed_bag, tmp_path, capsys):
    params = _cli_params(tmp_path, recorded_actions_topic='')
    code = replay_main(['eval', str(constructed_bag), '--config', str(params), '--out',
                        str(tmp_path / 'out'), '--no-plots'])
    out = capsys.readouterr().out
    assert code == 0, out
    reason = ('no recorded actions: the config sets no `recorded_actions_topic` and no '
              '--recorded-actions TOPIC was given; topics in this bag that may hold them: '
              '/recorded_actions (sensor_msgs/msg/JointState)')
    assert f'actions vs recorded: NOT COMPARED: {reason}' in out
    summary = json.loads((tmp_path / 'out' / 'metrics.json').read_text())
    assert summary['actions'] == {'not_compared': reason}
    # The parameter file it read, and how it differs from the closest preset.
    assert f'parameter files read: {params}' in out and 'differ from the preset' in out
    # With the option, the comparison is made.
    assert replay_main(['eval', str(constructed_bag), '--config', str(params), '--out',
                        str(tmp_path / 'out2'), '--no-plots',
                        '--recorded-actions', '/recorded_actions']) == 0
    assert 'actions vs recorded: MAE' in capsys.readouterr().out


def test_cli_eval_exits_4_listing_the_reasons_when_no_chunk_was_produced(
        constructed_bag, tmp_path, capsys):
    params = _cli_params(tmp_path, task='')  # the bag has no task either
    code = replay_main(['eval', str(constructed_bag), '--config', str(params), '--out',
                        str(tmp_path / 'out'), '--no-plots'])
    captured = capsys.readouterr()
    assert code == 4, captured.out + captured.err
    ticks = int(3.5 * 5)  # every 0.2 s of the 3.5 s bag
    assert f'{ticks} ticks, 0 chunks; ticks without a chunk, by reason: no_task {ticks}' in (
        captured.out)
    assert captured.err.startswith(f'error: no chunk was produced in {ticks} ticks: no_task '
                                   f'{ticks} (the first: no_task: no task: set the `task` '
                                   f'parameter or publish on task)')


def test_cli_eval_names_a_name_given_where_a_list_belongs(constructed_bag, tmp_path, capsys):
    params = _cli_params(tmp_path)
    code = replay_main(['eval', str(constructed_bag), '--config', str(params), '--out',
                        str(tmp_path / 'out'), '-p', 'cameras:=primary'])
    err = capsys.readouterr().err
    assert code == 2
    assert err == (f'error: {params}: `cameras` must be a list of names, e.g. [primary]. Got '
                   f"'primary'.\n")
