"""Writing rosbag2 bags with the `rosbags` library: metadata version 9, CDR, RIHS01 type hashes
from the typestore (``bags.typestore``), so ``ros2 bag`` reads them.

    with BagWriter('out', storage='mcap', typestore=make_typestore()) as bag:
        bag.add_topic('/task', 'std_msgs/msg/String', latched=True)
        bag.write('/task', stamp_ns, message)

A writer always closes its bag properly, also on an exception or KeyboardInterrupt, so every
message written before the failure stays readable.
"""
from pathlib import Path

from rosbags.rosbag2 import Writer, WriterError
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode, StoragePlugin
from rosbags.serde import SerdeError

from cosmos_policy_ros.bags.storage import BagError, COMPRESSIONS, STORAGES
from cosmos_policy_ros.bags.typestore import latched_qos, make_typestore


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
