"""The policy server on N simulated arms: batched vs one at a time vs N separate policy_nodes.

    . scripts/setup_env.sh && python bench/fleet_sim.py            # N = 1, 2, 4, 8 (~40 min)
    python bench/fleet_sim.py --arms 1,2 --rounds 1 --realtime-rounds 1 \
        --out /tmp/fleet.json                                       # a smoke run

For each N, the shipped planar-reach model drives arms /arm_0 .. /arm_{N-1}
(ros/fleet_sim.py: one /clock, config/sim.yaml's parameters per arm, /diagnostics at 100 Hz in
lockstep and 1 Hz in real time: DIAGNOSTICS_PERIOD) through each policy side in turn:

  batched            one policy_server (fleet/) with its defaults: every arm's ticks batched
                     (max_batch 8), an idle engine waiting up to 10 ms for the others
  batched_no_window  the same without the window (does waiting for the others help?)
  sequential      the same server running the same requests one at a time (max_batch 1)
  separate        N policy_node processes, one per arm (N models)

all at once, each side on a ROS domain of its own, taking turns round by round (a change of the
machine's load hits them alike; each phase starts its own processes): `--rounds` lockstep
rounds (arm i, round r: seed first_seed + 8 r + i, every arm starting at arm 0's seed slot,
so an arm's episodes do not depend on N), then `--realtime-rounds` real-time rounds on the
same seeds (/clock at 20 Hz; a real-time phase whose sims fell behind the wall clock is marked
`kept_real_time: false`). Every side gets the machine's cores (torch threads: the server
all, N nodes a share each). Reported per N and side: aggregate chunks per wall second
(lockstep: the sim waits for every chunk, so this is the whole system's throughput), per-arm
latency (the chunk's inference_time: queued + computed, as the robot node measures it) p50/p99
in real time, per-arm success, the resident memory of the policy side (peak RSS, VmHWM, summed
over processes; and PSS, which counts shared library pages once), and every arm's lockstep
episodes against its single-robot run (`sequential`: its requests alone, in the same process
with the same threads): the same success, the same chunks bit for bit (`compare`; the first
chunk of each episode, the same observation, bounded by 1e-5 relative as the issue asks). The
engine alone (CosmosPolicy.infer_batch, batch 1/2/4/8) is timed too. Targets (issue 25) and
whether each is met go into the record (bench/results/fleet_sim.json) and SUMMARY.md.
"""
import argparse
import json
import math
import os
from pathlib import Path
import signal
import sys
import tempfile
import threading
import time

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # harness.py beside this file
    sys.path.insert(0, str(HERE))
import harness  # noqa: E402, I100, I202

SIDES = {  # name -> (policy side, max_batch, batch_window s)
    'batched': ('server', 8, 0.01),  # the server's defaults (fleet/config.py)
    'batched_no_window': ('server', 8, 0.0),
    'sequential': ('server', 1, 0.0),
    'separate': ('separate', 1, 0.0),
}
# Each arm's single-robot run: its requests computed alone (batch 1) in the same process with
# the same torch threads as the batched server (separate nodes run with fewer threads each,
# and the thread count changes the rounding too: compared, reported, not judged).
SINGLE = 'sequential'
SEED_STRIDE = 8  # arm i, round r: first_seed + SEED_STRIDE * r + i (the same for every N)
TOLERANCE = 1e-5  # relative action difference allowed against the single-robot run
TARGETS = {'throughput_batched_over_sequential_n4': 1.5, 'p99_latency_n4_over_n1': 3.0,
           'memory_n8_over_n1': 1.3}
# Real time: seconds between /clock messages (the arms' physics still steps every 10 ms). Each
# /clock reaches every robot node; 8 robots x 100 Hz in the server's one process left the engine
# 1 chunk in 4 s (20 Hz: 16; docs/fleet.md). A robot on its own clock has no /clock at all.
REALTIME_CLOCK_PERIOD = 0.05
START_TIMEOUT = 900.0  # seconds for N processes to load the model on a loaded 2-core machine
PHASES = ('lockstep', 'realtime')
REAL_TIME_FLOOR = 0.95  # sim seconds per wall second below this: the sims fell behind


