"""Reading and writing rosbag2 bags (sqlite3 and mcap) with the `rosbags` library, no ROS needed.

The typestore knows every ROS 2 Kilted message plus this package's own messages, registered from
the installed ``share/cosmos_policy_ros/msg/*.msg`` files (found through the ament index, next to
the installed package, or in the source checkout), so ``ActionChunk`` and ``ValueEstimate`` get
the same RIHS01 type hashes rosidl generates. Types missing from the typestore are read with the
definitions a bag embeds (every Jazzy/Kilted ``ros2 bag`` recording has them).

    with BagReader('episode_0') as bag:
        print(bag.info.topics['/joint_states'].count)
        for item in bag.messages(['/joint_states'], start_ns=..., end_ns=...):
            item.topic, item.msgtype, item.stamp_ns, item.message

    with BagWriter('out', storage='mcap', typestore=make_typestore()) as bag:
        bag.add_topic('/task', 'std_msgs/msg/String', latched=True)
        bag.write('/task', stamp_ns, message)

Every failure is a ``BagError`` that names the file and, where one is involved, the topic.
A writer always closes its bag properly, also on an exception or KeyboardInterrupt, so every
message written before the failure stays readable.
"""
from dataclasses import dataclass
import os
from pathlib import Path
import sys
from typing import Dict, Iterator, NamedTuple, Tuple

import numpy as np
from rosbags.interfaces import (
    MessageDefinitionFormat, Qos, QosDurability, QosHistory, QosLiveliness, QosReliability,
    QosTime)
from rosbags.rosbag2 import Reader, ReaderError, Writer, WriterError
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode, StoragePlugin
from rosbags.serde import SerdeError
from rosbags.typesys import (
    get_types_from_idl, get_types_from_msg, get_typestore, Stores, TypesysError)
import yaml

from cosmos_policy_ros import conversions
from cosmos_policy_ros.conversions import NS_PER_S, stamp_to_ns  # noqa: F401 (re-exported)

PACKAGE = 'cosmos_policy_ros'
STORAGES = ('mcap', 'sqlite3')
COMPRESSIONS = ('none', 'zstd')
BAG_SUFFIXES = ('.mcap', '.db3')
# The ROS 2 distribution whose standard messages the typestore holds (same hashes as Jazzy for
# the sensor/std/geometry messages used here).
BASE_STORE = Stores.ROS2_KILTED
BASE_STORE_NAME = 'ROS 2 Kilted'


class BagError(ValueError):
    """A bag cannot be read or written; the message names the file and topic involved."""


# --- typestore ---------------------------------------------------------------------------------
def _ament_share_dirs():
    """share/<PACKAGE> directories that the ament index (AMENT_PREFIX_PATH) lists."""
    prefixes = [p for p in os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep) if p]
    if not prefixes:
        return []
    try:
        from ament_index_python.packages import (
            get_package_share_directory, PackageNotFoundError)
    except ImportError:  # plain pip install: read the index files ourselves
        marker = Path('share', 'ament_index', 'resource_index', 'packages', PACKAGE)
        return [Path(p, 'share', PACKAGE) for p in prefixes if Path(p, marker).is_file()]
    try:
        return [Path(get_package_share_directory(PACKAGE))]
    except (PackageNotFoundError, ValueError, OSError):
        return []


def msg_search_dirs():
    """Directories searched for the package's .msg files, in order of preference."""
    here = Path(__file__).resolve()
    dirs = [share / 'msg' for share in _ament_share_dirs()]
    # Installed package: <prefix>/lib/pythonX.Y/site-packages/cosmos_policy_ros/tools/bags.py,
    # with the messages in <prefix>/share/cosmos_policy_ros/msg (colcon, or pip data_files).
    dirs += [parent / 'share' / PACKAGE / 'msg' for parent in here.parents]
    dirs.append(Path(sys.prefix) / 'share' / PACKAGE / 'msg')
    # Source checkout: <repo>/cosmos_policy_ros/tools/bags.py next to <repo>/msg.
    dirs.append(here.parents[2] / 'msg')
    unique = []
    for path in dirs:
        if path not in unique:
            unique.append(path)
    return unique


