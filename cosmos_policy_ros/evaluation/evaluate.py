"""Offline evaluation: a recorded episode through the node's rules and the policy, no ROS graph.

The bag's messages go, in log-time order, into the node's own control loop (``ControlLoop``
of ``cosmos_policy_ros.control_loop``: conversions, the sync buffer, the tick and finish
decisions, the chunk's fields), ticked on bag time (= the ROS clock of a node replaying
the bag with use_sim_time); this module only drives it and writes the results. Inference
takes no bag time here, so every tick whose observation is ready gets a chunk; the latency
is still measured.

Tick modes:
* ``control``: ticks at the configured `rate` with the node's replanning rule (what the robot
  would have executed);
* ``observations``: one chunk per reference-stream message: the set of that frame (the same
  closest-member and settle rules), ticked `sync_tolerance` after its stamp, when every stream
  within tolerance has arrived. A chunk a live node published for a frame is recomputed here
  from the same set, so the two can be compared (the demo's parity check).

Outputs (in one directory): ``chunks/`` (rosbag2: ActionChunk on /action_chunk, ValueEstimate on
/value), ``ticks.csv`` (every tick and why it did or did not give a chunk), ``chunks.csv``
(per chunk: value, latency, error), ``metrics.json`` (summary), and PNG plots. Results are
written also when the run stops early (an error or Ctrl-C), marked incomplete.
"""
from collections import Counter
from dataclasses import dataclass
import math
from pathlib import Path
import sys
import time
from typing import Mapping, Tuple

import numpy as np
from tqdm import tqdm

from cosmos_policy_ros.bags.arrays import action_stream_arrays
from cosmos_policy_ros.bags.reader import BagReader
from cosmos_policy_ros.bags.typestore import make_typestore, ns_to_stamp
from cosmos_policy_ros.bags.writer import BagWriter
from cosmos_policy_ros.conversions import NS_PER_S as NS, stamp_to_ns
from cosmos_policy_ros.evaluation import metrics
from cosmos_policy_ros.evaluation.offline_node import (absolute_topic, check_topics, CHUNK,
                                                       OfflineNode, Tick)

TICK_MODES = ('control', 'observations')
CHUNK_TOPIC, VALUE_TOPIC = '/action_chunk', '/value'
# Message types the recorded demonstrator actions may have (bags/arrays.action_stream_arrays).
ACTION_TYPES = ('sensor_msgs/msg/JointState', 'std_msgs/msg/Float64MultiArray')


@dataclass(frozen=True)
class EvalReport:
    out_dir: Path
    ticks: Tuple[Tick, ...]
    summary: Mapping
    complete: bool
    files: Mapping[str, Path]

    @property
    def chunks(self):
        return tuple(tick for tick in self.ticks if tick.status == CHUNK)


