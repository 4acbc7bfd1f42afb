"""/diagnostics of the policy node: three statuses built from a snapshot of its counters.

    <node>: policy        lifecycle state, model, inference latency, published/rejected chunks,
                          watchdog (ERROR when active and no chunk for watchdog_timeout)
    <node>: inputs        messages received and dropped per stream and reason, sync skew and
                          observation age
    <node>: control loop  tick rate, ticks skipped by reason

Levels: OK; WARN when something went wrong since the previous report (drops, inference errors,
rejected chunks, or every tick of the period skipped because no observation was ready);
ERROR for the watchdog and a failed configure. The snapshot (HealthSnapshot) is built in
health.py; ``DiagnosticsReporter`` publishes it and logs the console lines (console_health.py).
"""
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType

from cosmos_policy_ros.console_health import ConsoleHealth
from cosmos_policy_ros.health import HealthSnapshot  # noqa: F401 (what the statuses read)

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR
# Tick skips that mean "no usable observation" (the others are normal pacing).
INPUT_SKIPS = ('missing', 'dropped', 'skew', 'stale', 'future', 'no_task')


def _text(value):
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, float):
        return f'{value:.6g}'
    return str(value)


def _status(snapshot, part, level, message, values):
    return DiagnosticStatus(
        level=level, name=f'{snapshot.node_name}: {part}', message=message,
        hardware_id=snapshot.node_name,
        values=[KeyValue(key=key, value=_text(value)) for key, value in values])


def _summary_values(prefix, summary, keys=('p50', 'p95', 'max')):
    return [(f'{prefix}_{key}_s', summary[key]) for key in keys if key in summary]


def _increased(now, before):
    return any(count > before.get(key, 0) for key, count in now.items())


def policy_status(snapshot, previous):
    values = [('lifecycle_state', snapshot.lifecycle_state), ('model_id', snapshot.model_id),
              ('chunks_published', snapshot.chunks_published),
              ('inferences', snapshot.inferences),
              ('inference_in_flight', snapshot.inference_in_flight),
              ('inference_errors', snapshot.inference_errors)]
    values += _summary_values('inference_latency', snapshot.latency)
    if snapshot.warmup_latencies:
        values.append(('warmup_latency_s', ' '.join(
            f'{latency:.4g}' for latency in snapshot.warmup_latencies)))
    if snapshot.seconds_since_chunk is not None:
        values.append(('seconds_since_chunk', snapshot.seconds_since_chunk))
    values += [(f'rejected.{reason}', count) for reason, count in sorted(
        snapshot.rejected.items())]
    values += [('clamped_values', snapshot.clamped_values),
               ('trajectories_elapsed', snapshot.trajectories_elapsed),
               ('num_denoising_steps', snapshot.num_denoising_steps),
               ('num_candidates', snapshot.num_candidates)]
    if snapshot.last_error:
        values.append(('last_error', snapshot.last_error))
    if snapshot.configure_error:
        return _status(snapshot, 'policy', ERROR,
                       f'configure failed: {snapshot.configure_error}', values)
    if (snapshot.lifecycle_state == 'active' and snapshot.watchdog_timeout > 0
            and snapshot.seconds_since_chunk is not None
            and snapshot.seconds_since_chunk > snapshot.watchdog_timeout):
        return _status(snapshot, 'policy', ERROR,
                       f'watchdog: no chunk published for {snapshot.seconds_since_chunk:.1f} s '
                       f'(watchdog_timeout {snapshot.watchdog_timeout:g} s)', values)
    before_errors = previous.inference_errors if previous else 0
    if snapshot.inference_errors > before_errors:
        return _status(snapshot, 'policy', WARN,
                       f'inference failed: {snapshot.last_error}', values)
    rejected = {reason: count for reason, count in snapshot.rejected.items()
                if reason != 'deactivated'}  # results discarded by a deactivate are expected
    if _increased(rejected, previous.rejected if previous else {}):
        return _status(snapshot, 'policy', WARN, 'chunks rejected (see rejected.*)', values)
    return _status(snapshot, 'policy', OK,
                   f'{snapshot.lifecycle_state}, {snapshot.chunks_published} chunks', values)


