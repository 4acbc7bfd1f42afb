"""stage_timing without a ROS graph: stage durations from marks, and the input marks store."""
import pytest

from cosmos_policy_ros.stage_timing import (InputMarks, MARKS, stage_durations, STAGE_NAMES)


def test_every_mark_but_the_first_ends_one_stage_and_the_stages_add_up():
    assert list(STAGE_NAMES) == list(MARKS[1:])
    marks = {mark: 1000 + 10 * index ** 2 for index, mark in enumerate(MARKS)}
    stages = stage_durations(marks)
    assert list(stages) == [STAGE_NAMES[mark] for mark in MARKS[1:]]
    assert stages['dds'] == 10 and stages['publish'] == 10 * (11 ** 2 - 10 ** 2)
    assert sum(stages.values()) == marks['published'] - marks['source']


def test_a_stage_across_missing_marks_names_what_it_spans():
    # The EventsExecutor gives no DDS times; the caller adds its own marks around the node's.
    marks = {mark: 5 * index for index, mark in enumerate(MARKS) if mark not in (
        'source', 'received')}
    order = ('stamp', *MARKS, 'receipt')
    names = dict(STAGE_NAMES, source='observation_publish', receipt='chunk_delivery')
    stages = stage_durations(dict(marks, stamp=-7, receipt=100), order, names)
    assert stages['observation_publish+dds+dispatch'] == marks['callback'] + 7
    assert stages['chunk_delivery'] == 100 - marks['published']
    assert sum(stages.values()) == 107 and 'dds' not in stages


def test_the_last_member_is_the_message_stored_last():
    store = InputMarks(per_stream=2)
    store.record('cam', 100, {'callback': 1, 'converted': 2, 'stored': 9})
    store.record('arm', 99, {'source': 0, 'received': 1, 'callback': 3, 'converted': 4,
                             'stored': 5})
    assert store.last_member({'cam': 100, 'arm': 99}) == (
        'cam', {'callback': 1, 'converted': 2, 'stored': 9})
    assert store.last_member({'cam': 100, 'arm': 98}) is None  # not recorded
    store.record('cam', 101, {'stored': 10})
    store.record('cam', 102, {'stored': 11})
    assert store.last_member({'cam': 100, 'arm': 99}) is None  # dropped: 2 kept per stream
    assert store.last_member({'cam': 102, 'arm': 99})[0] == 'cam'


def test_input_marks_must_be_input_marks_with_stored():
    store = InputMarks()
    with pytest.raises(ValueError, match='stored'):
        store.record('cam', 1, {'callback': 1})
    with pytest.raises(ValueError, match='tick'):
        store.record('cam', 1, {'stored': 1, 'tick': 2})
