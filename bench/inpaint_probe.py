"""Why training-free inpainting does not steer the shipped sim model: where the prefix is lost.

    python bench/inpaint_probe.py [--model DIR] [--episodes 10] [--replans 3]
        [--first-seed 200000] [--guidance 1 100 1000 10000]
        [--out bench/results/inpaint_probe.json]

Situations: the policy run in-process as the node runs it at 50 % injected latency (chunks of 8,
a new one every 4 steps from the reached state, each executed from its step 2 while the
previous chunk's steps 4 and 5 run; diffusion seed seed * 1000 + tick), 3 replans per
episode; at each replan the known prefix b is what the robot is commanded at the new chunk's
steps 0 and 1 (the previous chunk's steps 4 and 5), normalized. Seeds from 200000: the
stitching tuning range (docs/stitching.md), never the evaluation range.

Gain: sample the new chunk with b known and again with b + D (D = 0.3 on every known value,
normalized units) from the same noise; gain = (chunk(b + D) - chunk(b)) / D, averaged over
the known steps (0, 1) and over the executed steps (2 to 5), every joint. 1 on the executed
steps: the chunk continues a shifted prefix; 0: it ignores the prefix. Measured

* per network evaluation: the x0 prediction's gain at each sigma of the schedule (what the
  network makes of the known values noised to that sigma), and of the returned sample;
* for the released schedule (5 evaluations, sigma 80 -> 4, every tiled copy of the known
  steps replaced), the same with only the first copy replaced (what the tiling does), and a
  schedule ending at sigma 0.05 (11 evaluations: what seeing the prefix almost clean does);
* guidance instead of replacement (no value replaced): at every evaluation the x0 prediction
  moves by -lambda * grad_x 1/2 |b - known steps of x0(x)|^2 (the gradient through the
  network, one backward pass per evaluation), lambda in GUIDANCE_WEIGHTS (`--guidance`).

Cost on this machine (median of interleaved calls): CosmosPolicy.infer plain, with the known
prefix (inpaint), and the ramp stitch (execution.stitch, what the control loop adds per chunk).
"""
import argparse
import json
from pathlib import Path
import sys
import time

import numpy as np

if str(Path(__file__).resolve().parent) not in sys.path:  # harness.py beside this file
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import script_record  # noqa: E402, I100, I202

SHIFT = 0.3
KNOWN = 2  # known steps at 50 % latency (2 of the 4 executed)
EXECUTED = slice(2, 6)
GUIDANCE_WEIGHTS = (1.0, 100.0, 1000.0, 10000.0)
LOW_SIGMA = dict(num_steps=11, sigma_min=0.05)


def situations(policy, seeds, replans=3):
    """[(Observation, known prefix (2, d) robot units)] from in-process episodes (docstring)."""
    from cosmos_policy_ros.interface import Observation
    from cosmos_policy_ros.sim.arm import PlanarReachEnv

    found = []
    for seed in seeds:
        env = PlanarReachEnv()
        env.reset(seed)
        previous = None
        for tick in range(replans + 1):
            if env.done:
                break
            observation = Observation(images=env.render(), proprio=env.joint_positions(),
                                      instruction=env.task, seed=seed * 1000 + tick)
            if previous is not None:
                found.append((observation, previous[4:4 + KNOWN].copy()))
            chunk = policy.infer(observation).actions.astype(np.float64)
            head = previous[4:6] if previous is not None else chunk[:2]
            for command in [*head, chunk[2], chunk[3]]:
                env.step(command, env.config.step_period)
                if env.done:
                    break
            previous = chunk
    return found


