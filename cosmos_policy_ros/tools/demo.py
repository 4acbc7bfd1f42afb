"""The end-to-end demo (``bash scripts/demo.sh``): model, episode, node, live replay, evaluation.

1. a tiny random-weight model in the released formats, converted into a model directory
   (a stand-in: no weights can be downloaded here);
2. a synthetic ALOHA-like episode bag (three cameras, 14 joints, recorded actions, task);
3. ``policy_node`` with ``config/demo.yaml`` and ``use_sim_time``, as on a robot;
4. ``cosmos-policy-replay play`` publishes the episode with /clock and records the node's
   chunks, while this process prints a line per chunk (paced at ``--rate`` x real time, or
   ``--lockstep``: one control period of bag time at a time, see docs/replay.md);
5. ``cosmos-policy-replay eval`` runs the same bag offline (metrics, plots), and the live
   chunks are compared with the offline ones observation by observation.

Everything lands in --out (default output/demo); the model and the episode are reused when
present. Exit code 0 when every step worked and the live chunks equal the offline ones.
"""
import argparse
import os
from pathlib import Path
import shutil
import signal
import subprocess
import sys
import time

from cosmos_policy_ros.conversions import NS_PER_S as NS

MODEL_LAYOUT = {'preset': 'aloha', 'image_size': 64}  # small images: the demo runs on a CPU
START_TIMEOUT_S = 180.0
LOCKSTEP_TIMEOUT_S = 20.0  # the longest wait for one chunk in lockstep (a very busy machine)


def _share_dir():
    """This package's share directory (config/, launch/) and install prefix."""
    from ament_index_python.packages import get_package_prefix, get_package_share_directory
    return (Path(get_package_share_directory('cosmos_policy_ros')),
            Path(get_package_prefix('cosmos_policy_ros')))


def _step(number, text):
    print(f'\n[{number}/5] {text}', flush=True)


def prepare_model(out):
    from cosmos_policy_ros.engine.synthetic_checkpoints import write_synthetic_model
    from cosmos_policy_ros.layout import LatentLayout
    from cosmos_policy_ros.tools.convert import main as convert

    model = out / 'model'
    if (model / 'model.json').is_file():
        print(f'  reusing {model}')
        return model
    released = out / 'released'
    shutil.rmtree(released, ignore_errors=True)
    layout = LatentLayout.from_dict(MODEL_LAYOUT)
    write_synthetic_model(released, layout, size='tiny', seed=0, dtype='fp32')
    print(f'  wrote synthetic released-format files (tiny DiT and VAE, random weights) to '
          f'{released}')
    if convert(['--released', str(released), '--out', str(model), '--num-steps', '5']) != 0:
        raise RuntimeError('cosmos-policy-convert failed')
    return model


def prepare_episode(out, duration):
    from cosmos_policy_ros.tools.sample_episode import EpisodeConfig, make_sample

    bag = out / f'episode_{duration:g}s'
    if (bag / 'metadata.yaml').is_file():
        print(f'  reusing {bag}')
        return bag
    info = make_sample(bag, EpisodeConfig(preset='aloha', duration=duration))
    print(f'  wrote {bag}: {info.message_count} messages, {duration:g} s, topics '
          f'{", ".join(sorted(info.topics))}')
    return bag


