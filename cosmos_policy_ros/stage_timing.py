"""Where an observation's time goes in policy_node: the marks of the debug option
``stage_timing`` and the stage durations between them.

With ``stage_timing: true`` the node reads the system clock (integer ns: the clock of header
stamps and of DDS timestamps, so marks of two processes on one host compare) at each step of
an observation's trip and publishes them with its chunk (``~/stage_times``, StageTimes). The
marks, in trip order:

    source      the set's last message was written by its publisher (DDS source timestamp)
    received    DDS received it in the node (the middleware's reception timestamp)
    callback    its subscription callback began (the executor dispatched it)
    converted   its payload was converted (image or joint values)
    stored      it was stored in the sync buffer (ControlLoop.receive returned)
    tick        the tick that made the job began (a timer tick, or the arrival tick of a
                message just stored)
    handed      the job was about to be handed to the inference thread
    started     the inference thread took it
    inferred    the policy returned
    finished    the finish decision was made (safety check, stitching, the Chunk)
    built       the ActionChunk message was built
    published   its publish() returned

The set's last message is the member stored last: the one that completed the set. The stage
ending at a mark is named in ``STAGE_NAMES`` (``dds`` ends at ``received``, ...); where a mark
is missing (``source`` and ``received`` under the events executor, whose callbacks get no
MessageInfo), one stage spans the gap and carries the names it covers (``dds+dispatch``). Off
(the default) the node takes none of these marks. Stdlib only; thread-safe.
"""
import collections
import threading

MARKS = ('source', 'received', 'callback', 'converted', 'stored', 'tick', 'handed', 'started',
         'inferred', 'finished', 'built', 'published')
INPUT_MARKS = MARKS[:5]  # taken per message, before any tick
STAGE_NAMES = {'received': 'dds', 'callback': 'dispatch', 'converted': 'convert',
               'stored': 'store', 'tick': 'tick_wait', 'handed': 'tick', 'started': 'hand_off',
               'inferred': 'inference', 'finished': 'finish', 'built': 'build',
               'published': 'publish'}  # the stage that ends at each mark


def stage_durations(marks, order=MARKS, names=STAGE_NAMES):
    """{stage name: ns} between consecutive marks of `order` present in `marks` ({mark: ns}).

    A stage across missing marks joins the names it spans with '+'; `names` gives the stage
    that ends at each mark of `order` but the first.
    """
    present = [mark for mark in order if mark in marks]
    stages = {}
    for start, end in zip(present, present[1:]):
        spanned = order[order.index(start) + 1:order.index(end) + 1]
        stages['+'.join(names[mark] for mark in spanned)] = marks[end] - marks[start]
    return stages


class InputMarks:
    """The input marks of the newest messages of every stream, kept until a job needs them.

    record(stream, stamp_ns, marks): {mark: ns} of one stored message (INPUT_MARKS, with
    'stored'). last_member(stamps): the stream of a set ({stream: stamp}) whose message was
    stored last, and that message's marks; None when a member's marks are not (or no longer)
    here.
    """

    def __init__(self, per_stream=64):
        self.per_stream = per_stream
        self._lock = threading.Lock()
        self._marks = collections.defaultdict(collections.OrderedDict)

    def record(self, stream, stamp_ns, marks):
        unknown = set(marks) - set(INPUT_MARKS)
        if unknown or 'stored' not in marks:
            raise ValueError(f'input marks are some of {INPUT_MARKS} with stored; got '
                             f'{sorted(marks)}')
        with self._lock:
            kept = self._marks[stream]
            kept[int(stamp_ns)] = {mark: int(ns) for mark, ns in marks.items()}
            kept.move_to_end(int(stamp_ns))
            while len(kept) > self.per_stream:
                kept.popitem(last=False)

    def last_member(self, stamps):
        with self._lock:
            members = []
            for stream, stamp in stamps.items():
                marks = self._marks.get(stream, {}).get(int(stamp))
                if marks is None:
                    return None
                members.append((marks['stored'], stream, dict(marks)))
        _, stream, marks = max(members)
        return stream, marks
