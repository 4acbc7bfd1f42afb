"""The replay of a bag, without ROS: the player's options (``PlayConfig``) and its pacing.

Before each message, and every ``CLOCK_PERIOD_NS`` of bag time in between, the player
publishes ``/clock`` with the bag time (``schedule``); ``Pacer`` maps bag time to wall time at
a rate factor and ``run_schedule`` emits each event when it is due; ``lockstep_steps`` groups
the messages into the steps of a lockstep replay. All of it is pure and takes the clock as an
argument; the ROS side (publishers, /clock, the recorder) is ``ros/player.py``, which
documents the QoS and the lockstep protocol.
"""
from dataclasses import dataclass, field
import math
from typing import Callable, Iterable, Iterator, NamedTuple, Optional, Tuple

from cosmos_policy_ros.bags.reader import BagMessage
from cosmos_policy_ros.bags.storage import STORAGES

CLOCK_PERIOD_NS = 10_000_000  # /clock every 10 ms of bag time between messages (100 Hz)


def parse_remaps(items):
    """['FROM:=TO', ...] -> {FROM: TO}; raises ValueError naming a malformed entry."""
    remaps = {}
    for item in items or ():
        source, separator, target = item.partition(':=')
        if not separator or not source or not target:
            raise ValueError(f'remap {item!r} must look like FROM:=TO (e.g. '
                             f'/primary/image_raw:=/camera/image).')
        if source in remaps and remaps[source] != target:
            raise ValueError(f'topic {source!r} is remapped twice: to {remaps[source]!r} and '
                             f'{target!r}.')
        remaps[source] = target
    return remaps


@dataclass(frozen=True)
class PlayConfig:
    """Options of `cosmos-policy-replay play`; times in seconds."""

    bag: str
    rate: float = 1.0  # bag seconds per wall second; math.inf: as fast as possible
    start: Optional[float] = None  # window start, seconds after the bag's first message
    end: Optional[float] = None  # window end (exclusive), seconds after the first message
    remaps: dict = field(default_factory=dict)  # bag topic -> published topic
    topics: Optional[Tuple[str, ...]] = None  # bag topics to publish (all when None)
    loop: bool = False
    clock: bool = True
    latch: Tuple[str, ...] = ()  # extra bag topics to publish transient-local
    delay: float = 1.0  # wall seconds between creating publishers and the first message
    wait_for_subscribers: bool = False
    wait_timeout: float = 60.0  # wall seconds wait_for_subscribers waits at most
    lockstep: Optional[float] = None  # step in bag seconds (see the module docstring)
    lockstep_topic: str = 'action_chunk'
    lockstep_timeout: float = 30.0  # wall seconds to wait for the answer to one step
    record: Optional[str] = None  # output bag path
    record_topics: Tuple[str, ...] = ('action_chunk', 'value')
    record_storage: str = 'mcap'
    tail: float = 2.0  # wall seconds of recording after the last message

    def __post_init__(self):
        if not (isinstance(self.rate, (int, float)) and self.rate > 0
                and not math.isnan(self.rate)):
            raise ValueError(f'`rate` must be > 0 (inf: as fast as possible). Got {self.rate!r}.')
        for name in ('delay', 'tail'):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f'`{name}` must be >= 0 seconds. Got {value!r}.')
        for name in ('wait_timeout', 'lockstep_timeout') + (
                ('lockstep',) if self.lockstep is not None else ()):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f'`{name}` must be > 0 seconds. Got {value!r}.')
        if self.lockstep is not None and not self.clock:
            raise ValueError('`lockstep` advances /clock step by step: it needs the clock '
                             '(drop --no-clock).')
        if self.lockstep is not None and not self.lockstep_topic:
            raise ValueError('`lockstep_topic` must name the topic the node answers on.')
        if self.record_storage not in STORAGES:
            raise ValueError(f'`record_storage` must be mcap or sqlite3. '
                             f'Got {self.record_storage!r}.')
        if self.record is not None and not self.record_topics:
            raise ValueError('`record_topics` must name at least one topic to record.')
        object.__setattr__(self, 'remaps', dict(self.remaps))
        if self.topics is not None:
            object.__setattr__(self, 'topics', tuple(self.topics))
        object.__setattr__(self, 'latch', tuple(self.latch))
        object.__setattr__(self, 'record_topics', tuple(self.record_topics))


