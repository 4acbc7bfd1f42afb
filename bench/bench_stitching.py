"""Chunk stitching offline: boundary jump and jerk per method and injected latency.

A replanning loop on a simulated step clock (no ROS, no closed-loop simulator): a new inference
starts every `EXECUTE` steps from an observation of the commanded state at that moment, is ready
`latency` later (0, 25 % and 50 % of the time a chunk executes: `EXECUTE` steps), and takes over
as the execution model says (cosmos_policy_ros.execution). The robot follows the commanded
actions exactly. Methods: none, blend (overlap `OVERLAP`), inpaint (the new chunk sampled with
the committed prefix known), inpaint+blend. Metrics per run: the jump at every switch divided by
the median within-chunk step (`execution.boundary_jumps`), and the RMS jerk.

Two policies, both through engine.sampling.sample:

* ``gp_oracle``: the exact x0 denoiser of a Gaussian prior over smooth chunks (RBF covariance
  over time, the mean a ramp from the observed state to a goal): every chunk is an honest draw
  of a smooth trajectory, so the numbers show what the stitching does with a policy whose chunks
  are smooth but disagree from draw to draw. It runs the sampler with sigma_min 0.01 (an exact
  Gaussian x0 at the released sigma_min 4 is nearly the prior mean).
* ``random_model``: CosmosPolicy with the tiny random-weight synthetic model (the real engine
  path: VAE, DiT, injection, inpainting of all tiled copies; released 5-step schedule). Its
  chunks are not smooth trajectories at all: the numbers show only the mechanics.

The trained model of the closed-loop issue is what the targets are about; rerun this there.

``python bench/bench_stitching.py --plot bench/results/stitching.png`` draws one gp_oracle
episode per method at 50 % latency (executed actions across several switches).
"""
import argparse
import math
from pathlib import Path
import tempfile
import time

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
import numpy as np
import torch

from cosmos_policy_ros.engine.policy import CosmosPolicy
from cosmos_policy_ros.engine.sampling import sample
from cosmos_policy_ros.engine.synthetic_checkpoints import write_synthetic_model
from cosmos_policy_ros.execution import (boundary_jumps, ChunkTiming, jerk, known_prefix,
                                         plan_takeover, stitch, STITCHING_METHODS)
from cosmos_policy_ros.interface import Observation
from cosmos_policy_ros.layout import LatentLayout

NAME = 'stitching'
TITLE = 'Chunk stitching: boundary jump and jerk per method and injected latency (offline)'
ORDER = 90

PERIOD_NS = 100_000_000  # 10 Hz steps
HORIZON = 16  # chunk size K
EXECUTE = 8  # steps executed per chunk: a new inference every EXECUTE steps
OVERLAP = 3  # blend steps
LATENCY_FRACTIONS = (0.0, 0.25, 0.5)  # of a chunk's execution time (EXECUTE steps)
LAYOUT = LatentLayout('libero', ('wrist', 'primary'), chunk_size=HORIZON, action_dim=7,
                      proprio_dim=9, image_size=32)


class GaussianOracle:
    """Chunks (K, d) ~ N(mu(s), Sigma) drawn with the EDM sampler and the exact x0 denoiser.

    mu_j = s + (g - s) * (j + 1) / K (from the observed state s towards the goal g), Sigma =
    amplitude^2 exp(-(i - j)^2 / (2 l^2)) per dimension. D(x, sigma) = mu + Sigma (Sigma +
    sigma^2 I)^-1 (x - mu) per dimension, batched over the flattened (K*d,) timestep-major
    state the sampler sees (like the action frame, one copy).
    """

    def __init__(self, goal, *, amplitude=0.15, length=4.0, num_steps=12, sigma_min=0.01):
        self.goal = np.asarray(goal, np.float64)
        steps = np.arange(HORIZON, dtype=np.float64)
        self.cov = amplitude ** 2 * np.exp(-(steps[:, None] - steps[None]) ** 2
                                           / (2 * length ** 2))
        self.options = dict(num_steps=num_steps, sigma_min=sigma_min, sigma_max=80.0)

    def infer(self, state, seed, known=None):
        dim = self.goal.size
        ramp = (np.arange(HORIZON) + 1)[:, None] / HORIZON
        mu = torch.from_numpy(state + (self.goal - state) * ramp)  # (K, d)
        cov = torch.from_numpy(self.cov)
        eye = torch.eye(HORIZON, dtype=torch.float64)

        def x0_fn(x, sigma):  # x: (1, K*d) timestep-major
            chunk = x.reshape(HORIZON, dim)
            gain = cov @ torch.linalg.inv(cov + float(sigma[0]) ** 2 * eye)
            return (mu + gain @ (chunk - mu)).reshape(1, -1)

        generator = torch.Generator().manual_seed(seed)
        x_init = torch.randn(1, HORIZON * dim, generator=generator, dtype=torch.float64) * 80.0
        constraint = None
        if known is not None and len(known):
            mask = torch.zeros(HORIZON, dim, dtype=torch.bool)
            mask[:len(known)] = True
            target = torch.zeros(HORIZON, dim, dtype=torch.float64)
            target[:len(known)] = torch.from_numpy(np.asarray(known, np.float64))
            constraint = (mask.reshape(1, -1), target.reshape(1, -1))
        out = sample(x0_fn, x_init, known=constraint, **self.options)
        return out.reshape(HORIZON, dim).numpy()