def find_msg_dir():
    """The directory holding this package's .msg files; raises BagError when there is none."""
    searched = msg_search_dirs()
    for path in searched:
        if path.is_dir() and any(path.glob('*.msg')):
            return path
    raise BagError(f'cannot find the {PACKAGE} message definitions (msg/*.msg); looked in '
                   f'{[str(p) for p in searched]}. Source the workspace (AMENT_PREFIX_PATH) or '
                   f'pass msg_dir.')


def make_typestore(msg_dir=None):
    """A fresh rosbags Typestore: ROS 2 Kilted messages plus this package's messages.

    msg_dir: directory with ``<Name>.msg`` files registered as ``cosmos_policy_ros/msg/<Name>``;
    found with ``find_msg_dir()`` when None.
    """
    msg_dir = Path(msg_dir) if msg_dir is not None else find_msg_dir()
    files = sorted(msg_dir.glob('*.msg'))
    if not files:
        raise BagError(f'no .msg files in {msg_dir}')
    types = {}
    for path in files:
        name = f'{PACKAGE}/msg/{path.stem}'
        try:
            types.update(get_types_from_msg(path.read_text(), name))
        except (TypesysError, OSError) as error:
            raise BagError(f'cannot load message definition {path}: {error}') from None
    store = get_typestore(BASE_STORE)
    store.register(types)
    return store


def ns_to_stamp(stamp_ns, typestore):
    """Integer nanoseconds -> builtin_interfaces/msg/Time of `typestore`."""
    sec, nanosec = conversions.ns_to_stamp(stamp_ns)
    return typestore.types['builtin_interfaces/msg/Time'](sec=sec, nanosec=nanosec)


def latched_qos():
    """Offered QoS of a latched topic (reliable, transient local, depth 1) for bag metadata."""
    zero = QosTime(0, 0)
    return Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
               zero, zero, QosLiveliness.AUTOMATIC, zero, False)


# --- reading -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class TopicInfo:
    """One topic of a bag: its type, message count and recorded publisher QoS."""

    name: str
    msgtype: str
    count: int
    latched: bool  # every recorded publisher offered transient-local durability
    type_hash: str  # RIHS01 hash the bag stores ('' in older bags)


@dataclass(frozen=True)
class BagInfo:
    """What a bag holds. Times are log times in nanoseconds; end_ns is the last message's."""

    path: Path
    storage: str
    message_count: int
    start_ns: int
    end_ns: int
    topics: Dict[str, TopicInfo]

    @property
    def duration_ns(self):
        return max(0, self.end_ns - self.start_ns)

    def format(self):
        """Human-readable summary, like `ros2 bag info`."""
        lines = [f'bag:       {self.path}',
                 f'storage:   {self.storage}',
                 f'duration:  {self.duration_ns / 1e9:.3f} s',
                 f'start:     {_format_ns(self.start_ns)}',
                 f'end:       {_format_ns(self.end_ns)}',
                 f'messages:  {self.message_count}',
                 'topics:']
        width = max([len(name) for name in self.topics] + [5])
        for topic in sorted(self.topics.values(), key=lambda t: t.name):
            latched = '  (latched)' if topic.latched else ''
            lines.append(f'  {topic.name:<{width}}  {topic.count:>7}  {topic.msgtype}{latched}')
        return '\n'.join(lines)


def _format_ns(stamp_ns):
    seconds, nanoseconds = divmod(int(stamp_ns), NS_PER_S)
    return f'{seconds}.{nanoseconds:09d}'


class BagMessage(NamedTuple):
    """One message: topic, type name, log time (ns) and the deserialized message or raw CDR."""

    topic: str
    msgtype: str
    stamp_ns: int
    message: object


