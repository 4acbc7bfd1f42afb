"""The policy server's engine: one shared policy, one thread, batches of the robots' requests.

Each robot's ControlLoop gets a ``PolicyClient`` as its policy. ``client.infer`` (called by the
robot's own inference thread, as a node calls any policy) queues the request and blocks until
its result is back. The engine thread runs the batches of the BatchScheduler (scheduler.py):
immediately when it is idle, otherwise everything compatible that waits when it frees, at most
``max_batch`` together, through ``policy.infer_batch`` (interface.BatchPolicy; a policy without
it runs its requests one after another). So each robot keeps its own rate, topics, seeds and
rules, and its chunk is the one it would get alone (engine/policy.py: per-request seeds); a
request that fails (a bad observation) fails alone.

``batch_window`` (seconds; 0 here, a fleet file's default 0.01: fleet/config.py) lets an idle
engine wait that long after the first request for the others before it starts, unless every
client already waits: docs/fleet.md has the measurement that decides it. ``max_batch = 1`` is
the same server running the requests one at a time (the baseline of bench/fleet_sim.py).

``shared_policy`` is the policy factory of the robots of a policy server
(``policy_factory: cosmos_policy_ros.fleet.engine:shared_policy``): it hands out a client of
the engine the server registered (``serve``) for that model, device and dtype in this process.

A shared policy's ``reset`` (a robot's task changed) is forwarded: CosmosPolicy only drops
cached text embeddings then, which no other robot's chunk depends on. A policy that keeps
per-episode state in itself cannot be shared by several robots. stdlib only (no torch, rclpy).
"""
import collections
import threading
import time
import weakref

from cosmos_policy_ros.counters import RollingWindow
from cosmos_policy_ros.fleet.scheduler import BatchScheduler, ClientRemoved
from cosmos_policy_ros.interface import InferenceRequest

ENGINE_THREAD = 'cosmos_policy_engine'
STOP_TIMEOUT = 30.0  # seconds close() waits for a running batch


def run_batch(policy, requests):
    """Results of `requests` on `policy`: its infer_batch, else infer one by one; one
    PolicyOutput or exception per request."""
    infer_batch = getattr(policy, 'infer_batch', None)
    if infer_batch is not None:
        return list(infer_batch(requests))
    results = []
    for request in requests:
        try:
            results.append(policy.infer(request.observation, **request.infer_kwargs()))
        except Exception as error:  # the request's failure, handed to its robot
            results.append(error)
    return results


class Ticket:
    """The result of one queued request, once the engine set it."""

    def __init__(self):
        self._done = threading.Event()
        self._result = None

    def set(self, result):
        self._result = result
        self._done.set()

    def wait(self, timeout=None):
        """The PolicyOutput or exception; TimeoutError when not done within `timeout`."""
        if not self._done.wait(timeout):
            raise TimeoutError('the policy server did not answer in time')
        return self._result


class EngineStats:
    """What the server reports about its engine (thread-safe; steady seconds)."""

    def __init__(self, window=200):
        self._lock = threading.Lock()
        self.batch_sizes = collections.Counter()  # batch size -> batches
        self.batch_seconds = RollingWindow(window)
        self.queue_seconds = RollingWindow(window)  # request queued -> its batch started
        self.failed_requests = 0

    def batch(self, size, seconds, waits, failures):
        with self._lock:
            self.batch_sizes[size] += 1
            self.failed_requests += failures
        self.batch_seconds.add(seconds)
        for wait in waits:
            self.queue_seconds.add(wait)

    def snapshot(self):
        """{'batches', 'requests', 'mean_batch', 'batch_sizes', 'failed_requests',
        'batch_seconds', 'queue_seconds'}."""
        with self._lock:
            sizes = dict(sorted(self.batch_sizes.items()))
            failed = self.failed_requests
        batches = sum(sizes.values())
        requests = sum(size * count for size, count in sizes.items())
        return {'batches': batches, 'requests': requests,
                'mean_batch': requests / batches if batches else 0.0, 'batch_sizes': sizes,
                'failed_requests': failed,
                'batch_seconds': self.batch_seconds.summary((50, 99)),
                'queue_seconds': self.queue_seconds.summary((50, 99))}


