"""One stitching measurement (``cosmos-policy-sim stitching``): the grid of every stitching
method x injected latency through policy_node (``sim/stitching_grid.py``; every figure with a
bootstrap interval, each method against ``none`` paired: ``sim/stitching_figures.py``),
optionally offline on recorded bags (``sim/stitching_offline.py``), written as JSON (and a
bench/results record) with a trajectory figure and a figure of the intervals."""
from dataclasses import dataclass
import json
from pathlib import Path
import time
from typing import Optional, Sequence

from cosmos_policy_ros.evaluation.metrics import json_safe
from cosmos_policy_ros.execution import STITCHING_METHODS
from cosmos_policy_ros.sim.harness import DEFAULT_FIRST_SEED, EpisodeRunner, node_config_path
from cosmos_policy_ros.sim.model import resolve_model
from cosmos_policy_ros.sim.stitching_grid import (DEFAULT_LATENCIES, DEFAULT_OVERLAP,
                                                  format_grid, grid_record, run_grid)
from cosmos_policy_ros.sim.stitching_offline import run_offline


@dataclass(frozen=True)
class StitchingRequest:
    """What `cosmos-policy-sim stitching` measures; fields as its options."""

    out: str = 'output/stitching_eval'
    episodes: int = 12
    first_seed: int = DEFAULT_FIRST_SEED
    methods: Sequence[str] = STITCHING_METHODS
    latencies: Sequence[float] = DEFAULT_LATENCIES
    overlap: int = DEFAULT_OVERLAP
    mode: str = 'lockstep'
    model: Optional[str] = None
    config: Optional[str] = None
    bench_json: Optional[str] = None
    plot: Optional[str] = None
    interval_plot: Optional[str] = None  # the figures with their intervals (png)
    offline_episodes: int = 0
    command: str = 'cosmos-policy-sim stitching'  # how the record says it was made


def run_stitching(request: StitchingRequest, *, runner: EpisodeRunner, printer=print):
    """Measure `request`, write <out>/stitching_grid.json (+ bench_json, plot); return the
    record."""
    out = Path(request.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    model, description = resolve_model(request.model, out)
    config = node_config_path(request.config)
    seeds = list(range(request.first_seed, request.first_seed + request.episodes))
    printer(f'model: {description}')
    started = time.monotonic()
    results, settings = run_grid(model, config, seeds, out, runner=runner,
                                 methods=request.methods, fractions=request.latencies,
                                 overlap=request.overlap, mode=request.mode, printer=printer)
    record = grid_record(results, settings, seeds=seeds, model=model,
                         description=description, command=request.command)
    if request.offline_episodes:
        offline_seeds = seeds[:request.offline_episodes]
        record['offline'] = {
            'seeds': offline_seeds, 'source': 'scripted-expert episodes recorded as bags',
            'cells': run_offline(model, config, offline_seeds, out, methods=request.methods,
                                 fractions=request.latencies, overlap=request.overlap,
                                 printer=printer)}
    if request.bench_json:
        record['name'] = Path(request.bench_json).stem  # as bench/results names its records
    record['wall_s'] = time.monotonic() - started
    text = json.dumps(json_safe(record), indent=2) + '\n'
    (out / 'stitching_grid.json').write_text(text)
    if request.bench_json:
        Path(request.bench_json).write_text(text)
    if request.plot:
        from cosmos_policy_ros.sim.plots import write_stitching_plot  # matplotlib: figure only
        write_stitching_plot(request.plot, results, fraction=max(request.latencies))
    if request.interval_plot:
        from cosmos_policy_ros.sim.plots import write_interval_plot  # matplotlib: figure only
        write_interval_plot(request.interval_plot, record['cells'])
    printer('')
    printer(format_grid(record))
    printer(record['headline'])
    printer(f'\nwrote {out / "stitching_grid.json"}'
            + (f', {request.bench_json}' if request.bench_json else '')
            + (f', {request.plot}' if request.plot else '')
            + (f', {request.interval_plot}' if request.interval_plot else ''))
    return record
