"""The pure rules of datasets/: task names in paths, the action of a step, outcome labels."""
from types import SimpleNamespace

import numpy as np
import pytest

from cosmos_policy_ros.datasets import formats
from cosmos_policy_ros.datasets.actions import (ExecutedChunks, NO_ACTION, NON_FINITE, PENDING,
                                                RecordedActions, WAIT_NS)
from cosmos_policy_ros.datasets.outcomes import (combine, Labels, Outcome, outcome_of_message,
                                                 read_labels_csv)

MS = 1_000_000


# --- task names ---------------------------------------------------------------------------------
def test_libero_file_name_carries_the_task_through_the_class_rule():
    name = formats.libero_file_name(7, 'put the bowl on the plate')
    assert name == 'episode000007_SCENE_put_the_bowl_on_the_plate_demo.hdf5'
    # The reference parses the released names the same way (KITCHEN_SCENE3_...).
    assert formats.libero_command('KITCHEN_SCENE3_turn_on_the_stove_demo.hdf5') == (
        'turn on the stove')
    assert formats.libero_command('open_the_drawer_demo.hdf5') == 'open the drawer'


@pytest.mark.parametrize('task, reason', [('put  the bowl', 'single spaces'),
                                          ('pick_up', "'_'"), ('a/b', "'/'"),
                                          ('go to SCENE1', 'SCENE'), ('', 'single spaces')])
def test_tasks_a_path_cannot_carry_are_refused(task, reason):
    with pytest.raises(ValueError, match='cannot be stored') as error:
        formats.task_words(task)
    assert reason in str(error.value)


def test_aloha_task_folders_and_the_upstream_change():
    assert formats.aloha_command('candies_in_bowl_day2') == 'put candies in bowl'
    assert formats.aloha_command('wipe_the_table', with_change=False) is None  # class raises
    assert formats.aloha_command('wipe_the_table') == 'wipe the table'
    assert formats.aloha_task_folder('wipe the table') == 'wipe_the_table'
    with pytest.raises(ValueError, match="reads its folder 'fold_shirt_neatly' as 'fold shirt'"):
        formats.aloha_task_folder('fold shirt neatly')


# --- actions ------------------------------------------------------------------------------------
def _array_item(stamp_ns, values):
    return SimpleNamespace(stamp_ns=stamp_ns, message=SimpleNamespace(data=list(values)))


def _recorded(**kwargs):
    return RecordedActions('/a', ('x', 'y'), joint_state=False, tolerance_ns=10 * MS,
                           hold_ns=100 * MS, **kwargs)


def test_recorded_actions_closest_then_held_then_none():
    actions = _recorded()
    for stamp, value in ((100, 1.0), (200, 2.0), (300, 3.0)):
        actions.add(_array_item(stamp * MS, (value, -value)))
    # Closest within tolerance (105 ms: the 100 ms message); a tie (150 +- 50) is out of it.
    row, stamp, reason = actions.resolve(105 * MS, 10**12)
    assert (row.tolist(), stamp, reason) == ([1.0, -1.0], 100 * MS, '')
    # 395 ms: nothing within 10 ms, the 300 ms command is 95 ms old: still in force.
    row, stamp, _ = actions.resolve(395 * MS, 10**12)
    assert (row.tolist(), stamp) == ([3.0, -3.0], 300 * MS)
    # 405 ms: 105 ms old, more than one step period: no action.
    assert actions.resolve(405 * MS, 10**12) == (None, 0, NO_ACTION)
    # Before the first command: nothing held either.
    assert actions.resolve(50 * MS, 10**12)[2] == NO_ACTION


def test_recorded_actions_tie_takes_the_newer_and_waits_until_settled():
    actions = _recorded()
    actions.add(_array_item(100 * MS, (1.0, 1.0)))
    # Nothing after 110 ms + tolerance yet and the bag time is close: not decided.
    assert actions.resolve(110 * MS, 111 * MS) is PENDING
    actions.add(_array_item(120 * MS, (2.0, 2.0)))
    assert actions.resolve(110 * MS, 121 * MS) is PENDING  # 120 is not after 110 + 10
    actions.add(_array_item(121 * MS, (3.0, 3.0)))
    row, stamp, _ = actions.resolve(110 * MS, 121 * MS)  # 100 and 120 both 10 ms away
    assert (row.tolist(), stamp) == ([2.0, 2.0], 120 * MS)
    # A stream that stops: decided once the bag is WAIT_NS past the step.
    assert actions.resolve(500 * MS, 500 * MS + 10 * MS + WAIT_NS) is PENDING
    assert actions.resolve(500 * MS, 500 * MS + 10 * MS + WAIT_NS + 1) is not PENDING


def test_recorded_actions_drop_non_finite_and_refuse_other_widths():
    actions = _recorded()
    assert actions.add(_array_item(1, (np.nan, 0.0))) == NON_FINITE
    assert actions.dropped == {NON_FINITE: 1} and actions.stamps == []
    with pytest.raises(ValueError, match='topic /a: the message at log time 2 has 3 values; '
                                         'the config has 2 actions'):
        actions.add(_array_item(2, (0.0, 0.0, 0.0)))


