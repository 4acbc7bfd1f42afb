"""The Cosmos Policy lifecycle node (console script `policy_node`).

    configure   read and validate parameters, load the policy through `policy_factory`, warm
                it up on a synthetic observation, subscribe to the inputs
    activate    start the control loop (a timer on the ROS clock: follows use_sim_time)
    deactivate  stop the loop (a chunk still being computed is discarded)
    cleanup     unsubscribe, stop the inference thread, release the policy

Each tick takes the newest synchronized observation from the sync buffer and hands it to the
inference thread when that is idle; the thread runs the policy, checks the chunk (safety.py)
and publishes it. Callbacks only convert and buffer (inputs.py), so they keep being served
while the policy runs. With `autostart` (default true) the node configures and activates
itself; a failed configure then ends the process with exit code 1.
"""
from dataclasses import dataclass
import faulthandler
import signal
import sys
import threading
import time
from typing import Mapping

from diagnostic_msgs.msg import DiagnosticArray
import numpy as np
from rcl_interfaces.msg import SetParametersResult
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import InvalidHandle
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from trajectory_msgs.msg import JointTrajectory

from cosmos_policy_ros.conversions import future_point_indices
from cosmos_policy_ros.ingest import make_sync_buffer, replan_due
from cosmos_policy_ros.interface import Observation, PolicyOutput
from cosmos_policy_ros.msg import ActionChunk, ValueEstimate
from cosmos_policy_ros.node_config import (bind_layout, import_factory, load_policy_for,
                                           NodeConfig)
from cosmos_policy_ros.ros import outputs, params
from cosmos_policy_ros.ros.diagnostics import diagnostic_array, HealthSnapshot
from cosmos_policy_ros.ros.inputs import InputStreams
from cosmos_policy_ros.ros.worker import InferenceWorker
from cosmos_policy_ros.safety import check_chunk
from cosmos_policy_ros.stats import RateMeter, ReasonCounts, RollingWindow
from cosmos_policy_ros.sync import current_proprio, observation_from_set

NODE_NAME = 'cosmos_policy'
NS = 1_000_000_000
STOP_TIMEOUT = 10.0  # seconds to wait for a running inference when cleaning up
MAX_DISTINCT_ERRORS = 100  # distinct inference errors remembered for log-once
WARMUP_TEXT_SHAPE = (512, 1024)  # T5 tokens x width of the released models


@dataclass(frozen=True)
class _Job:
    """One inference: the observation and what is needed to publish its result."""

    observation: Observation
    stamps: Mapping[str, int]
    reference_ns: int
    config: NodeConfig
    epoch: int
    policy: object
    reset_first: bool
    task: str


def _output_qos(config):
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=config.output_depth,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


