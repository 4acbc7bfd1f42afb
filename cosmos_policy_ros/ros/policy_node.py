"""The Cosmos Policy lifecycle node (console script `policy_node`).

    configure   read and validate parameters, load the policy through `policy_factory`, warm
                it up on a synthetic observation, subscribe to the inputs
    activate    start the control loop (a timer on the ROS clock: follows use_sim_time; with
                tick_on_arrival also a tick each time a message is stored)
    deactivate  stop the loop (a chunk still being computed is discarded)
    cleanup     unsubscribe, stop the inference thread, release the policy

Every rule is elsewhere, in core modules tested without a ROS graph: the control loop's in a
ControlLoop (control_loop.py, docs/control-loop.md; the offline evaluator drives the same one),
what is counted and logged about it in a NodeHealth (health.py). Here is only what needs ROS:
each timer tick on the ROS clock (and, with tick_on_arrival, each stored message) asks the
loop for a job and hands it to the inference thread; the thread runs it through the loop and
publishes the chunk the loop returns. Subscription callbacks hand messages to the loop
(inputs.py), so they keep being served while the policy runs. With `autostart` (default true)
the node configures and activates itself; a failed configure then ends the process with exit
code 1. The process ends with the one that started it (process_lifetime.py: a launch stopped
in any way never leaves the policy running). `executor` picks the rclpy executor;
`stage_timing` (debug) publishes the times of each chunk's trip through the node
(stage_timing.py).
"""
import faulthandler
import signal
import sys
import threading
import time

from rcl_interfaces.msg import SetParametersResult
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.exceptions import InvalidHandle
from rclpy.executors import (ExternalShutdownException, MultiThreadedExecutor,
                             SingleThreadedExecutor)
try:
    from rclpy.experimental import EventsExecutor
except ImportError:  # rclpy before Jazzy: executor events is refused (SlicedEventsExecutor)
    EventsExecutor = None
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.logging import get_logger

from cosmos_policy_ros import allocator, package_files, process_lifetime
from cosmos_policy_ros.control_loop import Job
from cosmos_policy_ros.health import NodeHealth
from cosmos_policy_ros.parameter_report import parameter_files, report_lines
from cosmos_policy_ros.policy_loading import load_control_loop, steady_median
from cosmos_policy_ros.ros import outputs, params
from cosmos_policy_ros.ros.diagnostics import DiagnosticsReporter
from cosmos_policy_ros.ros.inputs import InputStreams
from cosmos_policy_ros.ros.worker import InferenceWorker
from cosmos_policy_ros.stage_timing import InputMarks, MARKS

NODE_NAME = 'cosmos_policy'
STOP_TIMEOUT = 10.0  # seconds to wait for a running inference when cleaning up
EVENTS_SPIN_SLICE = 1.0  # seconds one EventsExecutor.spin_once may wait


