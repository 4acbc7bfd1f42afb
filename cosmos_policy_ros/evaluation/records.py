"""When and on what a bench/results record was measured: one schema for every writer.

bench/harness.py (the benchmarks), `cosmos-policy-sim eval --bench-json` and
`cosmos-policy-sim stitching` write `measured_at` (UTC, ISO 8601) and `machine` (python,
cpu_count, torch: the installed version, read without importing torch, and the 1-minute load
average where the platform has one); bench/results/SUMMARY.md reads them.
"""
import datetime
import importlib.metadata
import os
import platform


def machine():
    """The machine fields every record carries."""
    info = {'python': platform.python_version(), 'cpu_count': os.cpu_count()}
    try:
        info['torch'] = importlib.metadata.version('torch')
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        info['load_average_1m'] = round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        pass
    return info


def measured_at(now=None):
    """`now` (default: the current UTC time) as the records write it."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return now.strftime('%Y-%m-%dT%H:%M:%SZ')


def provenance():
    """{'machine': ..., 'measured_at': ...} for a record written now."""
    return {'machine': machine(), 'measured_at': measured_at()}
