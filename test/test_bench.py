"""bench/: the runner runs a benchmark in quick mode and writes its result file and summary."""
import importlib.util
import json
import os
from pathlib import Path
import re
import shutil
import subprocess
import sys

import pytest

ROOT = Path(os.environ.get('COSMOS_ROOT', Path(__file__).resolve().parents[1]))
BENCH = ROOT / 'bench'


def _load(name):
    """A bench/ module by file (bench/ is a directory of scripts, not a package)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(f'bench_test_{name}', BENCH / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_summary_matches_the_committed_results(tmp_path):
    """bench/results/SUMMARY.md is what write_summary makes of the JSON records beside it
    (records written by other tools, e.g. cosmos-policy-sim --bench-json, included), and each
    record says when and on what it was measured in the schema the summary reads."""
    harness = _load('harness')
    for record in (BENCH / 'results').glob('*.json'):
        shutil.copy(record, tmp_path / record.name)
        line = harness._machine_line(json.loads(record.read_text()))
        assert 'None' not in line and re.search(r'\d{4}-\d\d-\d\d$', line), (record.name, line)
    fresh = harness.write_summary(tmp_path).read_text()
    assert (BENCH / 'results' / 'SUMMARY.md').read_text() == fresh, (
        'bench/results/SUMMARY.md is stale: python -c "import sys; sys.path.insert(0, '
        "'bench'); import harness; harness.write_summary()\"")


def test_runner_writes_results_and_summary(tmp_path):
    out = tmp_path / 'results'
    result = subprocess.run(
        [sys.executable, str(BENCH / 'run.py'), '--quick', '--repetitions', '1',
         '--only', 'images,policy_infer', '--out', str(out)],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    images = json.loads((out / 'images.json').read_text())
    assert images['status'] == 'ok' and images['quick'] is True
    assert images['device'] == 'cpu' and images['dtype'] == 'fp32'
    assert images['machine']['torch'] and images['repetitions'] == 1
    assert set(images['medians_ms']) >= {'libero', 'robocasa', 'aloha'}
    assert all(value > 0 for value in images['medians_ms'].values())
    policy = json.loads((out / 'policy_infer.json').read_text())
    assert policy['status'] == 'ok' and policy['selected_equals_single_run'] is True
    assert set(policy['stage_shares']) == {'preprocess', 'encode', 'denoise', 'extract'}
    assert 0 < policy['ratios']['network_share_of_total'] < 1
    summary = (out / 'SUMMARY.md').read_text()
    assert '| [images](images.json) |' in summary and '| [policy_infer]' in summary
    assert sorted(path.name for path in out.iterdir()) == [
        'SUMMARY.md', 'images.json', 'policy_infer.json']


def test_runner_rejects_an_unknown_benchmark(tmp_path, capsys):
    assert _load('run').main(['--only', 'nope', '--out', str(tmp_path)]) == 2
    assert "unknown benchmark(s) ['nope']" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_a_benchmark_is_one_file(tmp_path):
    run = _load('run')
    (tmp_path / 'bench_fake.py').write_text(
        "NAME = 'fake'\nTITLE = 'a fake'\nORDER = 1\n\n\n"
        "def run(ctx):\n    return {'headline': 'x', 'preset': 'p'}\n")
    (tmp_path / 'bench_broken.py').write_text("NAME = 'broken'\n")
    with pytest.raises(SystemExit, match='needs TITLE'):
        run.discover(tmp_path)
    (tmp_path / 'bench_broken.py').unlink()
    assert list(run.discover(tmp_path)) == ['fake']
    assert {'compile', 'vae_prefix', 'adaln', 'engine_overhead', 'images', 'best_of_n',
            'memory', 'policy_infer'} <= set(run.discover())


def test_interleaved_medians_and_summary_rows(tmp_path):
    harness = _load('harness')
    ticks = iter(range(100))
    ctx = harness.BenchContext(device=harness.torch.device('cpu'), dtype_name='fp32',
                               quick=True, repetitions=3, warmup=0,
                               clock=lambda: float(next(ticks)))
    calls = []
    medians = ctx.compare({'a': lambda: calls.append('a'), 'b': lambda: calls.append('b')})
    assert calls == ['a', 'b'] * 3  # interleaved
    assert medians == {'a': 1000.0, 'b': 1000.0}  # each call spans one tick of the fake clock
    harness.write_result('demo', ctx, {'headline': '2.0x', 'preset': 'tiny'}, tmp_path)
    harness.write_result('gone', ctx, {'status': 'error', 'reason': 'boom'}, tmp_path)
    summary = harness.write_summary(tmp_path).read_text()
    assert '| [demo](demo.json) |  | cpu, fp32, tiny, quick | 2.0x |' in summary
    assert '| error: boom |' in summary


def test_memory_estimate_matches_the_parameter_counts():
    estimate = _load('memory_estimate')
    cost = _load('model_cost')
    # The constants in the estimate are the exact counts of the released network sizes.
    assert cost.parameter_counts() == {'dit_2b': estimate.DIT_2B_PARAMS,
                                       'vae': estimate.VAE_PARAMS,
                                       'vae_encoder': estimate.VAE_ENCODER_PARAMS}
    parts = estimate.estimate('libero', 1)
    assert parts['tokens'] == 1764
    assert abs(parts['dit_weights'] - 1_956_413_440 * 2 / 1e9) < 1e-9
    # Activations: 17 (B, N, D) bf16 tensors; batch 8 has 8 times batch 1's.
    assert abs(parts['dit_activations'] - 17 * 1764 * 2048 * 2 / 1e9) < 1e-9
    assert abs(estimate.estimate('libero', 8)['dit_activations']
               - 8 * parts['dit_activations']) < 1e-9
    planning = estimate.estimate('libero', 1, planning=True)
    assert abs(planning['total'] - parts['total'] - parts['dit_weights']) < 1e-9


def test_gpu_suite_rehearsal_on_cpu(tmp_path):
    """`--suite gpu --device cpu --quick`: every section runs at tiny sizes and is written."""
    out = tmp_path / 'gpu'
    result = subprocess.run(
        [sys.executable, str(BENCH / 'run.py'), '--suite', 'gpu', '--device', 'cpu', '--quick',
         '--repetitions', '1', '--skip', 'pytest_gpu', '--out', str(out)],
        capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads((out / 'gpu-cpu-quick.json').read_text())
    sections = record['sections']
    assert list(sections) == ['environment', 'dit_forward', 'infer', 'best_of_n', 'fleet',
                              'attention', 'compile', 'pytest_gpu']
    assert sections['pytest_gpu'] == {'status': 'skipped', 'reason': '--skip'}
    assert all(section['status'] == 'ok' for name, section in sections.items()
               if name != 'pytest_gpu'), sections
    assert set(sections['dit_forward']['layouts']) == {'libero', 'robocasa', 'aloha'}
    # LIBERO 9 latent frames of 8 x 8 at 64 px, 2 x 2 patches: 9 * 16 tokens.
    assert sections['dit_forward']['layouts']['libero']['tokens'] == 144
    assert set(sections['infer']['rows']) == {'libero_1', 'libero_5', 'libero_10',
                                              'robocasa_5', 'aloha_10'}
    libero = sections['infer']['rows']['libero_5']
    assert set(libero['stages_ms']['eager']) >= {'preprocess', 'encode', 'denoise', 'total'}
    best = sections['best_of_n']['rows']['eager']
    assert best['selected_max_abs_action_difference'] < 1e-4  # the chosen chunk = its own run
    assert set(best['medians_ms']) == {'one', 'batched', 'sequential'}
    fleet = sections['fleet']['rows']
    assert set(fleet) == {'libero', 'aloha'}
    for row in fleet.values():  # batch 1/2/4/8, each robot's chunk = its own infer
        assert set(row['medians_ms']) == {'batch_1', 'batch_2', 'batch_4', 'batch_8'}
        assert row['throughput_over_batch1']['1'] == 1.0
        assert row['max_relative_difference_to_single'] < 1e-5
    backends = sections['attention']['backends']
    assert backends['native']['relative_difference_to_native'] == 0
    assert backends['_native_math']['relative_difference_to_native'] < 1e-5
    assert sections['compile']['backend'] == 'aot_eager'  # no C++ compile in the CPU rehearsal
    assert sections['compile']['max_abs_action_difference_compiled_vs_eager'] < 1e-4
    # The targets are for the released sizes on a GPU: rows filled, verdict n/a.
    assert {entry['met'] for entry in record['targets_met'].values()} == {None}
    table = (out / 'gpu-cpu-quick.md').read_text()
    assert '| libero, 5 steps |' in table and '| 0.61 |' in table
    assert 'n/a (CPU rehearsal)' in table
    assert '[gpu] gpu-cpu-quick:' in result.stdout


def test_gpu_suite_budget_skips_and_partial_files(tmp_path):
    gpu_suite = _load('gpu_suite')
    harness = sys.modules['harness']
    ctx = harness.BenchContext(device=harness.torch.device('cpu'), dtype_name='fp32',
                               quick=True, repetitions=1)
    suite = gpu_suite.Suite(ctx, tmp_path, budget=0.0)
    record = suite.run()
    assert {section['status'] for section in record['sections'].values()} == {'skipped'}
    assert record['sections']['compile']['reason'].startswith('budget: ')
    assert json.loads(suite.json_path.read_text())['name'] == 'gpu-cpu-quick'
    assert suite.markdown_path.read_text().startswith('### GPU suite: ')
    assert gpu_suite.device_slug(harness.torch.device('cpu')) == 'cpu'


def test_gpu_targets_verdicts_and_table():
    gpu_suite = _load('gpu_suite')
    infer_rows = {'libero_5': {'layout': 'libero', 'steps': 5,
                               'medians_ms': {'eager': 400.0, 'cuda_graphs': 140.0}}}
    record = {
        'device': 'cuda:0', 'quick': False, 'dtype': 'bf16', 'repetitions': 5, 'preset': 'p',
        'machine': {'gpu': 'NVIDIA H200', 'torch': '2.11'},
        'sections': {
            'infer': {'status': 'ok', 'rows': infer_rows},
            'compile': {'status': 'ok', 'infer_medians_ms': {'compiled_cuda_graphs': 120.0}},
            'dit_forward': {'status': 'ok', 'memory_one_policy': {
                'process_peak_gb': 5.5, 'peak_allocated_gb': 4.4}},
            'best_of_n': {'status': 'ok', 'rows': {
                'eager': {'medians_ms': {'batched': 900.0}, 'batched_over_one': 2.5},
                'cuda_graphs': {'medians_ms': {'batched': 700.0}, 'batched_over_one': 3.5}}},
            'fleet': {'status': 'ok', 'rows': {'libero': {
                'steps': 5, 'medians_ms': {'batch_1': 400.0, 'batch_8': 700.0},
                'chunks_per_s': {'1': 2.5, '8': 11.4},
                'throughput_over_batch1': {'1': 1.0, '8': 4.57}}}},
            'attention': {'status': 'error', 'reason': 'boom'}}}
    met = gpu_suite.targets_met(record)
    # Throughput is a lower bound: 4.57x at batch 8 misses the 5x target.
    assert met['fleet_batch8_throughput_over_batch1'] == {
        'value': 4.57, 'variant': 'LIBERO, eager, batch 8 vs 1', 'target': 5.0, 'met': False}
    assert met['libero_5_steps_seconds'] == {'value': 0.12, 'variant': 'compiled_cuda_graphs',
                                             'target': 0.15, 'met': True}
    assert met['peak_memory_gb']['met'] is False  # 5.5 GB > 5 GB
    assert met['best_of_8_over_one']['variant'] == 'cuda_graphs'  # the faster batched pass
    assert met['best_of_8_over_one']['met'] is False  # 3.5x > 3x
    table = gpu_suite.markdown(record)
    assert '| libero, 5 steps | 0.400 | 0.140 | - | 0.120 | 0.61 |' in table
    assert '| LIBERO 5-step chunk end to end (compiled_cuda_graphs) | 0.12 s | <= 0.15 s | yes |' \
        in table
    assert '- attention: error (boom)' in table
    assert '| libero, 5 steps | 0.400 (2.5) | - | - | 0.700 (11.4) |' in table
    assert '| policy server: chunks/s at batch 8 / batch 1 (LIBERO, eager, batch 8 vs 1) | ' \
        '4.57 x | >= 5.0 x | NO |' in table


def test_node_suite_statistics():
    node_suite = _load('node_suite')
    assert node_suite.percentiles([]) == {'count': 0}
    stats = node_suite.percentiles(range(1, 101))  # 1..100: numpy's linear interpolation
    assert stats['count'] == 100 and stats['p50'] == 50.5 and stats['max'] == 100
    assert abs(stats['p99'] - 99.01) < 1e-9
    # RSS: flat for the warm-up fifth, then +1 MB per minute from 100 MB over 10 minutes.
    times = [10.0 * i for i in range(61)]
    flat = [(t, 100e6) for t in times]
    growth = node_suite.rss_growth(flat)
    assert growth['growth_percent'] == 0 and abs(growth['slope_mb_per_minute']) < 1e-9
    rising = [(t, 100e6 + t / 60 * 1e6) for t in times]
    growth = node_suite.rss_growth(rising)
    assert abs(growth['slope_mb_per_minute'] - 1.0) < 1e-6
    # The kept span is 120..600 s; fifths of 49 samples (9 each): medians at 160 s and 560 s.
    assert abs(growth['start_mb'] - (100 + 160 / 60)) < 1e-6
    assert abs(growth['end_mb'] - (100 + 560 / 60)) < 1e-6
    assert node_suite.rss_growth(flat[:5]) is None


def test_node_suite_probe_split_and_verdicts():
    node_suite = _load('node_suite')
    ms = 1_000_000
    samples = [{'received': 100 * ms, 'inference_ms': 50.0}]  # inference from 50 to 100 ms
    probes = [(60 * ms, 0.004), (99 * ms, 0.006), (120 * ms, 0.001), (70 * ms, None)]
    split = node_suite.split_probes(probes, samples)
    assert split['during_inference_ms']['count'] == 2 and split['idle_ms']['count'] == 1
    assert split['during_inference_ms']['max'] == 6.0 and split['timed_out'] == 1
    result = node_suite.finish({'sections': {
        'overhead_fake': {'node_overhead_ms': {'count': 3, 'p50': 1.5, 'p99': 7.0}},
        'overhead_tiny': {'node_overhead_ms': {'count': 0},
                          'callback': {'during_inference_ms': {'count': 2, 'p99': 9.0},
                                       'subscription': {'during_inference_ms': {
                                           'count': 2, 'p99': 4.0}}}},
        'soak': {'rss': {'growth_percent': 1.5}}}})
    met = result['targets_met']
    assert met['overhead_fake.overhead_p50_ms'] == {'value': 1.5, 'target': 2.0, 'met': True}
    assert met['overhead_fake.overhead_p99_ms']['met'] is False
    assert 'overhead_tiny.overhead_p50_ms' not in met  # no chunk: no verdict
    # The verdict is the subscription wait's (4 ms), not the service round trip's (9 ms).
    assert met['callback_p99_during_inference_ms'] == {'value': 4.0, 'target': 5.0, 'met': True}
    assert met['rss_growth_percent']['met'] is False
    assert 'rss_growth_percent 1.5 (MISSED)' in result['headline']


@pytest.mark.ros
@pytest.mark.slow
def test_node_suite_runs_against_the_installed_node(tmp_path):
    """The fake-policy overhead section end to end: node subprocess, topics, result file."""
    result = subprocess.run(
        [sys.executable, str(BENCH / 'run.py'), '--suite', 'node', '--quick',
         '--skip', 'overhead_fake_small,overhead_tiny,soak', '--out', str(tmp_path)],
        capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    record = json.loads((tmp_path / 'node.json').read_text())
    fake = record['sections']['overhead_fake']
    assert fake['chunks'] > 0
    overhead = fake['node_overhead_ms']
    # The fake policy's time is in the message; latency covers it and the publish.
    assert fake['latency_ms']['p50'] >= fake['inference_ms']['p50']
    assert overhead['count'] == fake['chunks'] and overhead['p50'] <= overhead['p99']
    assert set(record['targets_met']) == {'overhead_fake.overhead_p50_ms',
                                          'overhead_fake.overhead_p99_ms',
                                          'fleet_fake.overhead_p50_ms',
                                          'fleet_fake.overhead_p99_ms'}
    assert '| [node](node.json) |' in (tmp_path / 'SUMMARY.md').read_text()


@pytest.mark.slow
def test_sim_value_scorer_writes_its_record(tmp_path):
    """bench/sim_value_scorer.py on two episodes: a record SUMMARY.md can read (the shipped
    model's planning network scoring its policy's chunks); a scorer without a planning network
    is refused."""
    from cosmos_policy_ros.sim.model import shipped_model_dir
    out = tmp_path / 'scorer.json'
    assert _load('sim_value_scorer').main([
        '--scorer', f'self={shipped_model_dir()}', '--episodes', '2', '--out', str(out)]) == 0
    record = json.loads(out.read_text())
    assert record['name'] == 'scorer' and record['status'] == 'ok' and record['ticks'] >= 2
    assert set(record['scorer_value_spearman']) == {'self'}
    assert record['headline'].startswith('success ')
    plain = tmp_path / 'plain'
    shutil.copytree(shipped_model_dir(), plain)
    (plain / 'planning_dit.safetensors').unlink()
    spec = json.loads((plain / 'model.json').read_text())
    (plain / 'model.json').write_text(json.dumps({**spec, 'planning': None}))
    with pytest.raises(SystemExit):
        _load('sim_value_scorer').main(['--scorer', f'plain={plain}', '--episodes', '1',
                                        '--out', str(out)])


@pytest.mark.slow
def test_inpaint_probe_writes_its_record(tmp_path):
    """bench/inpaint_probe.py on one episode of the shipped model: a record SUMMARY.md can
    read, the tiling's arithmetic (the returned sample holds the known steps; with one of the
    10 full copies replaced they read back at about 1/10), and what docs/stitching.md says of
    this model (its executed steps ignore the known prefix)."""
    out = tmp_path / 'probe.json'
    assert _load('inpaint_probe').main(['--episodes', '1', '--replans', '1', '--guidance', '100',
                                        '--repetitions', '1', '--out', str(out)]) == 0
    record = json.loads(out.read_text())
    assert record['name'] == 'probe' and record['status'] == 'ok' and record['situations'] >= 1
    assert record['headline'].startswith('executed steps follow a shifted known prefix')
    released = record['released']
    assert released['known_gain'] == pytest.approx(1.0, abs=1e-4)
    assert [e['sigma'] for e in released['per_evaluation']] == pytest.approx(
        [80.0, 42.29, 20.97, 9.618, 4.0], rel=1e-3)
    assert record['released_first_copy_only']['known_gain'] == pytest.approx(0.1, abs=0.02)
    assert abs(released['executed_gain']) < 0.05
    assert len(record['low_sigma']['per_evaluation']) == 11
    assert set(record['guidance']) == {'100.0'}
    assert set(record['cost']) == {'infer_plain_ms', 'infer_inpaint_ms', 'ramp_stitch_ms'}