class PolicyNode(LifecycleNode):
    """Lifecycle node running a Policy on synchronized camera and proprio inputs.

    Configured, it holds a ControlLoop (the rules), the inference worker, the input
    subscriptions and the chunk publishers; `health()` is what /diagnostics reports.
    """

    def __init__(self, node_name=NODE_NAME, *, argv=(), **kwargs):
        """argv: the process's command line (its --params-file paths are logged at configure)."""
        super().__init__(node_name, **kwargs)
        self._parameter_files = parameter_files([*argv, *(kwargs.get('cli_args') or ())])
        params.declare_parameters(self)
        self._lock = threading.RLock()  # lifecycle transitions, the control timer
        self._state = 'unconfigured'
        self._configure_error = ''
        self._loop = self._worker = self._inputs = self._chunk_publishers = None
        self._input_marks = None  # InputMarks with stage_timing
        self._control_timer = None
        self._health = NodeHealth()
        self._diagnostics = DiagnosticsReporter(
            self, self.health, lambda: getattr(self._loop, 'config', None),
            self.get_parameter('diagnostics_period').value)
        self.add_on_set_parameters_callback(self._on_set_parameters)

    @property
    def autostart(self):
        return self.get_parameter('autostart').value is True

    # --- lifecycle -----------------------------------------------------------------------------
    def on_configure(self, state):
        try:
            self._configure()
        except Exception as error:  # report every failure with its reason, then stay clean
            if not self.context.ok():  # SIGINT/SIGTERM during a long load or warm-up
                self.get_logger().info('configure interrupted by shutdown')
            else:
                self._configure_error = str(error) if isinstance(error, ValueError) else (
                    f'{type(error).__name__}: {error}')
                self.get_logger().error(f'configure failed: {self._configure_error}')
            self._release()
            return TransitionCallbackReturn.FAILURE
        self._configure_error = ''
        self._state = 'inactive'
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state):
        result = super().on_activate(state)  # enable the lifecycle publishers first
        with self._lock:
            self._loop.start()
            self._health.activated(time.monotonic())
            self._state = 'active'
            self._start_control_timer(self._loop.config.rate)
        self.get_logger().info(f'active: control loop at {self._loop.config.rate:g} Hz, '
                               f'replan_mode {self._loop.config.replan_mode}')
        return result

    def on_deactivate(self, state):
        with self._lock:
            self._loop.stop()  # a chunk still being computed is discarded
            self._state = 'inactive'
            self._stop_control_timer()
        return super().on_deactivate(state)

    def on_cleanup(self, state):
        self._release()
        self._state = 'unconfigured'
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state):
        self._release()
        self._state = 'finalized'
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state):
        self.get_logger().error('lifecycle error: releasing everything (back to unconfigured)')
        self._release()
        self._state = 'unconfigured'
        return TransitionCallbackReturn.SUCCESS

    def close(self):
        """Release everything and destroy the node (after the executor stopped)."""
        try:
            self._release()
        finally:
            self.destroy_node()

    def _configure(self):
        config = params.read_config(self)
        for line in report_lines(config, self._parameter_files, package_files.preset_files()):
            self.get_logger().info(line)
        # The inference thread must not queue for the GIL behind the callbacks after every op.
        sys.setswitchinterval(config.python_switch_interval)
        if config.keep_freed_memory and not allocator.keep_freed_memory():
            self.get_logger().info('keep_freed_memory: not glibc, malloc left as it is')
        self.get_logger().info(f'loading the policy: {config.policy_factory}('
                               f'{config.model_path!r}, device={config.device!r}, '
                               f'dtype={config.dtype!r})')
        loop, latencies = load_control_loop(config, check=self._check_running)
        if latencies:
            self.get_logger().info(
                'warm-up latencies: ' + ', '.join(f'{latency:.3f}' for latency in latencies)
                + f' s (median after the first: {steady_median(latencies):.3f} s)')
        self._loop, self._health = loop, NodeHealth(latencies)
        self._worker = InferenceWorker(self._run_job, self._inference_failed)
        self._chunk_publishers = outputs.ChunkPublishers(self, config)
        self._input_marks = InputMarks() if config.stage_timing else None
        self._inputs = InputStreams(
            self, config, loop, on_task=self._set_task, marks=self._input_marks,
            on_stored=self._on_arrival if config.tick_on_arrival else None,
            message_info=config.executor != 'events')  # the EventsExecutor passes none
        binding = loop.binding
        self.get_logger().info(
            f'configured: model {loop.model_id!r}, cameras {list(config.camera_names)}, '
            f'proprio {list(config.proprio_names)} ({config.proprio_dim} values), '
            f'reference stream {config.reference!r}, chunk {binding.horizon} x '
            f'{len(binding.action_names)} ({binding.execute_steps} executed)')

    def _check_running(self):
        if not self.context.ok():
            raise RuntimeError('shutdown requested during configure')

    def _release(self):
        """Undo configure (safe to call in any state, more than once)."""
        with self._lock:
            if self._loop is not None:
                self._loop.stop()
            self._stop_control_timer()
            inputs, worker, publishers = self._inputs, self._worker, self._chunk_publishers
            self._inputs = self._worker = self._chunk_publishers = None
        if inputs is not None:
            inputs.destroy()
        if worker is not None and not worker.stop(STOP_TIMEOUT):
            self.get_logger().warning(f'an inference was still running after {STOP_TIMEOUT:g} '
                                      f's; leaving it behind')
        if publishers is not None:
            publishers.destroy()
        self._loop = None

    # --- the control loop on the ROS clock -----------------------------------------------------
    def _start_control_timer(self, rate):
        self._stop_control_timer()
        # A group of its own per timer: rclpy's executor never ends a group's execution when
        # taking a timer destroyed meanwhile raises InvalidHandle (see _spin), and a shared
        # group stuck that way would keep every later timer from firing (no ticks after a
        # deactivate/activate, cleanup/configure or `rate` change).
        self._control_timer = self.create_timer(1.0 / rate, self._on_tick,
                                                callback_group=MutuallyExclusiveCallbackGroup())

    def _stop_control_timer(self):
        if self._control_timer is not None:
            self.destroy_timer(self._control_timer)
            self._control_timer = None

    def _now_ns(self):
        return self.get_clock().now().nanoseconds

    def _on_tick(self):
        """The control timer: a tick that begins a new period (counted in the diagnostics)."""
        self._tick(arrival=False)

    def _on_arrival(self):
        """A message was stored (tick_on_arrival): a tick, counted only when it starts a job."""
        self._tick(arrival=True)

    def _tick(self, arrival):
        marks = None if self._input_marks is None else {'tick': time.time_ns()}
        now_ns = self._now_ns()
        loop, worker, health = self._loop, self._worker, self._health
        if self._state != 'active' or loop is None or worker is None:
            return

        def submit(job):
            if marks is not None:
                marks['handed'] = time.time_ns()
            return worker.submit((loop, health, job, marks))
        decision = loop.tick(now_ns, busy=worker.busy, submit=submit, arrival=arrival)
        if arrival and not isinstance(decision, Job):
            return  # the timer's ticks are the ones that count (tick rate, skip reasons)
        health.tick(now_ns, decision)

    def _set_task(self, text):
        loop = self._loop
        if loop is not None and loop.set_task(text):
            self.get_logger().info(f'task: {text!r}')

    # --- the inference thread (its exceptions go to _inference_failed) -------------------------
    def _run_job(self, item):
        loop, health, job, marks = item  # the tick's health, even if a configure replaced it
        try:
            if marks is None:
                finished, _, elapsed = loop.complete(job, self._now_ns)
            else:
                marks['started'] = time.time_ns()
                finished, _, elapsed = loop.complete(job, lambda: self._marked_now(marks))
                marks['finished'] = time.time_ns()
            publishers = self._chunk_publishers  # None once cleanup began
            past = finished.ok and publishers is not None and publishers.publish(
                finished.chunk, marks)
            warning = health.finished(finished, elapsed, time.monotonic(),
                                      trajectory_elapsed=past)
        finally:
            health.job_done()  # after the chunk is counted (or the error raised)
        if marks is not None and finished.ok and publishers is not None:
            self._publish_stage_times(publishers, finished.chunk, job, marks)
        if warning:
            self.get_logger().warning(warning)

    def _marked_now(self, marks):
        """The ROS time the finish decision is made at; the 'inferred' mark (stage_timing)."""
        marks['inferred'] = time.time_ns()
        return self._now_ns()

    def _publish_stage_times(self, publishers, chunk, job, marks):
        input_marks = self._input_marks
        member = input_marks.last_member(job.stamps) if input_marks is not None else None
        if member is None:  # its messages' marks were dropped (a configure meanwhile)
            return
        stream, first = member
        marks = {**first, **marks}
        publishers.publish_stage_times(chunk, stream, {mark: marks[mark] for mark in MARKS
                                                       if mark in marks})

    def _inference_failed(self, error):
        for line in self._health.error(error):
            self.get_logger().error(line)

    # --- parameters ----------------------------------------------------------------------------
    def _on_set_parameters(self, parameters):
        loop = self._loop
        if loop is None:  # validated at configure; a new value replaces a refused one
            for parameter in parameters:
                self.parameter_errors.pop(parameter.name, None)
            return SetParametersResult(successful=True)
        try:
            new, changed = params.apply_changes(loop.config, parameters)
            task_changed = bool(changed) and loop.reconfigure(new)
        except ValueError as error:
            return SetParametersResult(successful=False, reason=str(error))
        if not changed:
            return SetParametersResult(successful=True)
        with self._lock:
            if self._loop is not loop:
                return SetParametersResult(successful=False, reason='the node is being cleaned '
                                                                    'up; try again')
            if 'rate' in changed and self._control_timer is not None:
                self._start_control_timer(new.rate)
        if task_changed:
            self.get_logger().info(f'task: {new.task!r}')
        self.get_logger().info('parameters changed: ' + ', '.join(
            f'{name}={getattr(new, name)!r}' for name in changed))
        return SetParametersResult(successful=True)

    # --- diagnostics ---------------------------------------------------------------------------
    def health(self):
        """A HealthSnapshot of the node now (health.py)."""
        return self._health.snapshot(
            self._now_ns(), time.monotonic(), node_name=self.get_fully_qualified_name(),
            lifecycle_state=self._state, configure_error=self._configure_error,
            loop=self._loop)


