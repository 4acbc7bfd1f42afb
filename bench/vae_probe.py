"""Do a model's VAE latents carry the target positions? A linear (ridge) probe on held-out seeds.

    python bench/vae_probe.py [--model DIR] [--train-seeds 600] [--test-seeds 200]
        [--out bench/results/vae_probe.json]

For each seed the env is reset and the scripted expert moves the arm for (seed mod 8) steps, so
the arm poses vary. The primary camera's image is encoded as the policy encodes it
(CosmosVAE.encode_conditioning of both cameras; the primary camera's latent frame) and a ridge
regression maps the flattened latent (16 x h x w) to the four disc coordinates (red x, y, blue
x, y). Fitted on seeds 0.. (training seeds), the ridge strength chosen on the last fifth of
them, features standardized with the training seeds' per-feature mean and standard deviation,
evaluated on seeds 100000.. (never used in training). The same probe on the raw pixels
is the reference. Reports the RMSE over the four coordinates and their standard deviation:

    RMSE = sqrt(mean over test seeds and coordinates of (prediction - truth)^2)
"""
import argparse
import json
from pathlib import Path
import sys

import numpy as np

from cosmos_policy_ros.sim.arm import COLORS, expert_chunk, PlanarReachEnv, SimConfig

if str(Path(__file__).resolve().parent) not in sys.path:  # harness.py beside this file
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import script_record  # noqa: E402, I100, I202

ALPHAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0)


def observations(seeds, image_size):
    """Camera images {'primary', 'wrist'} (S, S, 3) and disc coordinates (4,) per seed."""
    env = PlanarReachEnv(SimConfig(image_size=image_size))
    frames, targets = [], []
    for seed in seeds:
        env.reset(seed)
        for command in expert_chunk(env, 8, env.config.step_period)[:seed % 8]:
            env.step(command, env.config.step_period)
        frames.append(env.render())
        targets.append(np.concatenate([env.targets[c] for c in COLORS]))
    return frames, np.array(targets)


def ridge_fit(x, y, alpha):
    """Weights (D + 1, K) of ridge regression with an unpenalized intercept."""
    mean_x, mean_y = x.mean(0), y.mean(0)
    xc = x - mean_x
    weights = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - mean_y))
    return np.vstack([mean_y - mean_x @ weights, weights])


def ridge_predict(fit, x):
    return fit[0] + x @ fit[1:]


def probe(train_x, train_y, test_x, test_y):
    """RMSE on the test set of the ridge whose alpha is best on the last fifth of train."""
    split = len(train_x) * 4 // 5
    mean, scale = train_x.mean(0), train_x.std(0) + 1e-3 * train_x.std() + 1e-8  # per feature
    train_x, test_x = (train_x - mean) / scale, (test_x - mean) / scale
    errors = [np.sqrt(np.mean((ridge_predict(ridge_fit(train_x[:split], train_y[:split], a),
                                             train_x[split:]) - train_y[split:]) ** 2))
              for a in ALPHAS]
    alpha = ALPHAS[int(np.argmin(errors))]
    fit = ridge_fit(train_x, train_y, alpha)
    return float(np.sqrt(np.mean((ridge_predict(fit, test_x) - test_y) ** 2))), alpha


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', type=Path, default=None)
    parser.add_argument('--train-seeds', type=int, default=600)
    parser.add_argument('--test-seeds', type=int, default=200)
    parser.add_argument('--out', type=Path, default=None)
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    from cosmos_policy_ros.engine.checkpoint import load_vae
    from cosmos_policy_ros.engine.model_dir import FILES, read_spec
    from cosmos_policy_ros.sim.model import shipped_model_dir
    model = args.model or shipped_model_dir()
    spec = read_spec(model)
    vae = load_vae(Path(model) / FILES['vae'], spec.vae_preset, dtype=torch.float32)
    cameras = spec.layout.cameras
    size = spec.layout.image_size
    primary = cameras.index('primary')

    def features(frames):
        pixels = torch.from_numpy(np.stack([np.stack([f[c] for c in cameras]) for f in frames]))
        pixels = pixels.permute(0, 1, 4, 2, 3).contiguous()  # (B, N, S, S, 3) -> (B, N, 3, S, S)
        latents = torch.cat([vae.encode_conditioning(pixels[i:i + 64]).float()
                             for i in range(0, len(pixels), 64)])
        raw = pixels[:, primary].reshape(len(pixels), -1).float().numpy()
        return latents[:, :, 2 + primary].reshape(len(pixels), -1).numpy(), raw

    train_frames, train_y = observations(range(args.train_seeds), size)
    test_frames, test_y = observations(range(100000, 100000 + args.test_seeds), size)
    train_latent, train_raw = features(train_frames)
    test_latent, test_raw = features(test_frames)
    latent_rmse, latent_alpha = probe(train_latent, train_y, test_latent, test_y)
    raw_rmse, raw_alpha = probe(train_raw, train_y, test_raw, test_y)
    from cosmos_policy_ros.sim.model import model_label
    report = {'model': model_label(model), 'image_size': size, 'train_seeds': args.train_seeds,
              'test_seeds': [100000, 100000 + args.test_seeds - 1],
              'target_std': float(np.sqrt(np.mean((test_y - train_y.mean(0)) ** 2))),
              'latent_rmse': latent_rmse, 'latent_alpha': latent_alpha,
              'raw_pixel_rmse': raw_rmse, 'raw_pixel_alpha': raw_alpha}
    print(json.dumps(report, indent=1))
    if args.out:
        headline = (f'held-out RMSE of the disc coordinates (spread {report["target_std"]:.2f}):'
                    f' VAE latent {latent_rmse:.3f}, raw pixels {raw_rmse:.3f}')
        fields = script_record(
            args.out, title="Do the VAE's latents carry the disc positions? (linear probe)",
            preset=f'planar_reach {size} px, ridge probe, {args.train_seeds} training / '
                   f'{args.test_seeds} held-out seeds', headline=headline)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**fields, **report}, indent=1) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
