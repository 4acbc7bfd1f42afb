"""cosmos-policy-train: train a small Cosmos Policy on simulated demonstrations, on a CPU.

    # record 300 demonstration bags (expert + imperfect rollouts) and train on them:
    cosmos-policy-train --data /tmp/planar_demos --record 300 --out /tmp/planar_model \\
        --work-dir /tmp/planar_work --steps 2000 --time-budget 1800 --seed 0

The result is a model directory of exactly the formats the package loads for released
checkpoints (engine/model_dir.py; what cosmos-policy-convert writes): diffusers
CosmosTransformer3DModel weights (the 'tiny' preset through the package's CosmosDiT adapter),
Wan2.1 VAE weights ('tiny' preset), the T5-embedding file (fixed random vectors per
instruction, as no T5 model is available here), dataset statistics (min/max of the recorded
actions and joint positions) and model.json.

The VAE ('tiny' Wan2.1 preset) is first trained for --vae-steps as an autoencoder on the
demonstrations' camera images, encoded exactly as the policy encodes them (the conditioning
video: black prefix, 4 copies per camera), with a squared reconstruction error that weights the
non-background pixels --vae-foreground-weight times more (engine.training.
vae_reconstruction_loss), then frozen. Its latent mean rows are calibrated to unit scale on the
demonstration images (engine.training.calibrate_vae_latents; the decoder is adjusted to match).
With --vae-steps 0 it stays at random weights: docs/sim.md shows that such latents hardly carry
the small targets' positions, so the trained policy cannot find them.

Objective: engine.training (the reference's hybrid sigma distribution, video noise multiplier,
rectified-flow denoiser and weighting). Samples of successful episodes are policy samples
(conditioning: blank, proprio, cameras) three times in four and world-model samples (the action
frame conditioning too) otherwise. The actions of failed episodes and of policy rollouts
(--record-kinds policy: episodes of the --init-from model, run as policy_node runs it) are never
imitated: their samples are world-model samples, or with --unimitated-policy-share S a share S
of them are policy samples whose action frame is generated but not supervised, so the value the
node publishes (policy mode) learns their returns too. --recovery-every K adds, after each
policy rollout, the expert taking over at its states K, 2K, ... (recovery demonstrations,
imitated).

--planning trains the planning network of the --init-from model instead (the reference's
planning model, fine-tuned from the policy on rollouts): every sample of every episode, policy
rollouts and failures included, as a world-model sample (the executed actions given; future
images, future proprio and value supervised). The written directory is the --init-from model
(its policy DiT, VAE, statistics and embeddings unchanged) plus planning_dit.safetensors
(bf16) and SIM_PLANNING in model.json: one world-model pass scores every chunk, and the value
it generates, Q(s, a), is the value the node publishes (engine/planning.py).

Deterministic for a seed (batch, sigma and noise of step i come from a generator seeded with
(seed, i)), resumable from --work-dir (train_state.pt, written every --save-every steps and at
the end), and it stops at --steps or after --time-budget seconds, whichever comes first.
"""
import argparse
import dataclasses
from dataclasses import dataclass
import hashlib
import json
import math
from pathlib import Path
import shutil
import sys
import time

import numpy as np
import torch

from cosmos_policy_ros.datasets.reader import text_table as text_table_of
from cosmos_policy_ros.engine.checkpoint import convert_vae_state_dict, dit_state_dict, load_vae
from cosmos_policy_ros.engine.dit import CosmosDiT
from cosmos_policy_ros.engine.generate import condition_frames
from cosmos_policy_ros.engine.images import ImagePipelineConfig, preprocess_images
from cosmos_policy_ros.engine.injection import inject_actions, inject_proprio, inject_value
from cosmos_policy_ros.engine.model_dir import (FILES, model_files, ModelSpec, PLANNING_DIT_FILE,
                                                read_spec, write_spec)
from cosmos_policy_ros.engine.planning import PlanningConfig
from cosmos_policy_ros.engine.sampling import SamplerConfig
from cosmos_policy_ros.engine.synthetic_checkpoints import random_vae_state_dict, t5_embeddings
from cosmos_policy_ros.engine.text import TextEmbeddings
from cosmos_policy_ros.engine.training import (
    calibrate_vae_latents, diffusion_loss, position_probe_loss, sample_sigma,
    skip_zero_text_rows, text_rows_in_use, vae_reconstruction_loss, value_targets,
    video_noise_multiplier)
