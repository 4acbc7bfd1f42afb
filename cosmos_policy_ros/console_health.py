"""What the node says on its console about its health (beside /diagnostics).

    waiting for a task: publish on `task` (std_msgs/String) or set the `task` parameter
    waiting for wrist: no message on robot0_eye_in_hand/image_raw for 5 s (0 publishers: is
        the topic right, or remapped?)
    primary: arriving but dropped on cam_high/image_raw for 5 s: encoding: unsupported ...
    summary: 12 chunks (+3), latency p50 0.31 s; drops: wrist.encoding 2; skips: stale 5
    watchdog: ERROR, no chunk published for 10.4 s (watchdog_timeout 10 s)

`ConsoleHealth.update(now, snapshot, config, count_publishers)` is called with every health
snapshot (the one /diagnostics is built from: `cosmos_policy_ros.ros.diagnostics.HealthSnapshot`
or anything with its attributes) and returns the (level, line) pairs to log: level is 'info',
'warn' or 'error'. `now` is a steady-clock time in seconds (time passed in: testable without a
clock); `count_publishers(topic)` is asked only when a line about that topic is printed.
`report(logger, ...)` logs them (the node's hook).

* task: while active without a task, at once (the first snapshot after activation) and again
  every `repeat_every` s: where to give it.
* waiting: while active, a stream with no new usable message for `quiet_after` s is reported:
  with its topic and publisher count when nothing arrives, as "arriving but dropped" with the
  last drop's reason when messages arrive and are all dropped; again every `repeat_every` s
  while it stays so, and once when usable messages come back.
* summary: while active, at most one line every `summary_every` s (the first one
  `summary_every` s after activation): chunks published, latency p50, drops, skips and
  rejections by reason (totals, with the change since the previous summary).
* watchdog: every change of its state (off: not active or no timeout; ok; tripped: active and
  no chunk for longer than watchdog_timeout, the rule of /diagnostics' ERROR).

A core module: no torch, no rclpy.
"""
from cosmos_policy_ros.control_loop import input_streams

WATCHDOG_OFF, WATCHDOG_OK, WATCHDOG_TRIPPED = 'off', 'ok', 'tripped'


def watchdog_state(snapshot):
    """off, ok or tripped, as /diagnostics decides the watchdog ERROR."""
    if snapshot.lifecycle_state != 'active' or not snapshot.watchdog_timeout > 0:
        return WATCHDOG_OFF
    since = snapshot.seconds_since_chunk
    if since is not None and since > snapshot.watchdog_timeout:
        return WATCHDOG_TRIPPED
    return WATCHDOG_OK


def _counts(items):
    return ', '.join(f'{name} {count}' for name, count in items)