class ChunkPrinter:
    """A small rclpy node that prints one line per ActionChunk (and its ValueEstimate)."""

    def __init__(self, context, origin_ns):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        from cosmos_policy_ros.msg import ActionChunk

        self.node = rclpy.create_node('cosmos_policy_demo_listener', context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.origin_ns = origin_ns
        self.count = 0
        self.node.create_subscription(ActionChunk, 'action_chunk', self._on_chunk, 50)

    def _on_chunk(self, msg):
        self.count += 1
        stamp = msg.header.stamp.sec * NS + msg.header.stamp.nanosec
        print(f'  chunk {self.count:3d}  obs t={(stamp - self.origin_ns) / NS:5.2f} s  '
              f'{msg.horizon} x {msg.action_dim} actions  value {msg.value:.3f}  '
              f'latency {msg.inference_time:.3f} s  seed {msg.seed}', flush=True)

    def spin_once(self, timeout):
        self.executor.spin_once(timeout_sec=timeout)

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()


def run_live(bag, model, config, out, *, rate, env, lockstep=None):
    """Node + player (recording the chunks); prints chunks as they come. Returns the bag path.

    lockstep: the player's step (the node's control period), seconds; None: paced at `rate`.
    """
    import rclpy

    from cosmos_policy_ros.tools.bags import read_info

    _, prefix = _share_dir()
    recorded = out / 'live_chunks'
    shutil.rmtree(recorded, ignore_errors=True)
    node_log = open(out / 'node.log', 'w')
    node = subprocess.Popen(
        [str(prefix / 'lib' / 'cosmos_policy_ros' / 'policy_node'), '--ros-args',
         '--params-file', str(config), '-p', f'model_path:={model}', '-p', 'use_sim_time:=true'],
        env=env, stdout=node_log, stderr=subprocess.STDOUT, text=True)
    context = rclpy.Context()
    rclpy.init(args=[], context=context)
    printer = ChunkPrinter(context, read_info(bag).start_ns)
    player = None
    try:
        # The player waits until the node subscribes to every input (after its configure).
        inputs = [topic for topic in read_info(bag).topics if topic != '/recorded_actions']
        pacing = (['--lockstep', str(lockstep), '--lockstep-timeout', str(LOCKSTEP_TIMEOUT_S)]
                  if lockstep else ['--rate', str(rate)])
        player = subprocess.Popen(
            [sys.executable, '-m', 'cosmos_policy_ros.tools.replay', 'play', str(bag),
             *pacing, '--topics', *inputs, '--wait-for-subscribers',
             '--wait-timeout', str(START_TIMEOUT_S),
             '--record', str(recorded), '--record-topics', 'action_chunk', 'value',
             '--tail', '3'],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        duration_s = read_info(bag).duration_ns / NS
        play_s = (duration_s / lockstep + 1) * LOCKSTEP_TIMEOUT_S if lockstep else (
            10 * duration_s / rate)
        deadline = time.monotonic() + START_TIMEOUT_S + play_s
        while player.poll() is None and time.monotonic() < deadline:
            printer.spin_once(0.05)
            if node.poll() is not None:
                raise RuntimeError(f'policy_node exited with code {node.returncode}; see '
                                   f'{out / "node.log"}')
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
        if node.poll() is None:
            node.send_signal(signal.SIGINT)
            try:
                node.wait(30)
            except subprocess.TimeoutExpired:
                node.kill()
        node_log.close()
        printer.close()
        rclpy.try_shutdown(context=context)
    print(f'  policy_node exited with code {node.returncode} (log: {out / "node.log"})')
    return recorded, printer.count


def run(args):
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    share, _ = _share_dir()
    config = Path(args.config) if args.config else share / 'config' / 'demo.yaml'
    # Node, player and this process share the CPU: one intra-op thread each (set before torch
    # is imported here; inherited by the children).
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    env = dict(os.environ)
    print('cosmos_policy_ros demo: Cosmos Policy on a replayed episode, live and offline')
    print('NOTE: the model is a tiny random-weight stand-in in the released formats (no '
          'weights can be\n      downloaded here): its actions are meaningless, the pipeline '
          'around it is the real one.')

    _step(1, 'model: a tiny random-weight stand-in, converted with cosmos-policy-convert')
    model = prepare_model(out)
    _step(2, 'episode: a synthetic ALOHA-like bag (3 cameras, 14 joints, recorded actions)')
    bag = prepare_episode(out, args.duration)
    lockstep = None
    if args.lockstep:  # one control period of bag time per step
        from cosmos_policy_ros.node_config import load_parameter_file
        lockstep = 1.0 / load_parameter_file(config, overrides={'model_path': str(model)}).rate
    pacing = (f'at rate {args.rate:g}' if lockstep is None else
              f'in lockstep ({lockstep:g} s steps)')
    _step(3, f'live: policy_node ({config.name}, use_sim_time) fed by cosmos-policy-replay '
             f'play {pacing}')
    started = time.monotonic()
    recorded, printed = run_live(bag, model, config, out, rate=args.rate, env=env,
                                 lockstep=lockstep)
    live_s = time.monotonic() - started

    _step(4, 'offline: cosmos-policy-replay eval on the same bag (no ROS graph)')
    from cosmos_policy_ros.node_config import load_parameter_file
    from cosmos_policy_ros.policy_loading import load_policy_for
    from cosmos_policy_ros.tools.bags import BagReader, chunk_arrays
    from cosmos_policy_ros.tools.evaluate import chunk_sources, compare_chunks, evaluate
    from cosmos_policy_ros.tools.replay import format_report

    node_config = load_parameter_file(config, overrides={'model_path': str(model)})
    policy = load_policy_for(node_config)
    eval_dir = out / 'eval'
    shutil.rmtree(eval_dir, ignore_errors=True)
    report = evaluate(bag, policy, node_config, eval_dir)
    print('\n'.join('  ' + line for line in format_report(report).splitlines()))

    _step(5, 'parity: live chunks vs offline chunks of the same observations')
    with BagReader(recorded) as reader:
        items = list(reader.messages(['/action_chunk']))
    live = chunk_arrays(items)
    sources = chunk_sources(items)
    # (a) The offline sync rules, asked for the same camera frames, pick the same messages.
    frames_dir = out / 'eval_live_frames'
    shutil.rmtree(frames_dir, ignore_errors=True)
    frames = evaluate(bag, policy, node_config, frames_dir, tick_mode='observations',
                      plots=False, progress=False, references=set(sources))
    same_sets = sum(dict(tick.stamps) == sources.get(tick.reference_ns)
                    for tick in frames.chunks)
    print(f'  {len(live.stamps_ns)} live chunks; the offline sync rules pick the same messages '
          f'for {same_sets} of their frames (the node may have had to do without a late one)')
    # (b) Each live chunk recomputed offline from exactly the messages the node used (its
    # source stamps) is the same chunk.
    parity_dir = out / 'eval_live_observations'
    shutil.rmtree(parity_dir, ignore_errors=True)
    same = evaluate(bag, policy, node_config, parity_dir, tick_mode='observations',
                    plots=False, progress=False, references=sources)
    matched, missing, worst = compare_chunks(same.chunks, live)
    ok = bool(matched) and not missing and worst <= 1e-5
    print(f'  {len(matched)} recomputed offline from the same messages: largest difference '
          f'{worst:.2e}; {len(missing)} not recomputed')

    print('\nSummary')
    print(f'  live replay        {len(live.stamps_ns)} chunks in {live_s:.1f} s -> {recorded}')
    print(f'  offline metrics    {eval_dir / "metrics.json"}')
    print(f'  offline chunks     {eval_dir / "chunks"}  (rosbag2, mcap)')
    print(f'  plots              {eval_dir / "actions.png"}, {eval_dir / "value.png"}, '
          f'{eval_dir / "latency.png"}')
    print(f'  parity             {"OK" if ok else "FAILED"}')
    print('\nWith a real checkpoint:\n'
          '  cosmos-policy-convert --released <Cosmos-Policy-ALOHA-Predict2-2B dir> '
          '--tokenizer <tokenizer.pth> --out /models/aloha\n'
          '  ros2 launch cosmos_policy_ros policy.launch.py config:=aloha.yaml '
          'model:=/models/aloha\n'
          '  cosmos-policy-replay eval <your bag> --config config/aloha.yaml '
          '--model /models/aloha')
    return 0 if ok and printed > 0 else 1


def main(argv=None):
    parser = argparse.ArgumentParser(prog='cosmos-policy-demo', description=__doc__.split(
        '\n')[0])
    parser.add_argument('--out', default='output/demo', help='output directory')
    parser.add_argument('--duration', type=float, default=10.0, help='episode seconds')
    parser.add_argument('--rate', type=float, default=1.0, help='replay rate factor')
    parser.add_argument('--lockstep', action='store_true',
                        help="play in lockstep with the node's answers instead (ignores --rate)")
    parser.add_argument('--config', default=None, help='node parameter file (default: '
                                                       'share/cosmos_policy_ros/config/demo.yaml)')
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (RuntimeError, ValueError, OSError) as error:
        print(f'demo failed: {error}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
