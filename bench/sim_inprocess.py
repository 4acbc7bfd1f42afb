"""In-process closed-loop success rates on the planar reach sim (no ROS).

    python bench/sim_inprocess.py [--model DIR] [--episodes 50] [--first-seed 100000]
        [--num-steps 5] [--out bench/results/sim_inprocess.json]

The trained policy (CosmosPolicy.from_model_dir of the shipped model, CPU fp32) and the
baselines (scripted expert, random joint targets, hold still) run the same seeds, lockstep:
each chunk is executed in full (or until the episode ends) before the next is computed. Seeds
start at 100000; the shipped model was trained on seeds 0..299. Reports success rate, mean
time to success and the Spearman correlation of the predicted value with the true discounted
return (gamma^(T - 1 - t), 0 on failure; sim.metrics.discounted_returns) over all
evaluated ticks.
"""
import argparse
import json
import math
from pathlib import Path
import sys
import time

import numpy as np

from cosmos_policy_ros.sim.arm import PlanarReachEnv, SimConfig
from cosmos_policy_ros.sim.inprocess import (
    expert_source, hold_source, policy_source, random_source, run_episode)
from cosmos_policy_ros.sim.metrics import rank_correlation as spearman
from cosmos_policy_ros.sim.model import model_label, shipped_model_dir

if str(Path(__file__).resolve().parent) not in sys.path:  # harness.py beside this file
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import script_record  # noqa: E402, I100, I202


def summarize(results, gamma=None):
    successes = [r.success for r in results]
    times = [r.time_to_success for r in results if r.success]
    summary = {'episodes': len(results), 'success_rate': float(np.mean(successes)),
               'mean_time_to_success_s': float(np.mean(times)) if times else math.nan,
               'mean_final_distance': float(np.mean([r.final_distance for r in results]))}
    if gamma is not None:
        values = [v for r in results for v in r.values]
        returns = [g for r in results for g in r.returns(gamma)]
        summary['value_spearman'] = spearman(values, returns)
        summary['ticks'] = len(values)
    return summary


def _record_fields(report, args):
    """The fields bench/harness.py's SUMMARY.md reads (name, title, setting, headline)."""
    parts = [f'{name} {100 * r["success_rate"]:.0f}%' for name, r in report['results'].items()]
    rho = report['results']['policy'].get('value_spearman')
    if rho is not None:
        parts.append(f'value Spearman {rho:.2f}')
    return script_record(
        args.out, title='In-process closed loop on the simulated arm (whole chunks, no ROS)',
        preset=f'planar_reach, lockstep, {len(report["episodes"]["policy"])} episodes from '
               f'seed {report["seeds"][0]}, {report["num_steps"]} steps',
        headline='success: ' + ', '.join(parts))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', type=Path, default=None)
    parser.add_argument('--episodes', type=int, default=50)
    parser.add_argument('--first-seed', type=int, default=100000)
    parser.add_argument('--num-steps', type=int, default=None)
    parser.add_argument('--out', type=Path, default=Path('bench/results/sim_inprocess.json'))
    parser.add_argument('--skip-baselines', action='store_true')
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    from cosmos_policy_ros.engine.policy import CosmosPolicy
    model = args.model or shipped_model_dir()
    policy = CosmosPolicy.from_model_dir(model, device='cpu', dtype='fp32')
    spec = json.loads((Path(model) / 'model.json').read_text())
    gamma = float(spec['source'].get('gamma', 0.95))
    horizon = policy.layout.chunk_size
    env = PlanarReachEnv(SimConfig(image_size=policy.layout.image_size))
    seeds = range(args.first_seed, args.first_seed + args.episodes)
    sources = {'policy': policy_source(policy, num_steps=args.num_steps)}
    if not args.skip_baselines:
        sources.update({'expert': expert_source(horizon), 'random': random_source(horizon),
                        'hold_still': hold_source(horizon)})
    report = {'model': model_label(model), 'model_id': policy.model_id,
              'num_steps': args.num_steps or policy.sampler.num_steps,
              'seeds': [seeds.start, seeds.stop - 1], 'gamma': gamma, 'mode': 'lockstep',
              'results': {}, 'episodes': {}}
    for name, source in sources.items():
        started = time.perf_counter()
        results = []
        for seed in seeds:
            results.append(run_episode(env, source, seed))
            if name == 'policy':
                r = results[-1]
                print(f'[{name}] seed {seed}: {"success" if r.success else "failure"} '
                      f'in {r.steps} steps, values {np.round(r.values, 3).tolist()}',
                      flush=True)
        summary = summarize(results, gamma if name == 'policy' else None)
        summary['wall_s'] = time.perf_counter() - started
        report['results'][name] = summary
        report['episodes'][name] = [r.to_dict() for r in results]
        print(f'[{name}] {summary}', flush=True)
    report.update(_record_fields(report, args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, allow_nan=True) + '\n')
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