class RandomModel:
    """The tiny random-weight CosmosPolicy: state (7,) -> chunk (16, 7) in robot units."""

    def __init__(self, directory):
        write_synthetic_model(directory, LAYOUT, size='tiny', seed=4, dtype='fp32')
        self.policy = CosmosPolicy.from_released(
            checkpoint=directory / 'Cosmos-Policy-LIBERO-Predict2-2B.pt',
            tokenizer=directory / 'tokenizer' / 'tokenizer.pth',
            statistics=directory / 'libero_dataset_statistics.json',
            t5_embeddings=directory / 'libero_t5_embeddings.pkl',
            layout=LAYOUT, dit_preset='tiny', vae_preset='tiny', device='cpu', dtype='fp32')
        rng = np.random.default_rng(0)
        self.images = {camera: rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                       for camera in LAYOUT.cameras}
        self.goal = np.zeros(LAYOUT.action_dim)
        self.times = {False: [], True: []}  # inference seconds without / with a known prefix

    def infer(self, state, seed, known=None):
        proprio = np.concatenate([state, np.zeros(LAYOUT.proprio_dim - state.size)])
        observation = Observation(images=self.images, proprio=proprio, seed=seed,
                                  instruction=self.policy.text_embeddings.instructions[0])
        start = time.perf_counter()
        out = self.policy.infer(observation, known_actions=known)
        self.times[known is not None and len(known) > 0].append(time.perf_counter() - start)
        return out.actions.astype(np.float64)


def run_episode(policy, method, latency_ns, *, chunks, start_state, seed):
    """The executed (N, d) actions, their chunk ids and the switch rows of one episode."""
    state = np.asarray(start_state, np.float64)
    rows, ids = {}, {}
    executing = None  # (ChunkTiming, effective (K, d) actions: what it commands)
    for i in range(chunks):
        stamp = i * EXECUTE * PERIOD_NS
        step = stamp // PERIOD_NS
        if executing is not None:
            state = rows[step] if step in rows else state
        new = ChunkTiming(stamp, PERIOD_NS, HORIZON)
        takeover = plan_takeover(None if executing is None else executing[0], new, stamp,
                                 latency_ns)
        known = None
        if method.startswith('inpaint') and executing is not None:
            known = known_prefix(executing[1], executing[0], new, takeover)
        actions = policy.infer(state, seed + i, known)
        old = (None, None) if executing is None else (executing[1], executing[0])
        executed = stitch(method, old[0], old[1], actions, new, takeover, overlap=OVERLAP)
        effective = actions.copy()
        effective[takeover.start_index:] = executed
        for j in range(takeover.start_index, HORIZON):
            rows[step + j] = effective[j]
            ids[step + j] = i
        executing = (new, effective)
    last = (chunks - 1) * EXECUTE + EXECUTE + 1  # keep a little of the last chunk
    order = [n for n in sorted(rows) if n < last]
    executed = np.stack([rows[n] for n in order])
    chunk_ids = np.array([ids[n] for n in order])
    switches = np.flatnonzero(np.diff(chunk_ids) != 0) + 1
    return executed, chunk_ids, switches