def process_memory(pid):
    """{'rss', 'hwm', 'pss'} bytes of a process (VmRSS, VmHWM: peak RSS, Pss)."""
    fields = {}
    with open(f'/proc/{pid}/status') as stream:
        for line in stream:
            key, _, value = line.partition(':')
            if key in ('VmRSS', 'VmHWM'):
                fields[key] = int(value.split()[0]) * 1024
    pss = 0
    try:
        with open(f'/proc/{pid}/smaps_rollup') as stream:
            for line in stream:
                if line.startswith('Pss:'):
                    pss = int(line.split()[1]) * 1024
    except OSError:
        pss = math.nan
    return {'rss': fields['VmRSS'], 'hwm': fields['VmHWM'], 'pss': pss}


class MemoryWatch:
    """Samples the memory of processes every `period` s; the peaks summed over them."""

    def __init__(self, pids, period=1.0):
        self.pids, self.period = list(pids), period
        self.peak_rss = self.peak_pss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self):
        try:
            memory = [process_memory(pid) for pid in self.pids]
        except (OSError, KeyError):
            return  # a process ended
        self.peak_rss = max(self.peak_rss, sum(m['rss'] for m in memory))
        self.peak_pss = max(self.peak_pss, sum(m['pss'] for m in memory))
        self.hwm = sum(m['hwm'] for m in memory)

    def _run(self):
        while not self._stop.wait(self.period):
            self._sample()

    def stop(self):
        self._sample()
        self._stop.set()
        self._thread.join()
        return {'peak_rss_mb': self.peak_rss / 1e6, 'peak_pss_mb': self.peak_pss / 1e6,
                'vmhwm_mb': getattr(self, 'hwm', 0) / 1e6}


def percentile(values, percent):
    return float(np.percentile(values, percent)) if len(values) else math.nan


def seeds_of(round_index, arms, first_seed):
    return [first_seed + SEED_STRIDE * round_index + i for i in range(arms)]


def trace_record(trace):
    """What the record keeps of one arm's episode (chunk actions for the comparison)."""
    return {'seed': trace.seed, 'success': bool(trace.success), 'steps': trace.steps,
            'chunks': [{'step': c.step, 'stamp_ns': c.stamp_ns, 'seed': c.seed,
                        'inference_time': c.inference_time, 'arrival_delay': c.arrival_delay,
                        'actions': np.asarray(c.actions, dtype=np.float64).tolist()}
                       for c in trace.chunks]}


def phase_summary(episodes, wall):
    """Aggregate chunks/s, per-arm success and latency of a phase: episodes[arm] = records."""
    chunks = sum(len(e['chunks']) for arm in episodes for e in arm)
    per_arm = []
    for arm in episodes:
        latency = [c['inference_time'] for e in arm for c in e['chunks']]
        arrival = [c['arrival_delay'] for e in arm for c in e['chunks']]
        per_arm.append({'success': sum(e['success'] for e in arm), 'episodes': len(arm),
                        'latency_p50_s': percentile(latency, 50),
                        'latency_p99_s': percentile(latency, 99),
                        'arrival_p50_s': percentile(arrival, 50),
                        'arrival_p99_s': percentile(arrival, 99)})
    latency_all = [c['inference_time'] for arm in episodes for e in arm for c in e['chunks']]
    return {'wall_s': wall, 'chunks': chunks, 'chunks_per_s': chunks / wall if wall else 0.0,
            'latency_p50_s': percentile(latency_all, 50),
            'latency_p99_s': percentile(latency_all, 99),
            'worst_arm_latency_p99_s': max(a['latency_p99_s'] for a in per_arm),
            'success': [a['success'] for a in per_arm], 'per_arm': per_arm}