def resolve_bag_path(path):
    """The path rosbags opens for `path`: a bag directory, or a single .mcap/.db3 file.

    A directory without metadata.yaml (a recording that was killed before it could write one)
    is read through its single storage file.
    """
    path = Path(path)
    if not path.exists():
        raise BagError(f'bag {path} does not exist')
    if path.is_dir():
        if (path / 'metadata.yaml').is_file():
            return path
        files = sorted(p for p in path.iterdir() if p.suffix in BAG_SUFFIXES)
        if len(files) == 1:
            return files[0]
        if not files:
            raise BagError(f'{path} is not a rosbag2 bag: it has no metadata.yaml and no '
                           f'{"/".join(BAG_SUFFIXES)} file')
        raise BagError(f'{path} has no metadata.yaml and several storage files '
                       f'{[p.name for p in files]}; open one of them directly')
    if path.suffix not in BAG_SUFFIXES:
        raise BagError(f'{path} is not a rosbag2 bag: expected a bag directory or a '
                       f'{"/".join(BAG_SUFFIXES)} file')
    return path


def _storage_of(path):
    if path.is_dir():
        try:
            meta = yaml.safe_load((path / 'metadata.yaml').read_text())
            return meta['rosbag2_bagfile_information']['storage_identifier']
        except Exception:  # the reader reports broken metadata with a better message
            return 'unknown'
    return 'mcap' if path.suffix == '.mcap' else 'sqlite3'


def _is_latched(connections):
    profiles = [qos for connection in connections
                for qos in getattr(connection.ext, 'offered_qos_profiles', [])]
    return bool(profiles) and all(
        qos.durability == QosDurability.TRANSIENT_LOCAL for qos in profiles)


