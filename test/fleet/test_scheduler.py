"""The policy server's batch formation (fleet/scheduler.py), without threads or a graph."""
import numpy as np
import pytest

from cosmos_policy_ros.fleet.scheduler import (batch_key, BatchScheduler, ClientBusy,
                                               ClientRemoved)
from cosmos_policy_ros.interface import InferenceRequest, Observation


def request(steps=5, candidates=None, known=0, seed=0):
    observation = Observation(images={}, proprio=np.zeros(2), instruction='stack', seed=seed)
    return InferenceRequest(observation, num_steps=steps, num_candidates=candidates,
                            known_actions=np.zeros((known, 2)) if known else None)


def clients(batch):
    return [item.client for item in batch]


def test_a_request_at_an_idle_engine_runs_alone_and_the_waiting_ones_go_together():
    scheduler = BatchScheduler(max_batch=8)
    scheduler.add('a', request())
    assert clients(scheduler.next_batch()) == ['a']  # idle: at once, alone
    for name in 'bcd':  # arrive while a's batch runs
        scheduler.add(name, request())
    assert clients(scheduler.running) == ['a']  # still running
    with pytest.raises(RuntimeError, match='while a batch is running'):
        scheduler.next_batch()
    assert clients(scheduler.done()) == ['a']
    assert clients(scheduler.next_batch()) == ['b', 'c', 'd']  # everything due, together
    scheduler.done()
    assert scheduler.next_batch() == () and scheduler.waiting == 0


def test_max_batch_splits_the_waiting_requests_oldest_first():
    scheduler = BatchScheduler(max_batch=3)
    for name in 'abcdefg':
        scheduler.add(name, request())
    batches = []
    while scheduler.waiting:
        batches.append(clients(scheduler.next_batch()))
        scheduler.done()
    assert batches == [['a', 'b', 'c'], ['d', 'e', 'f'], ['g']]


def test_incompatible_requests_never_share_a_batch_and_nobody_starves():
    scheduler = BatchScheduler(max_batch=4)
    keys = {'a': request(steps=5), 'b': request(steps=10), 'c': request(steps=5),
            'd': request(candidates=4), 'e': request(steps=5, known=2), 'f': request(steps=5)}
    for name, item in keys.items():
        scheduler.add(name, item)
    served = []
    # A greedy robot: as soon as its request is served, it sends the next one (steps 5, the
    # key of the head); the others must still be served, each within its position + 1 batches.
    for round_index in range(6):
        batch = scheduler.next_batch()
        assert len({item.key for item in batch}) == 1  # one pass: one key
        served.append(clients(batch))
        scheduler.done()
        if 'a' in clients(batch):
            scheduler.add('a', request(steps=5))
    first_served = {name: next(i for i, batch in enumerate(served) if name in batch)
                    for name in keys}
    assert served[0] == ['a', 'c', 'f']
    assert first_served == {'a': 0, 'c': 0, 'f': 0, 'b': 1, 'd': 2, 'e': 3}
    positions = list(keys)
    assert all(first_served[name] <= positions.index(name) for name in keys)


def test_batch_key_separates_what_cannot_share_a_denoising_pass():
    assert batch_key(request()) == batch_key(request(seed=99))  # seeds are per sample
    assert batch_key(request(candidates=None)) == batch_key(request(candidates=1))
    assert len({batch_key(r) for r in (request(), request(steps=10), request(candidates=2),
                                       request(known=3), request(known=2))}) == 5


def test_one_request_per_robot_in_flight():
    scheduler = BatchScheduler(max_batch=2)
    scheduler.add('a', request())
    with pytest.raises(ClientBusy):
        scheduler.add('a', request())  # waiting
    scheduler.next_batch()
    with pytest.raises(ClientBusy):
        scheduler.add('a', request())  # running
    scheduler.done()
    scheduler.add('a', request())  # done: the next one is fine


def test_a_robot_removed_mid_batch_finishes_flagged_and_its_waiting_request_is_dropped():
    scheduler = BatchScheduler(max_batch=2)
    for name in 'abc':
        scheduler.add(name, request())
    running = scheduler.next_batch()
    assert clients(running) == ['a', 'b']
    assert scheduler.remove('a') == ()  # running: nothing dropped, it finishes ...
    assert [item.removed for item in running] == [True, False]  # ... flagged for its caller
    scheduler.add('d', request())
    finished = scheduler.done()
    assert clients(finished) == ['a', 'b']
    with pytest.raises(ClientRemoved):
        scheduler.add('a', request())  # refused from now on
    dropped = scheduler.remove('c')  # waiting: dropped, never runs
    assert clients(dropped) == ['c']
    assert clients(scheduler.next_batch()) == ['d']


def test_max_batch_is_checked():
    for bad in (0, -1, 1.5, True, '2'):
        with pytest.raises(ValueError, match='max_batch'):
            BatchScheduler(bad)