def evaluate(bag, policy, config, out_dir, *, tick_mode='control', start_s=None, end_s=None,
             recorded_actions_topic=None, storage='mcap', plots=True, progress=None,
             references=None, clock=time.perf_counter):
    """Run the bag through `policy` as the node would and write the results to `out_dir`.

    recorded_actions_topic: bag topic with the demonstrator actions (default: the config's
    recorded_actions_topic; none: no error metrics). progress: show a progress bar (None: only
    on a terminal). references: in 'observations' mode, only these reference stamps (ns) get a
    chunk; a mapping {reference stamp: {stream: stamp}} (e.g. the source stamps of a live run's
    chunks) makes each of them from exactly those messages, as soon as they are all read.
    Returns an EvalReport. On an error or KeyboardInterrupt the results so far
    are written (marked incomplete) before the exception propagates.
    """
    if tick_mode not in TICK_MODES:
        raise ValueError(f'tick mode must be one of {list(TICK_MODES)}. Got {tick_mode!r}.')
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise ValueError(f'output directory {out_dir} is not empty; choose another --out.')
    out_dir.mkdir(parents=True, exist_ok=True)
    node = OfflineNode(policy, config, clock=clock)
    actions_topic = recorded_actions_topic or config.recorded_actions_topic or None
    actions_topic = absolute_topic(actions_topic) if actions_topic else None
    task_topic = absolute_topic(config.task_topic)
    period_ns = round(NS / config.rate)
    tolerance_ns = round(config.sync_tolerance * NS)
    ticks, recorded, error = [], [], None
    typestore = make_typestore()
    with BagReader(bag) as reader:
        info = reader.info
        check_topics(info, node.streams, actions_topic)
        not_compared = None if actions_topic else _no_actions_reason(info, node.streams)
        start_ns, end_ns = reader.window_ns(start_s, end_s)
        start_ns = info.start_ns if start_ns is None else start_ns
        end_ns = info.end_ns + 1 if end_ns is None else end_ns
        wanted = [*node.streams, *([actions_topic] if actions_topic else [])]
        wanted += [task_topic] if task_topic in info.topics else []
        bar = _progress_bar(progress, (end_ns - start_ns) / NS)
        with BagWriter(out_dir / 'chunks', storage=storage, typestore=typestore) as writer:
            writer.add_topic(CHUNK_TOPIC, 'cosmos_policy_ros/msg/ActionChunk')
            writer.add_topic(VALUE_TOPIC, 'cosmos_policy_ros/msg/ValueEstimate')
            # Pending ticks: (bag time, reference stamp or None), in time order.
            pending = [(start_ns + period_ns, None)] if tick_mode == 'control' else []
            exact_sets = dict(references) if isinstance(references, Mapping) else {}
            anchors = set(references) if references is not None else None

            def emit(tick):
                ticks.append(tick)
                if tick.status == CHUNK:
                    _write_chunk(writer, typestore, tick)

            def run_ticks(until_ns):
                # Ticks strictly before `until_ns`: a tick sees every message logged up to
                # and including its own time.
                while pending and pending[0][0] < until_ns:
                    now, reference_ns = pending.pop(0)
                    if tick_mode == 'control':
                        emit(node.tick(now))
                        pending.append((now + period_ns, None))
                    else:
                        emit(node.tick(now, replan=False, reference_ns=reference_ns))

            def run_exact(now):
                for reference_ns, stamps in sorted(exact_sets.items()):
                    if node.buffer.select(stamps).ok:
                        del exact_sets[reference_ns]
                        emit(node.tick(now, replan=False, exact=stamps))

            try:
                # The latched task recorded before the window still applies in it.
                if task_topic in info.topics:
                    for item in reader.messages([task_topic], end_ns=start_ns):
                        node.set_task(item.message.data)
                last_ns = start_ns
                for item in reader.messages(wanted, start_ns=start_ns, end_ns=end_ns):
                    run_ticks(item.stamp_ns)
                    if item.topic == task_topic:
                        node.set_task(item.message.data)
                    elif item.topic == actions_topic:
                        recorded.append(item)
                    else:
                        node.feed(item.topic, item.message)
                        if exact_sets:
                            run_exact(item.stamp_ns)
                        elif tick_mode == 'observations' and not (
                                isinstance(references, Mapping)) and any(
                                stream.name == config.reference
                                for stream in node.streams[item.topic]):
                            stamp = stamp_to_ns(item.message.header.stamp)
                            if stamp > 0 and (anchors is None or stamp in anchors):
                                # Once every stream within tolerance is in (never in the past).
                                pending.append((max(stamp + tolerance_ns, item.stamp_ns),
                                                stamp))
                                pending.sort()
                    if bar is not None:
                        bar.update((item.stamp_ns - last_ns) / NS)
                    last_ns = item.stamp_ns
                run_ticks(end_ns if tick_mode == 'control' else math.inf)
            except (Exception, KeyboardInterrupt) as raised:
                error = raised
            finally:
                if bar is not None:
                    bar.close()
    if references is not None and error is None:
        evaluated = {tick.reference_ns for tick in ticks}
        ticks.extend(Tick(end_ns, 'reference_not_found', 'no such set in the bag window',
                          reference_ns=int(reference_ns))
                     for reference_ns in sorted(set(references) - evaluated))
    summary, files = _write_results(out_dir, ticks, node, recorded, config, policy,
                                    plots=plots, error=error, origin_ns=start_ns,
                                    not_compared=not_compared)
    report = EvalReport(out_dir, tuple(ticks), summary, error is None, files)
    if error is not None:
        raise error
    return report


