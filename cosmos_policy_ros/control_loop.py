"""The control loop: every rule between input messages and a published chunk, in one place.

The node (on live topics, ROS clock) and ``cosmos-policy-replay eval`` (on a bag, bag time) both
drive one ``ControlLoop``; neither has rules of its own, so a bag gives the same observations,
seeds, chunks and reasons in both. Time is always an argument (integer ns), never read here;
the one clock read is the inference stopwatch (``clock``, an argument too, for tests).

    receive(stream, msg)        convert one message, store it in the sync buffer (or name the
                                drop); counted per stream in ``input_counts``
    set_task(text)              a new task: the policy is reset before the next inference
    tick(now_ns, ...)           the tick decision: a ``Job`` (an observation to infer on) or a
                                ``Skip`` with its reason (inference_busy, no_task,
                                chunk_executing, dropped, or the sync query's reason); a
                                tick is a timer's or an arrival's (a message just stored: an
                                inference starts there only 1 / rate after the last one
                                started, and only on a set stamped at or before now:
                                rate_bound, ahead_of_clock)
    complete(job, now)          run_inference (reset on a new task, infer, timed), then
    finish(job, output, ...)    the finish decision: ``Finished`` with the ``Chunk`` to publish,
                                or with the reason it is rejected (deactivated, task_changed,
                                jump, stale_at_publish, or the safety check's reason)

``finish`` turns the policy output into the published chunk in one method (``_chunk``).
Stitching across replans (``config.stitching``, docs/stitching.md) happens in the two places
the execution model (execution.py) says: ``tick`` plans the takeover of the chunk it starts
(expected latency = the ``LatencyEstimator`` of measured ROS-clock latencies plus
``latency_margin``) and, for inpaint, hands the executing chunk's commands up to the takeover
to the policy as known actions; ``finish`` re-plans the takeover at the real ready time and,
for blend and ramp, rewrites the published rows from it (execution.stitch). The executing
chunk is the last published one, as published (stitched), over its whole horizon: a
controller executes a chunk until a newer one replaces it.
Also here: ``input_streams(config)`` (topic, message type and conversion of every input
stream; ``InputStream.ingest(msg, buffer)``), ``make_sync_buffer(config)`` and
``replan_due(now_ns, executing, config)``, the replanning rule. Messages are duck-typed (rclpy
messages and rosbags' deserialized ones have the same fields). Thread-safe: the node calls
``receive`` from its subscription callbacks, ``tick`` from its timer and its subscription
callbacks (arrival ticks) and ``complete`` from its inference thread. numpy and stdlib only.
"""
from dataclasses import dataclass
import functools
import threading
import time
from typing import Callable, Mapping, Optional, Tuple

import numpy as np

from cosmos_policy_ros.conversions import (compressed_image_to_rgb, ConversionError,
                                           future_point_indices, image_to_rgb,
                                           joint_state_values, NS_PER_S, pose_values,
                                           stamp_to_ns)
from cosmos_policy_ros.counters import ReasonCounts
from cosmos_policy_ros.execution import (ChunkTiming, known_prefix, LatencyEstimator,
                                         plan_takeover, rewritten_steps, stitch)
from cosmos_policy_ros.interface import InferenceRequest, Observation, PolicyOutput
from cosmos_policy_ros.node_config import bind_layout
from cosmos_policy_ros.safety import check_chunk, JUMP
from cosmos_policy_ros.sync import (current_proprio, MISSING, NOT_NEW, observation_from_set,
                                    SyncBuffer, ZERO_STAMP)

RECEIVED = 'received'  # input_counts reason of every message received
# Why a tick gives no job (besides the sync query's reasons, see sync.py).
INFERENCE_BUSY = 'inference_busy'
NO_TASK = 'no_task'
CHUNK_EXECUTING = 'chunk_executing'
DROPPED = 'dropped'  # a stream's messages arrive, but every one so far was dropped
RATE_BOUND = 'rate_bound'  # an arrival tick: the last inference started under 1 / rate ago
AHEAD_OF_CLOCK = 'ahead_of_clock'  # an arrival tick: the set is stamped after now
# Why a finished chunk is not published (besides the safety check's reasons, see safety.py).
DEACTIVATED = 'deactivated'
TASK_CHANGED = 'task_changed'
STALE_AT_PUBLISH = 'stale_at_publish'
INFERENCE_ERROR = 'inference_error'  # the policy raised (the offline evaluator's tick status)
BAG_LOOP_MARGIN_NS = NS_PER_S  # a clock this far behind the executing chunk's stamp went back
INPAINT_METHODS = ('inpaint', 'inpaint+blend')  # stitching methods that condition the sampler
LATENCY_WINDOW = 20  # measured latencies the expected latency is a percentile of
LATENCY_PERCENTILE = 90.0


