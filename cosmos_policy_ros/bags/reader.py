"""Reading rosbag2 bags (directory, .mcap or .db3) with the `rosbags` library, no ROS needed.

    with BagReader('episode_0') as bag:
        print(bag.info.topics['/joint_states'].count)
        for item in bag.messages(['/joint_states'], start_ns=..., end_ns=...):
            item.topic, item.msgtype, item.stamp_ns, item.message

Types missing from the typestore (``bags.typestore``), or recorded with another definition,
are read with the definitions a bag embeds (every Jazzy/Kilted ``ros2 bag`` recording has
them). Every failure is a ``BagError`` that names the file and, where one is involved, the
topic.
"""
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, NamedTuple

from rosbags.interfaces import MessageDefinitionFormat, QosDurability
from rosbags.rosbag2 import Reader, ReaderError
from rosbags.serde import SerdeError
from rosbags.typesys import (
    get_types_from_idl, get_types_from_msg, get_typestore, Stores, TypesysError)
import yaml

from cosmos_policy_ros.bags.storage import BagError, resolve_bag_path, storage_files
from cosmos_policy_ros.bags.typestore import BASE_STORE_NAME, reader_typestore
from cosmos_policy_ros.conversions import NS_PER_S
from cosmos_policy_ros.package_files import PACKAGE


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


def read_messages(path, topics=None, *, start_ns=None, end_ns=None, raw=False,
                  typestore=None) -> Iterator[BagMessage]:
    """Open `path`, yield its messages (see ``BagReader.messages``), and close it again."""
    with BagReader(path, typestore=typestore) as bag:
        yield from bag.messages(topics, start_ns=start_ns, end_ns=end_ns, raw=raw)