def torch_threads(side, arms):
    """Torch threads per process: every side gets the machine's cores (the server's one
    engine all of them, N separate nodes a share each, at least one)."""
    cores = os.cpu_count() or 1
    return cores if side == 'server' else max(1, cores // arms)


# /diagnostics period of every arm's node per phase. Lockstep: the sims pace each step on the
# nodes' reports (tick counts), so a lone node's sim preset rate (config/sim.yaml, 100 Hz) sets
# the pace, not the engine. Real time: nothing waits on them; NodeConfig's default (1 Hz), what
# a deployed robot reports, so the server's Python work is the robots' and not 100 reports a
# second each.
DIAGNOSTICS_PERIOD = {'lockstep': 0.01, 'realtime': 1.0}


def robot_parameters(phase):
    """Parameters every side's arms get in `phase` (separate nodes and server robots alike)."""
    return {'diagnostics_period': DIAGNOSTICS_PERIOD[phase]}


class Side:
    """One policy side with `arms` arms on a ROS domain of its own for one phase: every side of
    an N runs at once and they take turns round by round (a change of the machine's load hits
    them alike; an idle side's nodes see no /clock, so they only report their diagnostics)."""

    def __init__(self, name, arms, model, config, out, domain, phase):
        import rclpy

        from cosmos_policy_ros.ros.fleet_sim import FleetSim, start_policies
        from cosmos_policy_ros.sim.harness import replan_steps_of, sim_settings

        self.name, self.arms, self.config = name, arms, config
        side, max_batch, window = SIDES[name]
        names = [f'arm_{i}' for i in range(arms)]
        self.started = time.monotonic()
        env = dict(os.environ, ROS_DOMAIN_ID=str(domain),
                   OMP_NUM_THREADS=str(torch_threads(side, arms)))
        self.phase = phase
        self.processes = start_policies(side, names, model, out, node_config=config,
                                        parameters=robot_parameters(phase),
                                        max_batch=max_batch, batch_window=window, env=env)
        self.context = rclpy.Context()
        rclpy.init(args=[], context=self.context, domain_id=domain)
        self.replan = replan_steps_of(config)
        self.fleet = FleetSim(names, sim_settings('lockstep', replan_steps=self.replan),
                              context=self.context, check=self.check,
                              clock_period=REALTIME_CLOCK_PERIOD)
        self.episodes = {phase: [[] for _ in names] for phase in PHASES}
        self.wall = dict.fromkeys(PHASES, 0.0)
        self.sim_seconds = dict.fromkeys(PHASES, 0.0)
        self.watch = None
        self.start_s = None

    def check(self):
        for process in self.processes:
            process.check()

    def wait_ready(self):
        self.fleet.wait_for_policies(timeout=START_TIMEOUT)
        self.start_s = time.monotonic() - self.started
        self.watch = MemoryWatch([process.process.pid for process in self.processes])

    def run_round(self, index, first_seed):
        from cosmos_policy_ros.sim.harness import sim_settings

        phase = self.phase
        self.fleet.settings = sim_settings(phase, replan_steps=self.replan)
        began = time.monotonic()
        traces = self.fleet.run_round(seeds_of(index, self.arms, first_seed))
        self.wall[phase] += time.monotonic() - began
        self.sim_seconds[phase] += max(trace.steps for trace in traces) * (
            traces[0].step_period)
        for arm, trace in enumerate(traces):
            self.episodes[phase][arm].append(trace_record(trace))

    def result(self):
        """The side's record for its phase: memory, start time and the phase's summary."""
        side, max_batch, window = SIDES[self.name]
        phase = self.phase
        result = {'side': side, 'max_batch': max_batch, 'batch_window_s': window,
                  'processes': len(self.processes), 'start_s': self.start_s,
                  'memory': self.watch.stop()}
        result[phase] = phase_summary(self.episodes[phase], self.wall[phase])
        result[phase]['episodes'] = self.episodes[phase]
        # Real time is real only while the sims keep up with the wall clock.
        factor = self.sim_seconds[phase] / self.wall[phase] if self.wall[phase] else 0.0
        result[phase]['sim_seconds_per_wall_second'] = factor
        if phase == 'realtime':
            result[phase]['kept_real_time'] = bool(factor >= REAL_TIME_FLOOR)
        return result

    def close(self):
        import rclpy

        try:
            self.fleet.close()
            rclpy.try_shutdown(context=self.context)
        finally:
            for process in self.processes:
                process.close()


def run_sides(names, arms, model, config, work, args):
    """Every side of `names` with `arms` arms, interleaved round by round, each phase with its
    own processes (DIAGNOSTICS_PERIOD); name -> result (memory and start: the larger of the
    two phases')."""
    results = {}
    for phase, count in (('lockstep', args.rounds), ('realtime', args.realtime_rounds)):
        sides = []
        try:
            for index, name in enumerate(names):
                sides.append(Side(name, arms, model, config, work / f'{name}_{arms}_{phase}',
                                  args.domain_base + index, phase))
            for side in sides:
                side.wait_ready()
            for index in range(count):
                shift = index % len(sides)  # each side goes first in turn
                for side in sides[shift:] + sides[:shift]:
                    side.run_round(index, args.first_seed)
            for side in sides:
                merged = results.setdefault(side.name, {})
                result = side.result()
                for key in ('memory', 'start_s'):
                    if key in merged:
                        result[key] = _larger(merged[key], result[key])
                merged.update(result)
        finally:
            for side in sides:
                side.close()
    return results


def _larger(a, b):
    """The larger of two numbers, or of two {key: number} key by key."""
    if isinstance(a, dict):
        return {key: max(a[key], b[key]) for key in a}
    return max(a, b)


def compare(run, single):
    """An arm-by-arm comparison of a side's lockstep episodes with the single-robot runs
    (SINGLE).

    An episode's first chunk is computed from the same observation in both (the reset arm):
    it must agree within TOLERANCE. Later chunks see states the executed actions made, so a
    rounding difference of a batched pass would carry into them (closed_loop_*). On the CPU
    the engine is batch-invariant (docs/fleet.md), so every chunk of a server side should be
    bit-identical (`bit_identical`) and the success the same; separate nodes run with fewer
    torch threads, which round differently (reported, not judged).
    """
    first, worst, identical, same_schedule, same_success = 0.0, 0.0, True, True, True
    for arm, reference in zip(run['lockstep']['episodes'], single['lockstep']['episodes']):
        for episode, alone in zip(arm, reference):
            same_success &= episode['success'] == alone['success']
            keys = [(c['stamp_ns'], c['seed']) for c in episode['chunks']]
            same_schedule &= keys == [(c['stamp_ns'], c['seed']) for c in alone['chunks']]
            for index, (chunk, other) in enumerate(zip(episode['chunks'], alone['chunks'])):
                a, b = np.asarray(chunk['actions']), np.asarray(other['actions'])
                if a.shape != b.shape:
                    same_schedule = False
                    continue
                identical &= bool(np.array_equal(a, b))
                difference = float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))
                worst = max(worst, difference)
                if index == 0:
                    first = max(first, difference)
    return {'first_chunk_max_relative_difference': first,
            'closed_loop_max_relative_difference': worst, 'bit_identical': identical,
            'same_stamps_and_seeds': same_schedule, 'same_success': same_success,
            'within_tolerance': first <= TOLERANCE}