class Pass:
    """One policy pass of a situation with the sampler opened up: every x0 prediction kept."""

    def __init__(self, policy, observation):
        import torch

        from cosmos_policy_ros.engine import generate as gen
        from cosmos_policy_ros.engine.denoiser import ConditionedDenoiser
        from cosmos_policy_ros.engine.images import preprocess_images

        self.policy, self.layout, self.seed = policy, policy.layout, observation.seed
        frames = preprocess_images(observation.images, policy.images,
                                   cameras=self.layout.cameras)
        pixels = torch.from_numpy(frames).permute(0, 3, 1, 2)  # (N, S, S, 3) -> (N, 3, S, S)
        encoded = policy.vae.encode_conditioning(pixels[None])
        clean = torch.zeros((1, *self.layout.latent_shape))
        clean[:, :, :encoded.shape[2]] = encoded.float()
        self.flags = gen.condition_frames(self.layout, 'policy')
        self.latent = gen.condition_latent(clean, self.layout,
                                           proprio=policy._normalized_proprio(observation))
        self.denoiser = ConditionedDenoiser(policy.dit, self.latent, self.flags,
                                            policy._text_embedding(observation))

    def run(self, sampler, known=None, *, first_copy_only=False, guidance=0.0):
        """(chunk (K, d) normalized, [x0 chunk per evaluation]) of one sampler run."""
        import torch

        from cosmos_policy_ros.engine import generate as gen
        from cosmos_policy_ros.engine.injection import extract_actions
        from cosmos_policy_ros.engine.sampling import run_sampler

        layout = self.layout
        x_init, _, _ = gen.starting_noise((1, *layout.latent_shape), sampler, seeds=self.seed)
        constraint = None
        if known is not None and not guidance:
            mask, target, _ = gen.known_action_mask(self.latent, layout, known[None], self.flags)
            if first_copy_only:
                frame = mask[:, :, layout.action_index].reshape(1, -1).clone()
                frame[:, layout.chunk_size * layout.action_dim:] = False
                mask = mask.clone()
                mask[:, :, layout.action_index] = frame.reshape(mask[:, :, layout.action_index]
                                                                .shape)
            constraint = (mask, target)
        target = None if known is None else torch.as_tensor(known, dtype=torch.float32)
        history = []

        def x0_fn(x, sigma):
            if guidance and target is not None:
                with torch.enable_grad():
                    x = x.detach().requires_grad_(True)
                    x0 = self.denoiser(x, sigma)
                    error = target - extract_actions(x0, layout)[0, :len(target)]
                    grad, = torch.autograd.grad(0.5 * (error ** 2).sum(), x)
                x0 = (x0 - guidance * grad).detach()
            else:
                x0 = self.denoiser(x, sigma)
            history.append(extract_actions(x0, layout)[0].double().numpy())
            return x0

        out = run_sampler(x0_fn, x_init, sampler, known=constraint)
        return extract_actions(out, layout)[0].double().numpy(), history


def gains(chunk, shifted):
    """(known steps' gain, executed steps' gain) of two chunks from b and b + SHIFT."""
    change = (np.asarray(shifted) - np.asarray(chunk)) / SHIFT
    return float(change[:KNOWN].mean()), float(change[EXECUTED].mean())


def measure(passes, known, sampler, **options):
    """Mean gains over the situations: the returned sample's and each evaluation's x0."""
    final, per_eval = [], []
    for run, b in zip(passes, known):
        chunk, history = run.run(sampler, b, **options)
        shifted, shifted_history = run.run(sampler, b + SHIFT, **options)
        final.append(gains(chunk, shifted))
        per_eval.append([gains(a, s) for a, s in zip(history, shifted_history)])
    final, per_eval = np.mean(final, axis=0), np.mean(per_eval, axis=0)
    # One evaluation per schedule point (2ab, no churn): the solver's, then the final clean one.
    sigmas = sampler.schedule().tolist()
    return {'known_gain': float(final[0]), 'executed_gain': float(final[1]),
            'per_evaluation': [{'sigma': sigma, 'known_gain': float(k), 'executed_gain': float(e)}
                               for sigma, (k, e) in zip(sigmas, per_eval)]}