class BatchingEngine:
    """One shared policy served to many clients in batches (module docstring).

    policy: a Policy (ideally a BatchPolicy); max_batch: most requests per batch;
    batch_window: seconds an idle engine waits for more requests (0: none); clock: steady
    seconds (tests pass a fake).
    """

    def __init__(self, policy, *, max_batch=8, batch_window=0.0, clock=time.monotonic):
        if not (isinstance(batch_window, (int, float)) and not isinstance(batch_window, bool)
                and 0.0 <= batch_window <= 1.0):
            raise ValueError(f'`batch_window` must be a number of seconds in [0, 1]. Got '
                             f'{batch_window!r}.')
        self.policy = policy
        self.layout = policy.layout
        self.model_id = str(getattr(policy, 'model_id', ''))
        self.batch_window = float(batch_window)
        self.stats = EngineStats()
        self._scheduler = BatchScheduler(max_batch)
        self._clock = clock
        self._condition = threading.Condition()
        self._clients = weakref.WeakSet()  # live clients: a robot's loop released, it leaves
        self._queued_at = {}  # id(Waiting) -> clock() when queued
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name=ENGINE_THREAD, daemon=True)
        self._thread.start()

    @property
    def max_batch(self):
        return self._scheduler.max_batch

    @property
    def clients(self):
        with self._condition:
            return tuple(self._clients)

    def client(self, name):
        """A new PolicyClient named `name` (for errors and logs). The engine keeps only a weak
        reference: a client nobody holds any more (its robot was cleaned up) is gone."""
        client = PolicyClient(self, name)
        with self._condition:
            if self._closing:
                raise ClientRemoved('the policy server is shutting down')
            self._clients.add(client)
        return client

    def submit(self, client, request):
        """Queue `request` of `client`; returns its Ticket (ClientRemoved, ClientBusy)."""
        ticket = Ticket()
        with self._condition:
            if self._closing:
                raise ClientRemoved('the policy server is shutting down')
            item = self._scheduler.add(client, request, ticket)
            self._queued_at[id(item)] = self._clock()
            self._condition.notify_all()
        return ticket

    def remove(self, client):
        """Remove `client`: its waiting request fails with ClientRemoved and never runs; one
        running finishes (its result goes to a caller that discards it)."""
        with self._condition:
            dropped = self._scheduler.remove(client)
            self._clients.discard(client)
            for item in dropped:
                self._queued_at.pop(id(item), None)
        for item in dropped:
            item.ticket.set(ClientRemoved(f'{client.name} was removed from the policy server'))

    def waiting(self):
        """Requests waiting now (not running)."""
        with self._condition:
            return self._scheduler.waiting

    def close(self, timeout=STOP_TIMEOUT):
        """Stop: waiting requests fail with ClientRemoved, a running batch finishes; True when
        the thread ended within `timeout` seconds."""
        with self._condition:
            self._closing = True
            dropped = [item for client in list(self._clients)
                       for item in self._scheduler.remove(client)]
            self._condition.notify_all()
        for item in dropped:
            item.ticket.set(ClientRemoved('the policy server is shutting down'))
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # --- the engine thread -------------------------------------------------------------------
    def _ready(self):
        """Whether the waiting requests should start now (called with the lock held): always
        without a window; with one, once it has passed since the oldest was queued, a full
        batch waits, or every client waits."""
        scheduler = self._scheduler
        if not scheduler.waiting:
            return False, None
        if self.batch_window <= 0 or self._closing:
            return True, None
        waiting = scheduler.clients_waiting()
        if len(waiting) >= scheduler.max_batch or len(set(waiting)) >= len(self._clients):
            return True, None
        oldest = min(self._queued_at.values())
        left = oldest + self.batch_window - self._clock()
        return left <= 0, max(left, 0.0)

    def _loop(self):
        while True:
            with self._condition:
                while True:
                    ready, left = self._ready()
                    if ready:
                        break
                    if self._closing and not self._scheduler.waiting:
                        return
                    self._condition.wait(left)
                batch = self._scheduler.next_batch()
                started = self._clock()
                waits = [started - self._queued_at.pop(id(item)) for item in batch]
            try:
                results = run_batch(self.policy, [item.request for item in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f'infer_batch returned {len(results)} results for '
                                       f'{len(batch)} requests')
            except Exception as error:  # the whole pass failed: every request of it did
                results = [error] * len(batch)
            seconds = self._clock() - started
            with self._condition:
                self._scheduler.done()
            self.stats.batch(len(batch), seconds, waits,
                             sum(isinstance(result, Exception) for result in results))
            for item, result in zip(batch, results):
                item.ticket.set(result)


class PolicyClient:
    """One robot's view of the shared policy: the Policy protocol (interface.py)."""

    def __init__(self, engine, name):
        self._engine = engine
        self.name = str(name)
        self.layout = engine.layout
        self.model_id = engine.model_id

    def infer(self, observation, *, num_steps=None, num_candidates=None, known_actions=None):
        """Queue the request, wait for its batch, return its PolicyOutput (or raise its
        error, ClientRemoved when the robot was removed meanwhile)."""
        request = InferenceRequest(observation, num_steps, num_candidates, known_actions)
        result = self._engine.submit(self, request).wait()
        if isinstance(result, Exception):
            raise result
        return result

    def reset(self):
        """Forwarded to the shared policy (module docstring)."""
        self._engine.policy.reset()

    def close(self):
        """Leave the server (a waiting request fails, later ones are refused)."""
        self._engine.remove(self)

    def __repr__(self):
        return f'PolicyClient({self.name!r})'


# --- the robots' policy factory -------------------------------------------------------------
_SERVED = {}  # (model_path, device, dtype, options) -> BatchingEngine
_SERVED_LOCK = threading.Lock()


def _served_key(model_path, device, dtype, options):
    return (str(model_path), str(device), str(dtype), repr(sorted(options.items())))


def serve(engine, model_path, *, device, dtype, **options):
    """Register `engine` as the one serving `model_path` (device, dtype, factory options) in
    this process: ``shared_policy`` with the same arguments then returns its clients."""
    with _SERVED_LOCK:
        _SERVED[_served_key(model_path, device, dtype, options)] = engine


def unserve(engine):
    """Forget `engine` (the server is shutting down)."""
    with _SERVED_LOCK:
        for key in [key for key, value in _SERVED.items() if value is engine]:
            del _SERVED[key]


def shared_policy(model_path, *, device='auto', dtype='auto', **options):
    """Policy factory of a policy server's robots: a new client of the engine serving this
    model in this process (a ValueError when none does, e.g. in a plain policy_node)."""
    with _SERVED_LOCK:
        engine = _SERVED.get(_served_key(model_path, device, dtype, options))
    if engine is None:
        raise ValueError(f'no policy server in this process serves {model_path!r} (device '
                         f'{device!r}, dtype {dtype!r}, {options}): the factory '
                         f'cosmos_policy_ros.fleet.engine:shared_policy only works for the '
                         f'robots of policy_server')
    return engine.client(model_path)
