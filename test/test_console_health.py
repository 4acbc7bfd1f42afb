"""cosmos_policy_ros/console_health.py: the node's console lines, from snapshots and times."""
from dataclasses import dataclass, replace
from typing import Optional, Tuple

import pytest

from cosmos_policy_ros.console_health import ConsoleHealth, watchdog_state
from cosmos_policy_ros.health import HealthSnapshot
from cosmos_policy_ros.node_config import config_from_parameters


@dataclass
class Snapshot(HealthSnapshot):
    """A HealthSnapshot of an active node with a task, streams wrist and gripper."""

    node_name: str = '/cosmos_policy'
    lifecycle_state: str = 'active'
    seconds_since_chunk: Optional[float] = 0.0
    watchdog_timeout: float = 10.0
    streams: Tuple[str, ...] = ('wrist', 'gripper')
    task: str = 'stack'


def _config():
    return config_from_parameters({
        'model_path': '/m', 'cameras': ['wrist'], 'camera.wrist.topic': 'cam/wrist',
        'proprio_sources': ['gripper'], 'proprio.gripper.type': 'joint_state',
        'proprio.gripper.joints': ['a', 'b']})


class Publishers:
    def __init__(self, counts=None):
        self.counts = counts or {}
        self.asked = []

    def __call__(self, topic):
        self.asked.append(topic)
        return self.counts.get(topic, 0)


def _lines(health, now, snapshot, publishers=None):
    return health.update(now, snapshot, _config(), publishers or Publishers())


def test_a_silent_stream_is_named_with_its_topic_and_publisher_count():
    health = ConsoleHealth(quiet_after=5, repeat_every=30, summary_every=1000)
    publishers = Publishers({'cam/wrist': 1})

    def at(now, wrist=0):  # the gripper keeps arriving: a new message at every snapshot
        counts = {('wrist', 'received'): wrist, ('gripper', 'received'): int(now * 10)}
        return _lines(health, now, Snapshot(input_counts=counts), publishers)

    assert at(0.0) == [('info', 'watchdog: armed (ERROR after 10 s without a chunk)')]
    assert at(4.9) == []
    assert publishers.asked == []  # asked only when a line is printed
    assert at(5.0) == [('warn', 'waiting for wrist: no message yet on cam/wrist for 5 s '
                                '(1 publisher: matching QoS (input_reliability)? stamps?)')]
    assert publishers.asked == ['cam/wrist']
    # Not repeated before repeat_every, then repeated while still silent.
    assert at(34.9) == []
    assert at(35.0) == [('warn', 'waiting for wrist: no message yet on cam/wrist for 35 s '
                                 '(1 publisher: matching QoS (input_reliability)? stamps?)')]
    # Messages again: one line, then quiet.
    assert at(36.0, wrist=1) == [('info', 'wrist: messages on cam/wrist again after 36 s')]
    assert at(37.0, wrist=1) == []


def test_a_stream_that_stops_and_has_no_publisher_gets_the_topic_hint():
    health = ConsoleHealth(quiet_after=2, summary_every=1000)
    counts = {('wrist', 'received'): 4, ('gripper', 'received'): 4}
    _lines(health, 0.0, Snapshot(input_counts=counts))
    moving = {('wrist', 'received'): 4, ('gripper', 'received'): 8}
    lines = _lines(health, 3.0, Snapshot(input_counts=moving))
    assert lines == [('warn', 'waiting for wrist: no new message on cam/wrist for 3 s '
                              '(0 publishers: is the topic right, or remapped?)')]


def test_nothing_is_reported_while_not_active_and_activation_restarts_the_clocks():
    health = ConsoleHealth(quiet_after=1, summary_every=5)
    inactive = Snapshot(lifecycle_state='inactive')
    assert _lines(health, 0.0, inactive) == []  # the watchdog was off and stays off
    assert _lines(health, 100.0, inactive) == []
    assert _lines(health, 200.0, Snapshot())[0][1].startswith('watchdog: armed')
    assert _lines(health, 200.5, Snapshot()) == []  # silent since 200 only
    lines = _lines(health, 201.0, Snapshot())
    assert [line.split(':')[0] for _, line in lines] == ['waiting for wrist',
                                                         'waiting for gripper']
    assert _lines(health, 202.0, Snapshot(lifecycle_state='inactive')) == [
        ('info', 'watchdog: off (not active)')]


def test_the_summary_is_rate_limited_and_counts_by_reason():
    health = ConsoleHealth(quiet_after=1000, summary_every=10)
    first = Snapshot(chunks_published=0)
    _lines(health, 0.0, first)
    assert _lines(health, 9.9, first) == []
    assert _lines(health, 10.0, first) == [('info', 'summary: 0 chunks (+0), no latency yet')]
    busy = Snapshot(chunks_published=12, latency={'p50': 0.3125, 'p95': 0.5},
                    input_counts={('wrist', 'received'): 50, ('wrist', 'encoding'): 2,
                                  ('gripper', 'received'): 60},
                    skipped={'stale': 5, 'inference_busy': 3, 'missing': 0},
                    rejected={'limits': 1})
    assert _lines(health, 15.0, busy) == []
    assert _lines(health, 20.0, busy) == [(
        'info', 'summary: 12 chunks (+12), latency p50 0.312 s; drops (+2): wrist.encoding 2; '
                'skips (+8): inference_busy 3, stale 5; rejected (+1): limits 1')]
    more = replace(busy, chunks_published=15, skipped={'stale': 6, 'inference_busy': 3})
    assert _lines(health, 30.0, more) == [(
        'info', 'summary: 15 chunks (+3), latency p50 0.312 s; drops (+0): wrist.encoding 2; '
                'skips (+1): inference_busy 3, stale 6; rejected (+0): limits 1')]


