"""The policy server's engine thread and clients (fleet/engine.py) with a scripted policy.

Robots are threads calling ``client.infer`` as their inference threads do; the policy double
holds each batch until the test releases it, so which requests share a batch is decided by
the scheduling rules alone, not by timing. Waits are events with generous deadlines."""
import threading

import numpy as np
import pytest

from cosmos_policy_ros.fleet import engine as fleet_engine
from cosmos_policy_ros.fleet.engine import BatchingEngine, shared_policy
from cosmos_policy_ros.fleet.scheduler import ClientRemoved
from cosmos_policy_ros.interface import Observation, PolicyOutput
from cosmos_policy_ros.layout import LatentLayout

DEADLINE = 60.0
# The engine's clock for tests of the window: it never advances, so the window closes only when
# every client waits (however late a robot thread starts on a loaded machine), never by time.
STOPPED = lambda: 0.0  # noqa: E731


class GatePolicy:
    """infer_batch holds every batch until `release()`; outputs: actions = the seed."""

    def __init__(self, batch=True):
        self.layout = LatentLayout.preset('libero')
        self.model_id = 'gate'
        self.batches = []
        self.started = threading.Semaphore(0)
        self._gate = threading.Semaphore(0)
        self.resets = 0
        if not batch:
            self.infer_batch = None

    def infer_batch(self, requests):
        self.batches.append([r.observation.seed for r in requests])
        self.started.release()
        assert self._gate.acquire(timeout=DEADLINE)
        return [self._one(r.observation) for r in requests]

    def infer(self, observation, **options):
        self.batches.append([observation.seed])
        self.started.release()
        assert self._gate.acquire(timeout=DEADLINE)
        return self._one(observation)

    def _one(self, observation):
        if observation.seed < 0:
            return ValueError(f'bad observation {observation.seed}')
        return PolicyOutput(actions=np.full((2, 2), float(observation.seed), np.float32),
                            seed=observation.seed)

    def release(self, batches=1):
        for _ in range(batches):
            self._gate.release()

    def wait_started(self, count=1):
        for _ in range(count):
            assert self.started.acquire(timeout=DEADLINE), 'no batch started'

    def reset(self):
        self.resets += 1


class Robot:
    """A thread calling client.infer once (as a robot's inference thread does)."""

    def __init__(self, client, seed):
        self.result = None
        self.thread = threading.Thread(target=self._run, args=(client, seed), daemon=True)
        self.thread.start()

    def _run(self, client, seed):
        try:
            self.result = client.infer(Observation(images={}, proprio=np.zeros(2), seed=seed))
        except Exception as error:
            self.result = error

    def join(self):
        self.thread.join(DEADLINE)
        assert not self.thread.is_alive(), 'the robot never got its result'
        return self.result


def _queued(engine, count):
    deadline = threading.Event()
    for _ in range(int(DEADLINE / 0.01)):
        if engine.waiting() >= count:
            return
        deadline.wait(0.01)
    raise AssertionError(f'{count} requests never queued')


@pytest.fixture
def make_engine():
    engines = []

    def make(policy, **options):
        engine = BatchingEngine(policy, **options)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        assert engine.close(DEADLINE)


def test_an_idle_engine_runs_at_once_then_batches_everything_that_waited(make_engine):
    policy = GatePolicy()
    engine = make_engine(policy, max_batch=8)
    clients = [engine.client(f'arm_{i}') for i in range(4)]
    first = Robot(clients[0], 10)
    policy.wait_started()  # running alone: nothing else was waiting
    others = [Robot(client, 11 + i) for i, client in enumerate(clients[1:])]
    _queued(engine, 3)
    policy.release()
    policy.wait_started()
    policy.release()
    assert float(first.join().actions[0, 0]) == 10
    assert [float(robot.join().actions[0, 0]) for robot in others] == [11, 12, 13]
    assert policy.batches[0] == [10] and sorted(policy.batches[1]) == [11, 12, 13]
    stats = engine.stats.snapshot()
    assert stats['batch_sizes'] == {1: 1, 3: 1} and stats['requests'] == 4
    assert stats['mean_batch'] == 2.0 and stats['queue_seconds']['count'] == 4


def test_max_batch_one_runs_the_same_requests_one_at_a_time(make_engine):
    policy = GatePolicy()
    engine = make_engine(policy, max_batch=1)
    clients = [engine.client(f'arm_{i}') for i in range(3)]
    first = Robot(clients[0], 0)
    policy.wait_started()
    rest = [Robot(clients[1], 1), Robot(clients[2], 2)]
    _queued(engine, 2)
    policy.release(3)
    for robot in [first, *rest]:
        robot.join()
    assert sorted(map(len, policy.batches)) == [1, 1, 1]


def test_a_window_gathers_every_robot_of_a_tick_into_one_batch(make_engine):
    policy = GatePolicy()
    engine = make_engine(policy, max_batch=8, batch_window=1.0, clock=STOPPED)
    clients = [engine.client(f'arm_{i}') for i in range(3)]
    robots = [Robot(client, i) for i, client in enumerate(clients)]
    policy.wait_started()  # not before every client waited (all 3): one batch
    policy.release()
    for robot in robots:
        robot.join()
    assert [sorted(batch) for batch in policy.batches] == [[0, 1, 2]]