class Event(NamedTuple):
    """Something to do at bag time sim_ns: publish `message` (a BagMessage), or only /clock."""

    sim_ns: int
    message: Optional[BagMessage]


def schedule(messages: Iterable[BagMessage], *, clock_period_ns=CLOCK_PERIOD_NS,
             origin_ns=None) -> Iterator[Event]:
    """Interleave clock-only ticks with messages (in log-time order).

    Ticks lie on the grid origin_ns + j * clock_period_ns (origin: the first message's time)
    strictly between consecutive messages. clock_period_ns None: no ticks.
    """
    previous = None
    for message in messages:
        if origin_ns is None:
            origin_ns = message.stamp_ns
        if clock_period_ns and previous is not None:
            # First grid point after `previous`, then every period until the message.
            j = (previous - origin_ns) // clock_period_ns + 1
            tick = origin_ns + j * clock_period_ns
            while tick < message.stamp_ns:
                yield Event(tick, None)
                tick += clock_period_ns
        yield Event(message.stamp_ns, message)
        previous = message.stamp_ns


class Pacer:
    """Maps bag time to wall time: due(sim) = wall0 + (sim - sim0) / rate.

    clock: a function returning seconds (time.monotonic in the player, a fake in tests).
    A player that falls behind publishes at once (it never skips messages).
    """

    def __init__(self, rate, clock: Callable[[], float]):
        if not rate > 0:
            raise ValueError(f'`rate` must be > 0. Got {rate!r}.')
        self.rate = rate
        self.clock = clock
        self._sim0 = None
        self._wall0 = None

    def start(self, sim_ns):
        """Anchor bag time sim_ns to the current wall time."""
        self._sim0 = int(sim_ns)
        self._wall0 = self.clock()

    def due(self, sim_ns):
        """Wall time at which bag time sim_ns is due."""
        if self._sim0 is None:
            raise RuntimeError('Pacer.start() must be called first.')
        if math.isinf(self.rate):
            return self._wall0
        return self._wall0 + (int(sim_ns) - self._sim0) / 1e9 / self.rate

    def remaining(self, sim_ns):
        """Seconds until sim_ns is due (<= 0: due now)."""
        return self.due(sim_ns) - self.clock()


def run_schedule(events: Iterable[Event], pacer: Pacer, wait: Callable[[float], None],
                 emit: Callable[[Event], None], *, should_stop=lambda: False):
    """Emit every event at its due time. wait(seconds) must block at most `seconds`.

    The pacer must already be started. Returns the number of events emitted; stops early when
    should_stop() becomes true.
    """
    emitted = 0
    for event in events:
        while True:
            if should_stop():
                return emitted
            remaining = pacer.remaining(event.sim_ns)
            if remaining <= 0:
                break
            wait(remaining)
        emit(event)
        emitted += 1
    return emitted


def lockstep_steps(messages: Iterable[BagMessage], first_ns, end_ns, step_ns):
    """Group messages (log-time order) into lockstep steps from first_ns on.

    Yields (clock_ns, messages, full): the messages with log times in (clock_ns - step_ns,
    clock_ns] (the first step also holds those at first_ns), the /clock the step ends with
    (first_ns + k * step_ns; the last step is cut at end_ns - 1, the window's last bag time)
    and whether it is a full step (the node's control timer ticks once in it). Every step is
    yielded, empty ones too: the node's clock advances evenly.
    """
    if step_ns <= 0:
        raise ValueError(f'`step_ns` must be > 0. Got {step_ns!r}.')
    last_ns = end_ns - 1
    boundary = first_ns + step_ns
    batch = []
    for message in messages:
        while message.stamp_ns > boundary:
            yield boundary, batch, True
            batch = []
            boundary += step_ns
        batch.append(message)
    while boundary < last_ns:
        yield boundary, batch, True
        batch = []
        boundary += step_ns
    yield last_ns, batch, boundary == last_ns