def inputs_status(snapshot, previous):
    values = []
    for stream in snapshot.streams:
        received = snapshot.input_counts.get((stream, 'received'), 0)
        values.append((f'received.{stream}', received))
    drops = {key: count for key, count in snapshot.input_counts.items()
             if key[1] != 'received'}
    values += [(f'dropped.{stream}.{reason}', count) for (stream, reason), count in sorted(
        drops.items())]
    values += _summary_values('sync_skew', snapshot.skew, ('p50', 'max'))
    values += _summary_values('observation_age', snapshot.age, ('p50', 'max'))
    values += [('sync_resets', snapshot.sync_resets), ('task', snapshot.task)]
    values += [(f'last_drop.{stream}', text) for stream, text in sorted(
        snapshot.last_drops.items())]
    before = {key: count for key, count in (previous.input_counts if previous else {}).items()
              if key[1] != 'received'}
    unusable = snapshot.arriving_but_dropped()
    if unusable:
        return _status(snapshot, 'inputs', WARN, '; '.join(
            f'{stream}: arriving but dropped: {why}' for stream, why in unusable.items()),
            values)
    if _increased(drops, before):
        return _status(snapshot, 'inputs', WARN, 'messages dropped (see dropped.*)', values)
    silent = [stream for stream in snapshot.streams
              if not snapshot.input_counts.get((stream, 'received'))]
    if silent and snapshot.lifecycle_state == 'active':
        return _status(snapshot, 'inputs', WARN, f'nothing received from {", ".join(silent)}',
                       values)
    return _status(snapshot, 'inputs', OK, 'ok', values)


def control_status(snapshot, previous):
    values = [('tick_rate_hz', snapshot.tick_rate), ('ticks', snapshot.ticks)]
    values += [(f'skipped.{reason}', count) for reason, count in sorted(
        snapshot.skipped.items())]
    if snapshot.last_skip_detail:
        values.append(('last_skip_detail', snapshot.last_skip_detail))
    ticks = snapshot.ticks - (previous.ticks if previous else 0)
    if (ticks == 0 and snapshot.lifecycle_state == 'active' and previous is not None
            and previous.lifecycle_state == 'active'):
        return _status(snapshot, 'control loop', WARN,
                       'the control loop does not tick (use_sim_time without /clock?)', values)
    before = previous.skipped if previous else {}
    starved = sum(snapshot.skipped.get(reason, 0) - before.get(reason, 0)
                  for reason in INPUT_SKIPS)
    if ticks > 0 and starved >= ticks:
        return _status(snapshot, 'control loop', WARN,
                       f'no observation ready: {snapshot.last_skip_detail}', values)
    return _status(snapshot, 'control loop', OK, f'{snapshot.tick_rate:.1f} Hz', values)


def diagnostic_array(snapshot, previous, stamp):
    """DiagnosticArray of the three statuses; previous: the last snapshot (for WARN levels)."""
    msg = DiagnosticArray()
    msg.header.stamp = stamp
    msg.status = [policy_status(snapshot, previous), inputs_status(snapshot, previous),
                  control_status(snapshot, previous)]
    return msg


class DiagnosticsReporter:
    """Every `period` s of steady time: the node's health on /diagnostics and its console lines.

    health(): the node's HealthSnapshot now; config(): its NodeConfig or None (the console
    names the topics of silent streams). Its own callback group: reports keep coming while
    the node's other callbacks are busy.
    """

    def __init__(self, node, health, config, period):
        self._node, self._health, self._config = node, health, config
        self._publisher = node.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._previous = None
        self._console = ConsoleHealth()
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self._timer = node.create_timer(period, self.report, clock=steady,
                                        callback_group=MutuallyExclusiveCallbackGroup())

    def report(self):
        snapshot = self._health()
        self._publisher.publish(diagnostic_array(snapshot, self._previous,
                                                 self._node.get_clock().now().to_msg()))
        self._previous = snapshot
        self._console.report(self._node.get_logger(), time.monotonic(), snapshot,
                             self._config(), self._node.count_publishers)
