"""CosmosPolicy: the engine's one door, ``infer(observation) -> PolicyOutput``.

``infer_batch(requests)`` runs the observations of several robots as one batched pass (the
policy server, cosmos_policy_ros.fleet); ``infer`` is its one-request case.

One inference (reference section 7, minus its overheads):

1. preprocess: every camera image through the training pipeline (engine.images), the proprio
   min/max-normalized, the instruction's T5 embedding looked up (kept on the device);
2. encode: only the conditioning frames through the VAE (blank + black proprio prefix cached);
3. denoise: one diffusion pass (engine.generate), or best-of-N planning (engine.planning) with
   all candidates in one batch;
4. extract: the action chunk, value and future proprio of the chosen candidate, unnormalized;
5. optionally decode the predicted future camera images (off by default: visualisation only).

Build it from a model directory (``from_model_dir``, what ``cosmos-policy-convert`` writes) or
from the released files (``from_released``); ``load_policy`` is the factory the ROS node calls.
"""
import dataclasses
from pathlib import Path
import time
from typing import NamedTuple, Optional, Tuple

import numpy as np
import torch

from cosmos_policy_ros.engine.acceleration import accelerate, AccelerationConfig
from cosmos_policy_ros.engine.checkpoint import load_dit, load_vae
from cosmos_policy_ros.engine.generate import generate, NonFiniteOutput
from cosmos_policy_ros.engine.images import ImagePipelineConfig, preprocess_images
from cosmos_policy_ros.engine.model_dir import is_model_dir, model_files, read_spec, weights_hint
from cosmos_policy_ros.engine.planning import plan_batch, PlanningConfig, samples
from cosmos_policy_ros.engine.sampling import SamplerConfig
from cosmos_policy_ros.engine.stopwatch import Stopwatch
from cosmos_policy_ros.engine.text import T5Encoder, TextEmbeddings
from cosmos_policy_ros.interface import InferenceRequest, PolicyOutput, SEED_MODULUS
from cosmos_policy_ros.layout import LatentLayout
from cosmos_policy_ros.normalization import NormStats

# Default denoising steps of the released deployments (reference section 7.7).
DEFAULT_STEPS = {'libero': 5, 'robocasa': 5, 'aloha': 10}
_DTYPES = {'fp32': torch.float32, 'float32': torch.float32, 'bf16': torch.bfloat16,
           'bfloat16': torch.bfloat16, 'fp16': torch.float16, 'float16': torch.float16}


def resolve_device(device='auto', dtype='auto'):
    """(torch.device, torch.dtype): 'auto' is CUDA with bf16 when CUDA exists, else CPU fp32."""
    if device == 'auto':
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f'`device` must be auto, cpu, cuda or cuda:N. Got {device!r}.') from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise ValueError(f'`device` {device} requested but CUDA is not available (torch '
                         f'{torch.__version__}).')
    if dtype == 'auto':
        dtype = torch.bfloat16 if device.type == 'cuda' else torch.float32
    elif isinstance(dtype, str):
        if dtype not in _DTYPES:
            raise ValueError(f'`dtype` must be auto or one of {sorted(_DTYPES)}. Got {dtype!r}.')
        dtype = _DTYPES[dtype]
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f'`dtype` must be a floating dtype. Got {dtype!r}.')
    return device, dtype


class _Prepared(NamedTuple):
    """One request checked and preprocessed (CosmosPolicy.infer_batch); `key`: what requests
    must share to run in one pass (sampler, candidates, known steps, text length)."""

    key: Tuple
    sampler: SamplerConfig
    candidates: int
    seed: int
    known: Optional[torch.Tensor]  # (1, k, d) normalized known first steps, or None
    proprio: torch.Tensor  # (1, D) normalized
    pixels: torch.Tensor  # (N, 3, S, S) uint8 camera frames in layout order
    text: torch.Tensor  # (1, L, 1024) on the device


