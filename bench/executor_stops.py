#!/usr/bin/env python3
"""Stop policy_node many times and count how its process ends (issue 26: is `executor: events`
safe to stop?).

    . scripts/setup_env.sh && nice python bench/executor_stops.py stops --executor events -n 100
    . scripts/setup_env.sh && python bench/executor_stops.py race -n 20

stops   policy_node (fake policy, ALOHA configuration, as in bench/node_suite.py) started and
        stopped `-n` times: SIGINT at a random moment (during start-up, or while observations
        flow and a probe calls its get_parameters service), in one stop of three a second
        SIGINT 50 ms later (ros2 launch's Ctrl-C reaches a node twice). Counts the exit codes;
        the logs of the stops that did not exit 0 are kept.
race    the mechanism behind rclpy 9.1.2's "Destroying callback manager with callbacks
        remaining" abort, in a child process per trial: an EventsExecutor spins in one thread
        while another thread creates and destroys subscriptions. When a destruction lands
        between the executor's snapshot of the node's entities and its registration of their
        middleware callbacks, the registration raises InvalidHandle half-way, the callbacks
        registered so far are no longer tracked, and destroying the executor later aborts the
        process. `--same-thread`: the same changes made in the executor's thread (a callback of
        its own timer), as policy_node makes them (lifecycle services), which must never abort.

Writes <out>/executor_stops_<mode>.json with the counts.
"""
import argparse
import collections
import json
import os
from pathlib import Path
import random
import signal
import subprocess
import sys
import tempfile
import time

HERE = Path(__file__).resolve().parent
RACE_SECONDS = 4.0  # per trial of `race`


def stops(args):
    sys.path.insert(0, str(HERE))
    import node_suite
    # The nodes start with SIGINT's default, as from a terminal or ros2 launch: a job a shell
    # put in the background has SIGINT ignored, its children inherit that, and a SIGINT while a
    # node still imports (before its own handler) would be lost instead of ending it (-2).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    directory = Path(tempfile.mkdtemp(prefix='executor-stops-'))
    node_suite.use_fastdds_profile(directory)
    fake = directory / 'fake.yaml'
    fake.write_text('layout: {preset: aloha}\n')
    params = node_suite.parameters(fake, 'cosmos_policy_ros.testing:load_fake_policy',
                                   executor=args.executor)
    robot = node_suite.Robot()
    rng = random.Random(args.seed)
    codes, kept = collections.Counter(), []
    try:
        for number in range(args.n):
            name = f'stop{number}'
            process = node_suite.start_node(params, directory, name)
            target = robot.add(name, height=96, width=128, frames=2)
            early = rng.random() < 0.3
            if early:  # somewhere in start-up: imports, configure, warm-up, the first spin
                time.sleep(rng.uniform(0.2, 4.0))
            else:
                try:
                    robot.wait_ready(target, process, 120)
                except RuntimeError:
                    pass  # counted by its exit code below
                end = time.monotonic() + rng.uniform(0.0, 1.0)
                while time.monotonic() < end and process.alive():
                    target.publish(number)
                    target.probe(timeout=0.2)
                    time.sleep(rng.uniform(0.0, 0.04))
            if process.alive():
                process.process.send_signal(signal.SIGINT)
                if rng.random() < 1 / 3:
                    time.sleep(0.05)
                    if process.alive():
                        process.process.send_signal(signal.SIGINT)
            code = process.stop()
            codes[code] += 1
            if code != 0:
                kept.append({'stop': number, 'early': early, 'code': code,
                             'log_tail': process.tail(15)})
            print(f'[stops] {number + 1}/{args.n} ({name}.log): exit {code}', flush=True)
    finally:
        robot.close()
    return {'executor': args.executor, 'stops': args.n, 'exit_codes': dict(codes),
            'not_clean': kept}


RACE_CHILD = '''
import sys, threading, time
import rclpy
from std_msgs.msg import String
from cosmos_policy_ros.ros.policy_node import make_executor
same_thread, seconds = sys.argv[1] == 'same', float(sys.argv[2])
sys.setswitchinterval(1e-6)  # frequent GIL switches: the race shows within seconds
context = rclpy.Context()
rclpy.init(context=context)
node = rclpy.create_node('race', context=context)
executor = make_executor('events', context=context)
executor.add_node(node)
errors = []
cycles = [0]
def churn():
    subscriptions = [node.create_subscription(String, f't{i}', lambda m: None, 1)
                     for i in range(5)]
    for subscription in subscriptions:
        node.destroy_subscription(subscription)
    cycles[0] += 1
def spin():
    try:
        executor.spin()
    except Exception as error:
        errors.append(f'{type(error).__name__}: {error}')
if same_thread:
    node.create_timer(0.0005, churn)
spinner = threading.Thread(target=spin)
spinner.start()
end = time.monotonic() + seconds
while time.monotonic() < end and spinner.is_alive():
    if same_thread:
        time.sleep(0.05)
    else:
        churn()
executor.shutdown()
spinner.join()
node.destroy_node()
print('cycles', cycles[0], 'errors', errors[:1], flush=True)
del executor  # the abort, if callbacks leaked, happens here
rclpy.try_shutdown(context=context)
print('clean', flush=True)
'''


def race(args):
    codes, errors = collections.Counter(), collections.Counter()
    for number in range(args.n):
        result = subprocess.run(
            [sys.executable, '-c', RACE_CHILD, 'same' if args.same_thread else 'other',
             str(RACE_SECONDS)], capture_output=True, text=True, timeout=120)
        codes[result.returncode] += 1
        aborted = 'Destroying callback manager with callbacks remaining' in result.stdout
        errors['abort message' if aborted else 'no abort message'] += 1
        print(f'[race] {number + 1}/{args.n}: exit {result.returncode} '
              f'{result.stdout.strip().splitlines()[:2]}', flush=True)
    return {'changes_made_in': 'executor thread' if args.same_thread else 'another thread',
            'trials': args.n, 'seconds_each': RACE_SECONDS, 'exit_codes': dict(codes),
            'abort_message': dict(errors)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('mode', choices=('stops', 'race'))
    parser.add_argument('-n', type=int, default=50, help='stops or trials')
    parser.add_argument('--executor', default='events',
                        choices=('events', 'single_threaded', 'multi_threaded'))
    parser.add_argument('--same-thread', action='store_true', help='race: the changes in the '
                        "executor's thread")
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', default=str(HERE / 'results'))
    args = parser.parse_args()
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    started = time.monotonic()
    result = stops(args) if args.mode == 'stops' else race(args)
    result['wall_seconds'] = round(time.monotonic() - started, 1)
    result['load_average_at_end'] = [round(value, 2) for value in os.getloadavg()]
    suffix = args.executor if args.mode == 'stops' else (
        'same_thread' if args.same_thread else 'other_thread')
    path = Path(args.out) / f'executor_stops_{args.mode}_{suffix}.json'
    path.write_text(json.dumps(result, indent=1) + '\n')
    print(json.dumps({key: value for key, value in result.items() if key != 'not_clean'}))
    print(f'-> {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
