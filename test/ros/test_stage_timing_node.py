"""The debug option stage_timing through the installed node: it changes no chunk, and each
chunk's StageTimes carries every mark, in trip order.

Two nodes run side by side (namespaces /plain and /timed), one with the option, and get the
same observations (same stamps, same pixels and joints); every chunk both published must be
the same message except its timing fields (inference_time, expected_latency, takeover_step:
they come from the clock by design).
"""
import signal

import numpy as np
import pytest

pytest.importorskip('rclpy')

pytestmark = [pytest.mark.ros, pytest.mark.slow]

START_TIMEOUT = 60.0
S = 1_000_000_000
CAMERAS = ('left_wrist', 'right_wrist', 'primary')
TIMING_FIELDS = ('inference_time', 'expected_latency', 'takeover_step')


def _stamp(msg):
    return msg.header.stamp.sec * S + msg.header.stamp.nanosec


def _content(chunk):
    """Every ActionChunk field but the timing ones, comparable with ==."""
    fields = {name: getattr(chunk, name) for name in chunk.get_fields_and_field_types()
              if name not in TIMING_FIELDS}
    fields['header'] = (_stamp(chunk), chunk.header.frame_id)
    fields['source_stamps'] = [(t.sec, t.nanosec) for t in chunk.source_stamps]
    fields['actions'] = np.asarray(chunk.actions).tobytes()
    return {name: list(value) if not isinstance(value, (str, bytes, int, float, tuple))
            else value for name, value in fields.items()}


@pytest.mark.parametrize('executor', ['events', 'single_threaded'])
def test_stage_timing_changes_no_chunk_and_reports_every_mark(
        write_setup, start_node, client_factory, harness, executor):
    from cosmos_policy_ros.msg import ActionChunk, StageTimes
    from cosmos_policy_ros.stage_timing import MARKS

    # The EventsExecutor hands callbacks no MessageInfo: no DDS source and reception times.
    marks = MARKS[2:] if executor == 'events' else MARKS
    params = write_setup(harness.aloha_parameters(executor=executor),
                         {'layout': {'preset': 'aloha'}})
    plain = start_node(params, '-r', '__ns:=/plain')
    timed = start_node(params, '-r', '__ns:=/timed', '-p', 'stage_timing:=true')
    client = client_factory()
    chunks = {'plain': {}, 'timed': {}}
    stages = {}
    for name in chunks:
        client.node.create_subscription(
            ActionChunk, f'/{name}/action_chunk',
            lambda msg, name=name: chunks[name].__setitem__(_stamp(msg), msg), 50)
    client.node.create_subscription(StageTimes, '/timed/cosmos_policy/stage_times',
                                    lambda msg: stages.__setitem__(_stamp(msg), msg), 50)
    off = []  # the option is off by default: the plain node publishes none
    client.node.create_subscription(StageTimes, '/plain/cosmos_policy/stage_times', off.append,
                                    50)
    rng = np.random.default_rng(0)

    def publish():
        stamp = harness.now_ns()
        images = [rng.integers(0, 256, (12, 16, 3), dtype=np.uint8) for _ in CAMERAS]
        positions = rng.uniform(-1, 1, len(harness.ALOHA_JOINTS))
        for name in chunks:
            for camera, rgb in zip(CAMERAS, images):
                client.image(f'/{name}/{camera}/image_raw', stamp, rgb)
            client.joints(f'/{name}/joint_states', stamp, harness.ALOHA_JOINTS, positions)

    def both():
        return set(chunks['plain']) & set(chunks['timed']) & set(stages)

    assert client.spin_until(lambda: len(both()) >= 8, START_TIMEOUT * 2, every=publish,
                             period=0.1, process=timed), (plain.output, timed.output)
    for stamp in sorted(both()):
        assert _content(chunks['plain'][stamp]) == _content(chunks['timed'][stamp]), stamp
        stage = stages[stamp]
        assert list(stage.marks) == list(marks) and len(stage.times_ns) == len(marks)
        assert stage.last_stream in (*CAMERAS, 'arms')
        times = dict(zip(stage.marks, stage.times_ns))
        in_order = ('callback', 'converted', 'stored')
        if executor != 'events':
            assert stamp <= times['source'] <= times['received']  # the clock of this host
            in_order = ('received', *in_order)
        assert [times[m] for m in in_order] == sorted(times[m] for m in in_order), times
        job = MARKS[MARKS.index('tick'):]
        assert [times[m] for m in job] == sorted(times[m] for m in job), times
    assert not off
    for node in (plain, timed):
        assert node.stop(signal.SIGINT) == 0, node.output