def measure(policy, *, episodes, chunks, dim, rng):
    """{method: {latency fraction: metrics}} over `episodes` episodes of `chunks` chunks."""
    table = {}
    for method in STITCHING_METHODS:
        table[method] = {}
        for fraction in LATENCY_FRACTIONS:
            latency_ns = round(fraction * EXECUTE * PERIOD_NS)
            jumps, jerks = [], []
            for episode in range(episodes):
                start = np.random.default_rng(100 + episode).uniform(-0.5, 0.5, dim)
                executed, ids, switches = run_episode(
                    policy, method, latency_ns, chunks=chunks, start_state=start,
                    seed=1000 * episode)
                jump, _ = boundary_jumps(executed, switches, ids)
                jumps.extend(jump.tolist())
                jerks.append(float(np.sqrt(np.mean(jerk(executed, PERIOD_NS / 1e9) ** 2))))
            table[method][f'{fraction:.2f}'] = dict(
                median_jump_x_median_step=_round(np.median(jumps)),
                max_jump_x_median_step=_round(np.max(jumps)),
                rms_jerk=_round(np.mean(jerks)),
                switches=len(jumps))
    return table


def run(ctx):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    episodes, chunks = (2, 4) if ctx.quick else (6, 6)
    oracle = GaussianOracle(goal=np.array([0.8, -0.6]))
    result = {'preset': 'gp_oracle + tiny random model (CPU)',
              'setup': dict(step_period_s=PERIOD_NS / 1e9, horizon=HORIZON,
                            execute_steps=EXECUTE, blend_overlap=OVERLAP,
                            latency_fractions=list(LATENCY_FRACTIONS),
                            episodes=episodes, chunks_per_episode=chunks)}
    result['gp_oracle'] = measure(oracle, episodes=episodes, chunks=chunks, dim=2, rng=rng)
    with tempfile.TemporaryDirectory() as tmp:
        model = RandomModel(Path(tmp))
        model_episodes = 1 if ctx.quick else 2
        result['random_model'] = measure(model, episodes=model_episodes, chunks=chunks,
                                         dim=LAYOUT.action_dim, rng=rng)
        plain, known = (np.median(model.times[False]), np.median(model.times[True]))
    result['random_model_inference_ms'] = dict(plain=_round(plain * 1e3),
                                               inpaint=_round(known * 1e3))
    result['note'] = ('random_model: random weights, the numbers show the mechanics only; '
                      'gp_oracle: exact Gaussian denoiser of smooth chunks, sigma_min 0.01. '
                      'Latency 0.00 is lockstep: nothing is known, inpaint equals none.')
    half = {method: row['0.50']['median_jump_x_median_step']
            for method, row in result['gp_oracle'].items()}
    result['headline'] = ('gp_oracle jump / median step at 50 % latency: '
                          + ', '.join(f'{method} {value}' for method, value in half.items()))
    return result


def _round(value, digits=3):
    value = float(value)
    return value if not math.isfinite(value) else round(value, digits)


def plot(path, *, fraction=0.5, chunks=6):
    """One gp_oracle episode per method at `fraction` latency: dimension 0 of the executed
    actions against time, switches dotted."""
    figure = Figure(figsize=(9, 7), dpi=100, layout='constrained')
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(STITCHING_METHODS), 1, sharex=True)
    latency_ns = round(fraction * EXECUTE * PERIOD_NS)
    for ax, method in zip(axes, STITCHING_METHODS):
        oracle = GaussianOracle(goal=np.array([0.8, -0.6]))
        executed, ids, switches = run_episode(oracle, method, latency_ns, chunks=chunks,
                                              start_state=np.array([-0.3, 0.2]), seed=0)
        first = round(latency_ns / PERIOD_NS)  # the first chunk takes over after the latency
        seconds = (first + np.arange(len(executed))) * PERIOD_NS / 1e9
        ax.plot(seconds, executed[:, 0], '.-', color='tab:blue', label='executed')
        for switch in switches:
            ax.axvline(seconds[switch], color='tab:gray', linestyle=':', linewidth=1)
        jumps, _ = boundary_jumps(executed, switches, ids)
        ax.set_title(f'{method}: median jump {np.median(jumps):.2f} x median step', fontsize=9)
        ax.set_ylabel('action[0]')
    axes[-1].set_xlabel(f'time (s); latency {fraction:.0%} of a chunk, switches dotted')
    figure.savefig(path, format='png')
    return Path(path)


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description='Plot gp_oracle executed trajectories.')
    parser.add_argument('--plot', type=Path, required=True, help='PNG file to write')
    print(plot(parser.parse_args().plot))