def test_recorded_joint_states_are_picked_by_name():
    actions = RecordedActions('/a', ('b', 'a'), joint_state=True, tolerance_ns=0, hold_ns=0)
    message = SimpleNamespace(name=['a', 'b', 'c'], position=[1.0, 2.0, 3.0],
                              header=SimpleNamespace(stamp=SimpleNamespace(sec=1, nanosec=5)))
    actions.add(SimpleNamespace(stamp_ns=7, message=message))
    row, stamp, _ = actions.resolve(1_000_000_005, 0, final=True)  # the bag ended
    assert row.tolist() == [2.0, 1.0] and stamp == 1_000_000_005
    message.name = ['a', 'c']
    with pytest.raises(ValueError, match=r"lacks joint\(s\) \['b'\]"):
        actions.add(SimpleNamespace(stamp_ns=8, message=message))


def _chunk(log_ms, stamp_ms, rows, period=0.1, names=('x',)):
    return SimpleNamespace(stamp_ns=log_ms * MS, message=SimpleNamespace(
        horizon=len(rows), action_dim=1, actions=list(rows), step_period=period,
        action_names=list(names), header=SimpleNamespace(stamp=SimpleNamespace(
            sec=0, nanosec=stamp_ms * MS))))


def test_executed_chunks_give_the_row_due_from_the_newest_received_chunk():
    chunks = ExecutedChunks('/action_chunk', ('x',))
    chunks.add(_chunk(0, 0, [10.0, 11.0, 12.0, 13.0]))
    chunks.add(_chunk(250, 200, [20.0, 21.0, 22.0]))  # arrives 50 ms late
    assert chunks.resolve(100 * MS, 100 * MS) is PENDING  # a chunk may still arrive at 100
    assert chunks.resolve(100 * MS, 101 * MS)[:2] == (11.0, 0)
    # At 200 ms the newer chunk has not arrived: the robot still executes the first one.
    assert chunks.resolve(200 * MS, 10**12)[0] == 12.0
    assert chunks.resolve(300 * MS, 10**12)[:2] == (21.0, 200 * MS)
    assert chunks.resolve(500 * MS, 10**12) == (None, 0, NO_ACTION)  # ran out
    with pytest.raises(ValueError, match="names its actions \\['y'\\]"):
        chunks.add(_chunk(600, 600, [1.0], names=('y',)))


# --- outcomes -----------------------------------------------------------------------------------
def _string(text):
    return SimpleNamespace(data=text)


def test_outcome_messages():
    where = 'topic /episode_outcome of bag b'
    assert outcome_of_message(_string('success'), 'std_msgs/msg/String', where).success
    assert not outcome_of_message(_string(' failure\n'), 'std_msgs/msg/String', where).success
    json_outcome = outcome_of_message(_string('{"success": true, "score": 0.5, "seed": 3}'),
                                      'std_msgs/msg/String', where)
    assert json_outcome.success and json_outcome.score == 0.5 and '"seed": 3' in json_outcome.text
    assert not outcome_of_message(SimpleNamespace(data=False), 'std_msgs/msg/Bool', where).success
    with pytest.raises(ValueError, match=f'{where}: outcome .maybe. is not one of'):
        outcome_of_message(_string('maybe'), 'std_msgs/msg/String', where)
    with pytest.raises(ValueError, match='needs a boolean "success"'):
        outcome_of_message(_string('{"success": "yes"}'), 'std_msgs/msg/String', where)


def test_labels_csv_and_conflicts(tmp_path):
    csv = tmp_path / 'labels.csv'
    csv.write_text('bag,success,score\nepisode_1,success,0.8\n/data/episode_2/,failure,\n')
    table = read_labels_csv(csv)
    assert table['episode_1'] == Outcome(True, 0.8, source=f'--labels {csv} line 2')
    labels = Labels(csv_path=csv)
    assert labels.for_bag('/somewhere/episode_1').success
    assert not labels.for_bag('/data/episode_2').success
    assert labels.for_bag('/data/episode_3') is None
    assert Labels('failure').for_bag('x').success is False
    recorded = Outcome(True, None, '{"success": true}', 'topic /o of bag x')
    assert combine(recorded, None, 'x') is recorded
    assert combine(recorded, Outcome(True, 0.7, source='csv'), 'x').score == 0.7
    with pytest.raises(ValueError, match='bag x: topic /o of bag x says success but --label '
                                         'says failure'):
        combine(recorded, Labels('failure').for_bag('x'), 'x')
    (tmp_path / 'bad.csv').write_text('name,ok\na,1\n')
    with pytest.raises(ValueError, match='needs a header with columns bag, success'):
        read_labels_csv(tmp_path / 'bad.csv')
