"""What every benchmark shares: the run context, interleaved timing, result files, the summary.

A benchmark is one module ``bench/bench_<name>.py`` with

    NAME = '<name>'            # result file bench/results/<name>.json
    TITLE = 'one line'         # the row title in SUMMARY.md
    def run(ctx): -> dict      # ctx is a BenchContext

``run`` returns a dict with at least ``headline`` (one line for SUMMARY.md: the ratio it
measured) and ``preset``; everything else (``medians_ms``, ``ratios``, ``metrics``, ``notes``) is
stored as is. Return ``{'status': 'skipped', 'reason': ...}`` when the benchmark cannot run.
The runner adds the machine, torch version, device, dtype, repetitions and timing policy.

Timing policy: ratios, not absolute speed. Variants that are compared run interleaved
(A B A B ...) in one process, so load from other processes hits them alike, and each variant
reports the median of its repetitions after warm-up calls (the fastest call is stored too, as
``minimums_ms``). On the CPU the runner uses one torch thread by default: on a shared machine
an operator split over several threads waits for the slowest one, which makes ratios noisy.
"""
from dataclasses import dataclass, field
import json
from pathlib import Path
import platform
import statistics
import time
from typing import Callable

import torch

from cosmos_policy_ros.evaluation import records

RESULTS = Path(__file__).resolve().parent / 'results'
DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16}


@dataclass
class BenchContext:
    """Settings of one benchmark run, passed to every ``run(ctx)``."""

    device: torch.device
    dtype_name: str          # 'fp32' or 'bf16'
    quick: bool              # smaller shapes and fewer repetitions (a smoke run in ~2 minutes)
    repetitions: int         # timed calls per variant
    warmup: int = 1          # untimed calls per variant first
    clock: Callable[[], float] = time.perf_counter
    minimums: dict = field(default_factory=dict)  # fastest call per variant (ms), also stored

    @property
    def dtype(self):
        return DTYPES[self.dtype_name]

    @property
    def cuda(self):
        return self.device.type == 'cuda'

    def synchronize(self):
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def compare(self, variants, repetitions=None, warmup=None):
        """Time each callable of `variants` (name -> fn), interleaved; median ms per name."""
        repetitions = self.repetitions if repetitions is None else repetitions
        warmup = self.warmup if warmup is None else warmup
        samples = {name: [] for name in variants}
        for _ in range(warmup):
            for fn in variants.values():
                fn()
        for _ in range(repetitions):
            for name, fn in variants.items():
                self.synchronize()
                start = self.clock()
                fn()
                self.synchronize()
                samples[name].append((self.clock() - start) * 1e3)
        self.minimums.update({name: min(values) for name, values in samples.items()})
        return {name: statistics.median(values) for name, values in samples.items()}

    def once(self, fn):
        """Wall time of one call in seconds (e.g. a compile), synchronized on CUDA."""
        self.synchronize()
        start = self.clock()
        result = fn()
        self.synchronize()
        return self.clock() - start, result


def machine_info(device):
    """What the numbers were measured on."""
    info = {
        'platform': platform.platform(),
        'machine': platform.machine(),
        'processor': platform.processor() or platform.machine(),
        **records.machine(),
        'torch': torch.__version__,
        'torch_threads': torch.get_num_threads(),
    }
    if device.type == 'cuda':
        info['gpu'] = torch.cuda.get_device_name(device)
        info['cuda'] = torch.version.cuda
    try:
        import diffusers
        info['diffusers'] = diffusers.__version__
    except ImportError:
        pass
    return info


def write_result(name, ctx, result, out_dir=RESULTS, *, now=None):
    """Write out_dir/<name>.json (the benchmark's dict plus the run settings); returns the path."""
    record = {
        'name': name,
        'status': result.get('status', 'ok'),
        'device': str(ctx.device),
        'dtype': ctx.dtype_name,
        'quick': ctx.quick,
        'repetitions': ctx.repetitions,
        'warmup': ctx.warmup,
        'timing': 'median of interleaved repetitions after warm-up, milliseconds',
        'minimums_ms': dict(ctx.minimums),
        'measured_at': records.measured_at(now),
        'machine': machine_info(ctx.device),
    }
    record.update(result)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f'{name}.json'
    path.write_text(json.dumps(record, indent=2, sort_keys=False, default=_json_value) + '\n')
    return path


def script_record(path, *, title, preset, headline, device='cpu', dtype='float32'):
    """The fields SUMMARY.md reads, for a record that a standalone script (not the runner)
    writes to `path` (its name is the file's stem)."""
    return {'name': Path(path).stem, 'status': 'ok', 'title': title, 'device': device,
            'dtype': dtype, 'preset': preset, 'headline': headline,
            'measured_at': records.measured_at(),
            'machine': machine_info(torch.device(device))}


def write_summary(out_dir=RESULTS, titles=None):
    """(Re)write out_dir/SUMMARY.md: one table row per result file present."""
    out_dir = Path(out_dir)
    titles = titles or {}
    rows = []
    for path in sorted(out_dir.glob('*.json')):
        record = json.loads(path.read_text())
        name = record.get('name', path.stem)
        if record.get('status', 'ok') == 'ok':
            headline = record.get('headline', '')
        else:
            headline = f'{record.get("status")}: {record.get("reason", "")}'
        setting = f"{record.get('device')}, {record.get('dtype')}"
        setting += f", {record.get('preset')}" if record.get('preset') else ''
        setting += ', quick' if record.get('quick') else ''
        title = titles.get(name, record.get('title', ''))
        rows.append(f'| [{name}]({path.name}) | {title} | {setting} | {headline} |')
    machines = sorted({_machine_line(json.loads(path.read_text()))
                       for path in out_dir.glob('*.json')})
    lines = [
        '# Benchmark results',
        '',
        'Written by `python bench/run.py`; each row links its JSON (machine, torch version, '
        'repetitions, all medians). Ratios are measured within one run, interleaved; absolute '
        'times depend on the machine and its load.',
        '',
        '| benchmark | what | setting | result |',
        '|---|---|---|---|',
        *rows,
        '',
        'Measured on: ' + '; '.join(machines) if machines else 'No results yet.',
        '',
    ]
    path = out_dir / 'SUMMARY.md'
    path.write_text('\n'.join(lines))
    return path


def _machine_line(record):
    """'<GPU or N CPU cores>, torch <version>, <date>', leaving out what a record lacks."""
    machine = record.get('machine', {})
    parts = [machine.get('gpu') or (f"{machine['cpu_count']} CPU cores"
                                    if machine.get('cpu_count') else None),
             f"torch {machine['torch']}" if machine.get('torch') else None,
             record.get('measured_at', '')[:10] or None]
    return ', '.join(part for part in parts if part)


def _json_value(value):
    if isinstance(value, (torch.dtype, torch.device, Path)):
        return str(value)
    if hasattr(value, 'tolist'):
        return value.tolist()
    raise TypeError(f'cannot store {type(value).__name__} in a result file')


def ratio(numerator, denominator, digits=2):
    """numerator / denominator rounded (for headlines and the `ratios` field)."""
    return round(numerator / denominator, digits)
