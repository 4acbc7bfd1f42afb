"""Per-stage timing of one inference without per-step host synchronisation.

On CUDA every stage boundary and every network evaluation records a CUDA event; the events are
read once, at the end (one synchronisation per inference). On the CPU, where work is
synchronous, a monotonic clock is read instead. The clock is an argument (tests pass a fake).
"""
from contextlib import contextmanager
import time

import torch


class Stopwatch:
    """Collects stage durations and per-evaluation network times for one inference."""

    def __init__(self, device, clock=time.perf_counter):
        self._cuda = torch.device(device).type == 'cuda'
        self._clock = clock
        self._stages = []  # (name, start mark, end mark)
        self._evaluations = []  # (start mark, end mark)

    @contextmanager
    def stage(self, name):
        """Time the enclosed work as stage `name` (repeated names add up)."""
        start = self._mark()
        try:
            yield
        finally:
            self._stages.append((name, start, self._mark()))

    def timed_network(self, net):
        """`net` wrapped so that each call is recorded as one network evaluation."""
        return _TimedNetwork(net, self)

    def results(self):
        """({stage: seconds}, (seconds of each network evaluation, in call order))."""
        if self._cuda:
            torch.cuda.synchronize()
        stages = {}
        for name, start, end in self._stages:
            stages[name] = stages.get(name, 0.0) + self._elapsed(start, end)
        evaluations = tuple(self._elapsed(start, end) for start, end in self._evaluations)
        return stages, evaluations

    def _mark(self):
        if self._cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return self._clock()

    def _elapsed(self, start, end):
        if self._cuda:
            return start.elapsed_time(end) / 1000.0  # milliseconds -> seconds
        return end - start


class _TimedNetwork:
    """A network-protocol callable that records its calls in a Stopwatch."""

    def __init__(self, net, stopwatch):
        self._net = net
        self._stopwatch = stopwatch
        self.dtype = net.dtype
        self.device = net.device

    def __call__(self, *args):
        start = self._stopwatch._mark()
        output = self._net(*args)
        self._stopwatch._evaluations.append((start, self._stopwatch._mark()))
        return output