# --- inputs and the replanning rule (pure functions of the configuration) ------------------
@dataclass(frozen=True)
class InputStream:
    """One input stream: where it comes from and how its messages become payloads."""

    name: str            # stream name in the sync buffer (camera or proprio source name)
    topic: str
    msg_type: str        # ROS type name, e.g. 'sensor_msgs/msg/Image'
    convert: Callable    # message -> payload (uint8 (H, W, 3) image or float64 (n,) vector)

    def ingest(self, msg, buffer):
        """Convert `msg` and add it to `buffer`.

        Returns (reason, detail): reason is '' when the message was stored, else why it was
        dropped; detail explains it for a log line.
        """
        stamp_ns = stamp_to_ns(msg.header.stamp)
        if stamp_ns <= 0:
            return ZERO_STAMP, 'header stamp is zero (unset)'
        try:
            payload = self.convert(msg)
        except ConversionError as error:
            return error.reason, str(error)
        reason = buffer.add(self.name, stamp_ns, payload)
        return reason, (f'stamp {stamp_ns / NS_PER_S:.6f} s' if reason else '')


def input_streams(config):
    """The InputStreams of a NodeConfig: cameras first, then proprio sources, in order."""
    streams = []
    for camera in config.cameras:
        if camera.transport == 'compressed':
            streams.append(InputStream(camera.name, camera.topic,
                                       'sensor_msgs/msg/CompressedImage',
                                       compressed_image_to_rgb))
        else:
            streams.append(InputStream(camera.name, camera.topic, 'sensor_msgs/msg/Image',
                                       image_to_rgb))
    for source in config.proprio_sources:
        if source.type == 'joint_state':
            convert = functools.partial(joint_state_values, joints=source.joints,
                                        field=source.field)
            streams.append(InputStream(source.name, source.topic,
                                       'sensor_msgs/msg/JointState', convert))
        else:
            convert = functools.partial(pose_values, quaternion_order=source.quaternion_order)
            streams.append(InputStream(source.name, source.topic,
                                       'geometry_msgs/msg/PoseStamped', convert))
    return streams


def make_sync_buffer(config):
    """The sync buffer of a NodeConfig: every input stream, anchored on the reference."""
    capacity = {name: config.buffer_size for name in config.camera_names}
    capacity.update({name: config.proprio_buffer_size for name in config.proprio_names})
    return SyncBuffer(config.stream_names, config.reference, capacity=capacity,
                      tolerance_ns=round(config.sync_tolerance * NS_PER_S),
                      max_age_ns=round(config.max_observation_age * NS_PER_S))


def replan_due(now_ns, executing: Optional[Tuple[int, int]], config):
    """Whether a control tick at `now_ns` may start a new chunk.

    executing: (reference stamp ns, executed steps) of the last published chunk, or None.
    Mode every_tick: always. Mode steps_left: when at most `replan_threshold` of its executed
    steps remain (step k runs at stamp + k * step_period), or when the clock jumped more than
    a second behind its stamp (a bag loop: that chunk is not executing).
    """
    if config.replan_mode == 'every_tick' or executing is None:
        return True
    stamp_ns, steps = executing
    if now_ns < stamp_ns - BAG_LOOP_MARGIN_NS:
        return True
    elapsed = max(0, now_ns - stamp_ns) // round(config.step_period * NS_PER_S)
    return steps - elapsed <= config.replan_threshold


# --- the loop --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Skip:
    """A tick without a job: `reason` (a constant above or a sync reason) and an explanation."""

    reason: str
    detail: str = ''