def _no_actions_reason(info, streams):
    """Why nothing is compared with recorded actions, and how to get the comparison."""
    candidates = sorted(f'{topic} ({entry.msgtype})' for topic, entry in info.topics.items()
                        if entry.msgtype in ACTION_TYPES and topic not in streams)
    where = (f'; topics in this bag that may hold them: {", ".join(candidates)}' if candidates
             else '; this bag has no JointState or Float64MultiArray topic besides the inputs')
    return ('no recorded actions: the config sets no `recorded_actions_topic` and no '
            '--recorded-actions TOPIC was given' + where)


def _progress_bar(progress, total_s):
    if progress is None:
        progress = sys.stderr.isatty()
    if not progress:
        return None
    return tqdm(total=round(total_s, 3), unit='s', desc='evaluating (bag time)',
                bar_format='{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s '
                           '[{elapsed}<{remaining}]')


def _write_chunk(writer, typestore, tick):
    """The node's ActionChunk and ValueEstimate of a tick, from the chunk's fields."""
    types, chunk = typestore.types, tick.chunk
    header = types['std_msgs/msg/Header'](stamp=ns_to_stamp(chunk.stamp_ns, typestore),
                                          frame_id=chunk.frame_id)
    writer.write(CHUNK_TOPIC, tick.time_ns, types['cosmos_policy_ros/msg/ActionChunk'](
        header=header, action_names=list(chunk.action_names), horizon=chunk.actions.shape[0],
        action_dim=chunk.actions.shape[1], step_period=chunk.step_period,
        actions=chunk.actions.reshape(-1),  # (K, d) -> (K*d,), row-major
        value=np.float32(chunk.value),
        source_stamps=[ns_to_stamp(ns, typestore) for ns in chunk.source_stamps_ns],
        source_names=list(chunk.source_names), seed=chunk.seed,
        num_denoising_steps=chunk.num_denoising_steps,
        inference_time=np.float32(chunk.inference_time), model_id=chunk.model_id,
        stitching=chunk.stitching, conditioned_steps=chunk.conditioned_steps,
        takeover_step=chunk.takeover_step, blended_steps=chunk.blended_steps,
        expected_latency=np.float32(chunk.expected_latency)))
    writer.write(VALUE_TOPIC, tick.time_ns, types['cosmos_policy_ros/msg/ValueEstimate'](
        header=header, value=np.float32(chunk.value),
        candidate_values=np.asarray(chunk.candidate_values, np.float32),
        selected_candidate=chunk.selected_candidate, model_id=chunk.model_id))


def _write_results(out_dir, ticks, node, recorded, config, policy, *, plots, error,
                   origin_ns, not_compared=None):
    files = {'chunks': out_dir / 'chunks'}
    chunks = [tick for tick in ticks if tick.status == CHUNK]
    statuses = Counter(tick.status for tick in ticks)
    summary = {
        'complete': error is None,
        'error': None if error is None else f'{type(error).__name__}: {error}',
        'model_id': policy.model_id,
        'ticks': len(ticks),
        'chunks': len(chunks),
        'ticks_by_status': dict(sorted(statuses.items())),
        'received_by_stream': dict(sorted(node.received.items())),
        'dropped_messages': {f'{stream}.{reason}': count
                             for (stream, reason), count in sorted(node.dropped.items())},
        'num_denoising_steps': config.num_denoising_steps,
        'num_candidates': config.num_candidates,
        'execute_steps': node.binding.execute_steps,
    }
    if not_compared:
        summary['actions'] = {'not_compared': not_compared}
    files['ticks'] = out_dir / 'ticks.csv'
    metrics.write_csv(files['ticks'], {
        'time_s': metrics.relative_seconds(np.array([t.time_ns for t in ticks], np.int64),
                                           origin_ns),
        'status': [t.status for t in ticks],
        'reference_stamp_ns': [t.reference_ns if t.reference_ns is not None else ''
                               for t in ticks],
        'seed': [t.seed if t.seed is not None else '' for t in ticks],
        'value': [t.value for t in ticks],
        'latency_s': [t.latency_s for t in ticks],
        'detail': [t.detail for t in ticks],
    })
    if chunks:
        stamps = np.array([t.reference_ns for t in chunks], np.int64)
        actions = np.stack([t.actions for t in chunks])  # (M, K, d)
        values = np.array([t.value for t in chunks])
        latencies = np.array([t.latency_s for t in chunks])
        summary['value'] = metrics.value_statistics(values)
        summary['latency_s'] = metrics.latency_statistics(latencies)
        match = recorded_stream = None
        if recorded:
            names = node.binding.action_names if hasattr(recorded[0].message, 'position') else (
                None)
            recorded_stream = action_stream_arrays(recorded, names=names)[:2]
            rec_stamps, rec_values = recorded_stream
            if rec_values.shape[1] != actions.shape[2]:
                summary['actions'] = {'not_compared': f'the recorded actions have '
                                                      f'{rec_values.shape[1]} values, the '
                                                      f'chunks {actions.shape[2]}'}
                recorded_stream = None
            else:
                match = metrics.match_actions(stamps, actions, config.step_period, rec_stamps,
                                              rec_values, executed=node.binding.execute_steps)
                summary['actions'] = metrics.summarize(
                    match, action_names=node.binding.action_names)
        elif 'actions' not in summary:
            summary['actions'] = {'not_compared': 'the recorded-actions topic has no message in '
                                                  'the evaluated window'}
        files['chunks_csv'] = out_dir / 'chunks.csv'
        if match is not None:
            table = metrics.tick_table(stamps, match, values=values, latencies_s=latencies,
                                       origin_ns=origin_ns)
        else:
            table = {'stamp_ns': stamps,
                     'time_s': metrics.relative_seconds(stamps, origin_ns),
                     'value': values, 'latency_s': latencies}
        metrics.write_csv(files['chunks_csv'], table)
        if plots:
            files.update(_plots(out_dir, stamps, actions, values, latencies, recorded_stream,
                                config, node, origin_ns))
    files['metrics'] = out_dir / 'metrics.json'
    metrics.write_json(files['metrics'], summary)
    return summary, files