from cosmos_policy_ros.engine.vae import CosmosVAE
from cosmos_policy_ros.layout import LATENT_CHANNELS, LatentLayout, VAE_SPATIAL_FACTOR
from cosmos_policy_ros.normalization import dataset_statistics, NormStats
from cosmos_policy_ros.sim.arm import BACKGROUND_RGB, CAMERAS, COLORS, SimConfig, TASKS
from cosmos_policy_ros.sim.episodes import (dataset_episodes, POLICY_KIND, read_episode_bag,
                                            record_demonstrations)

STATE_FILE = 'train_state.pt'
VAE_STATE_FILE = 'vae_state.pt'
# The position probe's learning rate relative to --vae-lr.
PROBE_LR_FACTOR = 1.0
LATENT_FILE = 'latents.pt'
LAYOUT_NAME = 'planar_reach'
LAYOUT_CAMERAS = ('wrist', 'primary')
FAILURE_STRIDE = 4  # states kept of a failed episode (every 4th; divides the chunk size)
POLICY_SHARE = 0.75  # share of policy samples among the samples whose actions are imitated
# Sample modes: indices into clean_batch's condition flags.
POLICY, WORLD_MODEL = range(2)
# The planning network is stored in bf16, as released checkpoints are (the policy's DiT stays
# fp32): it keeps the shipped model directory well under 10 MB.
PLANNING_DTYPE = torch.bfloat16
# How the planning network of a --planning model scores the policy's chunks (model.json).
# One world-model pass of one step per tick, its value Q(s, a) published (docs/sim.md: it ranks
# the policy's states better than V(s') from value passes, which are not run).
SIM_PLANNING = PlanningConfig(world_model_steps=1, world_model_ensemble=1, value_steps=1,
                              value_ensemble=1, aggregation='average', value_from='world_model',
                              score_single_candidate=True)


def sim_layout(chunk_size=8, image_size=64):
    return LatentLayout(LAYOUT_NAME, LAYOUT_CAMERAS, chunk_size=chunk_size, action_dim=3,
                        proprio_dim=3, image_size=image_size)


def sim_images(image_size=64):
    """The image pipeline of the sim: its renders are used as they are."""
    return ImagePipelineConfig(image_size=image_size, crop_area=None)


# --- data --------------------------------------------------------------------------------------
def load_episodes(data_dir):
    bags = sorted(p for p in Path(data_dir).iterdir()
                  if p.is_dir() and (p / 'metadata.yaml').is_file())
    if not bags:
        raise ValueError(f'no episode bags in {data_dir} (record some with --record N).')
    return [read_episode_bag(path) for path in bags]


def record_fractions(tokens):
    """{kind: share} from --record-kinds tokens `KIND` (share 1) or `KIND=SHARE`; None: the
    default mix of demonstration_plan."""
    if not tokens:
        return None
    fractions = {}
    for token in tokens:
        kind, _, share = token.partition('=')
        try:
            fractions[kind] = float(share) if share else 1.0
        except ValueError:
            raise ValueError(f'--record-kinds {token}: SHARE must be a number.') from None
        if not fractions[kind] > 0:
            raise ValueError(f'--record-kinds {token}: SHARE must be > 0.')
    return fractions


def statistics(episodes):
    """Released-format statistics of the recorded actions and joint positions."""
    return dataset_statistics(np.concatenate([e.actions for e in episodes]),
                              np.concatenate([e.joints for e in episodes]))


class Samples:
    """Every training sample as indices into per-state arrays; latents built per batch."""

    def __init__(self, episodes, layout, norm, gamma):
        self.layout = layout
        states, samples = [], []  # states: (episode, index); samples: (state t, state f, ...)
        index_of = {}
        for e, episode in enumerate(episodes):
            last = episode.num_steps
            keep = range(last + 1) if episode.success else sorted(
                set(range(0, last + 1, FAILURE_STRIDE)) | {last})
            for i in keep:
                index_of[(e, i)] = len(states)
                states.append((e, i))
            values = value_targets(last + 1, episode.success, gamma)
            for t in keep:
                if t == last:
                    continue
                f = min(t + layout.chunk_size, last)
                if (e, f) not in index_of:
                    f = max(i for i in keep if i <= f)
                rows = [min(t + k, last - 1) for k in range(layout.chunk_size)]
                samples.append((index_of[(e, t)], index_of[(e, f)], e, rows, values[f],
                                episode.success, values[t]))
        self.states = states
        self.episodes = episodes
        self.current = torch.tensor([s[0] for s in samples])
        self.future = torch.tensor([s[1] for s in samples])
        self.success = torch.tensor([s[5] for s in samples])
        # Actions imitated: successful demonstrations; never failures or a policy's rollouts.
        self.imitate = self.success & torch.tensor(
            [episodes[s[2]].kind != POLICY_KIND for s in samples])
        self.value = torch.tensor([s[4] for s in samples], dtype=torch.float32)  # at state f
        # The return from the sample's own state t: the planning network's target, Q(s_t, a).
        self.value_now = torch.tensor([s[6] for s in samples], dtype=torch.float32)
        self.task = torch.tensor([TASKS.index(episodes[s[2]].task) for s in samples])
        self.actions = torch.from_numpy(np.stack([
            norm.normalize_actions(episodes[s[2]].actions[s[3]]) for s in samples])).float()
        self.proprio = torch.from_numpy(np.stack([
            norm.normalize_proprio(episodes[e].joints[i]) for e, i in states])).float()

    def __len__(self):
        return len(self.current)

    def state_targets(self):
        """(num_states, 2 * colours) disc positions (red x, y, blue x, y) of every kept state."""
        return torch.tensor([
            [v for color in COLORS for v in self.episodes[e].info['targets'][color]]
            for e, _ in self.states], dtype=torch.float32)

    def state_images(self, images_config):
        """(num_states, N, 3, S, S) uint8 camera images of every kept state (layout order)."""
        frames = []
        for e, i in self.states:
            images = {c: self.episodes[e].images[c][i] for c in CAMERAS}
            frames.append(preprocess_images(images, images_config,
                                            cameras=self.layout.cameras))
        return torch.from_numpy(np.stack(frames)).permute(0, 1, 4, 2, 3)  # NHWC -> NCHW