class ConsoleHealth:
    """Turns successive health snapshots into rate-limited console lines (module docstring)."""

    def __init__(self, *, quiet_after=5.0, repeat_every=30.0, summary_every=30.0):
        for name, value in (('quiet_after', quiet_after), ('repeat_every', repeat_every),
                            ('summary_every', summary_every)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ValueError(f'`{name}` must be a positive number of seconds. '
                                 f'Got {value!r}.')
        self.quiet_after = float(quiet_after)
        self.repeat_every = float(repeat_every)
        self.summary_every = float(summary_every)
        self._active = False
        self._streams = {}  # stream -> [stored count, time it last changed, time reported,
        #                              received count then]
        self._task_reported = None  # steady time of the last "waiting for a task" line
        self._watchdog = WATCHDOG_OFF
        self._next_summary = None
        self._last_summary = None  # totals at the previous summary

    def report(self, logger, now, snapshot, config, count_publishers):
        """update(), logged to `logger` (info/warning/error methods, e.g. an rclpy logger)."""
        for level, line in self.update(now, snapshot, config, count_publishers):
            # One call site per severity: rclpy refuses a logging call site whose severity
            # changes between calls.
            if level == 'error':
                logger.error(line)
            elif level == 'warn':
                logger.warning(line)
            else:
                logger.info(line)

    def update(self, now, snapshot, config, count_publishers):
        """The (level, line) pairs to log for `snapshot` taken at steady time `now` (s)."""
        lines = []
        active = snapshot.lifecycle_state == 'active'
        if active and not self._active:
            self._streams = {}
            self._task_reported = None
            self._next_summary = now + self.summary_every
            self._last_summary = None
        self._active = active
        lines += self._watchdog_lines(snapshot)
        if active:
            lines += self._task_lines(now, snapshot, config)
            lines += self._waiting_lines(now, snapshot, config, count_publishers)
            if now >= self._next_summary:
                lines.append(('info', self._summary(snapshot)))
                self._next_summary = now + self.summary_every
        return lines

    def _watchdog_lines(self, snapshot):
        state = watchdog_state(snapshot)
        before, self._watchdog = self._watchdog, state
        if state == before:
            return []
        if state == WATCHDOG_TRIPPED:
            cause = '; no task yet' if not snapshot.task else ''
            return [('error', f'watchdog: ERROR, no chunk published for '
                              f'{snapshot.seconds_since_chunk:.1f} s (watchdog_timeout '
                              f'{snapshot.watchdog_timeout:g} s){cause}; see /diagnostics')]
        if state == WATCHDOG_OK and before == WATCHDOG_TRIPPED:
            return [('info', 'watchdog: ok again, chunks are published')]
        if state == WATCHDOG_OK:
            return [('info', f'watchdog: armed (ERROR after {snapshot.watchdog_timeout:g} s '
                             'without a chunk)')]
        inactive = snapshot.lifecycle_state != 'active'
        return [('info', 'watchdog: off' + (' (not active)' if inactive else ''))]

    def _task_lines(self, now, snapshot, config):
        if snapshot.task:
            self._task_reported = None
            return []
        if self._task_reported is not None and now - self._task_reported < self.repeat_every:
            return []
        self._task_reported = now
        topic = config.task_topic if config else 'task'
        return [('warn', f'waiting for a task: publish on `{topic}` (std_msgs/String) or set '
                         f'the `task` parameter; no chunk before')]

    def _waiting_lines(self, now, snapshot, config, count_publishers):
        topics = {stream.name: stream.topic for stream in input_streams(config)} if config else {}
        lines = []
        for name in snapshot.streams:
            received = snapshot.input_counts.get((name, 'received'), 0)
            stored = snapshot.stored(name)
            entry = self._streams.get(name)
            if entry is None:
                self._streams[name] = [stored, now, None, received]
                continue
            count, changed, reported, received_then = entry
            topic = topics.get(name, name)
            if stored != count:
                if reported is not None:
                    lines.append(('info', f'{name}: messages on {topic} again after '
                                          f'{now - changed:.0f} s'))
                self._streams[name] = [stored, now, None, received]
                continue
            silent = now - changed
            if silent < self.quiet_after or (reported is not None
                                             and now - reported < self.repeat_every):
                continue
            if received != received_then:  # messages come, none is kept
                why = snapshot.last_drops.get(name, 'dropped')
                lines.append(('warn', f'{name}: arriving but dropped on {topic} for '
                                      f'{silent:.0f} s: {why} (counted in dropped.{name}.*)'))
            else:
                publishers = count_publishers(topic)
                if publishers == 0:
                    hint = '0 publishers: is the topic right, or remapped?'
                else:
                    hint = (f'{publishers} publisher{"s" if publishers != 1 else ""}: '
                            'matching QoS (input_reliability)? stamps?')
                what = 'no message yet' if received == 0 else 'no new message'
                lines.append(('warn', f'waiting for {name}: {what} on {topic} for '
                                      f'{silent:.0f} s ({hint})'))
            entry[2], entry[3] = now, received
        return lines

    def _summary(self, snapshot):
        drops = {f'{stream}.{reason}': count
                 for (stream, reason), count in snapshot.input_counts.items()
                 if reason != 'received'}
        totals = {'chunks': snapshot.chunks_published, 'drops': drops,
                  'skips': dict(snapshot.skipped), 'rejected': dict(snapshot.rejected)}
        before = self._last_summary or {'chunks': 0, 'drops': {}, 'skips': {}, 'rejected': {}}
        self._last_summary = totals
        line = f'summary: {snapshot.chunks_published} chunks (+' \
               f'{snapshot.chunks_published - before["chunks"]})'
        p50 = snapshot.latency.get('p50') if snapshot.latency else None
        line += f', latency p50 {p50:.3g} s' if p50 is not None else ', no latency yet'
        for part in ('drops', 'skips', 'rejected'):
            now_counts, old = totals[part], before[part]
            items = [(name, count) for name, count in sorted(now_counts.items()) if count]
            if items:
                new = sum(count - old.get(name, 0) for name, count in items)
                line += f'; {part} (+{new}): {_counts(items)}'
        return line
