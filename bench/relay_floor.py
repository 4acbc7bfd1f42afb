#!/usr/bin/env python3
"""The rclpy floor of the node suite: the least a Python node can do with the node's inputs.

    python bench/relay_floor.py --executor events --ros-args -r __ns:=/floor_events

Subscribes to the ALOHA inputs of policy_node (three cameras' sensor_msgs/Image, one
sensor_msgs/JointState) with the node's input QoS (best effort, keep last 5, volatile) and,
when the last message of a stamp arrives, publishes one small ActionChunk (only the header
stamp set) on `action_chunk` with the node's output QoS (reliable, keep last 10). Nothing is
converted or copied beyond what rclpy itself does to hand a message to Python, so its latency
(observation stamp to chunk) is what rclpy and DDS cost on the machine. It tunes malloc as
policy_node does (keep_freed_memory; --glibc-defaults: not). bench/node_suite.py runs it
beside the node, in the same run.
"""
import argparse
import sys
from types import SimpleNamespace

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from sensor_msgs.msg import Image, JointState

from cosmos_policy_ros.allocator import keep_freed_memory
from cosmos_policy_ros.msg import ActionChunk
from cosmos_policy_ros.node_config import NodeConfig, parameter_fields
from cosmos_policy_ros.ros.inputs import input_qos
from cosmos_policy_ros.ros.outputs import output_qos

CAMERAS = ('left_wrist', 'right_wrist', 'primary')
# The node's QoS with its default parameters (the node suite leaves them as they are).
NODE_DEFAULTS = SimpleNamespace(**{name: default for name, default, _
                                   in parameter_fields(NodeConfig)})
INPUT_QOS, OUTPUT_QOS = input_qos(NODE_DEFAULTS), output_qos(NODE_DEFAULTS)
KEPT_STAMPS = 64  # incomplete sets remembered (a lost message must not grow the table)


class Relay:
    """Counts the messages of each stamp; the set's last one publishes the chunk."""

    def __init__(self, node):
        self.topics = [(Image, f'{camera}/image_raw') for camera in CAMERAS]
        self.topics.append((JointState, 'joint_states'))
        self._seen = {}  # (sec, nanosec) -> messages arrived
        self._publisher = node.create_publisher(ActionChunk, 'action_chunk', OUTPUT_QOS)
        for msg_type, topic in self.topics:
            node.create_subscription(msg_type, topic, self._on_message, INPUT_QOS)

    def _on_message(self, msg):
        stamp = msg.header.stamp
        key = (stamp.sec, stamp.nanosec)
        count = self._seen.get(key, 0) + 1
        if count < len(self.topics):
            self._seen[key] = count
            if len(self._seen) > KEPT_STAMPS:
                del self._seen[min(self._seen)]
            return
        self._seen.pop(key, None)
        chunk = ActionChunk()
        chunk.header.stamp = stamp
        self._publisher.publish(chunk)


def main(argv=None):
    argv = sys.argv if argv is None else argv
    rclpy.init(args=argv)
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--executor', choices=('single_threaded', 'events'),
                        default='single_threaded')
    parser.add_argument('--glibc-defaults', action='store_true',
                        help="leave malloc as it is (default: policy_node's keep_freed_memory)")
    args = parser.parse_args(rclpy.utilities.remove_ros_args(argv)[1:])
    if not args.glibc_defaults:
        keep_freed_memory()
    node = rclpy.create_node('relay_floor')
    Relay(node)
    if args.executor == 'events':
        from rclpy.experimental import EventsExecutor  # only where asked for
        executor = EventsExecutor()
    else:
        executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        if args.executor == 'events':  # in slices: its spin() hangs in rclpy 9.1.2 (policy_node)
            while rclpy.ok():
                executor.spin_once(timeout_sec=1.0)
        else:
            executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
