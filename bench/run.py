#!/usr/bin/env python3
"""Run the engine benchmarks and write bench/results/<name>.json and bench/results/SUMMARY.md.

    python bench/run.py                      # every benchmark, full size (~10 min on 2 CPU cores)
    python bench/run.py --quick              # smaller shapes, fewer repetitions (~2 min)
    python bench/run.py --only compile --only adaln --device cuda --dtype bf16
    python bench/run.py --list
    python bench/run.py --suite gpu --device cuda   # the GPU suite (bench/gpu_suite.py), < 8 min
    python bench/run.py --suite gpu --device cpu --quick   # its CPU rehearsal at tiny sizes
    python bench/run.py --suite node                # node overhead, callback latency, RSS soak

A benchmark is one file bench/bench_<name>.py (see bench/harness.py for its contract); adding
one needs no change here. Every benchmark reports ratios measured within the run (variants
interleaved), never absolute speed claims; its JSON records the machine, torch version, device,
dtype, preset, repetitions and medians.
"""
import argparse
import importlib.util
from pathlib import Path
import sys
import time
import traceback

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # the harness and the benchmark modules beside this file
if importlib.util.find_spec('cosmos_policy_ros') is None:
    sys.path.insert(0, str(HERE.parent))  # a plain checkout without an installed package

import harness  # noqa: E402  (after the path set-up above)
import torch  # noqa: E402, I100


def discover(directory=HERE):
    """name -> module of every bench_*.py in `directory`, in ORDER (then name) order."""
    modules = []
    for path in sorted(Path(directory).glob('bench_*.py')):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for attribute in ('NAME', 'TITLE', 'run'):
            if not hasattr(module, attribute):
                raise SystemExit(f'{path}: a benchmark module needs {attribute} (see harness.py).')
        modules.append(module)
    modules.sort(key=lambda module: (getattr(module, 'ORDER', 100), module.NAME))
    names = [module.NAME for module in modules]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise SystemExit(f'benchmark names must be unique; duplicated: {duplicates}')
    return {module.NAME: module for module in modules}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--suite', choices=('engine', 'gpu', 'node'), default='engine',
                        help='engine: the bench_*.py files (default); gpu: bench/gpu_suite.py; '
                             'node: bench/node_suite.py')
    parser.add_argument('--budget', type=float, default=None, metavar='SECONDS',
                        help='gpu/node suites: skip sections that would not finish in this '
                             'time (default 480 for gpu, 150 for node)')
    parser.add_argument('--skip', action='append', default=[], metavar='SECTION',
                        help='gpu/node suites: leave out this section (repeatable)')
    parser.add_argument('--soak', type=float, default=None, metavar='SECONDS',
                        help='node suite: length of the RSS soak (default 120)')
    parser.add_argument('--quick', action='store_true',
                        help='smaller shapes and fewer repetitions (a smoke run)')
    parser.add_argument('--only', action='append', default=[], metavar='NAME',
                        help='run only this benchmark (repeatable, or comma-separated)')
    parser.add_argument('--device', choices=('cpu', 'cuda'), default='cpu')
    parser.add_argument('--dtype', choices=sorted(harness.DTYPES), default=None,
                        help='network dtype (default: bf16 on cuda, fp32 on cpu)')
    parser.add_argument('--repetitions', type=int, default=None,
                        help='timed calls per variant (default 3 quick, 5 full)')
    parser.add_argument('--threads', type=int, default=1,
                        help='torch CPU threads (default 1: stable ratios on a shared machine; '
                             '0 keeps the torch default)')
    parser.add_argument('--out', type=Path, default=harness.RESULTS,
                        help=f'result directory (default {harness.RESULTS})')
    parser.add_argument('--list', action='store_true', help='list the benchmarks and exit')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    benchmarks = discover()
    if args.list:
        for name, module in benchmarks.items():
            print(f'{name:18s} {module.TITLE}')
        return 0
    selected = [name for entry in args.only for name in entry.split(',') if name]
    unknown = sorted(set(selected) - set(benchmarks))
    if unknown:
        print(f'unknown benchmark(s) {unknown}; available: {sorted(benchmarks)}', file=sys.stderr)
        return 2
    if args.device == 'cuda' and not torch.cuda.is_available():
        print('--device cuda: torch.cuda.is_available() is False', file=sys.stderr)
        return 2
    if args.repetitions is not None and args.repetitions < 1:
        print(f'--repetitions must be >= 1, got {args.repetitions}', file=sys.stderr)
        return 2
    if args.threads < 0:
        print(f'--threads must be >= 0, got {args.threads}', file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.suite == 'gpu':
        return _gpu_suite(args)
    if args.suite == 'node':
        import node_suite
        return node_suite.main(args)
    ctx = harness.BenchContext(
        device=torch.device(args.device),
        dtype_name=args.dtype or ('bf16' if args.device == 'cuda' else 'fp32'),
        quick=args.quick,
        repetitions=args.repetitions or (3 if args.quick else 5))
    failures = 0
    for name in selected or list(benchmarks):
        module = benchmarks[name]
        print(f'[bench] {name}: {module.TITLE}', flush=True)
        start = time.perf_counter()
        ctx.minimums = {}
        try:
            with torch.no_grad():
                result = module.run(ctx)
        except Exception as error:  # one failing benchmark must not hide the others
            failures += 1
            traceback.print_exc()
            result = {'status': 'error', 'reason': f'{type(error).__name__}: {error}'}
        result.setdefault('title', module.TITLE)
        result['wall_seconds'] = round(time.perf_counter() - start, 1)
        path = harness.write_result(name, ctx, result, args.out)
        status = result.get('status', 'ok')
        line = result.get('headline', '') if status == 'ok' else result.get('reason', '')
        print(f'[bench] {name} ({result["wall_seconds"]} s, {status}): {line}\n'
              f'        -> {path}', flush=True)
    summary = harness.write_summary(args.out, {name: m.TITLE for name, m in benchmarks.items()})
    print(f'[bench] summary -> {summary}')
    return 1 if failures else 0


def _gpu_suite(args):
    import gpu_suite
    ctx = harness.BenchContext(
        device=torch.device(args.device),
        dtype_name=args.dtype or ('bf16' if args.device == 'cuda' else 'fp32'),
        quick=args.quick,
        repetitions=args.repetitions or (2 if args.quick else 5))
    skip = [name for entry in args.skip for name in entry.split(',') if name]
    unknown = sorted(set(skip) - set(gpu_suite.SECTIONS))
    if unknown:
        print(f'unknown section(s) {unknown}; available: {list(gpu_suite.SECTIONS)}',
              file=sys.stderr)
        return 2
    return gpu_suite.main(ctx, args.out, budget=args.budget or 480.0, skip=skip)


if __name__ == '__main__':
    sys.exit(main())
