"""config/sim.yaml fits the sim and its model layout; the eval's baselines, report and plots."""
import csv
import json
import os
from pathlib import Path

import pytest

from cosmos_policy_ros.node_config import bind_layout, load_parameter_file
from cosmos_policy_ros.sim.arm import CAMERAS, JOINT_NAMES, SimConfig
from cosmos_policy_ros.sim.baselines import BASELINES, run_baseline
from cosmos_policy_ros.sim.model import sim_layout
from cosmos_policy_ros.sim.plots import write_plots
from cosmos_policy_ros.sim.report import bench_headline, format_table, write_report

ROOT = Path(os.environ.get('COSMOS_ROOT', Path(__file__).resolve().parents[2]))


def test_sim_yaml_fits_the_sim_node_and_the_lockstep_rules():
    config = load_parameter_file(ROOT / 'config' / 'sim.yaml', overrides={'model_path': '/m'})
    binding = bind_layout(config, sim_layout())
    assert binding.action_names == JOINT_NAMES and config.action_space == 'joint_position'
    assert {c.name: c.topic for c in config.cameras} == {
        name: f'cameras/{name}/image' for name in CAMERAS}
    assert config.proprio_sources[0].joints == JOINT_NAMES
    assert config.proprio_sources[0].topic == 'joint_states'
    # Lockstep: one control tick per sim step, and the sim's baselines replan like the node.
    assert config.step_period == SimConfig().step_period
    assert config.rate * config.step_period == pytest.approx(1.0)
    assert (binding.execute_steps - config.replan_threshold) == 4
    assert config.replan_mode == 'steps_left' and config.input_reliability == 'reliable'


def test_baselines_report_and_plots(tmp_path):
    seeds = [5, 6, 7]
    results = {name: run_baseline(name, seeds, record_frames=(name == 'expert'))
               for name in BASELINES}
    summary = write_report(results, tmp_path, gamma=0.9, meta={'test': True})
    controllers = summary['controllers']
    assert controllers['expert']['success_rate'] == 1.0
    assert controllers['hold']['success_rate'] == 0.0
    assert controllers['hold']['rms_jerk_mean'] == 0.0  # never moves
    assert controllers['hold']['per_episode'][0]['chunks'] == 0
    assert 0 < controllers['expert']['time_to_success_mean'] < SimConfig().episode_timeout
    data = json.loads((tmp_path / 'summary.json').read_text())
    assert data['controllers']['random']['episodes'] == 3
    rows = list(csv.DictReader(open(tmp_path / 'episodes.csv')))
    assert [(r['controller'], int(r['seed'])) for r in rows] == [
        (name, seed) for name in BASELINES for seed in seeds]
    ticks = list(csv.DictReader(open(tmp_path / 'ticks.csv')))
    expert = [t for t in ticks if t['controller'] == 'expert']
    assert expert and all(0 < float(t['true_return']) <= 1 for t in expert)
    written = write_plots(results, tmp_path, policy_name='expert')
    assert {p.name for p in written} == {'success.png', 'value.png', 'filmstrip.png'}
    assert all(p.stat().st_size > 1000 for p in written)
    table = format_table(summary)
    rows = {line.split()[0]: line.split()[1:] for line in table.splitlines()[2:]}
    assert rows['expert'][0] == '100%' and rows['hold'][:2] == ['0%', '-']  # no success
    assert table.splitlines()[0].split() == [
        'controller', 'success', 'time', 'to', 'success', 'RMS', 'jerk', 'boundary', 'jump',
        'value', 'vs', 'return', 'latency']
    assert bench_headline(summary).startswith('success: expert 100%, random ')


def test_the_figures_show_what_they_say(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt
    from PIL import Image

    from cosmos_policy_ros.sim.plots import write_filmstrip, write_value_plot

    traces = run_baseline('expert', [5, 6, 7], record_frames=True)
    # value.png: one panel per quantity; a subset is stated in the title.
    captured = {}
    close = plt.close

    def keep(fig):  # what the figure holds, read as it is closed
        captured['axes'] = [(ax.get_title(), ax.get_ylabel(), len(ax.get_lines()))
                            for ax in fig.axes]
        close(fig)

    monkeypatch.setattr(plt, 'close', keep)
    write_value_plot(tmp_path / 'value.png', traces, limit=2)
    (title, value_label, value_lines), (_, distance_label, distance_lines) = captured['axes']
    assert title.startswith('policy: the first 2 of 3 episodes')
    assert 'value' in value_label and distance_label == 'distance to goal'
    assert value_lines == distance_lines == 2
    # The filmstrip: no empty row without predicted frames, a third row with them.
    trace = traces[0]
    size = max(96, trace.frames[0].shape[0])
    write_filmstrip(tmp_path / 'two.png', trace, {})
    future = {chunk.stamp_ns: {'primary': trace.frames[0]} for chunk in trace.chunks}
    write_filmstrip(tmp_path / 'three.png', trace, future)
    two = Image.open(tmp_path / 'two.png').size[1]
    three = Image.open(tmp_path / 'three.png').size[1]
    assert three - two == size + 4 - 14  # one more row of tiles, a shorter caption