@dataclass(frozen=True)
class Job:
    """One inference: the observation and what finishing it needs."""

    observation: Observation
    stamps: Mapping[str, int]  # stream -> header stamp (ns) of the set's members
    reference_ns: int  # stamp of the reference stream's member
    skew_ns: int
    age_ns: int
    seed: int
    task: str
    reset_first: bool  # the task changed: reset the policy before this inference
    epoch: int
    policy: object
    num_steps: int
    num_candidates: int
    start_ns: int = 0  # the tick time: when the inference starts (ROS clock)
    expected_latency_ns: int = 0  # the takeover is planned for start_ns + this
    known_actions: Optional[np.ndarray] = None  # (k, d) robot units, for inpaint; None: none
    stitching: str = 'none'  # the method at the tick: the chunk is stitched and labelled by it

    def request(self):
        """The InferenceRequest of this job: what the policy is asked."""
        return InferenceRequest(self.observation, self.num_steps, self.num_candidates,
                                self.known_actions)


@dataclass(frozen=True)
class Chunk:
    """Every field of the published ActionChunk / ValueEstimate / JointTrajectory, built once."""

    stamp_ns: int  # the observation's reference stamp
    frame_id: str
    action_names: Tuple[str, ...]
    actions: np.ndarray  # (K, d) float32 after the safety check
    step_period: float
    value: float
    source_names: Tuple[str, ...]
    source_stamps_ns: Tuple[int, ...]
    seed: int
    num_denoising_steps: int
    inference_time: float
    model_id: str
    candidate_values: Tuple[float, ...]
    selected_candidate: int
    execute_steps: int
    trajectory_indices: range  # rows of the time-aligned trajectory (not yet past)
    future_images: Optional[Mapping[str, np.ndarray]] = None
    stitching: str = 'none'  # the stitching method this chunk was made with
    conditioned_steps: int = 0  # first rows sampled knowing the executing chunk's commands
    takeover_step: int = 0  # first row due at or after the planned ready time
    blended_steps: int = 0  # rows from takeover_step on rewritten by blend or ramp
    expected_latency: float = 0.0  # seconds the takeover was planned with

    @property
    def step_period_ns(self):
        return round(self.step_period * NS_PER_S)

    def action_chunk_fields(self):
        """Keyword arguments of ros.outputs.action_chunk_msg."""
        return dict(stamp_ns=self.stamp_ns, frame_id=self.frame_id,
                    action_names=self.action_names, actions=self.actions,
                    step_period=self.step_period, value=self.value,
                    source_names=self.source_names, source_stamps_ns=self.source_stamps_ns,
                    seed=self.seed, num_denoising_steps=self.num_denoising_steps,
                    inference_time=self.inference_time, model_id=self.model_id,
                    stitching=self.stitching, conditioned_steps=self.conditioned_steps,
                    takeover_step=self.takeover_step, blended_steps=self.blended_steps,
                    expected_latency=self.expected_latency)

    def value_fields(self):
        """Keyword arguments of ros.outputs.value_msg."""
        return dict(stamp_ns=self.stamp_ns, frame_id=self.frame_id, value=self.value,
                    candidate_values=self.candidate_values,
                    selected_candidate=self.selected_candidate, model_id=self.model_id)


@dataclass(frozen=True)
class Finished:
    """The finish decision: `chunk` to publish, or the `reason` (and detail) it is rejected."""

    chunk: Optional[Chunk] = None
    reason: str = ''
    detail: str = ''
    clamped: int = 0  # values clamped into the limits (clamp mode)

    @property
    def ok(self):
        return not self.reason


def run_inference(job, clock=time.perf_counter):
    """Reset the policy if the job asks for it, then infer; returns (output, seconds).

    Exceptions from the policy propagate (the caller counts or reports them).
    """
    if job.reset_first:
        job.policy.reset()
    request = job.request()
    start = clock()
    output = job.policy.infer(request.observation, **request.infer_kwargs())
    return output, clock() - start