class CosmosPolicy:
    """Cosmos Policy inference on one device; implements cosmos_policy_ros.interface.BatchPolicy.

    dit, vae: CosmosDiT / CosmosVAE (or any objects following their protocols) on one device.
    layout: LatentLayout; stats: NormStats; text_embeddings: TextEmbeddings.
    images: ImagePipelineConfig (its image_size must be the layout's).
    sampler: SamplerConfig with the default denoising steps.
    model_id: reported with every output. planning_dit: optional planning network (world model
    + V(s')) used for best-of-N scoring; planning: its PlanningConfig.
    decode_future_images: also decode the predicted future camera images (costly).
    loaded_from: what to say when the network's output is non-finite before any inference
    succeeded (right after loading: check the weight files); from_model_dir and
    from_released set it.
    """

    def __init__(self, *, dit, vae, layout, stats, text_embeddings, images, sampler, model_id,
                 planning_dit=None, planning=None, decode_future_images=False,
                 round_proprio_to_bf16=True, clock=time.perf_counter, loaded_from=None):
        if not isinstance(layout, LatentLayout):
            raise TypeError(f'`layout` must be a LatentLayout, got {type(layout).__name__}.')
        stats.check_layout(layout)
        if images.image_size != layout.image_size:
            raise ValueError(f'the image pipeline makes {images.image_size} px frames but the '
                             f'layout expects {layout.image_size} px.')
        if vae.device != dit.device:
            raise ValueError(f'the VAE ({vae.device}) and the DiT ({dit.device}) must be on one '
                             f'device.')
        if planning_dit is not None and planning_dit.device != dit.device:
            raise ValueError("the planning DiT must be on the policy DiT's device.")
        if not isinstance(sampler, SamplerConfig):
            raise TypeError(f'`sampler` must be a SamplerConfig, got {type(sampler).__name__}.')
        self.dit = dit
        self.vae = vae
        self.layout = layout
        self.stats = stats
        self.text_embeddings = text_embeddings
        self.images = images
        self.sampler = sampler
        self.model_id = model_id
        self.planning_dit = planning_dit
        self.planning = planning if planning is not None else PlanningConfig()
        self.decode_future_images = bool(decode_future_images)
        self.round_proprio_to_bf16 = round_proprio_to_bf16
        self._clock = clock
        self._loaded_from = loaded_from  # () -> hint, until an inference succeeds

    @property
    def device(self):
        return self.dit.device

    @property
    def dtype(self):
        return self.dit.dtype

    # --- construction --------------------------------------------------------------------------
    @classmethod
    def from_model_dir(cls, path, *, device='auto', dtype='auto', decode_future_images=False,
                       t5_model=None, acceleration=None):
        """Load a directory written by cosmos-policy-convert (safetensors, memory-mapped).

        t5_model: optional path of a local T5 encoder for instructions missing from the
        model's embeddings (needs `transformers`).
        acceleration: an AccelerationConfig or its dict (torch.compile, CUDA graphs, attention
        backend) applied to the DiT(s); None: eager.
        """
        spec = read_spec(path)
        files = model_files(path, spec)
        device, dtype = resolve_device(device, dtype)
        planning_dit = None
        if spec.planning is not None:
            planning_dit = _accelerated(
                load_dit(files['planning_dit'], spec.dit_preset, dtype=dtype, device=device),
                acceleration)
        return cls(
            dit=_accelerated(load_dit(files['dit'], spec.dit_preset, dtype=dtype, device=device),
                             acceleration),
            vae=load_vae(files['vae'], spec.vae_preset, dtype=dtype, device=device),
            layout=spec.layout,
            stats=NormStats.from_json(files['statistics'], layout=spec.layout),
            text_embeddings=_text_embeddings(files['text_embeddings'], t5_model, device),
            images=spec.images,
            sampler=spec.sampler,
            model_id=spec.model_id,
            planning_dit=planning_dit,
            planning=spec.planning,
            decode_future_images=decode_future_images,
            loaded_from=lambda: weights_hint(path, spec),
        )

    @classmethod
    def from_released(cls, *, checkpoint, tokenizer, statistics, t5_embeddings,
                      layout='libero', images=None, dit_preset='2b', vae_preset='wan2.1',
                      num_steps=None, planning_checkpoint=None, planning=None,
                      model_id=None, device='auto', dtype='auto', decode_future_images=False,
                      t5_model=None, acceleration=None):
        """Load the released files directly (converted in memory, nothing written).

        checkpoint: the policy `.pt` or DCP directory; tokenizer: the Wan2.1 tokenizer.pth;
        statistics: `*_dataset_statistics.json`; t5_embeddings: `*_t5_embeddings.pkl` (read
        with the restricted unpickler) or a converted `.safetensors`.
        layout: a preset name or a LatentLayout; images: an ImagePipelineConfig (default: the
        preset of the layout's name). planning_checkpoint: optional planning model.
        acceleration: as in from_model_dir.
        """
        layout = LatentLayout.preset(layout) if isinstance(layout, str) else layout
        images = ImagePipelineConfig.for_layout(layout) if images is None else images
        device, dtype = resolve_device(device, dtype)
        steps = num_steps if num_steps is not None else DEFAULT_STEPS.get(layout.name, 5)
        text_path = str(t5_embeddings)
        embeddings = (TextEmbeddings.load(text_path) if text_path.endswith('.safetensors')
                      else TextEmbeddings.from_pickle(text_path))
        if t5_model is not None:
            embeddings.encoder = T5Encoder.from_pretrained(t5_model, device=device)
        planning_dit = None
        if planning_checkpoint is not None:
            planning_dit = _accelerated(
                load_dit(planning_checkpoint, dit_preset, dtype=dtype, device=device),
                acceleration)
        return cls(
            dit=_accelerated(load_dit(checkpoint, dit_preset, dtype=dtype, device=device),
                             acceleration),
            vae=load_vae(tokenizer, vae_preset, dtype=dtype, device=device),
            layout=layout,
            stats=NormStats.from_json(statistics, layout=layout),
            text_embeddings=embeddings,
            images=images,
            sampler=SamplerConfig(num_steps=steps),
            model_id=model_id or f'{layout.name}:{checkpoint}',
            planning_dit=planning_dit,
            planning=planning,
            decode_future_images=decode_future_images,
            loaded_from=lambda: (f'this happened right after loading {checkpoint}: are the '
                                 f'checkpoint and tokenizer files intact?'),
        )

    # --- inference -----------------------------------------------------------------------------
    def infer(self, observation, *, num_steps=None, num_candidates=None, known_actions=None):
        """Predict one action chunk (and its value) for an Observation.

        num_steps: sampler steps of the policy pass (default: the model's; network
            evaluations: sampling.num_evaluations(num_steps)).
        num_candidates: best-of-N candidates, seeds seed..seed+N-1 (default 1: no planning;
            the planning network still scores the one candidate when self.planning says
            score_single_candidate).
        known_actions: optional (k, d) first k <= K steps of the chunk in robot units (the
            committed prefix of the executing chunk, cosmos_policy_ros.execution), inpainted
            by the sampler (docs/stitching.md); None or k = 0: the plain sampler.
        Returns a PolicyOutput with float32 actions (K, d) in robot units;
        num_conditioned_steps says how many first steps were inpainted.
        """
        result, = self.infer_batch([InferenceRequest(observation, num_steps, num_candidates,
                                                     known_actions)])
        if isinstance(result, Exception):
            raise result
        return result

    def infer_batch(self, requests):
        """Infer several InferenceRequests (several robots' observations) in one batched pass.

        Returns one PolicyOutput per request, in order, or the exception of a request that
        failed (interface.BatchPolicy). Each request is checked and preprocessed alone (a bad
        one fails alone); requests that can share a pass (the same sampler steps, candidates,
        known steps and text length) are encoded and denoised as one batch, each sample with
        its own seed (engine.noise), so a chunk does not depend on who shared its batch. A
        batch that raises (e.g. out of memory, a non-finite network output) is run again one
        request at a time, so the failure stays with its request. Every output of a pass
        reports the pass's timings and its batch_size.
        """
        results = [None] * len(requests)
        watch = Stopwatch(self.device, clock=self._clock)
        groups = {}
        with torch.inference_mode(), watch.stage('total'):
            with watch.stage('preprocess'):
                for index, request in enumerate(requests):
                    try:
                        item = self._prepared(request)
                    except Exception as error:  # this request's own fault: it fails alone
                        results[index] = error
                        continue
                    groups.setdefault(item.key, []).append((index, item))
            for group in groups.values():
                try:
                    outputs = self._run_batch([item for _, item in group], watch)
                except Exception as error:
                    if len(group) == 1:
                        results[group[0][0]] = error
                        continue
                    outputs = []
                    for _, item in group:  # isolate the failure: one request at a time
                        try:
                            outputs += self._run_batch([item], watch)
                        except Exception as single_error:
                            outputs.append(single_error)
                for (index, _), output in zip(group, outputs):
                    results[index] = output
        stages, evaluations = watch.results()
        return [result if isinstance(result, Exception) else dataclasses.replace(
            result, timings=stages, evaluation_times=evaluations)
            for result in self._with_weights_hint(results)]

    def _with_weights_hint(self, results):
        """Until an inference succeeds, a non-finite network output also says what was loaded
        (loaded_from: check the weight files); the first success ends that (the weights work:
        later non-finite outputs have other causes)."""
        if self._loaded_from is None:
            return results
        hinted = [NonFiniteOutput(f'{result} {self._loaded_from()}')
                  if isinstance(result, NonFiniteOutput) else result for result in results]
        if any(not isinstance(result, Exception) for result in results):
            self._loaded_from = None
        return hinted

    def _prepared(self, request):
        """A request checked and preprocessed: _Prepared (one observation's tensors)."""
        observation = request.observation
        sampler = self.sampler if request.num_steps is None else dataclasses.replace(
            self.sampler, num_steps=request.num_steps)
        candidates = 1 if request.num_candidates is None else request.num_candidates
        if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
            raise ValueError(f'`num_candidates` must be a positive integer. Got {candidates!r}.')
        seed = _check_seed(observation.seed)
        known = self._normalized_known(request.known_actions)
        proprio = self._normalized_proprio(observation)  # (1, D) float32
        frames = preprocess_images(observation.images, self.images,
                                   cameras=self.layout.cameras)
        pixels = torch.from_numpy(frames).permute(0, 3, 1, 2)  # (N, S, S, 3) -> (N, 3, S, S)
        text = self._text_embedding(observation)  # (1, L, 1024)
        key = (sampler, candidates, 0 if known is None else known.shape[1], text.shape[1])
        return _Prepared(key, sampler, candidates, seed, known, proprio, pixels, text)

    def _run_batch(self, items, watch):
        """Encode, denoise and extract B prepared requests of one key; B PolicyOutputs."""
        first = items[0]
        sampler, candidates, batch = first.sampler, first.candidates, len(items)
        known = None if first.known is None else torch.cat([item.known for item in items])
        proprio = torch.cat([item.proprio for item in items])  # B x (1, D) -> (B, D)
        text = torch.cat([item.text for item in items])  # B x (1, L, 1024) -> (B, L, 1024)
        seeds = [item.seed for item in items]
        with watch.stage('encode'):
            pixels = torch.stack([item.pixels for item in items])  # -> (B, N, 3, S, S)
            encoded = self.vae.encode_conditioning(pixels.to(self.device))
            clean = torch.zeros((batch, *self.layout.latent_shape), dtype=torch.float32,
                                device=self.device)
            clean[:, :, :encoded.shape[2]] = encoded.float()  # (B, 16, 2 + N, h, w)
        with watch.stage('denoise'):
            net = watch.timed_network(self.dit)
            if candidates == 1 and not self._scores_single_candidate:
                passed = generate(net, clean, text, self.layout, proprio=proprio,
                                  mode='policy', seeds=seeds, sampler=sampler,
                                  stats=self.stats,
                                  round_proprio_to_bf16=self.round_proprio_to_bf16,
                                  known_actions=known)
                picks = [(samples(passed, b, b + 1), passed.value[b:b + 1], 0, ())
                         for b in range(batch)]
            else:
                planning_net = (None if self.planning_dit is None
                                else watch.timed_network(self.planning_dit))
                results = plan_batch(net, clean, text, self.layout, proprio=proprio,
                                     seeds=seeds, num_candidates=candidates, sampler=sampler,
                                     stats=self.stats, planning_net=planning_net,
                                     config=self.planning,
                                     round_proprio_to_bf16=self.round_proprio_to_bf16,
                                     known_actions=known)
                picks = [(result.policy, result.values, result.selected,
                          tuple(float(v) for v in result.values)) for result in results]
        outputs = []
        for b, (policy, values, selected, candidate_values) in enumerate(picks):
            with watch.stage('extract'):
                actions = policy.actions[selected].astype(np.float32)
                future_proprio = policy.future_proprio[selected].astype(np.float32)
                value = float(values[selected])
            future_images = None
            if self.decode_future_images:
                with watch.stage('decode'):
                    future_images = self._future_images(policy.latent[selected:selected + 1],
                                                        encoded[b:b + 1])
            outputs.append(PolicyOutput(
                actions=actions, value=value, future_proprio=future_proprio,
                future_images=future_images, seed=seeds[b], num_steps=sampler.num_steps,
                candidate_values=candidate_values, selected_candidate=selected,
                num_conditioned_steps=policy.conditioned_steps, batch_size=batch))
        return outputs

    def reset(self):
        """Forget per-episode state: the device copies of instruction embeddings."""
        self.text_embeddings.clear_cache()

    # --- internals -----------------------------------------------------------------------------
    @property
    def _scores_single_candidate(self):
        """True when a lone candidate goes through plan() too (its value: the planning net's)."""
        return self.planning_dit is not None and self.planning.score_single_candidate

    def _normalized_proprio(self, observation):
        proprio = np.asarray(observation.proprio, dtype=np.float64)
        if proprio.shape != (self.layout.proprio_dim,):
            raise ValueError(f'proprio must have shape ({self.layout.proprio_dim},) for layout '
                             f'{self.layout.name!r}; got {proprio.shape}.')
        if not np.isfinite(proprio).all():
            raise ValueError(f'proprio has non-finite values at dimensions '
                             f'{np.flatnonzero(~np.isfinite(proprio)).tolist()}.')
        normalized = self.stats.normalize_proprio(proprio)
        return torch.from_numpy(np.asarray(normalized, dtype=np.float32))[None]  # (D,) -> (1, D)

    def _normalized_known(self, known_actions):
        """(1, k, d) float64 normalized known first steps, or None (None or k = 0)."""
        if known_actions is None:
            return None
        known = np.asarray(known_actions, dtype=np.float64)
        size, dim = self.layout.chunk_size, self.layout.action_dim
        if known.ndim != 2 or known.shape[1] != dim or known.shape[0] > size:
            raise ValueError(f'`known_actions` must be (k, {dim}) with k <= {size} for layout '
                             f'{self.layout.name!r}; got {known.shape}.')
        if not np.isfinite(known).all():
            raise ValueError('`known_actions` has non-finite values.')
        if known.shape[0] == 0:
            return None
        return torch.from_numpy(self.stats.normalize_actions(known))[None]  # -> (1, k, d)

    def _text_embedding(self, observation):
        if observation.text_embedding is not None:
            embedding = torch.as_tensor(np.asarray(observation.text_embedding))
            if embedding.ndim == 2:
                embedding = embedding[None]  # (L, 1024) -> (1, L, 1024)
            if embedding.ndim != 3 or embedding.shape[0] != 1 or embedding.shape[2] != 1024:
                raise ValueError(f'text_embedding must be (L, 1024) or (1, L, 1024); got '
                                 f'{tuple(embedding.shape)}.')
            return embedding.to(device=self.device, dtype=self.dtype)
        if not observation.instruction:
            raise ValueError('the observation has no task: give `instruction` (looked up in the '
                             "model's T5 embeddings) or `text_embedding`.")
        return self.text_embeddings.lookup(observation.instruction, device=self.device,
                                           dtype=self.dtype)

    def _future_images(self, latent, encoded):
        """Decoded future camera images {camera: uint8 (S, S, 3)} of one generated latent.

        The injected slots (proprio, action, future proprio) go back to a black-frame latent
        before decoding, as the reference restores its pre-injection latents.
        """
        layout = self.layout
        latent = latent.clone()
        black = encoded[:, :, layout.proprio_index].float()  # the black proprio slot's latent
        latent[:, :, :layout.num_conditioning_frames] = encoded.float()
        for index in (layout.action_index, layout.future_proprio_index):
            latent[:, :, index] = black
        video = self.vae.decode(latent)  # (1, 3, F, S, S) uint8
        images = {}
        for camera in layout.cameras:
            frame = layout.pixel_frames(layout.future_camera_index(camera))[0]
            images[camera] = video[0, :, frame].permute(1, 2, 0).cpu().numpy()  # -> (S, S, 3)
        return images