def encode_states(vae, pixels, batch=32, log=print):
    """Latents (num_states, 16, 2 + N, h, w) of every state, in batches."""
    out = []
    for start in range(0, len(pixels), batch):
        out.append(vae.encode_conditioning(pixels[start:start + batch]).float())
        log(f'[train] encoded {min(start + batch, len(pixels))}/{len(pixels)} states')
    return torch.cat(out)


def clean_batch(samples, latents, index, modes, q_target=False):
    """x0 (B, 16, T, h, w) and condition frames (B, T) of samples `index`. The value frame
    holds the value at the future state (the reference's target), or with `q_target` the
    return from the current state (the planning network's Q(s, a))."""
    layout = samples.layout
    n = layout.num_cameras
    current, future = samples.current[index], samples.future[index]
    batch = len(index)
    x0 = torch.zeros((batch, *layout.latent_shape))
    x0[:, :, :2 + n] = latents[current]
    x0[:, :, 4 + n:4 + 2 * n] = latents[future][:, :, 2:]
    x0 = inject_proprio(x0, layout, samples.proprio[current])
    x0 = inject_actions(x0, layout, samples.actions[index])
    x0 = inject_proprio(x0, layout, samples.proprio[future], future=True)
    x0 = inject_value(x0, layout, (samples.value_now if q_target else samples.value)[index])
    flags = torch.tensor([condition_frames(layout, m) for m in ('policy', 'world_model')])
    return x0, flags[modes]