class BagReader:
    """Reads a rosbag2 bag (directory, .mcap or .db3). Use as a context manager.

    typestore: deserializes messages (default: ``make_typestore()``, or the plain ROS 2 store if
    the msg files cannot be found). Types it lacks, or whose hash differs from the one the bag
    recorded, are read with the bag's embedded definitions.
    """

    def __init__(self, path, typestore=None):
        self.path = Path(path)
        self._open_path = resolve_bag_path(self.path)
        self._typestore = typestore
        self._reader = None
        self._info = None
        self._bag_stores = {}  # msgtype -> typestore built from the bag's own definition

    # --- opening ---
    def open(self):
        if self._typestore is None:
            self._typestore = reader_typestore()
        try:
            reader = Reader(self._open_path)
            reader.open()
        except (ReaderError, OSError, KeyError, ValueError) as error:
            raise BagError(f'cannot read bag {self._describe()}: {error} (is the file corrupt '
                           f'or truncated?)') from None
        except Exception as error:  # storage back ends raise their own types on bad bytes
            raise BagError(f'cannot read bag {self._describe()}: {type(error).__name__}: '
                           f'{error} (is the file corrupt or truncated?)') from None
        self._reader = reader
        topics = {}
        for name, topic in reader.topics.items():
            digests = {c.digest for c in topic.connections if c.digest}
            msgtype = topic.msgtype or ','.join(sorted({c.msgtype for c in topic.connections}))
            topics[name] = TopicInfo(name=name, msgtype=msgtype, count=topic.msgcount,
                                     latched=_is_latched(topic.connections),
                                     type_hash=digests.pop() if len(digests) == 1 else '')
        count = reader.message_count
        self._info = BagInfo(
            path=self.path, storage=_storage_of(self._open_path), message_count=count,
            start_ns=reader.start_time if count else 0,
            end_ns=reader.end_time - 1 if count else 0,  # rosbags: end_time is last + 1 ns
            topics=topics)
        return self

    def _describe(self):
        """The bag path, with its storage files when it is a directory."""
        if self._open_path.is_dir():
            files = [p.name for p in storage_files(self._open_path)]
            return f'{self._open_path} ({", ".join(files) or "no storage file"})'
        return str(self._open_path)

    def close(self):
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()
        return False

    @property
    def typestore(self):
        return self._typestore

    @property
    def info(self):
        """BagInfo: storage, message count, start/end log times, topics."""
        self._check_open()
        return self._info

    def _check_open(self):
        if self._reader is None:
            raise BagError(f'bag {self.path} is not open (use `with BagReader(...)`)')

    # --- topics and types ---
    def check_topics(self, topics):
        """Raise BagError naming every topic of `topics` that the bag does not have."""
        self._check_open()
        missing = [t for t in topics if t not in self._info.topics]
        if missing:
            noun = 'topic' if len(missing) == 1 else 'topics'
            raise BagError(f'{noun} {", ".join(repr(t) for t in missing)} not in bag '
                           f'{self.path}; it has: {", ".join(sorted(self._info.topics))}')

    def typestore_for(self, topic):
        """(typestore, msgtype) that deserializes `topic`; BagError for an unknown type."""
        self._check_open()
        self.check_topics([topic])
        connections = [c for c in self._reader.connections if c.topic == topic]
        msgtype = connections[0].msgtype
        known = msgtype in self._typestore.types
        digest = connections[0].digest
        if known and (not digest or digest == self._typestore.hash_rihs01(msgtype)):
            return self._typestore, msgtype
        if msgtype not in self._bag_stores:
            self._bag_stores[msgtype] = self._store_from_bag(topic, msgtype, connections, known)
        return self._bag_stores[msgtype], msgtype

    def _store_from_bag(self, topic, msgtype, connections, known):
        definition = next((c.msgdef for c in connections
                           if c.msgdef.format != MessageDefinitionFormat.NONE
                           and c.msgdef.data.strip()), None)
        if definition is None:
            if known:
                raise BagError(
                    f'topic {topic!r} in bag {self.path} was recorded with a different '
                    f'definition of {msgtype!r} (hash {connections[0].digest}, the typestore '
                    f'has {self._typestore.hash_rihs01(msgtype)}) and the bag embeds none')
            raise BagError(
                f'unknown message type {msgtype!r} of topic {topic!r} in bag {self.path}: it is '
                f'not in the typestore ({BASE_STORE_NAME} messages and {PACKAGE}) and the '
                f'bag embeds no definition of it')
        try:
            store = get_typestore(Stores.EMPTY)
            if definition.format == MessageDefinitionFormat.MSG:
                store.register(get_types_from_msg(definition.data, msgtype))
            else:
                separator = '=' * 80 + '\n'
                texts = definition.data.split(separator)[1:] or [definition.data]
                for text in texts:
                    store.register(get_types_from_idl(text.split('\n', 1)[-1]
                                                      if text.startswith('IDL: ') else text))
        except (TypesysError, ValueError, KeyError) as error:
            raise BagError(f'cannot parse the definition of {msgtype!r} that bag {self.path} '
                           f'embeds for topic {topic!r}: {error}') from None
        return store

    # --- messages ---
    def messages(self, topics=None, *, start_ns=None, end_ns=None, raw=False):
        """Messages in log-time order: BagMessage(topic, msgtype, stamp_ns, message).

        topics: topic names to read (all when None); BagError lists the bag's topics when one
        is missing. start_ns/end_ns: log-time window [start_ns, end_ns) in nanoseconds since
        the epoch (see ``window_ns``). raw: yield the serialized CDR bytes instead of
        deserialized messages (no type needed).
        """
        self._check_open()
        if topics is not None:
            topics = list(topics)
            self.check_topics(topics)
            connections = [c for c in self._reader.connections if c.topic in topics]
            if not connections:
                return iter(())
        else:
            connections = list(self._reader.connections)
        stores = {}
        if not raw:
            for topic in {c.topic for c in connections}:
                stores[topic] = self.typestore_for(topic)
        return self._generate(connections, start_ns, end_ns, stores, raw)

    def _generate(self, connections, start_ns, end_ns, stores, raw):
        last = None
        try:
            for connection, stamp_ns, data in self._reader.messages(
                    connections, start=start_ns, stop=end_ns):
                last = (connection.topic, stamp_ns)
                if raw:
                    yield BagMessage(connection.topic, connection.msgtype, stamp_ns, bytes(data))
                    continue
                store, msgtype = stores[connection.topic]
                try:
                    message = store.deserialize_cdr(data, msgtype)
                except (SerdeError, KeyError, AssertionError) as error:
                    raise BagError(f'cannot deserialize a {msgtype!r} message on topic '
                                   f'{connection.topic!r} at log time {stamp_ns} in bag '
                                   f'{self._open_path}: {error}') from None
                yield BagMessage(connection.topic, msgtype, stamp_ns, message)
        except (BagError, GeneratorExit):
            raise
        except Exception as error:
            where = (f'after topic {last[0]!r} at log time {last[1]}' if last
                     else 'before the first message')
            raise BagError(f'bag {self._describe()} is corrupt or truncated: reading failed '
                           f'{where}: {type(error).__name__}: {error}') from None

    def window_ns(self, start_s=None, end_s=None):
        """(start_ns, end_ns) log times for a window in seconds from the bag's first message."""
        self._check_open()
        return window_ns(self._info, start_s, end_s)