def test_every_watchdog_change_is_logged_once():
    health = ConsoleHealth(quiet_after=1000, summary_every=1000)
    assert watchdog_state(Snapshot(seconds_since_chunk=10.0)) == 'ok'  # not > timeout
    assert watchdog_state(Snapshot(seconds_since_chunk=10.5)) == 'tripped'
    assert watchdog_state(Snapshot(watchdog_timeout=0.0, seconds_since_chunk=99)) == 'off'
    assert watchdog_state(Snapshot(lifecycle_state='inactive', seconds_since_chunk=99)) == 'off'
    levels = []
    for now, since in ((0, 0.0), (1, 9.0), (2, 10.4), (3, 11.4), (4, 0.1), (5, 0.2)):
        levels += _lines(health, now, Snapshot(seconds_since_chunk=since))
    assert levels == [
        ('info', 'watchdog: armed (ERROR after 10 s without a chunk)'),
        ('error', 'watchdog: ERROR, no chunk published for 10.4 s (watchdog_timeout 10 s); '
                  'see /diagnostics'),
        ('info', 'watchdog: ok again, chunks are published')]
    # Without a task, the ERROR line says so.
    health = ConsoleHealth(quiet_after=1000, summary_every=1000)
    _lines(health, 0, Snapshot(task=''))
    assert _lines(health, 1, Snapshot(seconds_since_chunk=12.0, task='')) == [
        ('error', 'watchdog: ERROR, no chunk published for 12.0 s (watchdog_timeout 10 s); '
                  'no task yet; see /diagnostics')]


def test_a_missing_task_is_named_at_once_and_where_to_give_it():
    health = ConsoleHealth(quiet_after=1000, repeat_every=30, summary_every=1000)
    waiting = ('warn', 'waiting for a task: publish on `task` (std_msgs/String) or set the '
                       '`task` parameter; no chunk before')
    # The first snapshot after activation already says it (with the watchdog being armed).
    assert _lines(health, 0.0, Snapshot(task='')) == [
        ('info', 'watchdog: armed (ERROR after 10 s without a chunk)'), waiting]
    assert _lines(health, 29.0, Snapshot(task='')) == []
    assert _lines(health, 30.0, Snapshot(task='')) == [waiting]  # again while it lasts
    assert _lines(health, 31.0, Snapshot(task='stack')) == []
    assert _lines(health, 32.0, Snapshot(task='')) == [waiting]  # lost again: at once
    assert _lines(health, 33.0, Snapshot(task='', lifecycle_state='inactive')) == [
        ('info', 'watchdog: off (not active)')]  # not active: nothing to wait for


def test_a_stream_whose_messages_are_all_dropped_is_named_with_the_reason():
    health = ConsoleHealth(quiet_after=5, repeat_every=30, summary_every=1000)
    drop = "encoding: unsupported encoding '16UC1'"

    def at(now, received, dropped, stored_gripper=None):
        counts = {('wrist', 'received'): received, ('wrist', 'encoding'): dropped,
                  ('gripper', 'received'): int(now * 10)}  # the gripper keeps arriving
        return _lines(health, now, Snapshot(input_counts=counts, last_drops={'wrist': drop}))

    assert at(0.0, 0, 0)[0][1].startswith('watchdog: armed')
    assert at(3.0, 30, 30) == []
    # Messages arrive (received grows), none is kept: "arriving but dropped", not "missing".
    assert at(5.0, 50, 50) == [('warn', f'wrist: arriving but dropped on cam/wrist for 5 s: '
                                        f'{drop} (counted in dropped.wrist.*)')]
    assert at(6.0, 60, 60) == []
    # Kept ones again: one line.
    assert at(7.0, 70, 65) == [('info', 'wrist: messages on cam/wrist again after 7 s')]
    # Silent after that (received no longer grows): the usual waiting line.
    assert at(12.0, 70, 65)[0][1].startswith('waiting for wrist: no new message on cam/wrist')


@pytest.mark.parametrize('bad', [0, -1.0, 'x', True])
def test_bad_periods_are_refused(bad):
    with pytest.raises(ValueError, match='quiet_after'):
        ConsoleHealth(quiet_after=bad)


def test_report_logs_each_line_at_its_level():
    class Logger:
        def __init__(self):
            self.calls = []

        def info(self, line):
            self.calls.append(('info', line))

        def warning(self, line):
            self.calls.append(('warning', line))

        def error(self, line):
            self.calls.append(('error', line))

    health, logger = ConsoleHealth(quiet_after=1, summary_every=1000), Logger()
    health.report(logger, 0.0, Snapshot(), _config(), Publishers())
    health.report(logger, 2.0, Snapshot(seconds_since_chunk=11.0), _config(), Publishers())
    assert [level for level, _ in logger.calls] == ['info', 'error', 'warning', 'warning']