def _plots(out_dir, stamps, actions, values, latencies, recorded_stream, config, node,
           origin_ns):
    from cosmos_policy_ros.evaluation import plots  # matplotlib: only when plots are drawn
    files = {}
    if recorded_stream is not None:
        rec_stamps, rec_values = recorded_stream
        files['actions_png'] = out_dir / 'actions.png'
        plots.plot_actions(files['actions_png'], rec_stamps, rec_values, stamps, actions,
                           config.step_period, executed=node.binding.execute_steps,
                           action_names=node.binding.action_names, origin_ns=origin_ns)
    files['value_png'] = out_dir / 'value.png'
    plots.plot_value(files['value_png'], stamps, values, origin_ns=origin_ns)
    files['latency_png'] = out_dir / 'latency.png'
    plots.plot_latency_histogram(files['latency_png'], latencies)
    return files


def no_chunk_reasons(summary, prefix=''):
    """'prefix' + the reasons ticks gave no chunk, with their counts ('' when none did)."""
    reasons = {status: count for status, count in summary['ticks_by_status'].items()
               if status != CHUNK}
    if not reasons:
        return ''
    return prefix + ', '.join(f'{status} {count}' for status, count in sorted(
        reasons.items(), key=lambda item: -item[1]))


def format_report(report):
    """A few lines summarizing an EvalReport for the terminal."""
    summary = report.summary
    lines = [f'{summary["ticks"]} ticks, {summary["chunks"]} chunks' + no_chunk_reasons(
        summary, '; ticks without a chunk, by reason: ')]
    if summary.get('latency_s', {}).get('count'):
        latency = summary['latency_s']
        lines.append(f'latency: mean {latency["mean"]:.3f} s, p95 {latency["p95"]:.3f} s, '
                     f'max {latency["max"]:.3f} s')
    if summary.get('value', {}).get('count'):
        lines.append(f'value: mean {summary["value"]["mean"]:.3f}')
    actions = summary.get('actions', {})
    if 'mae_mean' in actions:
        lines.append(f'actions vs recorded: MAE {actions["mae_mean"]:.4f}, RMSE '
                     f'{actions["rmse_mean"]:.4f} over {actions["compared_actions"]} actions')
    elif 'not_compared' in actions:
        lines.append(f'actions vs recorded: NOT COMPARED: {actions["not_compared"]}')
    lines += [f'{name:12s} {path}' for name, path in report.files.items()]
    return '\n'.join(lines)