class PolicyNode(LifecycleNode):
    """Lifecycle node running a Policy on synchronized camera and proprio inputs."""

    def __init__(self, node_name=NODE_NAME, **kwargs):
        super().__init__(node_name, **kwargs)
        params.declare_parameters(self)
        self._lock = threading.RLock()
        self._state = 'unconfigured'
        self._configure_error = ''
        self._config = None
        self._binding = None
        self._policy = None
        self._layout = None
        self._limits = None
        self._sync = None
        self._inputs = None
        self._worker = None
        self._output_publishers = {}
        self._control_timer = None
        self._task = ''
        self._reset_pending = False
        self._epoch = 0
        self._executing = None  # (reference stamp ns, executed steps) of the last chunk
        self._last_chunk_steady = None
        self._warmup_latencies = ()
        self._reset_stats()
        self._diagnostics_group = MutuallyExclusiveCallbackGroup()
        self._diagnostics_publisher = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._previous_health = None
        self._steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._diagnostics_timer = self.create_timer(
            self.get_parameter('diagnostics_period').value, self._publish_diagnostics,
            callback_group=self._diagnostics_group, clock=self._steady)
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
                self._release()
                return TransitionCallbackReturn.FAILURE
            message = str(error) if isinstance(error, ValueError) else (
                f'{type(error).__name__}: {error}')
            self.get_logger().error(f'configure failed: {message}')
            self._configure_error = message
            self._release()
            return TransitionCallbackReturn.FAILURE
        self._configure_error = ''
        self._state = 'inactive'
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state):
        result = super().on_activate(state)  # enable the lifecycle publishers first
        with self._lock:
            self._epoch += 1
            self._executing = None
            self._last_chunk_steady = time.monotonic()  # the watchdog counts from activation
            self._state = 'active'
            self._start_control_timer(self._config.rate)
        self.get_logger().info(f'active: control loop at {self._config.rate:g} Hz, '
                               f'replan_mode {self._config.replan_mode}')
        return result

    def on_deactivate(self, state):
        with self._lock:
            self._epoch += 1  # a chunk still being computed is discarded
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

    # --- configure -----------------------------------------------------------------------------
    def _configure(self):
        config = params.read_config(self)
        unknown = params.unknown_overrides(self)
        if unknown:
            raise ValueError(f'unknown parameter(s) {unknown} (a typo? a camera or proprio '
                             f'source not listed in `cameras` / `proprio_sources`?)')
        # The inference thread must not queue for the GIL behind the callbacks after every op.
        sys.setswitchinterval(config.python_switch_interval)
        import_factory(config.policy_factory)  # a bad name fails here, naming the parameter
        self.get_logger().info(f'loading the policy: {config.policy_factory}('
                               f'{config.model_path!r}, device={config.device!r}, '
                               f'dtype={config.dtype!r})')
        try:
            policy = load_policy_for(config)
        except ValueError as error:
            raise ValueError(f'`model_path` {config.model_path!r}: {error}') from None
        except Exception as error:
            raise ValueError(f'loading the policy from `model_path` {config.model_path!r} '
                             f'failed: {type(error).__name__}: {error}') from None
        for attribute in ('layout', 'model_id', 'infer', 'reset'):
            if not hasattr(policy, attribute):
                raise ValueError(f'`policy_factory` {config.policy_factory!r} returned '
                                 f'{type(policy).__name__}, which has no {attribute!r}.')
        binding = bind_layout(config, policy.layout)
        self._check_running()
        latencies = self._warm_up(policy, config, binding)
        self._check_running()
        with self._lock:
            self._config, self._binding, self._policy = config, binding, policy
            self._layout = policy.layout
            self._limits = config.chunk_limits()
            self._task = config.task
            self._reset_stats()
            self._warmup_latencies = latencies
            self._sync = make_sync_buffer(config)
        self._worker = InferenceWorker(self._run_job, self._worker_error)
        self._create_publishers(config)
        self._inputs = InputStreams(self, config, add=self._add_message,
                                    counts=self._input_counts, on_task=self._set_task)
        self.get_logger().info(
            f'configured: model {policy.model_id!r}, cameras {list(config.camera_names)}, '
            f'proprio {list(config.proprio_names)} ({config.proprio_dim} values), '
            f'reference stream {config.reference!r}, chunk {binding.horizon} x '
            f'{len(binding.action_names)} ({binding.execute_steps} executed)')

    def _warm_up(self, policy, config, binding):
        """Run warmup_iterations inferences on a synthetic observation; returns the latencies."""
        layout = policy.layout
        size = layout.image_size
        observation = Observation(
            images={name: np.zeros((size, size, 3), np.uint8) for name in layout.cameras},
            proprio=np.zeros(layout.proprio_dim), instruction=config.task or None,
            # Without a task yet, an all-zero T5 embedding (what padding tokens hold) is a
            # valid input for any model: it only has to exercise the network.
            text_embedding=None if config.task else np.zeros(WARMUP_TEXT_SHAPE, np.float32),
            seed=config.seed)
        latencies = []
        for _ in range(config.warmup_iterations):
            self._check_running()
            start = time.perf_counter()
            try:
                output = policy.infer(observation, num_steps=config.num_denoising_steps,
                                      num_candidates=config.num_candidates)
            except Exception as error:
                hint = '' if config.task else ' (is `task` an instruction the model knows?)'
                raise ValueError(f'warm-up inference failed{hint}: {type(error).__name__}: '
                                 f'{error}') from None
            latencies.append(time.perf_counter() - start)
            shape = np.shape(output.actions)
            if shape != (binding.horizon, len(binding.action_names)):
                raise ValueError(f'the policy returned actions of shape {shape}; its layout '
                                 f'promises ({binding.horizon}, {len(binding.action_names)}).')
        policy.reset()
        if latencies:
            steady = sorted(latencies[1:] or latencies)
            median = steady[(len(steady) - 1) // 2]
            self.get_logger().info(
                'warm-up latencies: ' + ', '.join(f'{latency:.3f}' for latency in latencies)
                + f' s (median after the first: {median:.3f} s)')
            if config.max_warmup_latency and median > config.max_warmup_latency:
                raise ValueError(f'warm-up latency {median:.3f} s exceeds `max_warmup_latency` '
                                 f'{config.max_warmup_latency:g} s (fewer '
                                 f'num_denoising_steps or a faster device?)')
        return tuple(latencies)

    def _check_running(self):
        if not self.context.ok():
            raise RuntimeError('shutdown requested during configure')

    def _create_publishers(self, config):
        qos = _output_qos(config)
        publishers = {'chunk': self.create_lifecycle_publisher(ActionChunk, 'action_chunk', qos),
                      'value': self.create_lifecycle_publisher(ValueEstimate, 'value', qos)}
        if config.publish_joint_trajectory:
            publishers['trajectory'] = self.create_lifecycle_publisher(
                JointTrajectory, 'joint_trajectory', qos)
        if config.publish_future_images:
            for name in config.camera_names:
                publishers[f'future:{name}'] = self.create_lifecycle_publisher(
                    Image, f'future/{name}/image', qos)
        self._output_publishers = publishers

    def _release(self):
        """Undo configure (safe to call in any state, more than once)."""
        with self._lock:
            self._epoch += 1
            self._stop_control_timer()
            inputs, self._inputs = self._inputs, None
            worker, self._worker = self._worker, None
            publishers, self._output_publishers = self._output_publishers, {}
        if inputs is not None:
            inputs.destroy()
        if worker is not None and not worker.stop(STOP_TIMEOUT):
            self.get_logger().warning(f'an inference was still running after {STOP_TIMEOUT:g} '
                                      f's; leaving it behind')
        for publisher in publishers.values():
            self.destroy_lifecycle_publisher(publisher)
        with self._lock:
            self._config = self._binding = self._policy = self._layout = None
            self._sync = None
            self._executing = None

    # --- inputs --------------------------------------------------------------------------------
    def _add_message(self, stream, stamp_ns, payload):
        with self._lock:
            if self._sync is None:
                return ''
            return self._sync.add(stream, stamp_ns, payload)

    def _set_task(self, text):
        with self._lock:
            if text != self._task:
                self._task = text
                self._reset_pending = True  # the policy forgets per-episode state first
                self.get_logger().info(f'task: {text!r}')

    # --- control loop --------------------------------------------------------------------------
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

    def _skip(self, reason, detail=''):
        self._skipped.add('tick', reason)
        if detail:
            self._last_skip_detail = f'{reason}: {detail}'

    def _on_tick(self):
        now_ns = self.get_clock().now().nanoseconds
        with self._lock:
            if self._state != 'active' or self._worker is None:
                return
            config = self._config
            self._ticks += 1
            self._tick_meter.add(now_ns)
            if self._worker.busy:
                return self._skip('inference_busy')
            if not self._task:
                return self._skip('no_task', 'no task: set the `task` parameter or publish on '
                                             f'{config.task_topic}')
            if not replan_due(now_ns, self._executing, config):
                return self._skip('chunk_executing')
            result = self._sync.query(now_ns)
            if not result.ok:
                return self._skip(result.reason, result.detail)
            self._skew.add(result.skew_ns / NS)
            self._age.add(result.age_ns / NS)
            observation = observation_from_set(
                result, config.camera_names, config.proprio_names, instruction=self._task,
                seed=config.seed_for(result.reference_stamp_ns))
            job = _Job(observation=observation, stamps=dict(result.stamps),
                       reference_ns=result.reference_stamp_ns, config=config, epoch=self._epoch,
                       policy=self._policy, reset_first=self._reset_pending, task=self._task)
            if self._worker.submit(job):
                self._sync.mark_used(result.reference_stamp_ns)
                self._reset_pending = False
            else:
                self._skip('inference_busy')

    # --- inference thread ----------------------------------------------------------------------
    def _run_job(self, job):
        if job.reset_first:
            job.policy.reset()
        start = time.perf_counter()
        try:
            output = job.policy.infer(job.observation,
                                      num_steps=job.config.num_denoising_steps,
                                      num_candidates=job.config.num_candidates)
        except Exception as error:
            self._inference_failed(error)
            return
        elapsed = time.perf_counter() - start
        self._latency.add(elapsed)
        self._publish(job, output, elapsed)

    def _worker_error(self, error):
        self._inference_failed(error)

    def _inference_failed(self, error):
        key = f'{type(error).__name__}: {error}'
        with self._lock:
            self._inference_errors += 1
            self._last_error = key[:500]
            first = key not in self._seen_errors and len(self._seen_errors) < MAX_DISTINCT_ERRORS
            if first:
                self._seen_errors.add(key)
            cap_reached = first and len(self._seen_errors) == MAX_DISTINCT_ERRORS
        if first:
            self.get_logger().error(f'inference failed (logged once per distinct error, '
                                    f'counted in /diagnostics): {key}')
        if cap_reached:
            self.get_logger().error(f'{MAX_DISTINCT_ERRORS} distinct inference errors: further '
                                    f'new ones are only counted in /diagnostics')

    def _reject(self, reason, detail):
        self._rejected.add('chunk', reason)
        now = time.monotonic()
        if now - self._reject_logged.get(reason, -10.0) >= 10.0:
            self._reject_logged[reason] = now
            self.get_logger().warning(f'chunk not published: {reason}: {detail} (counted in '
                                      f'/diagnostics; throttled to one warning per 10 s)')

    def _publish(self, job, output: PolicyOutput, elapsed):
        now_ns = self.get_clock().now().nanoseconds
        with self._lock:
            if job.epoch != self._epoch or self._state != 'active':
                self._rejected.add('chunk', 'deactivated')
                return
            task_changed = job.task != self._task
            config, binding, limits = self._config, self._binding, self._limits
            publishers = dict(self._output_publishers)
            current = None
            check_jump = bool(binding.jump_indices) and config.max_first_step_jump > 0
            if check_jump:
                proprio = current_proprio(self._sync, config.proprio_names)
                if proprio is not None:
                    current = proprio[list(binding.jump_indices)]
        if task_changed:
            return self._reject('task_changed', 'the task changed while this chunk was computed')
        if check_jump and current is None:
            return self._reject('jump', 'no current joint positions to compare with')
        oldest = min(job.stamps.values())
        age = (now_ns - oldest) / NS
        if age > config.max_publish_age:
            return self._reject('stale_at_publish', f'observation is {age:.3f} s old when the '
                                                    f'chunk is ready (max_publish_age '
                                                    f'{config.max_publish_age:g} s)')
        verdict = check_chunk(output.actions, limits, horizon=binding.horizon,
                              action_dim=len(binding.action_names), value=output.value,
                              current=current, names=binding.action_names)
        if not verdict.ok:
            return self._reject(verdict.reason, verdict.detail)
        if verdict.clamped:
            with self._lock:
                self._clamped += verdict.clamped
        model_id = str(getattr(job.policy, 'model_id', ''))
        frame_id = config.frame_id
        names = config.stream_names
        publishers['chunk'].publish(outputs.action_chunk_msg(
            stamp_ns=job.reference_ns, frame_id=frame_id, action_names=binding.action_names,
            actions=verdict.actions, step_period=config.step_period, value=output.value,
            source_names=names, source_stamps_ns=[job.stamps[name] for name in names],
            seed=output.seed, num_denoising_steps=output.num_steps, inference_time=elapsed,
            model_id=model_id))
        publishers['value'].publish(outputs.value_msg(
            stamp_ns=job.reference_ns, frame_id=frame_id, value=output.value,
            candidate_values=output.candidate_values,
            selected_candidate=output.selected_candidate, model_id=model_id))
        if 'trajectory' in publishers:
            period_ns = round(config.step_period * NS)
            indices = future_point_indices(job.reference_ns, period_ns, binding.execute_steps,
                                           now_ns)
            if len(indices):
                publishers['trajectory'].publish(outputs.joint_trajectory_msg(
                    stamp_ns=job.reference_ns, frame_id=frame_id,
                    joint_names=binding.action_names, actions=verdict.actions,
                    step_period_ns=period_ns, indices=indices))
            else:
                with self._lock:
                    self._trajectories_elapsed += 1
        if config.publish_future_images and output.future_images:
            for name, image in output.future_images.items():
                publisher = publishers.get(f'future:{name}')
                if publisher is not None:
                    publisher.publish(outputs.image_msg(stamp_ns=job.reference_ns,
                                                        frame_id=frame_id, rgb=image))
        with self._lock:
            self._chunks_published += 1
            self._last_chunk_steady = time.monotonic()
            if job.epoch == self._epoch:
                self._executing = (job.reference_ns, binding.execute_steps)

    # --- parameters ----------------------------------------------------------------------------
    def _on_set_parameters(self, parameters):
        with self._lock:
            config, layout = self._config, self._layout
        if config is None:  # validated at configure; a new value replaces a refused one
            for parameter in parameters:
                self.parameter_errors.pop(parameter.name, None)
            return SetParametersResult(successful=True)
        try:
            new, changed = params.apply_changes(config, parameters)
            if not changed:
                return SetParametersResult(successful=True)
            binding = bind_layout(new, layout)
            limits = new.chunk_limits()
        except ValueError as error:
            return SetParametersResult(successful=False, reason=str(error))
        with self._lock:
            if self._config is None:
                return SetParametersResult(successful=False, reason='the node is being cleaned '
                                                                    'up; try again')
            self._config, self._binding, self._limits = new, binding, limits
            self._sync.set_limits(round(new.sync_tolerance * NS),
                                  round(new.max_observation_age * NS))
            if 'rate' in changed and self._control_timer is not None:
                self._start_control_timer(new.rate)
        if 'task' in changed:
            self._set_task(new.task)
        self.get_logger().info('parameters changed: ' + ', '.join(
            f'{name}={getattr(new, name)!r}' for name in changed))
        return SetParametersResult(successful=True)

    # --- diagnostics ---------------------------------------------------------------------------
    def _reset_stats(self):
        self._input_counts = ReasonCounts()
        self._skipped = ReasonCounts()
        self._rejected = ReasonCounts()
        self._reject_logged = {}
        self._seen_errors = set()
        self._latency = RollingWindow(200)
        self._skew = RollingWindow(200)
        self._age = RollingWindow(200)
        self._tick_meter = RateMeter(50)
        self._ticks = 0
        self._chunks_published = 0
        self._inference_errors = 0
        self._last_error = ''
        self._last_skip_detail = ''
        self._clamped = 0
        self._trajectories_elapsed = 0

    def health(self):
        """A HealthSnapshot of the node now."""
        now_ns = self.get_clock().now().nanoseconds
        with self._lock:
            config = self._config
            worker = self._worker
            since = None
            if self._state == 'active' and self._last_chunk_steady is not None:
                since = time.monotonic() - self._last_chunk_steady
            period_ns = round(NS / config.rate) if config else NS
            return HealthSnapshot(
                node_name=self.get_fully_qualified_name(), lifecycle_state=self._state,
                model_id=str(getattr(self._policy, 'model_id', '')),
                configure_error=self._configure_error, seconds_since_chunk=since,
                watchdog_timeout=config.watchdog_timeout if config else 0.0,
                chunks_published=self._chunks_published,
                inferences=worker.started if worker else 0,
                inference_in_flight=worker.busy if worker else False,
                inference_errors=self._inference_errors, last_error=self._last_error,
                latency=self._latency.summary(), warmup_latencies=self._warmup_latencies,
                rejected={reason: count for (_, reason), count in
                          self._rejected.snapshot().items()},
                clamped_values=self._clamped,
                trajectories_elapsed=self._trajectories_elapsed,
                num_denoising_steps=config.num_denoising_steps if config else 0,
                num_candidates=config.num_candidates if config else 0,
                streams=config.stream_names if config else (),
                input_counts=self._input_counts.snapshot(),
                skew=self._skew.summary(), age=self._age.summary(),
                sync_resets=self._sync.resets if self._sync else 0,
                tick_rate=self._tick_meter.rate(now_ns, max_gap_ns=5 * period_ns),
                ticks=self._ticks,
                skipped={reason: count for (_, reason), count in
                         self._skipped.snapshot().items()},
                last_skip_detail=self._last_skip_detail, task=self._task)

    def _publish_diagnostics(self):
        snapshot = self.health()
        self._diagnostics_publisher.publish(diagnostic_array(
            snapshot, self._previous_health, self.get_clock().now().to_msg()))
        self._previous_health = snapshot


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


def main(args=None):
    """Console script: run the node until SIGINT/SIGTERM (exit 0) or a failed autostart (1).

    `kill -USR1 <pid>` prints every thread's Python stack to stderr (for a node that seems stuck).
    """
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        rclpy.init(args=args)
    except Exception as error:  # e.g. an unparsable --params-file
        print(f'policy_node: cannot start ROS: {error}', file=sys.stderr)
        return 2
    node = None
    code = 0
    try:
        node = PolicyNode()
        started = True
        if node.autostart:
            started = (node.trigger_configure() == TransitionCallbackReturn.SUCCESS
                       and node.trigger_activate() == TransitionCallbackReturn.SUCCESS)
            code = 0 if started or not rclpy.ok() else 1  # a shutdown meanwhile is clean
        if started and rclpy.ok():
            executor = MultiThreadedExecutor(num_threads=4)
            executor.add_node(node)
            try:
                _spin(executor)
            finally:
                executor.shutdown()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise  # a real failure, not a shutdown racing with start-up
    finally:
        if node is not None:
            node.close()
        rclpy.try_shutdown()
    return code


if __name__ == '__main__':
    sys.exit(main())