class ControlLoop:
    """The control loop of one policy with one NodeConfig (see the module docstring).

    policy: a Policy (layout, model_id, infer, reset); config: a NodeConfig, checked against
    the policy's layout here (ValueError naming the parameter).
    """

    def __init__(self, policy, config):
        self._lock = threading.RLock()
        self.policy = policy
        self.model_id = str(getattr(policy, 'model_id', ''))
        self._apply(config, bind_layout(config, policy.layout), config.chunk_limits())
        self.streams = tuple(input_streams(config))
        self.buffer = make_sync_buffer(config)
        self.input_counts = ReasonCounts()  # (stream, RECEIVED or drop reason) -> messages
        self.last_drops = {}  # stream -> 'reason: detail' of its last dropped message
        self.task = config.task
        self.executing = None  # (reference stamp ns, executed steps) of the last chunk
        self.executed = None  # (ChunkTiming, (K, d) float64 published actions) of that chunk
        self.latency = LatencyEstimator(window=LATENCY_WINDOW, percentile=LATENCY_PERCENTILE)
        self._reset_pending = False
        self._epoch = 0
        self._running = False
        self._last_start_ns = None  # when the last job was handed over (the tick's now_ns)

    def _apply(self, config, binding, limits):
        self.config, self.binding, self.limits = config, binding, limits

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self):
        """Start ticking: chunks computed before now are discarded, nothing is executing."""
        with self._lock:
            self._epoch += 1
            self._running = True
            self._last_start_ns = None
            self.executing = None
            self.executed = None

    def stop(self):
        """Stop: a chunk still being computed is discarded (finish says deactivated)."""
        with self._lock:
            self._epoch += 1
            self._running = False

    def reconfigure(self, config):
        """Apply a changed NodeConfig (runtime parameters); ValueError leaves everything as is.

        Returns True when the task changed.
        """
        binding, limits = bind_layout(config, self.policy.layout), config.chunk_limits()
        with self._lock:
            self._apply(config, binding, limits)
            self.buffer.set_limits(round(config.sync_tolerance * NS_PER_S),
                                   round(config.max_observation_age * NS_PER_S))
        return self.set_task(config.task) if config.task != self.task else False

    # --- inputs ------------------------------------------------------------------------------
    def receive(self, stream, msg):
        """One message of an InputStream: converted, stored; returns (drop reason or '', detail).

        The conversion runs outside the lock (streams convert in parallel). A message is
        counted as received once it is stored or dropped, so a count reported in /diagnostics
        means that the next tick sees the message (lockstep pacing relies on it).
        """
        reason, detail = stream.ingest(msg, self)
        self.input_counts.add(stream.name, RECEIVED)
        if reason:
            self.last_drops[stream.name] = f'{reason}: {detail}'
            self.input_counts.add(stream.name, reason)
        return reason, detail

    def add(self, stream_name, stamp_ns, payload):
        """Store a converted payload in the sync buffer; '' or why it was dropped."""
        with self._lock:
            return self.buffer.add(stream_name, stamp_ns, payload)

    def set_task(self, text):
        """A task message or parameter; True when it changed (the policy resets first)."""
        with self._lock:
            if text == self.task:
                return False
            self.task = text
            self._reset_pending = True
            return True

    # --- the tick decision -------------------------------------------------------------------
    def tick(self, now_ns, *, busy=False, submit=None, replan=True, reference_ns=None,
             exact=None, arrival=False):
        """What a control tick at `now_ns` does: a Job, or a Skip with its reason.

        busy: an inference is running (skip). submit(job) -> bool: hands the job over (the
        node's worker); False means busy, and the observation stays unused. replan=False: no
        replanning rule (one chunk per frame offline). reference_ns: the set of this reference
        stamp instead of the newest one; exact: {stream: stamp} to rebuild a recorded set.

        arrival=False: a timer's tick. arrival=True: a tick on a message just stored, so that
        a set starts its inference as soon as it is complete instead of at the next timer
        tick. The rate still bounds replanning: an arrival tick skips with rate_bound while
        the last job was handed over less than 1 / rate ago on this clock (a later tick takes
        the set), and with ahead_of_clock on a set stamped after `now_ns` (a lockstep
        simulation publishes the observation before its clock: the timer tick at that time
        takes it, as without arrival ticks). Neither marks the set used. Timer ticks are as
        they always were.
        """
        with self._lock:
            config = self.config
            if arrival and self._last_start_ns is not None and (
                    0 <= now_ns - self._last_start_ns < round(NS_PER_S / config.rate)):
                return Skip(RATE_BOUND)
            if arrival and not self.buffer.has_new_reference(now_ns):
                return Skip(NOT_NEW)  # most arrivals: skipped without a sync query
            if busy:
                return Skip(INFERENCE_BUSY)
            if not self.task:
                return Skip(NO_TASK, f'no task: set the `task` parameter or publish on '
                                     f'{config.task_topic}')
            if replan and not replan_due(now_ns, self.executing, config):
                return Skip(CHUNK_EXECUTING)
            if exact is not None:
                result = self.buffer.select(exact)
            else:
                result = self.buffer.query(now_ns, reference_ns=reference_ns)
            if not result.ok:
                return self._no_set(result)
            if arrival and result.reference_stamp_ns > now_ns:
                return Skip(AHEAD_OF_CLOCK)
            seed = config.seed_for(result.reference_stamp_ns)
            expected_ns, known = self._plan_known(now_ns, result.reference_stamp_ns, config)
            job = Job(observation=observation_from_set(
                result, config.camera_names, config.proprio_names, instruction=self.task,
                seed=seed), stamps=dict(result.stamps), reference_ns=result.reference_stamp_ns,
                skew_ns=result.skew_ns, age_ns=result.age_ns, seed=seed, task=self.task,
                reset_first=self._reset_pending, epoch=self._epoch, policy=self.policy,
                num_steps=config.num_denoising_steps, num_candidates=config.num_candidates,
                start_ns=now_ns, expected_latency_ns=expected_ns, known_actions=known,
                stitching=config.stitching)
            if submit is not None and not submit(job):
                return Skip(INFERENCE_BUSY)
            self.buffer.mark_used(result.reference_stamp_ns)
            self._reset_pending = False
            self._last_start_ns = now_ns
            return job

    def _no_set(self, result):
        """The Skip of a failed sync query. A stream that holds nothing although its messages
        arrive (every one dropped) is named with the last drop's reason: the skip is `dropped`
        when that is so for every empty stream, else `missing`."""
        if result.reason != MISSING:
            return Skip(result.reason, result.detail)
        empty = self.buffer.empty_streams()
        dropped = [name for name in empty if name in self.last_drops]
        if not empty or not dropped:
            return Skip(result.reason, result.detail)
        silent = [name for name in empty if name not in self.last_drops]
        parts = [f'no message yet from {", ".join(silent)}'] if silent else []
        parts += [f'{name}: arriving but dropped: {self.last_drops[name]}' for name in dropped]
        return Skip(MISSING if silent else DROPPED, '; '.join(parts))

    def _plan_known(self, now_ns, reference_ns, config):
        """(expected latency ns, known actions or None) of an inference starting at `now_ns`
        on the observation stamped `reference_ns` (called with the lock held).

        expected = LatencyEstimator percentile + latency_margin. With an inpaint method and an
        executing chunk, the known actions are execution.known_prefix: the executing chunk's
        commands at the new chunk's steps due before start + expected (none when they do not
        overlap, e.g. the first chunk of an episode).
        """
        expected_ns = self.latency.estimate_ns() + round(config.latency_margin * NS_PER_S)
        if config.stitching not in INPAINT_METHODS or self.executed is None:
            return expected_ns, None
        timing, actions = self.executed
        new = ChunkTiming(reference_ns, timing.period_ns, self.binding.horizon)
        takeover = plan_takeover(timing, new, now_ns, expected_ns)
        if takeover.known_count == 0:
            return expected_ns, None
        return expected_ns, known_prefix(actions, timing, new, takeover)

    # --- inference and the finish decision --------------------------------------------------
    def complete(self, job, now, clock=time.perf_counter):
        """Run a job's inference, then finish it at `now()` ns: (Finished, output, seconds).

        What the node's inference thread and the offline evaluator both do with a Job;
        exceptions from the policy propagate.
        """
        output, elapsed = run_inference(job, clock)
        return self.finish(job, output, now(), elapsed), output, elapsed

    def finish(self, job, output: PolicyOutput, now_ns, inference_time):
        """What happens to a finished inference at `now_ns`: Finished(chunk) or a rejection.

        A published chunk becomes the executing one (the replanning rule counts from it).
        """
        with self._lock:
            if job.epoch != self._epoch or not self._running:
                return Finished(reason=DEACTIVATED,
                                detail='the loop stopped while this chunk was computed')
            # The latency on the loop's clock (0 where the clock does not move meanwhile).
            self.latency.add(max(0, now_ns - job.start_ns) / NS_PER_S)
            executed = self.executed
            if job.task != self.task:
                return Finished(reason=TASK_CHANGED,
                                detail='the task changed while this chunk was computed')
            config, binding, limits = self.config, self.binding, self.limits
            current = None
            if binding.jump_indices and config.max_first_step_jump > 0:
                proprio = current_proprio(self.buffer, config.proprio_names)
                if proprio is None:
                    return Finished(reason=JUMP,
                                    detail='no current joint positions to compare with')
                current = proprio[list(binding.jump_indices)]
        age = (now_ns - min(job.stamps.values())) / NS_PER_S
        if age > config.max_publish_age:
            return Finished(reason=STALE_AT_PUBLISH,
                            detail=f'observation is {age:.3f} s old when the chunk is ready '
                                   f'(max_publish_age {config.max_publish_age:g} s)')
        verdict = check_chunk(output.actions, limits, horizon=binding.horizon,
                              action_dim=len(binding.action_names), value=output.value,
                              current=current, names=binding.action_names)
        if not verdict.ok:
            return Finished(reason=verdict.reason, detail=verdict.detail)
        chunk = self._chunk(job, output, verdict.actions, now_ns, inference_time, config,
                            binding, executed)
        with self._lock:
            if job.epoch == self._epoch:
                self.executing = (job.reference_ns, chunk.execute_steps)
                self.executed = (ChunkTiming(job.reference_ns, chunk.step_period_ns,
                                             binding.horizon),
                                 np.asarray(chunk.actions, dtype=np.float64))
        return Finished(chunk=chunk, clamped=verdict.clamped)

    def _chunk(self, job, output, actions, now_ns, inference_time, config, binding,
               executed=None):
        """The published chunk of a checked policy output, stitched (docs/stitching.md).

        The takeover is re-planned at ready = max(now_ns, job.start_ns +
        job.expected_latency_ns) (execution.plan_takeover). Blend methods replace the rows j0 ..
        j0 + n - 1 (n = min(stitching_overlap, K - j0)) by execution.stitch's cross-fade
        (1 - w_i) A(t1 + (j0 + i) p) + w_i B[j0 + i], w_i = (i + 1) / (n_overlap + 1), with A
        `executed`, the executing chunk; ramp replaces rows j0 .. j0 + n - 1 (n =
        min(stitching_overlap, max(1, j0), K - 1 - j0)) by the straight line from A's last
        command committed at the switch to B[j0 + n]; every other row is the policy's.
        """
        period_ns = round(config.step_period * NS_PER_S)
        names = config.stream_names
        method = job.stitching  # a change meanwhile applies from the next tick on
        new = ChunkTiming(job.reference_ns, period_ns, binding.horizon)
        ready = max(now_ns, job.start_ns + job.expected_latency_ns)
        old_timing, old_actions = executed if executed is not None else (None, None)
        takeover = plan_takeover(None, new, ready, 0)
        if old_timing is not None and not (
                old_timing.stamp_ns < job.reference_ns
                and takeover.switch_ns <= old_timing.due_ns(old_timing.count)):
            # Not executing at the switch: older than its horizon (e.g. the last episode's) or
            # not older than this one (the clock went back, a bag loop).
            old_timing = old_actions = None
        takeover = plan_takeover(old_timing, new, ready, 0)
        blended = rewritten_steps(method, config.stitching_overlap, old_timing, takeover, new)
        if blended:
            stitched = np.asarray(actions, dtype=np.float64).copy()
            stitched[takeover.start_index:] = stitch(
                method, old_actions, old_timing, stitched, new, takeover,
                overlap=config.stitching_overlap)
            actions = stitched.astype(np.float32)
        return Chunk(
            stamp_ns=job.reference_ns, frame_id=config.frame_id,
            action_names=tuple(binding.action_names), actions=actions,
            step_period=config.step_period, value=float(output.value), source_names=names,
            source_stamps_ns=tuple(job.stamps[name] for name in names), seed=int(output.seed),
            num_denoising_steps=int(output.num_steps), inference_time=float(inference_time),
            model_id=self.model_id,
            candidate_values=tuple(float(v) for v in output.candidate_values),
            selected_candidate=int(output.selected_candidate),
            execute_steps=binding.execute_steps,
            trajectory_indices=future_point_indices(job.reference_ns, period_ns,
                                                    binding.execute_steps, now_ns),
            future_images=output.future_images, stitching=method,
            conditioned_steps=int(getattr(output, 'num_conditioned_steps', 0)),
            takeover_step=takeover.start_index, blended_steps=blended,
            expected_latency=job.expected_latency_ns / NS_PER_S)