class SlicedEventsExecutor:
    """rclpy's EventsExecutor, spun in slices of spin_once(timeout_sec).

    In rclpy 9.1.2 its spin() and spin_once() without a timeout never dispatch a callback (a
    busy wait that holds the GIL and ignores SIGTERM), and spin_once goes on after shutdown();
    spin_once(timeout_sec) works and releases the GIL while it waits. spin() here runs until
    shutdown() or the context's end. It gives callbacks no MessageInfo (a SystemError).

    Entities (subscriptions, publishers, timers, services) may be created and destroyed only
    in the executor's own thread (a callback: lifecycle and parameter services) or while it
    does not spin: the executor registers the middleware callbacks of a node's entities in its
    thread, from a snapshot of them, and an entity destroyed by another thread in between makes
    that registration raise InvalidHandle half-way; the callbacks registered so far are then no
    longer tracked, and destroying the executor aborts the process ("Destroying callback
    manager with callbacks remaining", bench/executor_stops.py race). run() does work of
    another thread in the executor's. shutdown() removes every node and their callbacks.
    """

    def __init__(self, context=None):
        if EventsExecutor is None:
            raise ValueError('`executor` events needs rclpy.experimental.EventsExecutor (ROS 2 '
                             'Jazzy or newer); choose single_threaded or multi_threaded')
        self._executor = EventsExecutor(context=context)
        self.context = self._executor.context
        self._stopped = threading.Event()

    def add_node(self, node):
        return self._executor.add_node(node)

    def spin(self):
        while self.context.ok() and not self._stopped.is_set():
            self._executor.spin_once(timeout_sec=EVENTS_SPIN_SLICE)

    def run(self, function, timeout=None):
        """function() in the executor's thread (it must be spinning); its result, or its
        exception raised here. TimeoutError after `timeout` seconds."""
        done = threading.Event()
        outcome = {}

        def call():
            try:
                outcome['result'] = function()
            except BaseException as error:  # handed to the caller, not to the executor
                outcome['error'] = error
            finally:
                done.set()
        self._executor.create_task(call)
        if not done.wait(timeout):
            raise TimeoutError(f'the executor did not run {function!r} within {timeout} s')
        if 'error' in outcome:
            raise outcome['error']
        return outcome['result']

    def shutdown(self, timeout_sec=None):
        self._stopped.set()
        self._executor.wake()
        return self._executor.shutdown()