def test_a_failing_request_fails_alone(make_engine):
    policy = GatePolicy()
    engine = make_engine(policy, max_batch=8, batch_window=1.0, clock=STOPPED)
    good, bad = engine.client('good'), engine.client('bad')
    robots = [Robot(good, 5), Robot(bad, -1)]
    policy.wait_started()
    policy.release()
    assert float(robots[0].join().actions[0, 0]) == 5
    error = robots[1].join()
    assert isinstance(error, ValueError) and 'bad observation -1' in str(error)
    assert engine.stats.snapshot()['failed_requests'] == 1


def test_a_removed_robot_never_runs_its_waiting_request(make_engine):
    policy = GatePolicy()
    engine = make_engine(policy, max_batch=8)
    running, leaving, staying = (engine.client(name) for name in ('a', 'b', 'c'))
    first = Robot(running, 1)
    policy.wait_started()
    waiting = [Robot(leaving, 2), Robot(staying, 3)]
    _queued(engine, 2)
    leaving.close()  # removed while its request waits: dropped, the caller told why
    assert isinstance(waiting[0].join(), ClientRemoved)
    with pytest.raises(ClientRemoved):
        leaving.infer(Observation(images={}, proprio=np.zeros(2), seed=9))
    policy.release(2)
    assert float(first.join().actions[0, 0]) == 1
    assert float(waiting[1].join().actions[0, 0]) == 3
    assert policy.batches == [[1], [3]]  # b's request never reached the policy


def test_a_robot_removed_while_its_batch_runs_does_not_hold_up_the_others(make_engine):
    policy = GatePolicy()
    engine = make_engine(policy, max_batch=8, batch_window=1.0, clock=STOPPED)
    a, b = engine.client('a'), engine.client('b')
    robots = [Robot(a, 1), Robot(b, 2)]
    policy.wait_started()
    a.close()  # mid-batch: the batch finishes; b gets its chunk
    policy.release()
    assert float(robots[1].join().actions[0, 0]) == 2
    robots[0].join()  # a's caller gets the result and discards it (its loop stopped)
    assert engine.clients == (b,)


def test_a_policy_without_infer_batch_runs_its_requests_one_by_one(make_engine):
    policy = GatePolicy(batch=False)
    engine = make_engine(policy, max_batch=8)
    busy = Robot(engine.client('busy'), 9)
    policy.wait_started()  # the engine is busy: the next two requests wait together
    robots = [Robot(engine.client(f'arm_{i}'), i) for i in range(2)]
    _queued(engine, 2)
    policy.release()
    for _ in robots:
        policy.wait_started()
        policy.release()
    assert float(busy.join().actions[0, 0]) == 9
    assert sorted(float(robot.join().actions[0, 0]) for robot in robots) == [0, 1]
    assert policy.batches[0] == [9] and sorted(policy.batches[1:]) == [[0], [1]]
    # The two waiting requests: one engine batch, two infers.
    assert engine.stats.snapshot()['batch_sizes'] == {1: 1, 2: 1}


def test_close_fails_the_waiting_requests_and_refuses_new_clients():
    policy = GatePolicy()
    engine = BatchingEngine(policy, max_batch=1)
    first = Robot(engine.client('a'), 1)
    policy.wait_started()
    second = Robot(engine.client('b'), 2)
    _queued(engine, 1)
    closer = threading.Thread(target=engine.close, args=(DEADLINE,))
    closer.start()
    assert isinstance(second.join(), ClientRemoved)
    policy.release()  # the running batch finishes
    closer.join(DEADLINE)
    assert float(first.join().actions[0, 0]) == 1
    with pytest.raises(ClientRemoved):
        engine.client('c')


def test_reset_reaches_the_shared_policy(make_engine):
    policy = GatePolicy()
    client = make_engine(policy).client('a')
    client.reset()
    assert policy.resets == 1
    assert (client.layout, client.model_id) == (policy.layout, 'gate')


def test_shared_policy_hands_out_clients_of_the_served_engine(make_engine):
    engine = make_engine(GatePolicy())
    fleet_engine.serve(engine, '/models/x', device='cpu', dtype='float32',
                       decode_future_images=False)
    try:
        client = shared_policy('/models/x', device='cpu', dtype='float32',
                               decode_future_images=False)
        assert client in engine.clients and client.model_id == 'gate'
        with pytest.raises(ValueError, match='no policy server in this process serves'):
            shared_policy('/models/x', device='cuda', dtype='float32',
                          decode_future_images=False)
    finally:
        fleet_engine.unserve(engine)
    with pytest.raises(ValueError, match='only works for the robots of policy_server'):
        shared_policy('/models/x', device='cpu', dtype='float32', decode_future_images=False)


def test_batch_window_is_checked():
    with pytest.raises(ValueError, match='batch_window'):
        BatchingEngine(GatePolicy(), batch_window=-0.1)