# --- training ----------------------------------------------------------------------------------
def learning_rate(step, *, base, steps, warmup=100):
    warmup = max(1, min(warmup, steps // 10))
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def optimizer_step(optimizer, loss, parameters):
    """One step on `loss` with the gradient norm clipped to 1; returns the loss value."""
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(parameters, 1.0)
    optimizer.step()
    return float(loss.detach())


def smooth(smoothed, value):
    """The progress bar's exponential moving average of the loss."""
    return value if smoothed is None else 0.98 * smoothed + 0.02 * value


def batch_draws(seed, step, samples, batch_size, layout, unimitated_policy_share=0.0,
                planning=False):
    """(indices, modes, sigma, eps) of one step: a function of (seed, step) only.

    A sample whose actions are imitated (`Samples.imitate`) is a policy sample with
    probability POLICY_SHARE, any other with probability unimitated_policy_share; the rest are
    world-model samples. With `planning` (the planning network) every sample is a
    world-model sample.
    """
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    index = torch.randint(len(samples), (batch_size,), generator=generator)
    draw = torch.rand(batch_size, generator=generator)
    if planning:
        modes = torch.full((batch_size,), WORLD_MODEL)
    else:
        policy = torch.where(samples.imitate[index], draw < POLICY_SHARE,
                             draw < unimitated_policy_share)
        modes = torch.where(policy, POLICY, WORLD_MODEL)
    sigma = sample_sigma(batch_size, generator,
                         multiplier=video_noise_multiplier(layout.num_frames))
    eps = torch.randn((batch_size, *layout.latent_shape), generator=generator)
    return index, modes, sigma, eps


def build_vae(seed):
    """The 'tiny' Wan VAE at its seeded random initialization (frozen)."""
    vae = CosmosVAE('tiny')
    converted, _ = convert_vae_state_dict(random_vae_state_dict('tiny', seed=seed))
    vae.vae.load_state_dict(converted, strict=True)
    return vae.float().eval().requires_grad_(False)


def vae_batch(seed, step, num_states, batch_size):
    """State indices of VAE step `step`: a function of (seed, step) only."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step + 7_000_000_000)
    return torch.randint(num_states, (batch_size,), generator=generator)


def weights_digest(module):
    """sha256 of a module's parameters and buffers (names, shapes, float32 bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


class TrainingState:
    """The resumable state of one training phase in one file: modules, step, loss history.

    key: what the state belongs to (data and settings); loading another key's file is refused.
    modules: {name: object with state_dict/load_state_dict} (networks, optimizers).
    Saved atomically (a .partial file renamed over the old one).
    """

    def __init__(self, path, key, modules):
        self.path, self.key, self.modules = Path(path), key, modules

    def load(self):
        """(step, history) restored from the file, (0, []) without one."""
        if not self.path.is_file():
            return 0, []
        state = torch.load(self.path, weights_only=False)
        if state.get('key') != self.key:
            raise ValueError(f'{self.path} belongs to other data or settings; remove it or '
                             f'drop --resume.')
        for name, module in self.modules.items():
            module.load_state_dict(state[name])
        return state['step'], state['history']

    def save(self, step, history):
        partial = self.path.with_suffix('.partial')
        torch.save({'key': self.key, 'step': step, 'history': history,
                    **{name: module.state_dict() for name, module in self.modules.items()}},
                   partial)
        partial.replace(self.path)


def train_vae(vae, pixels, args, log=print, targets=None, layout_cameras=LAYOUT_CAMERAS):
    """Train `vae` in place as an autoencoder on `pixels` for args.vae_steps; then freeze it.

    pixels: (states, N, 3, S, S) uint8. Each step draws args.vae_batch_size states
    (vae_batch) and minimizes

        loss = vae_reconstruction_loss + args.vae_probe_weight * position_probe_loss

    with AdamW (cosine schedule of --vae-lr, gradient norm clipped to 1). The probe term (only
    with targets: (states, 4) disc positions, and a weight > 0) reads the normalized disc
    positions linearly from the primary camera's latent. Resumable: --work-dir/vae_state.pt
    every --save-every steps and at the end; with --resume a finished phase is loaded, not
    repeated. Returns the loss history.
    """
    work = Path(args.work_dir)
    key = hashlib.sha256(json.dumps(
        [args.seed, args.vae_steps, args.vae_lr, args.vae_batch_size, args.vae_foreground_weight,
         args.vae_probe_weight, list(pixels.shape),
         float(pixels[::97].float().mean())]).encode()).hexdigest()
    use_probe = targets is not None and args.vae_probe_weight > 0
    camera = layout_cameras.index('primary')
    torch.manual_seed(args.seed + 2)
    probe = torch.nn.Linear(LATENT_CHANNELS * (pixels.shape[-1] // VAE_SPATIAL_FACTOR) ** 2,
                            targets.shape[1] if targets is not None else 1)
    if use_probe:
        targets = (targets - targets.mean(0)) / targets.std(0).clamp_min(1e-6)
    parameters = list(vae.vae.parameters()) + (list(probe.parameters()) if use_probe else [])
    groups = [{'params': list(vae.vae.parameters()), 'scale': 1.0}]
    if use_probe:
        groups.append({'params': list(probe.parameters()), 'scale': PROBE_LR_FACTOR})
    optimizer = torch.optim.AdamW(groups, lr=args.vae_lr, weight_decay=0.0)
    state = TrainingState(work / VAE_STATE_FILE, key,
                          {'vae': vae.vae, 'probe': probe, 'optimizer': optimizer})
    step, history = state.load() if args.resume else (0, [])
    if step:
        log(f'[train] VAE resumed at step {step}')

    background = torch.tensor(BACKGROUND_RGB, dtype=torch.float32) / 127.5 - 1.0
    vae.vae.train().requires_grad_(True)
    from tqdm import tqdm
    smoothed = None
    with tqdm(total=args.vae_steps, initial=step, desc='cosmos-policy-train VAE', unit='step',
              file=sys.stderr, mininterval=2.0, disable=args.quiet) as bar:
        while step < args.vae_steps:
            for group in optimizer.param_groups:
                group['lr'] = group['scale'] * learning_rate(step, base=args.vae_lr,
                                                             steps=args.vae_steps)
            index = vae_batch(args.seed, step, len(pixels), args.vae_batch_size)
            loss, latents = vae_reconstruction_loss(
                vae, pixels[index], background=background,
                foreground_weight=args.vae_foreground_weight, return_latents=True)
            probe_loss = position_probe_loss(probe, latents[:, :, camera], targets[index]) \
                if use_probe else torch.zeros(())
            value = optimizer_step(optimizer, loss + args.vae_probe_weight * probe_loss,
                                   parameters)
            step += 1
            history.append(value)
            smoothed = smooth(smoothed, value)
            bar.update(1)
            bar.set_postfix(loss=f'{smoothed:.4f}', probe=f'{float(probe_loss.detach()):.3f}')
            if step % args.save_every == 0:
                state.save(step, history)
    state.save(step, history)
    vae.vae.eval().requires_grad_(False)
    vae.clear_prefix_cache()
    if history:
        last = smoothed if smoothed is not None else history[-1]
        log(f'[train] VAE trained {step} steps, loss {history[0]:.4f} -> {last:.4f}')
    return history


@dataclass
class Prepared:
    """Everything a training run works on, a deterministic function of the data and args."""

    episodes: list
    layout: LatentLayout
    images: ImagePipelineConfig
    stats: dict
    samples: Samples
    vae: CosmosVAE
    latents: torch.Tensor     # (states, 16, 2 + N, h, w), calibrated
    text_table: dict          # instruction -> (1, 512, 1024) bf16
    text: torch.Tensor        # (tasks, 512, 1024) float32, TASKS order
    digest: str
    vae_history: list         # VAE reconstruction losses (empty: random or --init-from VAE)
    init: 'InitModel' = None  # the model --init-from continues (None: a new one)


@dataclass
class InitModel:
    """A model directory a run continues from (--init-from): its weights and provenance."""

    path: Path
    vae: CosmosVAE
    dit: dict                 # the DiT's transformer state dict (float32)
    stats: dict               # its dataset_statistics.json (the normalization it learned)
    text_table: dict          # its instruction embeddings
    source: dict              # its model.json `source`


def load_init_model(model_dir, layout):
    """The model `model_dir` (written by this command) to continue training from.

    Its VAE replaces the VAE phase (it is already trained and calibrated), its DiT weights the
    seeded initialization, and its normalization statistics and instruction embeddings are
    kept, so the weights mean what they meant. The layout and presets must match.
    """
    spec = read_spec(model_dir)
    if spec.layout != layout:
        raise ValueError(f'--init-from {model_dir}: its layout {spec.layout} differs from this '
                         f'run: {layout} (check --image-size and --chunk-size).')
    files = model_files(model_dir, spec)
    dit = {k: v.float() for k, v in dit_state_dict(files['dit'], spec.dit_preset).items()}
    vae = load_vae(files['vae'], spec.vae_preset, dtype=torch.float32)
    stats = json.loads(files['statistics'].read_text())
    table = TextEmbeddings.load(files['text_embeddings'])
    text_table = {t: table.lookup(t).to(torch.bfloat16) for t in TASKS}
    return InitModel(Path(model_dir), vae, dit, stats, text_table, dict(spec.source))


def rollout_policy(init):
    """The --init-from model as the policy of `--record-kinds policy` (CPU, float32)."""
    if init is None:
        raise ValueError(f'--record-kinds {POLICY_KIND} rolls out the --init-from model; '
                         'pass --init-from DIR.')
    from cosmos_policy_ros.engine.policy import CosmosPolicy
    return CosmosPolicy.from_model_dir(init.path, device='cpu', dtype='fp32')


def prepare(args, log=print):
    """Record (with --record), read the bags, encode every kept state once (cached)."""
    dirs = [Path(d) for d in args.data or ()]
    layout = sim_layout(args.chunk_size, args.image_size)
    images = sim_images(args.image_size)
    init = load_init_model(args.init_from, layout) if args.init_from else None
    if args.record:
        target = dirs[-1]
        if target.exists() and any(target.iterdir()):
            raise ValueError(f'--record: {target} (the last --data directory) is not empty.')
        fractions = record_fractions(args.record_kinds)
        rollouts = bool(fractions) and POLICY_KIND in fractions
        if args.recovery_every and not rollouts:
            raise ValueError(f'--recovery-every needs --record-kinds {POLICY_KIND} (the '
                             'recoveries start from policy rollouts).')
        policy = rollout_policy(init) if rollouts else None
        record_demonstrations(target, args.record, seed=args.data_seed, fractions=fractions,
                              config=SimConfig(image_size=args.image_size), log=log,
                              policy=policy, model=init and init.source.get('dit_sha256'),
                              recovery_every=args.recovery_every)
    episodes = ([episode for d in args.dataset for episode in dataset_episodes(d)]
                if args.dataset else [episode for d in dirs for episode in load_episodes(d)])
    stats = init.stats if init else statistics(episodes)
    norm = NormStats.from_dict(stats, layout=layout)
    samples = Samples(episodes, layout, norm, args.gamma)
    log(f'[train] {len(episodes)} episodes ({sum(e.success for e in episodes)} successes), '
        f'{len(samples.states)} states, {len(samples)} samples')
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    vae = init.vae if init else build_vae(args.seed + 1)
    pixels = samples.state_images(images)
    vae_history = train_vae(vae, pixels, args, log, targets=samples.state_targets(),
                            layout_cameras=layout.cameras) if args.vae_steps else []
    digest = hashlib.sha256(json.dumps(
        [stats, len(samples), args.seed, args.image_size, args.chunk_size,
         weights_digest(vae.vae), init and init.source.get('dit_sha256')]).encode()).hexdigest()
    latent_path = work / LATENT_FILE
    cached = torch.load(latent_path, weights_only=True) if latent_path.is_file() else None
    if cached is not None and cached.get('digest') == digest:
        raw = cached['latents']
    else:
        raw = encode_states(vae, pixels, log=log)
        torch.save({'digest': digest, 'latents': raw}, latent_path)
    # An --init-from VAE is calibrated already; calibrating again would change its latent scale.
    latents = raw if init else calibrate_vae_latents(vae, raw)
    text_table = init.text_table if init else (
        text_table_of(args.dataset[0], TASKS) if args.dataset
        else t5_embeddings(TASKS, seed=args.seed))
    text = torch.cat([text_table[t].float() for t in TASKS])  # (tasks, 512, 1024)
    return Prepared(episodes, layout, images, stats, samples, vae, latents, text_table, text,
                    digest, vae_history, init)


def new_network(args, data):
    """The DiT at its seeded initialization (or --init-from's weights), with the exact
    zero-text-row speed-up."""
    torch.manual_seed(args.seed)
    net = CosmosDiT(args.dit_preset).float().train()
    if data.init is not None:
        net.transformer.load_state_dict(data.init.dit, strict=True)
    skip_zero_text_rows(net.transformer, text_rows_in_use(data.text))
    return net


def batch_loss(net, data, seed, step, batch_size, unimitated_policy_share=0.0, planning=False):
    """The loss of the batch drawn for (seed, step).

    Policy samples whose actions are not imitated (failures, policy rollouts; drawn with
    unimitated_policy_share > 0) generate the action frame but are not supervised on it: their
    values, future images and proprio are learned in the mode the node runs.
    """
    index, modes, sigma, eps = batch_draws(seed, step, data.samples, batch_size, data.layout,
                                           unimitated_policy_share, planning)
    x0, flags = clean_batch(data.samples, data.latents, index, modes, q_target=planning)
    loss_frames = ~flags
    loss_frames[(modes == POLICY) & ~data.samples.imitate[index],
                data.layout.action_index] = False
    return diffusion_loss(net, x0, flags, data.text[data.samples.task[index]], sigma, eps,
                          loss_frames=loss_frames)


def train(args, log=print, data=None):
    """Train (or resume) and write the model directory; returns (net, loss history)."""
    data = data if data is not None else prepare(args, log)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    net = new_network(args, data)
    optimizer = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.01)
    key = data.digest + ('/planning' if args.planning else '')
    state = TrainingState(work / STATE_FILE, key, {'net': net, 'optimizer': optimizer})
    step, history = state.load() if args.resume else (0, [])
    if step:
        log(f'[train] resumed at step {step}')

    from tqdm import tqdm
    started = time.monotonic()
    first_step = step
    smoothed = None
    with tqdm(total=args.steps, initial=step, desc='cosmos-policy-train', unit='step',
              file=sys.stderr, mininterval=2.0, disable=args.quiet) as bar:
        while step < args.steps:
            if args.time_budget and time.monotonic() - started > args.time_budget:
                log(f'[train] time budget of {args.time_budget} s reached at step {step}')
                break
            if args.pause_after and step - first_step >= args.pause_after:
                log(f'[train] paused at step {step} (continue with --resume)')
                break
            for group in optimizer.param_groups:
                group['lr'] = learning_rate(step, base=args.lr, steps=args.steps)
            loss = batch_loss(net, data, args.seed, step, args.batch_size,
                              args.unimitated_policy_share, args.planning)
            value = optimizer_step(optimizer, loss, net.parameters())
            step += 1
            history.append(value)
            smoothed = smooth(smoothed, value)
            bar.update(1)
            bar.set_postfix(loss=f'{smoothed:.4f}')
            if step % args.save_every == 0:
                state.save(step, history)
    state.save(step, history)
    if args.out is None:
        return net, history
    run = {'trainer': 'cosmos-policy-train', 'seed': args.seed, 'data_seed': args.data_seed,
           'steps': step, 'episodes': len(data.episodes), 'gamma': args.gamma,
           'final_loss': smoothed}
    if args.planning:
        write_planning_model(args.out, data.init.path, net, source=run, overwrite=args.force)
    else:
        write_model(args.out, net, data.vae, data.layout, data.images, data.stats,
                    data.text_table,
                    source={**run, 'vae_steps': len(data.vae_history),
                            'vae_final_loss': (float(np.mean(data.vae_history[-20:]))
                                               if data.vae_history else None),
                            **({'unimitated_policy_share': args.unimitated_policy_share}
                               if args.unimitated_policy_share else {}),
                            **({'init_from': data.init.source} if data.init else {})},
                    num_steps=args.num_steps, overwrite=args.force)
    log(f'[train] wrote {args.out}')
    return net, history


def write_model(out, net, vae, layout, images, stats, text_table, *, source, num_steps=5,
                overwrite=False):
    """Write a model directory (model_dir.py formats) and read it back strictly."""
    from safetensors.torch import save_file

    staging = _staging(out, overwrite)
    staging.mkdir(parents=True)
    save_dit(net, staging / FILES['dit'])
    save_file({k: v.detach().float().contiguous() for k, v in vae.vae.state_dict().items()},
              str(staging / FILES['vae']))
    (staging / FILES['statistics']).write_text(json.dumps(stats, indent=2) + '\n')
    TextEmbeddings.from_dict(dict(text_table)).save(staging / FILES['text_embeddings'])
    digest = hashlib.sha256((staging / FILES['dit']).read_bytes()).hexdigest()
    spec = ModelSpec(model_id=f'{layout.name}@{digest[:12]}', layout=layout,
                     dit_preset=net.config.name, vae_preset=vae.config.name, images=images,
                     sampler=SamplerConfig(num_steps=num_steps),
                     source={**source, 'dit_sha256': digest})
    write_spec(staging, spec)
    _publish(staging, out)
    return spec


def write_planning_model(out, init_dir, planning_net, *, source, planning=SIM_PLANNING,
                         overwrite=False):
    """Write `init_dir`'s model directory (its files unchanged) with `planning_net` as its
    planning network and `planning` as its settings; `source` joins model.json's source as
    `planning_net`. Read back strictly. Returns the ModelSpec."""
    staging = _staging(out, overwrite)
    shutil.copytree(init_dir, staging)
    save_dit(planning_net, staging / PLANNING_DIT_FILE, PLANNING_DTYPE)
    spec = read_spec(init_dir)
    digest = hashlib.sha256((staging / PLANNING_DIT_FILE).read_bytes()).hexdigest()
    spec = dataclasses.replace(spec, planning=planning, source={
        **spec.source, 'planning_net': {**source, 'planning_dit_sha256': digest}})
    write_spec(staging, spec)
    _publish(staging, out)
    return spec


def save_dit(net, path, dtype=torch.float32):
    """A CosmosDiT's transformer weights as `dtype` safetensors (the released key names)."""
    from safetensors.torch import save_file
    save_file({k: v.detach().to(dtype).contiguous() for k, v in
               net.transformer.state_dict().items()}, str(path))


def _staging(out, overwrite):
    """The empty-to-be staging path of model directory `out` (refused if `out` exists)."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise ValueError(f'{out} exists; pass --force to replace it.')
    staging = out.with_name(out.name + '.partial')
    shutil.rmtree(staging, ignore_errors=True)
    return staging


def _publish(staging, out):
    """Read the staged directory back strictly, then move it to `out` (replacing it)."""
    from cosmos_policy_ros.tools.convert import verify_model_dir
    verify_model_dir(staging)
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)


def build_parser():
    parser = argparse.ArgumentParser(
        prog='cosmos-policy-train',
        description='Train a small Cosmos Policy (released model-directory format) on '
                    'planar-reach sim demonstrations, on a CPU.')
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--data', type=Path, nargs='+',
                        help='directories of episode bags, all used (--record N writes into '
                             'the last one first)')
    source.add_argument('--dataset', type=Path, nargs='+',
                        help='directories exported by cosmos-policy-dataset (the upstream '
                             'files: demonstrations, rollouts, T5 embeddings of the first)')
    parser.add_argument('--record', type=int, default=0,
                        help='record N demonstration episodes into --data first')
    parser.add_argument('--record-kinds', nargs='+', metavar='KIND[=SHARE]',
                        help='the rollout kinds --record mixes (default: 70 %% expert, 10 %% '
                             'each of noisy, early_stop, wrong_target); e.g. near_miss, or '
                             'policy (rollouts of the --init-from model)')
    parser.add_argument('--recovery-every', type=int, default=0, metavar='K',
                        help='with --record-kinds policy: after each policy rollout also '
                             'record the expert taking over at its states K, 2K, ... '
                             '(recovery demonstrations, imitated; 0: none)')
    parser.add_argument('--data-seed', type=int, default=0,
                        help='first episode seed of --record (episodes use seeds S..S+N-1)')
    parser.add_argument('--out', type=Path, help='model directory to write')
    parser.add_argument('--work-dir', required=True, type=Path,
                        help='training state and latent cache (for --resume)')
    parser.add_argument('--resume', action='store_true', help='continue from --work-dir')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--steps', type=int, default=2000, help='optimizer steps')
    parser.add_argument('--time-budget', type=float, default=0.0,
                        help='stop after this many seconds (0: no limit)')
    parser.add_argument('--pause-after', type=int, default=0,
                        help='stop after this many steps of this run (0: no limit); the '
                             'learning-rate schedule still spans --steps')
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--vae-steps', type=int, default=0,
                        help='train the VAE as an autoencoder for this many steps first '
                             '(0: keep it at random weights)')
    parser.add_argument('--vae-lr', type=float, default=2e-3)
    parser.add_argument('--vae-batch-size', type=int, default=16)
    parser.add_argument('--vae-foreground-weight', type=float, default=20.0,
                        help='extra weight of non-background pixels in the VAE loss')
    parser.add_argument('--vae-probe-weight', type=float, default=1.0,
                        help='weight of the auxiliary loss reading the disc positions linearly '
                             'from the primary latent (0: a plain autoencoder)')
    parser.add_argument('--init-from', type=Path, default=None,
                        help='continue training the model directory written by an earlier run '
                             '(its VAE, DiT weights, statistics and embeddings; a new optimizer '
                             'and learning-rate schedule); excludes --vae-steps')
    parser.add_argument('--planning', action='store_true',
                        help='train the planning network (world model + value) of the '
                             '--init-from model on every episode, rollouts included; --out is '
                             'that model plus the network, which then gives the published value')
    parser.add_argument('--lr', type=float, default=1e-3)
    parser.add_argument('--unimitated-policy-share', type=float, default=0.0,
                        help='share of the samples whose actions are not imitated (failed '
                             'episodes, policy rollouts) drawn as policy samples, their action '
                             'frame unsupervised, so the value the node publishes learns them '
                             '(0: world-model samples only)')
    parser.add_argument('--gamma', type=float, default=0.95, help='value discount per step')
    parser.add_argument('--chunk-size', type=int, default=8)
    parser.add_argument('--image-size', type=int, default=64)
    parser.add_argument('--dit-preset', default='tiny')
    parser.add_argument('--num-steps', type=int, default=5,
                        help="the model's default denoising steps at inference")
    parser.add_argument('--save-every', type=int, default=100)
    parser.add_argument('--force', action='store_true', help='replace an existing --out')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    for name in ('steps', 'batch_size', 'save_every', 'num_steps', 'vae_batch_size'):
        if getattr(args, name) < 1:
            print(f'cosmos-policy-train: error: --{name.replace("_", "-")} must be >= 1',
                  file=sys.stderr)
            return 2
    if not 0.0 <= args.unimitated_policy_share <= 1.0:
        print('cosmos-policy-train: error: --unimitated-policy-share must be in [0, 1]',
              file=sys.stderr)
        return 2
    if args.recovery_every < 0:
        print('cosmos-policy-train: error: --recovery-every must be >= 0', file=sys.stderr)
        return 2
    if args.planning and not args.init_from:
        print('cosmos-policy-train: error: --planning trains the planning network of a policy; '
              'pass --init-from DIR', file=sys.stderr)
        return 2
    if args.planning and args.unimitated_policy_share:
        print('cosmos-policy-train: error: --planning draws no policy samples; drop '
              '--unimitated-policy-share', file=sys.stderr)
        return 2
    if args.dataset and args.record:
        print('cosmos-policy-train: error: --record writes bags into --data; it does not go '
              'with --dataset', file=sys.stderr)
        return 2
    if args.init_from and args.vae_steps:
        print("cosmos-policy-train: error: --init-from keeps its model's VAE; drop --vae-steps",
              file=sys.stderr)
        return 2
    try:
        train(args)
    except (ValueError, OSError) as error:
        print(f'cosmos-policy-train: error: {error}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