def window_ns(info, start_s=None, end_s=None):
    """Absolute [start_ns, end_ns) for `start_s`/`end_s` seconds after `info.start_ns`.

    None leaves that side open. Raises BagError when end_s <= start_s or either is negative.
    """
    for name, value in (('start', start_s), ('end', end_s)):
        if value is not None and value < 0:
            raise BagError(f'`{name}` must be >= 0 seconds from the bag start. Got {value}.')
    if start_s is not None and end_s is not None and end_s <= start_s:
        raise BagError(f'`end` ({end_s} s) must be after `start` ({start_s} s).')
    start_ns = None if start_s is None else info.start_ns + int(round(start_s * 1e9))
    end_ns = None if end_s is None else info.start_ns + int(round(end_s * 1e9))
    return start_ns, end_ns


def read_info(path):
    """BagInfo of the bag at `path` (topics, counts, types, times)."""
    with BagReader(path) as bag:
        return bag.info


def reader_typestore():
    """``make_typestore()``, or the plain ROS 2 store when the msg files cannot be found.

    Enough for reading: bags embed the definitions of this package's messages.
    """
    try:
        return make_typestore()
    except BagError:
        return get_typestore(BASE_STORE)


def read_messages(path, topics=None, *, start_ns=None, end_ns=None, raw=False,
                  typestore=None) -> Iterator[BagMessage]:
    """Open `path`, yield its messages (see ``BagReader.messages``), and close it again."""
    with BagReader(path, typestore=typestore) as bag:
        yield from bag.messages(topics, start_ns=start_ns, end_ns=end_ns, raw=raw)