def load_policy(model_path, *, device='auto', dtype='auto', **options):
    """The node's default policy factory: a CosmosPolicy from a model directory.

    options: passed to CosmosPolicy.from_model_dir (decode_future_images, t5_model,
    acceleration).
    """
    if not is_model_dir(model_path):
        hint = ''
        if any(str(p).endswith('_dataset_statistics.json') for p in _listing(model_path)):
            hint = (f' It looks like released files: convert them once with '
                    f'`cosmos-policy-convert --released {model_path} --out <model dir>`.')
        raise ValueError(f'{model_path} is not a model directory (no model.json).{hint}')
    return CosmosPolicy.from_model_dir(model_path, device=device, dtype=dtype, **options)


def _listing(path):
    try:
        return list(Path(path).iterdir())
    except OSError:
        return []


def _accelerated(net, acceleration):
    if acceleration is None:
        return net
    if isinstance(acceleration, dict):
        acceleration = AccelerationConfig.from_dict(acceleration, source='acceleration')
    return accelerate(net, acceleration)


def _text_embeddings(path, t5_model, device):
    encoder = None if t5_model is None else T5Encoder.from_pretrained(t5_model, device=device)
    return TextEmbeddings.load(path, encoder=encoder)


def _check_seed(seed):
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f'observation seed must be a non-negative integer. Got {seed!r}.')
    return int(seed) % SEED_MODULUS