def make_executor(kind, context=None, threads=4):
    """The rclpy executor `kind` names (node_config.EXECUTORS); `threads`: multi_threaded's."""
    if kind == 'events':
        return SlicedEventsExecutor(context=context)
    if kind == 'single_threaded':
        return SingleThreadedExecutor(context=context)
    return MultiThreadedExecutor(num_threads=threads, context=context)


def _spin(executor):
    """executor.spin(), surviving an rclpy race on entities destroyed during a transition.

    A lifecycle transition (cleanup, shutdown, a re-configure) destroys subscriptions and
    publishers on one executor thread while another builds its wait set; rclpy's event handlers
    then raise InvalidHandle from the wait-set build (they re-enter a handle whose destruction
    was requested). The next wait set no longer holds the destroyed entity, so spinning on is
    safe; any other error still propagates.
    """
    while True:
        try:
            executor.spin()
            return
        except InvalidHandle:
            if not executor.context.ok():
                return


def spin_nodes(executor, nodes):
    """Spin `nodes` on `executor` until ROS shuts down (a stop signal, the parent gone), then
    shut the executor down: the run loop of policy_node and policy_server."""
    for node in nodes:
        executor.add_node(node)
    try:
        _spin(executor)
    finally:
        executor.shutdown()


def start_process(script, logger, args):
    """The start of a ROS console script of this package (policy_node, policy_server): SIGUSR1
    prints every thread's stack, the stop signals are absorbed (process_lifetime; one that came
    while rclpy.init ran stops the process once rclpy's handler is in place), rclpy is
    initialized with `args`, and a ParentWatch stops the process once its parent has ended
    (logged by `logger`). Returns the started watch (stop it on the way out), or None after
    one line on stderr when ROS cannot start."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    process_lifetime.absorb_stop_signals()  # before rclpy.init, whose handler chains to it
    try:
        rclpy.init(args=args)
    except Exception as error:  # e.g. an unparsable --params-file
        print(f'{script}: cannot start ROS: {error}', file=sys.stderr)
        return None
    if process_lifetime.stop_requested():  # it came during rclpy.init, before rclpy's handler
        process_lifetime.stop_self()

    def parent_gone(pid):
        get_logger(logger).warning(
            f'the process that started this node (pid {pid}, e.g. ros2 launch) has ended: '
            f'stopping {script}, so that no policy outlives its launch')
        process_lifetime.stop_self()

    return process_lifetime.ParentWatch(parent_gone).start()


def main(args=None):
    """Console script: run the node until SIGINT/SIGTERM (exit 0) or a failed autostart (1).

    `kill -USR1 <pid>` prints every thread's Python stack to stderr (for a node that seems stuck).
    """
    watch = start_process('policy_node', NODE_NAME, args)
    if watch is None:
        return 2
    node = None
    code = 0
    try:
        node = PolicyNode(argv=sys.argv if args is None else args)
        started = True
        if node.autostart:
            started = (node.trigger_configure() == TransitionCallbackReturn.SUCCESS
                       and node.trigger_activate() == TransitionCallbackReturn.SUCCESS)
            code = 0 if started or not rclpy.ok() else 1  # a shutdown meanwhile is clean
        if started and rclpy.ok():
            # A refused override left the default (configure reports it): always valid.
            spin_nodes(make_executor(node.get_parameter('executor').value), [node])
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise  # a real failure, not a shutdown racing with start-up
    finally:
        watch.stop()
        if node is not None:
            node.close()
        rclpy.try_shutdown()
        process_lifetime.ignore_stop_signals()  # through the interpreter's finalization
    return code


if __name__ == '__main__':
    sys.exit(main())
