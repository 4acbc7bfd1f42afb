"""A live replay: ``policy_node`` and ``cosmos-policy-replay play`` as child processes, the
bag published with /clock into the node and the node's chunks recorded, while a small rclpy
listener prints one line per ActionChunk as it arrives (the demo's step 3).
"""
import shutil
import signal
import subprocess
import sys
import time

import rclpy
from rclpy.executors import SingleThreadedExecutor

from cosmos_policy_ros.bags.reader import read_info
from cosmos_policy_ros.conversions import NS_PER_S as NS, stamp_to_ns
from cosmos_policy_ros.msg import ActionChunk
from cosmos_policy_ros.node_process import PolicyProcess

START_TIMEOUT_S = 180.0
LOCKSTEP_TIMEOUT_S = 20.0  # the longest wait for one chunk in lockstep (a very busy machine)


class ChunkPrinter:
    """A small rclpy node that prints one line per ActionChunk."""

    def __init__(self, context, origin_ns):
        self.node = rclpy.create_node('cosmos_policy_demo_listener', context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.origin_ns = origin_ns
        self.count = 0
        self.node.create_subscription(ActionChunk, 'action_chunk', self._on_chunk, 50)

    def _on_chunk(self, msg):
        self.count += 1
        stamp = stamp_to_ns(msg.header.stamp)
        print(f'  chunk {self.count:3d}  obs t={(stamp - self.origin_ns) / NS:5.2f} s  '
              f'{msg.horizon} x {msg.action_dim} actions  value {msg.value:.3f}  '
              f'latency {msg.inference_time:.3f} s  seed {msg.seed}', flush=True)

    def spin_once(self, timeout):
        self.executor.spin_once(timeout_sec=timeout)

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()


def run_live(bag, model, config, out, *, rate, env, lockstep=None):
    """Node + player (recording the chunks); prints chunks as they come. Returns (the recorded
    bag's path, chunks printed).

    lockstep: the player's step (the node's control period), seconds; None: paced at `rate`.
    """
    recorded = out / 'live_chunks'
    shutil.rmtree(recorded, ignore_errors=True)
    node = PolicyProcess(model, config, out / 'node.log', env=env)
    context = rclpy.Context()
    rclpy.init(args=[], context=context)
    info = read_info(bag)
    printer = ChunkPrinter(context, info.start_ns)
    player = None
    try:
        # The player waits until the node subscribes to every input (after its configure).
        inputs = [topic for topic in info.topics if topic != '/recorded_actions']
        pacing = (['--lockstep', str(lockstep), '--lockstep-timeout', str(LOCKSTEP_TIMEOUT_S)]
                  if lockstep else ['--rate', str(rate)])
        player = subprocess.Popen(
            [sys.executable, '-m', 'cosmos_policy_ros.cli.replay', 'play', str(bag),
             *pacing, '--topics', *inputs, '--wait-for-subscribers',
             '--wait-timeout', str(START_TIMEOUT_S),
             '--record', str(recorded), '--record-topics', 'action_chunk', 'value',
             '--tail', '3'],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        duration_s = info.duration_ns / NS
        play_s = (duration_s / lockstep + 1) * LOCKSTEP_TIMEOUT_S if lockstep else (
            10 * duration_s / rate)
        deadline = time.monotonic() + START_TIMEOUT_S + play_s
        while player.poll() is None and time.monotonic() < deadline:
            printer.spin_once(0.05)
            node.check()
        for _ in range(20):
            printer.spin_once(0.05)
        if player.poll() is None:
            raise RuntimeError('the replay did not finish in time')
        played = player.stdout.read()
        if player.returncode != 0:
            raise RuntimeError(f'cosmos-policy-replay play failed:\n{played}')
        for line in played.splitlines():
            if line.startswith('[play] lockstep'):
                print('  ' + line)
    finally:
        if player is not None and player.poll() is None:
            player.send_signal(signal.SIGINT)
            player.wait(20)
        node.close()
        printer.close()
        rclpy.try_shutdown(context=context)
    print(f'  policy_node exited with code {node.returncode} (log: {out / "node.log"})')
    return recorded, printer.count
