"""Batch formation of the policy server: which waiting requests the engine runs together.

Each robot (a *client*) has at most one request waiting or running: its control loop starts
no tick while its last inference is in flight. The rules:

* A request waits in arrival order. ``next_batch`` takes the oldest waiting request, then the
  next oldest that are *compatible* with it (the same ``batch_key``: requests with different
  sampler steps, candidates, inpainted steps or text length cannot share one denoising pass),
  up to ``max_batch``. The oldest request always runs in the next batch, so a request with k
  older ones runs within k + 1 batches: no robot starves, whatever the others send.
* The engine asks for a batch whenever it is idle: a request that arrives at an idle engine
  runs at once, alone; requests that arrive while a batch runs wait and go together in the
  next one (no waiting window: see docs/fleet.md for the measurement).
* ``remove(client)`` drops the client's waiting request (it never runs) and refuses its later
  ones; a request of it that is already running finishes, and the caller discards its result.

Pure bookkeeping, not thread-safe by itself: the engine (engine.py) holds its lock around every
call. numpy-free, stdlib only.
"""
from dataclasses import dataclass, field
import itertools
from typing import Hashable, Tuple


def batch_key(request):
    """What two InferenceRequests must share to run in one batched pass."""
    known = request.known_actions
    text = request.observation.text_embedding
    return (request.num_steps, request.num_candidates or 1,
            0 if known is None else len(known),
            None if text is None else tuple(getattr(text, 'shape', ())))


@dataclass(eq=False)
class Waiting:
    """One request in the scheduler: its client, the request, its key and arrival number."""

    client: Hashable
    request: object
    key: Hashable
    sequence: int
    ticket: object = None  # the engine's handle for the result (opaque here)
    removed: bool = field(default=False)  # its client was removed while it ran


class ClientBusy(RuntimeError):
    """A client sent a second request while its first one was still waiting or running."""


class ClientRemoved(RuntimeError):
    """A request of a client that was removed from the server."""


class BatchScheduler:
    """Waiting requests and the batches they form (module docstring)."""

    def __init__(self, max_batch):
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f'`max_batch` must be a positive integer. Got {max_batch!r}.')
        self.max_batch = max_batch
        self._waiting = []  # Waiting, oldest first
        self._running = []  # Waiting of the batch being run
        self._removed = set()
        self._sequence = itertools.count()

    @property
    def waiting(self):
        """Number of requests waiting (not running)."""
        return len(self._waiting)

    @property
    def running(self):
        """The batch being run (a tuple of Waiting; empty when the engine is idle)."""
        return tuple(self._running)

    def add(self, client, request, ticket=None):
        """Queue a request of `client`; returns its Waiting.

        Raises ClientRemoved for a removed client and ClientBusy when the client already has
        a request waiting or running (its control loop should not have started a tick).
        """
        if client in self._removed:
            raise ClientRemoved(f'{client} was removed from the policy server')
        if any(item.client == client for item in self._waiting + self._running):
            raise ClientBusy(f'{client} already has a request waiting or running')
        item = Waiting(client, request, batch_key(request), next(self._sequence), ticket)
        self._waiting.append(item)
        return item

    def next_batch(self):
        """The next batch (a tuple of Waiting, oldest first), now running; () when nothing
        waits. Call only when the previous batch is done."""
        if self._running:
            raise RuntimeError('next_batch called while a batch is running')
        if not self._waiting:
            return ()
        key = self._waiting[0].key
        batch = [item for item in self._waiting if item.key == key][:self.max_batch]
        taken = {id(item) for item in batch}
        self._waiting = [item for item in self._waiting if id(item) not in taken]
        self._running = batch
        return tuple(batch)

    def done(self):
        """The running batch finished: returns it (its removed clients' items are flagged)."""
        batch, self._running = tuple(self._running), []
        return batch

    def remove(self, client):
        """Remove `client`: returns its waiting requests (dropped, never run); a running one
        finishes and is flagged ``removed``. Later requests of the client are refused."""
        self._removed.add(client)
        dropped = tuple(item for item in self._waiting if item.client == client)
        self._waiting = [item for item in self._waiting if item.client != client]
        for item in self._running:
            if item.client == client:
                item.removed = True
        return dropped

    def clients_waiting(self) -> Tuple:
        """The clients with a request waiting, oldest first."""
        return tuple(item.client for item in self._waiting)