def _without_chunks(run):
    """A run as the record keeps it: per episode seed, success, steps and chunk count."""
    run = dict(run)
    for phase in ('lockstep', 'realtime'):
        if phase in run:
            run[phase] = dict(run[phase], episodes=[
                [{'seed': e['seed'], 'success': e['success'], 'steps': e['steps'],
                  'chunks': len(e['chunks'])} for e in arm] for arm in run[phase]['episodes']])
    return run


def engine_batches(model):
    """The engine alone (bench_fleet_batch.py), with the server's torch threads."""
    import bench_fleet_batch
    import torch

    from cosmos_policy_ros.engine.policy import load_policy

    torch.set_num_threads(torch_threads('server', 1))  # as the server's engine
    ctx = harness.BenchContext(device=torch.device('cpu'), dtype_name='fp32', quick=False,
                               repetitions=5)
    return bench_fleet_batch.measure(
        load_policy(model, device='cpu', dtype='fp32'),
        lambda variants, repetitions: ctx.compare(variants, repetitions=repetitions))


def targets(runs, default):
    """{target: {'value', 'target', 'met', ...}} of the issue's CPU targets."""
    out = {}
    n4 = runs.get(4, {})
    if default in n4 and 'sequential' in n4:
        value = n4[default]['lockstep']['chunks_per_s'] / n4['sequential']['lockstep'][
            'chunks_per_s']
        out['throughput_batched_over_sequential_n4'] = {'value': value, 'variant': default}
    if default in n4 and default in runs.get(1, {}):
        value = (n4[default]['realtime']['worst_arm_latency_p99_s']
                 / runs[1][default]['realtime']['worst_arm_latency_p99_s'])
        out['p99_latency_n4_over_n1'] = {
            'value': value, 'variant': f'{default}, real time',
            'kept_real_time': bool(n4[default]['realtime']['kept_real_time']
                                   and runs[1][default]['realtime']['kept_real_time'])}
    if default in runs.get(8, {}) and default in runs.get(1, {}):
        value = runs[8][default]['memory']['vmhwm_mb'] / runs[1][default]['memory']['vmhwm_mb']
        out['memory_n8_over_n1'] = {'value': value, 'variant': f'{default} (peak RSS)'}
        if 'separate' in runs[8]:
            out['memory_n8_separate_over_n1'] = {
                'value': runs[8]['separate']['memory']['vmhwm_mb']
                / runs[1][default]['memory']['vmhwm_mb'], 'target': None, 'met': None,
                'variant': 'N policy_node processes (peak RSS summed), for comparison'}
    for name, entry in out.items():
        if name in TARGETS:
            entry['target'] = TARGETS[name]
            higher = name.startswith('throughput')
            entry['met'] = bool(entry['value'] >= TARGETS[name] if higher
                                else entry['value'] <= TARGETS[name])
    return out


