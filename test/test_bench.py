"""bench/: the runner runs a benchmark in quick mode and writes its result file and summary."""
import importlib.util
import json
import os
from pathlib import Path
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
