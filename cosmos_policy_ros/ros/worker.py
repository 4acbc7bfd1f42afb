"""The inference thread: one job at a time, off the executor, so subscriptions keep being served.

``submit`` hands a job over only when the worker is idle and returns False otherwise: at most
one inference is ever in flight, and the caller (the control tick) simply tries again with the
newest observation at its next tick ("latest observation wins"). The hand-off is a
``queue.SimpleQueue``: the thread sleeps in C in ``get()`` and ``put()`` wakes it, the cheapest
wake-up Python has (a Condition's ``wait`` allocates a lock per wait and re-enters Python
twice on waking); the busy flag and the counters are guarded by one lock.
"""
import queue
import threading

_STOP = object()  # the last item the thread takes


class InferenceWorker:
    """A daemon thread running `run(job)` for one submitted job at a time.

    run: called in the worker thread; exceptions it raises go to `on_error(error)` (they never
    kill the thread).
    """

    def __init__(self, run, on_error, name='cosmos_policy_inference'):
        self._run = run
        self._on_error = on_error
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # wait_idle's
        self._jobs = queue.SimpleQueue()
        self._busy = False
        self._stopping = False
        self.started = 0  # jobs taken
        self.finished = 0  # jobs done (successfully or not)
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def busy(self):
        return self._busy  # one attribute read: atomic under the GIL

    def submit(self, job):
        """Hand `job` to the thread if it is idle; False (job not taken) when busy or stopped."""
        with self._lock:
            if self._busy or self._stopping:
                return False
            self._busy = True
            self.started += 1
            self._jobs.put(job)  # under the lock: never after stop()'s _STOP
            return True

    def wait_idle(self, timeout):
        """Wait until no job is running; False if one still runs after `timeout` seconds."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._busy, timeout)

    def stop(self, timeout):
        """Let a running job finish (up to `timeout` s) and end the thread; True if it ended."""
        with self._lock:
            if not self._stopping:
                self._stopping = True
                self._jobs.put(_STOP)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _loop(self):
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            try:
                self._run(job)
            except Exception as error:  # the boundary: report, keep the thread alive
                self._on_error(error)
            finally:
                with self._idle:
                    self._busy = False
                    self.finished += 1
                    self._idle.notify_all()