def outcomes(run, single):
    """Lockstep episodes of a side whose outcome differs from the single-robot run's:
    {'episodes': count, 'other_outcome': [[seed, success, steps, single's steps], ...]}
    (works on a stored record: only success and steps are needed)."""
    arms = zip(run['lockstep']['episodes'], single['lockstep']['episodes'])
    pairs = [(episode, alone) for arm, reference in arms
             for episode, alone in zip(arm, reference)]
    return {'episodes': len(pairs),
            'other_outcome': [[e['seed'], e['success'], e['steps'], a['steps']]
                              for e, a in pairs if e['success'] != a['success']]}


def judge(record, runs, default):
    """The record's verdicts from its runs ({N: {side: result}}): outcome counts, the targets,
    the headline."""
    correctness = record['correctness']
    correctness['outcomes'] = {arms: {name: outcomes(run, sides_run[SINGLE])
                                      for name, run in sides_run.items() if name != SINGLE}
                               for arms, sides_run in runs.items() if SINGLE in sides_run}
    batched = [(arms, name) for arms, sides_run in correctness['per_n'].items()
               for name in sides_run if name != 'separate']
    first = max((correctness['per_n'][arms][name]['first_chunk_max_relative_difference']
                 for arms, name in batched), default=0.0)
    identical = all(correctness['per_n'][arms][name]['bit_identical'] for arms, name in batched)
    flips = sum(len(correctness['outcomes'][arms][name]['other_outcome'])
                for arms, name in batched if arms in correctness['outcomes'])
    total = sum(correctness['outcomes'][arms][name]['episodes']
                for arms, name in batched if arms in correctness['outcomes'])
    record['default_side'] = default
    record['targets_met'] = targets(runs, default)
    parts = []
    for name, entry in record['targets_met'].items():
        if entry.get('target') is None:
            parts.append(f'{name} {entry["value"]:.2f}')
        else:
            parts.append(f'{name} {entry["value"]:.2f} ({"met" if entry["met"] else "MISSED"})')
    parts.append(f'first chunks vs single-robot {first:.1e} relative (<= {TOLERANCE:g}); '
                 f'every server chunk bit-identical to single-robot: '
                 f'{"yes" if identical else "no"}; '
                 f'batched lockstep episodes with another outcome: {flips} of {total}')
    record['headline'] = '; '.join(parts)
    return record


def rejudge(path, default):
    """Recompute the verdicts of a stored record (its runs are kept) with `default`."""
    record = json.loads(Path(path).read_text())
    runs = {int(arms): sides for arms, sides in record['runs'].items()}
    record['correctness']['per_n'] = {int(arms): value for arms, value in
                                      record['correctness']['per_n'].items()}
    judge(record, runs, default)
    Path(path).write_text(json.dumps(record, indent=1, allow_nan=True) + '\n')
    return record


