"""How the policy node's process ends: once, cleanly, and never later than what started it.

A policy must never keep commanding a robot its operator stopped, however the operator stopped
it: Ctrl-C (the terminal's SIGINT, then launch's), `kill` of `ros2 launch` (SIGTERM: launch
exits and leaves its children), SIGKILL of launch, a closed terminal.

* ``absorb_stop_signals()``: SIGINT and SIGTERM handlers that do nothing at the Python level.
  Installed before ``rclpy.init``: rclpy's own handler shuts the context down (the node
  stops) and then calls the handler it found, this one, so no KeyboardInterrupt ever lands in
  the middle of a shutdown: a second Ctrl-C during a slow shutdown is absorbed. A signal that
  comes while ``rclpy.init`` runs (rcl_init, the DDS participant: long under load) reaches
  this handler alone, before rclpy's exists: ``stop_requested()`` then says so, and the node
  stops itself once rclpy's handler is in place (``stop_self()``), instead of running on.
  (Before ``absorb_stop_signals``, while Python imports, a SIGINT is Python's
  KeyboardInterrupt: the process ends at once, exit code -2.)
* ``ignore_stop_signals()``: SIG_IGN for both, once the node is closed and rclpy shut down.
  Python's finalization puts SIG_DFL back for signals with a Python handler (not for ignored
  ones), and a Ctrl-C while torch and DDS are torn down would then kill the process (exit
  code -2, "process has died" in launch) instead of letting it end with 0.
* ``ParentWatch``: a daemon thread that notices when the process that started this one has
  ended (the parent pid changes: the process was re-parented) and calls ``on_gone(pid)``
  once; the node then stops itself with ``stop_self()`` (SIGTERM to itself: the same clean
  path as a signal from outside).

A core module: stdlib only; the node (ros/policy_node.py) wires it up.
"""
import os
import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
PARENT_POLL_PERIOD = 0.2  # seconds between two looks at the parent pid
_absorbed = []  # the stop signals _absorb saw


def _absorb(signum, frame):
    """Python-level handler: rclpy's handler before it already stopped the node; one that
    came before rclpy's handler was installed is remembered (stop_requested)."""
    _absorbed.append(signum)


def stop_requested():
    """Whether a stop signal has reached the handler of absorb_stop_signals."""
    return bool(_absorbed)


def absorb_stop_signals():
    """Install the no-op Python handler for SIGINT and SIGTERM (main thread, before rclpy.init)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _absorb)


def ignore_stop_signals():
    """Ignore SIGINT and SIGTERM from here to the end of the process (main thread)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def stop_self():
    """Ask this process to stop as an outside SIGTERM would."""
    os.kill(os.getpid(), signal.SIGTERM)


class ParentWatch:
    """Calls `on_gone(parent pid)` once the process that started this one has ended.

    Nothing is watched when the parent is already init (pid 1) or unknown (0): a process
    started that way has no parent to outlive. getppid: for tests.
    """

    def __init__(self, on_gone, *, period=PARENT_POLL_PERIOD, getppid=os.getppid):
        self.parent = getppid()
        self._on_gone, self._period, self._getppid = on_gone, period, getppid
        self._stop = threading.Event()
        self._thread = None

    @property
    def watching(self):
        return self.parent > 1

    def start(self):
        if self.watching and self._thread is None:
            self._thread = threading.Thread(target=self._run, name='parent-watch', daemon=True)
            self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self):
        while not self._stop.wait(self._period):
            if self._getppid() != self.parent:
                self._on_gone(self.parent)
                return