# --- writing -----------------------------------------------------------------------------------
class BagWriter:
    """Writes a new rosbag2 bag (metadata version 9, CDR, RIHS01 hashes from the typestore).

    storage: 'mcap' or 'sqlite3'. compression: 'none' or 'zstd' (mcap: zstd chunk compression;
    sqlite3: per-message zstd, both read by `ros2 bag`). Use as a context manager: the bag is
    closed properly (index, metadata.yaml) on exit, also when the block raises, so all messages
    written so far are kept.
    """

    def __init__(self, path, *, storage='mcap', typestore=None, compression='none'):
        if storage not in STORAGES:
            raise BagError(f'`storage` must be one of {STORAGES}. Got {storage!r}.')
        if compression not in COMPRESSIONS:
            raise BagError(f'`compression` must be one of {COMPRESSIONS}. Got {compression!r}.')
        self.path = Path(path)
        self.storage = storage
        self.compression = compression
        self.typestore = typestore if typestore is not None else make_typestore()
        self._writer = None
        self._connections = {}
        self.counts = {}  # topic -> messages written

    def open(self):
        if self.path.exists():
            raise BagError(f'output bag {self.path} already exists; not overwriting it')
        plugin = StoragePlugin.MCAP if self.storage == 'mcap' else StoragePlugin.SQLITE3
        writer = Writer(self.path, version=9, storage_plugin=plugin)
        if self.compression == 'zstd':
            mode = CompressionMode.STORAGE if self.storage == 'mcap' else CompressionMode.MESSAGE
            writer.set_compression(mode, CompressionFormat.ZSTD)
        try:
            writer.open()
        except (WriterError, OSError) as error:
            raise BagError(f'cannot create bag {self.path}: {error}') from None
        self._writer = writer
        return self

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()
        return False

    @property
    def topics(self):
        """topic -> message type of the topics added so far."""
        return {topic: connection.msgtype for topic, connection in self._connections.items()}

    def add_topic(self, topic, msgtype, *, latched=False):
        """Declare `topic` with `msgtype` (e.g. 'sensor_msgs/msg/Image') before writing to it.

        latched: record a transient-local publisher QoS, so players re-publish it latched.
        """
        self._check_open()
        if topic in self._connections:
            if self._connections[topic].msgtype != msgtype:
                raise BagError(f'topic {topic!r} of bag {self.path} already has type '
                               f'{self._connections[topic].msgtype!r}, not {msgtype!r}')
            return
        if msgtype not in self.typestore.types:
            raise BagError(f'cannot write topic {topic!r} to bag {self.path}: message type '
                           f'{msgtype!r} is not in the typestore')
        qos = [latched_qos()] if latched else []
        self._connections[topic] = self._writer.add_connection(
            topic, msgtype, typestore=self.typestore, offered_qos_profiles=qos)
        self.counts[topic] = 0

    def write(self, topic, stamp_ns, message):
        """Serialize `message` (a typestore message of the topic's type) at log time stamp_ns."""
        connection = self._connection(topic)
        try:
            data = self.typestore.serialize_cdr(message, connection.msgtype)
        except (SerdeError, AttributeError, TypeError, KeyError, ValueError) as error:
            raise BagError(f'cannot serialize the message for topic {topic!r} as '
                           f'{connection.msgtype!r}: {type(error).__name__}: {error}') from None
        self._put(topic, connection, stamp_ns, data)

    def write_raw(self, topic, stamp_ns, data):
        """Write serialized CDR bytes (e.g. from an rclpy raw subscription) at stamp_ns."""
        self._put(topic, self._connection(topic), stamp_ns, data)

    def _put(self, topic, connection, stamp_ns, data):
        stamp_ns = int(stamp_ns)
        if stamp_ns < 0:
            raise BagError(f'log time of topic {topic!r} must be >= 0 ns. Got {stamp_ns}.')
        self._writer.write(connection, stamp_ns, data)
        self.counts[topic] += 1

    def _connection(self, topic):
        self._check_open()
        try:
            return self._connections[topic]
        except KeyError:
            raise BagError(f'topic {topic!r} was not added to bag {self.path} (call add_topic '
                           f'first); it has: {sorted(self._connections)}') from None

    def _check_open(self):
        if self._writer is None:
            raise BagError(f'bag {self.path} is not open for writing')

    def close(self):
        """Write the index and metadata.yaml. Safe to call twice."""
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            writer.close()
        except Exception as error:
            writer.abort()
            raise BagError(f'cannot finish bag {self.path}: {error}') from None


def storage_files(path) -> Tuple[Path, ...]:
    """The .mcap/.db3 files of the bag at `path`."""
    path = Path(path)
    if path.is_file():
        return (path,)
    return tuple(sorted(p for p in path.iterdir() if p.suffix in BAG_SUFFIXES))