def costs(policy, observation, prefix, repetitions):
    """Median ms of infer plain / with known actions, and of the ramp stitch (interleaved)."""
    from cosmos_policy_ros.execution import ChunkTiming, plan_takeover, stitch

    old = np.asarray(policy.infer(observation).actions, np.float64)
    period = 100_000_000
    executing, new = ChunkTiming(0, period, len(old)), ChunkTiming(4 * period, period, len(old))
    takeover = plan_takeover(executing, new, 4 * period, 2 * period)
    times = {'infer_plain_ms': [], 'infer_inpaint_ms': [], 'ramp_stitch_ms': []}
    for _ in range(repetitions):
        start = time.perf_counter()
        fresh = policy.infer(observation).actions
        times['infer_plain_ms'].append(time.perf_counter() - start)
        start = time.perf_counter()
        policy.infer(observation, known_actions=prefix)
        times['infer_inpaint_ms'].append(time.perf_counter() - start)
        start = time.perf_counter()
        stitch('ramp', old, executing, fresh, new, takeover, overlap=2)
        times['ramp_stitch_ms'].append(time.perf_counter() - start)
    return {name: 1000 * float(np.median(values)) for name, values in times.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model', type=Path, default=None)
    parser.add_argument('--episodes', type=int, default=10)
    parser.add_argument('--replans', type=int, default=3, help='situations per episode')
    parser.add_argument('--guidance', type=float, nargs='+', default=list(GUIDANCE_WEIGHTS),
                        help='guidance weights lambda to try')
    parser.add_argument('--first-seed', type=int, default=200000)
    parser.add_argument('--repetitions', type=int, default=20, help='timed calls per variant')
    parser.add_argument('--out', type=Path, default=None)
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    from cosmos_policy_ros.engine.policy import CosmosPolicy
    from cosmos_policy_ros.engine.sampling import SamplerConfig
    from cosmos_policy_ros.sim.model import model_label, shipped_model_dir

    model = args.model or shipped_model_dir()
    policy = CosmosPolicy.from_model_dir(model, device='cpu', dtype='float32')
    seeds = list(range(args.first_seed, args.first_seed + args.episodes))
    found = situations(policy, seeds, args.replans)
    # A second copy for the opened-up passes: infer() runs in inference mode, and tensors it
    # cached (rotary embeddings, the instruction's embedding) cannot take part in guidance's
    # backward pass.
    opened = CosmosPolicy.from_model_dir(model, device='cpu', dtype='float32')
    passes = [Pass(opened, observation) for observation, _ in found]
    known = [policy.stats.normalize_actions(prefix) for _, prefix in found]
    released = policy.sampler
    low = SamplerConfig(**{**released.options(), **LOW_SIGMA})
    report = {
        'model': model_label(model), 'seeds': [seeds[0], seeds[-1]], 'situations': len(found),
        'shift': SHIFT, 'known_steps': KNOWN, 'executed_steps': [EXECUTED.start,
                                                                 EXECUTED.stop - 1],
        'released': measure(passes, known, released),
        'released_first_copy_only': measure(passes, known, released, first_copy_only=True),
        'low_sigma': {**LOW_SIGMA, **measure(passes, known, low)},
        'guidance': {str(weight): measure(passes, known, released, guidance=weight)
                     for weight in args.guidance},
        'cost': costs(policy, *found[0], args.repetitions),
    }
    print(json.dumps(report, indent=1))
    if args.out:
        rel, cost = report['released'], report['cost']
        last = rel['per_evaluation'][-1]
        headline = (f'executed steps follow a shifted known prefix with gain '
                    f'{rel["executed_gain"]:.3f} (1 = continue it); the last x0 prediction '
                    f'(sigma {last["sigma"]:g}) follows the known steps themselves with '
                    f'{last["known_gain"]:.3f}; sigma_min 0.05: executed '
                    f'{report["low_sigma"]["executed_gain"]:.2f}; infer '
                    f'{cost["infer_plain_ms"]:.0f} ms, ramp stitch '
                    f'{1000 * cost["ramp_stitch_ms"]:.0f} us')
        fields = script_record(
            args.out, title='Why inpainting is inert on the shipped sim model: the gain of '
                            'the chunk on its known prefix per sampler evaluation',
            preset=f'planar_reach, in-process, {len(found)} replans at 50 % latency, seeds '
                   f'{seeds[0]}-{seeds[-1]}, 5 steps sigma 80 -> 4',
            headline=headline)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**fields, **report}, indent=1) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
