"""The value a planning network publishes next to the policy's own (joint-pass) value.

    python bench/sim_value_scorer.py [--policy DIR] --scorer NAME=DIR [NAME=DIR ...]
        [--first-seed 100000] [--episodes 50] [--out bench/results/sim_value_scorer.json]

In process, on the planar reach sim, the policy (default: the shipped model without its
planning network) runs as policy_node runs it (`sim.episodes.policy_rollout`: 4 commands per
chunk). Each scorer is a model directory with the same policy DiT and a planning network that
scores single candidates (`cosmos-policy-train --planning`): at every tick it infers on the
same observation, its chunk must equal the policy's bit for bit, and its published value (the
planning network's) is kept. Reports the Spearman correlation with the true discounted return
(`sim.metrics.discounted_returns`) of the joint value and of each scorer's.
"""
import argparse
import dataclasses
import json
from pathlib import Path
import sys

import numpy as np

if str(Path(__file__).resolve().parent) not in sys.path:  # harness.py beside this file
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import script_record  # noqa: E402, I100, I202


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--policy', type=Path, default=None)
    parser.add_argument('--scorer', nargs='+', required=True, metavar='NAME=DIR')
    parser.add_argument('--first-seed', type=int, default=100000)
    parser.add_argument('--episodes', type=int, default=50)
    parser.add_argument('--out', type=Path, default=Path('bench/results/sim_value_scorer.json'))
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    from cosmos_policy_ros.engine.policy import CosmosPolicy
    from cosmos_policy_ros.sim.arm import PlanarReachEnv, SimConfig
    from cosmos_policy_ros.sim.episodes import policy_rollout
    from cosmos_policy_ros.sim.metrics import discounted_returns, rank_correlation as spearman
    from cosmos_policy_ros.sim.model import model_label, shipped_model_dir

    def load(path):
        return CosmosPolicy.from_model_dir(path, device='cpu', dtype='fp32')

    policy_dir = args.policy or shipped_model_dir()
    policy = load(policy_dir)
    policy.planning = dataclasses.replace(policy.planning, score_single_candidate=False)
    scorers = {name: load(path) for name, _, path in (s.partition('=') for s in args.scorer)}
    for name, scorer in scorers.items():
        if not scorer.planning.score_single_candidate or scorer.planning_dit is None:
            parser.error(f'--scorer {name}: its model directory has no planning network that '
                         'scores single candidates (cosmos-policy-train --planning).')
    scored = {name: [] for name in scorers}

    class Scored:
        """The policy; every scorer infers on the same observations beside it."""

        def infer(self, observation, num_steps=None):
            own = policy.infer(observation, num_steps=num_steps)
            for name, scorer in scorers.items():
                out = scorer.infer(observation, num_steps=num_steps)
                if not np.array_equal(out.actions, own.actions):
                    raise SystemExit(f'--scorer {name}: its policy differs from --policy '
                                     '(another chunk for the same observation).')
                scored[name].append(out.value)
            return own

    env = PlanarReachEnv(SimConfig(image_size=policy.layout.image_size))
    values, returns, successes = [], [], []
    for seed in range(args.first_seed, args.first_seed + args.episodes):
        episode = policy_rollout(env, seed, Scored())
        returns += discounted_returns(episode.info['tick_steps'],
                                      episode.num_steps if episode.success else None,
                                      0.95).tolist()
        values += episode.info['values']
        successes.append(episode.success)
    report = {'policy_value_spearman': spearman(values, returns),
              'scorer_value_spearman': {k: spearman(v, returns) for k, v in scored.items()},
              'success_rate': float(np.mean(successes)), 'ticks': len(values)}
    headline = (f'success {100 * report["success_rate"]:.0f}%; value Spearman: joint pass '
                f'{report["policy_value_spearman"]:.2f}, ' + ', '.join(
                    f'{k} {v:.2f}' for k, v in report['scorer_value_spearman'].items()))
    fields = script_record(
        args.out, title="A planning network's value of the policy's chunks",
        preset=f'planar_reach, in-process, {args.episodes} episodes from seed '
               f'{args.first_seed}, 4 of 8 rows per chunk', headline=headline)
    record = {**fields, 'policy': model_label(policy_dir),
              'scorers': dict(s.partition('=')[::2] for s in args.scorer), **report}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + '\n')
    print(headline)
    return 0


if __name__ == '__main__':
    sys.exit(main())
