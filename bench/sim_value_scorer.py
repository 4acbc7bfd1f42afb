"""The value of a second network scoring a policy's chunks (a lead for a separate value model).

    python bench/sim_value_scorer.py --scorer NAME=DIR [NAME=DIR ...] [--policy DIR]
        [--first-seed 100000] [--episodes 50] [--out bench/results/sim_value_scorer.json]

In process, on the planar reach sim, the policy (default: the shipped model) runs as
policy_node runs it (`sim.episodes.policy_rollout`: 4 commands per chunk). At every tick each
scorer network runs one world-model pass (engine.generate mode 'world_model', 5 steps) on the
policy pass's latent: the policy's chunk is conditioning, the scorer generates the future state
and the value Q(s, a). Reports the Spearman correlation with the true discounted return
(`sim.inprocess.discounted_returns`) of the policy pass's own value and of each scorer's.
The preprocessing mirrors CosmosPolicy.infer (the scorers must share the policy's VAE, as
`cosmos-policy-train --init-from` models do).
"""
import argparse
import json
from pathlib import Path
import sys
from types import SimpleNamespace

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
    from cosmos_policy_ros.engine.generate import generate
    from cosmos_policy_ros.engine.images import preprocess_images
    from cosmos_policy_ros.engine.policy import CosmosPolicy
    from cosmos_policy_ros.sim.arm import PlanarReachEnv, SimConfig
    from cosmos_policy_ros.sim.episodes import policy_rollout
    from cosmos_policy_ros.sim.inprocess import discounted_returns, spearman
    from cosmos_policy_ros.sim.model import model_label, shipped_model_dir

    def load(path):
        return CosmosPolicy.from_model_dir(path, device='cpu', dtype='fp32')

    policy_dir = args.policy or shipped_model_dir()
    policy = load(policy_dir)
    scorers = {name: load(path) for name, _, path in (s.partition('=') for s in args.scorer)}
    scored = {name: [] for name in scorers}

    class Scored:
        def infer(self, observation, num_steps=None):
            with torch.inference_mode():
                proprio = policy._normalized_proprio(observation)
                frames = preprocess_images(observation.images, policy.images,
                                           cameras=policy.layout.cameras)
                pixels = torch.from_numpy(frames).permute(0, 3, 1, 2)  # NHWC -> NCHW
                text = policy._text_embedding(observation)
                encoded = policy.vae.encode_conditioning(pixels[None])
                clean = torch.zeros((1, *policy.layout.latent_shape))
                clean[:, :, :encoded.shape[2]] = encoded.float()
                own = generate(policy.dit, clean, text, policy.layout, proprio=proprio,
                               mode='policy', seeds=observation.seed, sampler=policy.sampler,
                               stats=policy.stats)
                for name, scorer in scorers.items():
                    future = generate(scorer.dit, own.latent, text, policy.layout,
                                      proprio=proprio, mode='world_model',
                                      seeds=observation.seed + 1, sampler=policy.sampler,
                                      stats=policy.stats)
                    scored[name].append(float(future.value[0]))
            return SimpleNamespace(actions=own.actions[0], value=float(own.value[0]))

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
    headline = (f'success {100 * report["success_rate"]:.0f}%; value Spearman: policy pass '
                f'{report["policy_value_spearman"]:.2f}, ' + ', '.join(
                    f'{k} {v:.2f}' for k, v in report['scorer_value_spearman'].items()))
    fields = script_record(
        args.out, title="A second network's world-model value of the policy's chunks",
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
