"""Episode bags recorded in-process from a node's own messages (the rclpy layer).

What ``ros2 bag record`` would write for one episode's topics, without a recorder process:
the node hands every message it publishes or receives to ``record`` with its clock time, the
message is serialized by rclpy (the CDR bytes DDS carries) and written with bags/writer.py's
``BagWriter`` (mcap, zstd), one bag per episode, named by ``start``. rclpy's
``serialize_message`` can return a few bytes past the message (8 for a JointState here), more
than CDR's alignment padding; they are cut at the message's end, measured by decoding it.
``finish`` closes the bag; ``abort`` too (a bag is always readable up to its last message).

The simulated robot (ros/sim_node.py) records its episodes this way when
``cosmos-policy-sim eval --record-rollouts DIR`` asks: the node's inputs (cameras, joint
states, task), the policy node's /action_chunk as received, and /episode_outcome (the sim's
label), which ``cosmos-policy-dataset export --rollouts`` turns into rollout training data.
"""
from pathlib import Path

from rclpy.serialization import serialize_message

from cosmos_policy_ros.bags.typestore import make_typestore
from cosmos_policy_ros.bags.writer import BagWriter

OUTCOME_TOPIC = '/episode_outcome'


class EpisodeRecorder:
    """One bag per episode in `out_dir` (see the module docstring)."""

    def __init__(self, out_dir, *, storage='mcap', compression='zstd'):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.storage, self.compression = storage, compression
        self.typestore = make_typestore()
        self.writer = None
        self.paths = []

    def start(self, name, topics, *, latched=()):
        """Open the bag `name`; topics: {absolute topic: 'pkg/msg/Type'} it will hold."""
        if self.writer is not None:
            self.finish()
        path = self.out_dir / name
        self.writer = BagWriter(path, storage=self.storage, typestore=self.typestore,
                                compression=self.compression).open()
        for topic, msgtype in topics.items():
            self.writer.add_topic(topic, msgtype, latched=topic in latched)
        self.paths.append(path)
        return path

    def record(self, topic, log_ns, message):
        """Write an rclpy message of a declared topic at log time `log_ns`."""
        if self.writer is not None:
            data = serialize_message(message)
            msgdef = self.typestore.get_msgdef(self.writer.topics[topic])
            decode = msgdef.deserialize_cdr_le if data[1] else msgdef.deserialize_cdr_be
            _, end = decode(memoryview(data)[4:], 0, msgdef.cls, self.typestore)
            self.writer.write_raw(topic, log_ns, data[:4 + end])

    def finish(self):
        writer, self.writer = self.writer, None
        if writer is not None:
            writer.close()

    abort = finish
