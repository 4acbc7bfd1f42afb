"""The node's rules without a ROS graph: ``OfflineNode`` drives the node's own ``ControlLoop``
(``cosmos_policy_ros.control_loop``: conversions, the sync buffer, the tick and finish
decisions, the chunk's fields) with messages and a clock given by the caller, inference taking
no time on that clock; each tick gives a ``Tick``: a chunk, or the reason there was none.
"""
from collections import Counter
from dataclasses import dataclass, field
import math
import time
from typing import Mapping, Optional, Tuple

import numpy as np

from cosmos_policy_ros.bags.storage import BagError
from cosmos_policy_ros.control_loop import Chunk, ControlLoop, INFERENCE_ERROR, RECEIVED, Skip

CHUNK = 'chunk'  # status of a tick that produced a chunk


def absolute_topic(topic):
    """A node topic as it appears in a bag recorded in the root namespace."""
    return topic if topic.startswith('/') else '/' + topic


def check_topics(info, streams, actions_topic):
    """BagError unless the bag (`info`) has every input stream's topic with the type the
    configuration reads there, and the recorded-actions topic (when not None)."""
    available = sorted(info.topics)
    for topic, readers in streams.items():
        for stream in readers:
            if topic not in info.topics:
                raise BagError(f'bag {info.path} has no topic {topic} (input stream '
                               f'{stream.name!r}); it has {available}. Set the topic in the '
                               f'configuration (camera.<name>.topic, proprio.<name>.topic).')
            if info.topics[topic].msgtype != stream.msg_type:
                raise BagError(f'topic {topic} in bag {info.path} is '
                               f'{info.topics[topic].msgtype}; the configuration reads '
                               f'{stream.msg_type} there (input stream {stream.name!r}).')
    if actions_topic is not None and actions_topic not in info.topics:
        raise BagError(f'bag {info.path} has no recorded-actions topic {actions_topic}; it has '
                       f'{available}.')


@dataclass(frozen=True)
class Tick:
    """One control tick: a chunk, or the reason there was none."""

    time_ns: int                      # bag time of the tick
    status: str                       # CHUNK or a skip/rejection reason
    detail: str = ''
    reference_ns: Optional[int] = None  # reference stamp of the observation used
    stamps: Mapping[str, int] = field(default_factory=dict)
    seed: Optional[int] = None
    actions: Optional[np.ndarray] = None  # (K, d) float32, after the safety check
    value: float = math.nan
    candidate_values: Tuple[float, ...] = ()
    selected: int = 0
    latency_s: float = math.nan
    num_steps: int = 0
    chunk: Optional[Chunk] = None  # what the node would publish


class OfflineNode:
    """The node's ControlLoop driven by bag time, inference taking no bag time.

    policy: a Policy; config: the NodeConfig the node would run with. clock: wall clock for
    latencies (an argument, so tests can fake it).
    """

    def __init__(self, policy, config, *, clock=time.perf_counter):
        self.policy = policy
        self.config = config
        self.loop = ControlLoop(policy, config)
        self.loop.start()
        self.binding = self.loop.binding
        self.buffer = self.loop.buffer
        self.streams = {}  # topic -> its InputStreams (several proprio sources may share one)
        for stream in self.loop.streams:
            self.streams.setdefault(absolute_topic(stream.topic), []).append(stream)
        self._clock = clock

    @property
    def executing(self):
        """(reference stamp, executed steps) of the last chunk, or None."""
        return self.loop.executing

    @executing.setter
    def executing(self, value):
        self.loop.executing = value

    @property
    def task(self):
        return self.loop.task

    @property
    def received(self):
        """stream -> messages received."""
        return Counter({scope: count for (scope, reason), count in
                        self.loop.input_counts.snapshot().items() if reason == RECEIVED})

    @property
    def dropped(self):
        """(stream, reason) -> messages dropped."""
        return Counter({key: count for key, count in self.loop.input_counts.snapshot().items()
                        if key[1] != RECEIVED})

    def feed(self, topic, message):
        """One input message (topic as in the bag) into every stream that reads the topic."""
        for stream in self.streams[topic]:
            self.loop.receive(stream, message)

    def set_task(self, text):
        self.loop.set_task(text)

    def tick(self, now_ns, *, replan=True, reference_ns=None, exact=None):
        """The node's control tick at bag time `now_ns` (inference takes no bag time).

        reference_ns: query the set of this reference frame instead of the newest one.
        exact: {stream: stamp} to use exactly this set (a recorded decision) instead of the
        sync query.
        """
        job = self.loop.tick(now_ns, replan=replan, reference_ns=reference_ns, exact=exact)
        if isinstance(job, Skip):
            return Tick(now_ns, job.reason, job.detail)
        try:
            finished, output, latency = self.loop.complete(job, lambda: now_ns, self._clock)
        except Exception as error:  # caught at the boundary, as the node does
            return Tick(now_ns, INFERENCE_ERROR, f'{type(error).__name__}: {error}',
                        reference_ns=job.reference_ns, stamps=job.stamps, seed=job.seed)
        base = dict(time_ns=now_ns, reference_ns=job.reference_ns, stamps=job.stamps,
                    seed=output.seed, value=float(output.value), latency_s=latency,
                    num_steps=output.num_steps, candidate_values=tuple(output.candidate_values),
                    selected=output.selected_candidate)
        if not finished.ok:
            return Tick(status=finished.reason, detail=finished.detail, **base)
        return Tick(status=CHUNK, actions=finished.chunk.actions, chunk=finished.chunk, **base)