def _interrupted(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arms', default='1,2,4,8', help='comma-separated N')
    parser.add_argument('--sides', default=','.join(SIDES), help='comma-separated sides')
    parser.add_argument('--rounds', type=int, default=4, help='lockstep rounds')
    parser.add_argument('--realtime-rounds', type=int, default=3, help='real-time rounds')
    parser.add_argument('--domain-base', type=int, default=200,
                        help='ROS domain of the first side (one each: base, base + 1, ...)')
    parser.add_argument('--first-seed', type=int, default=100000)
    parser.add_argument('--default', default='batched', choices=SIDES,
                        help='the server setting the targets are judged on')
    parser.add_argument('--model', type=Path, default=None)
    parser.add_argument('--out', type=Path, default=HERE / 'results' / 'fleet_sim.json')
    parser.add_argument('--work', type=Path, default=None, help='logs and fleet files')
    parser.add_argument('--rejudge', type=Path, default=None, metavar='RECORD',
                        help='only recompute the verdicts of a stored record with --default')
    args = parser.parse_args(argv)
    if args.rejudge:
        print(rejudge(args.rejudge, args.default)['headline'])
        if args.rejudge.parent.resolve() == harness.RESULTS.resolve():
            harness.write_summary()
        return 0
    signal.signal(signal.SIGTERM, _interrupted)  # stop the policy processes on the way out
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    os.environ.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    from cosmos_policy_ros.sim.harness import node_config_path
    from cosmos_policy_ros.sim.model import model_label, shipped_model

    model = args.model or shipped_model()
    config = node_config_path()
    work = args.work or Path(tempfile.mkdtemp(prefix='fleet_sim_'))
    arms_list = [int(n) for n in args.arms.split(',')]
    sides = [name for name in args.sides.split(',') if name]
    began = time.monotonic()
    print('[fleet] engine alone: infer_batch at batch 1/2/4/8', flush=True)
    engine = engine_batches(model)
    runs = {}
    for arms in arms_list:
        runs[arms] = run_sides(sides, arms, model, config, work, args)
        for name, run in runs[arms].items():
            for phase in PHASES:
                summary = run[phase]
                print(f'[fleet] N={arms} {name} {phase}: {summary["chunks_per_s"]:.2f} '
                      f'chunks/s, latency p50 {summary["latency_p50_s"]:.3f} s p99 '
                      f'{summary["latency_p99_s"]:.3f} s, success {summary["success"]}, sim '
                      f'{summary["sim_seconds_per_wall_second"]:.2f} s per wall s',
                      flush=True)
    correctness, all_equal = {}, True
    for arms, sides_run in runs.items():
        if SINGLE not in sides_run:
            continue
        correctness[arms] = {name: compare(run, sides_run[SINGLE])
                             for name, run in sides_run.items() if name != SINGLE}
        all_equal &= all(c['same_success'] and c['within_tolerance']
                         for name, c in correctness[arms].items() if name != 'separate')
    record = harness.script_record(
        args.out, title='Policy server on N simulated arms: batched vs one at a time vs N '
                        'separate policy_node processes',
        preset=f'{model_label(model)}, N = {args.arms}, {args.rounds} lockstep + '
               f'{args.realtime_rounds} real-time rounds from seed {args.first_seed}, sides '
               f'interleaved',
        headline='')
    record.update({'targets': TARGETS, 'default_side': args.default, 'sides': {
        name: {'side': side, 'max_batch': batch, 'batch_window_s': window}
        for name, (side, batch, window) in SIDES.items() if name in sides},
        'engine_batches': engine,
        'correctness': {'tolerance': TOLERANCE, 'all_equal': all_equal, 'per_n': correctness},
        'wall_s': time.monotonic() - began})
    record['runs'] = {arms: {name: _without_chunks(run) for name, run in sides_run.items()}
                      for arms, sides_run in runs.items()}
    judge(record, record['runs'], args.default)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1, allow_nan=True) + '\n')
    if args.out.parent.resolve() == harness.RESULTS.resolve():
        harness.write_summary()
    print(f'[fleet] {record["headline"]}\n[fleet] wrote {args.out}', flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
