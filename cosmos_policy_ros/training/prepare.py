"""What a run works on, prepared once: episodes recorded (--record) and read, the samples, the
VAE (trained, or --init-from's), every kept state encoded once (cached in --work-dir by a digest
of data and settings) and calibrated, the instruction embeddings (``prepare`` -> ``Prepared``);
and the model an --init-from run continues (``InitModel``)."""
from dataclasses import dataclass
import hashlib
import json
from pathlib import Path

import torch

from cosmos_policy_ros.datasets.text import text_table as text_table_of
from cosmos_policy_ros.engine.checkpoint import dit_state_dict, load_vae
from cosmos_policy_ros.engine.images import ImagePipelineConfig
from cosmos_policy_ros.engine.model_dir import model_files, read_spec
from cosmos_policy_ros.engine.policy import CosmosPolicy
from cosmos_policy_ros.engine.synthetic_checkpoints import t5_embeddings
from cosmos_policy_ros.engine.text import TextEmbeddings
from cosmos_policy_ros.engine.training import calibrate_vae_latents
from cosmos_policy_ros.engine.vae import CosmosVAE
from cosmos_policy_ros.layout import LatentLayout
from cosmos_policy_ros.normalization import NormStats
from cosmos_policy_ros.sim.arm import SimConfig, TASKS
from cosmos_policy_ros.sim.episodes import POLICY_KIND, record_demonstrations
from cosmos_policy_ros.sim.model import sim_layout
from cosmos_policy_ros.training.data import (dataset_episodes, encode_states, load_episodes,
                                             record_fractions, Samples, statistics)
from cosmos_policy_ros.training.optimization import weights_digest
from cosmos_policy_ros.training.vae_phase import build_vae, train_vae

LATENT_FILE = 'latents.pt'


def sim_images(image_size=64):
    """The image pipeline of the sim: its renders are used as they are."""
    return ImagePipelineConfig(image_size=image_size, crop_area=None)


@dataclass
class Prepared:
    """Everything a training run works on, a deterministic function of the data and options."""

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
    return CosmosPolicy.from_model_dir(init.path, device='cpu', dtype='fp32')


def prepare(options, log=print):
    """Record (with --record), read the bags, encode every kept state once (cached)."""
    dirs = [Path(d) for d in options.data or ()]
    layout = sim_layout(options.chunk_size, options.image_size)
    images = sim_images(options.image_size)
    init = load_init_model(options.init_from, layout) if options.init_from else None
    if options.record:
        target = dirs[-1]
        if target.exists() and any(target.iterdir()):
            raise ValueError(f'--record: {target} (the last --data directory) is not empty.')
        fractions = record_fractions(options.record_kinds)
        rollouts = bool(fractions) and POLICY_KIND in fractions
        if options.recovery_every and not rollouts:
            raise ValueError(f'--recovery-every needs --record-kinds {POLICY_KIND} (the '
                             'recoveries start from policy rollouts).')
        policy = rollout_policy(init) if rollouts else None
        record_demonstrations(target, options.record, seed=options.data_seed, fractions=fractions,
                              config=SimConfig(image_size=options.image_size), log=log,
                              policy=policy, model=init and init.source.get('dit_sha256'),
                              recovery_every=options.recovery_every)
    episodes = ([episode for d in options.dataset for episode in dataset_episodes(d)]
                if options.dataset else [episode for d in dirs for episode in load_episodes(d)])
    stats = init.stats if init else statistics(episodes)
    norm = NormStats.from_dict(stats, layout=layout)
    samples = Samples(episodes, layout, norm, options.gamma)
    log(f'[train] {len(episodes)} episodes ({sum(e.success for e in episodes)} successes), '
        f'{len(samples.states)} states, {len(samples)} samples')
    work = Path(options.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    vae = init.vae if init else build_vae(options.seed + 1)
    pixels = samples.state_images(images)
    vae_history = train_vae(vae, pixels, options, log, targets=samples.state_targets(),
                            layout_cameras=layout.cameras) if options.vae_steps else []
    digest = hashlib.sha256(json.dumps(
        [stats, len(samples), options.seed, options.image_size, options.chunk_size,
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
        text_table_of(options.dataset[0], TASKS) if options.dataset
        else t5_embeddings(TASKS, seed=options.seed))
    text = torch.cat([text_table[t].float() for t in TASKS])  # (tasks, 512, 1024)
    return Prepared(episodes, layout, images, stats, samples, vae, latents, text_table, text,
                    digest, vae_history, init)