def bag_size(path):
    """Total bytes of the bag at `path` (all files of a bag directory)."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob('*') if p.is_file())


# --- arrays from messages (for offline evaluation) ---------------------------------------------
@dataclass(frozen=True)
class ChunkArrays:
    """M ActionChunk messages as arrays (see msg/ActionChunk.msg)."""

    stamps_ns: np.ndarray       # (M,) int64 header stamps: the observation of each chunk
    log_ns: np.ndarray          # (M,) int64 log times (arrival in the recording)
    actions: np.ndarray         # (M, K, d) float64
    step_period: np.ndarray     # (M,) seconds
    value: np.ndarray           # (M,) NaN when the model gave none
    inference_time: np.ndarray  # (M,) seconds
    action_names: Tuple[str, ...]
    model_ids: Tuple[str, ...]


def chunk_arrays(items):
    """BagMessages of cosmos_policy_ros/msg/ActionChunk -> ChunkArrays (in the given order).

    All chunks must share horizon, action_dim and action names; BagError names the first
    chunk (by log time) that does not.
    """
    items = list(items)
    if not items:
        raise BagError('no ActionChunk messages to convert')
    first = items[0].message
    horizon, dim, names = int(first.horizon), int(first.action_dim), tuple(first.action_names)
    actions = np.empty((len(items), horizon, dim))
    for index, item in enumerate(items):
        message = item.message
        where = f'the ActionChunk on {item.topic!r} at log time {item.stamp_ns}'
        if (int(message.horizon), int(message.action_dim)) != (horizon, dim):
            raise BagError(f'{where} is {message.horizon} x {message.action_dim}; the first '
                           f'chunk was {horizon} x {dim}')
        if tuple(message.action_names) != names:
            raise BagError(f'{where} names its actions {list(message.action_names)}, the '
                           f'first chunk {list(names)}')
        values = np.asarray(message.actions, dtype=np.float64)
        if values.size != horizon * dim:
            raise BagError(f'{where} has {values.size} action values, not horizon x '
                           f'action_dim = {horizon * dim}')
        actions[index] = values.reshape(horizon, dim)  # (K*d,) -> (K, d), row-major
    return ChunkArrays(
        stamps_ns=np.array([stamp_to_ns(i.message.header.stamp) for i in items], np.int64),
        log_ns=np.array([i.stamp_ns for i in items], dtype=np.int64),
        actions=actions,
        step_period=np.array([i.message.step_period for i in items], dtype=np.float64),
        value=np.array([i.message.value for i in items], dtype=np.float64),
        inference_time=np.array([i.message.inference_time for i in items], dtype=np.float64),
        action_names=names,
        model_ids=tuple(i.message.model_id for i in items))


def action_stream_arrays(items, names=None):
    """A recorded action stream -> (stamps_ns (N,), values (N, d), names).

    sensor_msgs/JointState: header stamps and `position`, the columns picked and ordered by
    `names` (default: the first message's joint names). std_msgs/Float64MultiArray (or
    Float32MultiArray): log times and `data`, named a0, a1, ... unless `names` is given.
    """
    items = list(items)
    if not items:
        raise BagError('no recorded action messages to convert')
    if hasattr(items[0].message, 'position'):
        names = tuple(names) if names is not None else tuple(items[0].message.name)
        rows, stamps = [], []
        for item in items:
            index = {name: i for i, name in enumerate(item.message.name)}
            missing = [name for name in names if name not in index]
            if missing:
                raise BagError(f'the JointState on {item.topic!r} at log time {item.stamp_ns} '
                               f'has no joint(s) {missing}')
            position = np.asarray(item.message.position, dtype=np.float64)
            rows.append(position[[index[name] for name in names]])
            stamps.append(stamp_to_ns(item.message.header.stamp))
        return np.array(stamps, dtype=np.int64), np.stack(rows), names
    values = [np.asarray(item.message.data, dtype=np.float64) for item in items]
    sizes = {v.size for v in values}
    if len(sizes) != 1:
        raise BagError(f'the action arrays on {items[0].topic!r} have different lengths '
                       f'{sorted(sizes)}')
    dim = sizes.pop()
    names = tuple(names) if names is not None else tuple(f'a{j}' for j in range(dim))
    if len(names) != dim:
        raise BagError(f'{len(names)} names for {dim}-d actions on {items[0].topic!r}')
    return (np.array([item.stamp_ns for item in items], dtype=np.int64), np.stack(values),
            names)
