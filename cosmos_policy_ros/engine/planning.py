"""Best-of-N planning (reference section 7.8), batched on one device.

The reference runs each of N candidates in its own GPU process. Here all N run as one batch,
which gives the same numbers because every candidate has its own noise stream:

1. Policy pass: N candidates with seeds seed, seed + 1, ..., seed + N - 1 (actions, plus the
   joint value of each).
2. With a planning network (world model + V(s')):
   * world-model passes: E_w future-state predictions per candidate, pass i with
     ``linspace(1, world_model_steps, E_w)[i]`` steps and seed ``seed_j + i``, the action frame
     conditioning (the policy pass's latent, the current proprio re-injected);
   * value passes: for every future state, E_v V(s') predictions, pass k with
     ``linspace(1, value_steps, E_v)[k]`` steps and seed ``seed_j + k``, every frame but the
     value conditioning (optionally with current state and action masked). The E_w future
     states of pass k run as one batch too;
   * the E_w * E_v values of a candidate are aggregated (``majority_mean`` by default).
   With ``value_from = 'world_model'`` there are no value passes: the value each world-model
   pass generates along with the future state (Q(s, a): the current state and the chunk
   given) is the prediction, E_w of them per candidate.
   Without a planning network the candidates are scored by their joint-pass value.
3. Selection as the ALOHA server: keep the base-seed candidate unless another is strictly
   better (ties go to the lowest seed).

``plan_batch`` runs best-of-N for several observations (several robots' ticks) as one batch of
B * N samples, each observation with its own base seed; ``plan`` is its one-observation case.

With ``score_single_candidate`` (a model's choice, in its model.json) the planning network
also scores a lone candidate (num_candidates 1): the chunk is the policy pass's, the value
published with it the planning network's (step 2) instead of the joint pass's. The reference
reads the joint value at N = 1; a planning network trained on rollouts can rank states
better than the policy's own value (docs/sim.md).
"""
import dataclasses
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from cosmos_policy_ros.engine.generate import generate
from cosmos_policy_ros.interface import SEED_MODULUS

AGGREGATIONS = ('majority_mean', 'average', 'lcb', 'success_vote')
VALUE_SOURCES = ('value_passes', 'world_model')  # V(s') passes (reference) or Q(s, a)
SUCCESS_THRESHOLD = 0.05  # a value above this counts as a predicted success (reference)


@dataclass(frozen=True)
class PlanningConfig:
    """How candidates are scored; the defaults are the ALOHA planning deployment's."""

    world_model_steps: int = 5            # most denoising steps of a future-state prediction
    world_model_ensemble: int = 3         # future-state predictions per candidate (E_w)
    value_steps: int = 5                  # most denoising steps of a value prediction
    value_ensemble: int = 5               # value predictions per future state (E_v)
    aggregation: str = 'majority_mean'    # one of AGGREGATIONS
    value_from: str = 'value_passes'      # one of VALUE_SOURCES (module docstring)
    mask_current_state_action: bool = True  # V(s') sees only the future state
    score_single_candidate: bool = False  # also score num_candidates 1 (module docstring)

    def __post_init__(self):
        for field in ('world_model_steps', 'world_model_ensemble', 'value_steps',
                      'value_ensemble'):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f'`{field}` must be a positive integer. Got {value!r}.')
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f'`aggregation` must be one of {list(AGGREGATIONS)}. '
                             f'Got {self.aggregation!r}.')
        if self.value_from not in VALUE_SOURCES:
            raise ValueError(f'`value_from` must be one of {list(VALUE_SOURCES)}. '
                             f'Got {self.value_from!r}.')
        for field in ('mask_current_state_action', 'score_single_candidate'):
            if not isinstance(getattr(self, field), bool):
                raise ValueError(f'`{field}` must be true or false. '
                                 f'Got {getattr(self, field)!r}.')

    @property
    def world_model_schedule(self):
        """Denoising steps of each world-model pass: linspace(1, steps, E_w) as integers."""
        return _linspace_steps(self.world_model_steps, self.world_model_ensemble)

    @property
    def value_schedule(self):
        """Denoising steps of each value pass: linspace(1, steps, E_v) as integers."""
        return _linspace_steps(self.value_steps, self.value_ensemble)


@dataclass(frozen=True)
class PlanResult:
    """policy: the policy pass of all N candidates (a GenerateResult, batch N).
    values: (N,) float score per candidate; selected: index of the chosen candidate;
    predictions: (E_w * E_v, N) float raw value predictions, (E_w, N) with value_from
    'world_model' (None without a planning net)."""

    policy: object
    values: np.ndarray
    selected: int
    predictions: Optional[np.ndarray]


def aggregate_values(predictions, scheme='majority_mean'):
    """Aggregate an ensemble of values per candidate, as the reference, then clip to [0, 1].

    predictions: (E, N) values in [0, 1]. Returns (N,) float64.
    * average: the mean; lcb: mean - std (unbiased std, like torch.std);
    * success_vote: the fraction of predictions above SUCCESS_THRESHOLD;
    * majority_mean: if at least half are above the threshold, the mean of those; else 0.
    """
    values = np.asarray(predictions, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] < 1:
        raise ValueError(f'predictions must be (E, N) with E >= 1, got {values.shape}.')
    if scheme == 'average':
        result = values.mean(axis=0)
    elif scheme == 'lcb':
        spread = values.std(axis=0, ddof=1) if values.shape[0] > 1 else np.full(
            values.shape[1], np.nan)
        result = values.mean(axis=0) - spread
    elif scheme == 'success_vote':
        result = (values > SUCCESS_THRESHOLD).mean(axis=0)
    elif scheme == 'majority_mean':
        success = values > SUCCESS_THRESHOLD
        count = success.sum(axis=0)
        mean_success = np.where(success, values, 0.0).sum(axis=0) / np.maximum(count, 1)
        result = np.where(count / values.shape[0] >= 0.5, mean_success, 0.0)
    else:
        raise ValueError(f'unknown aggregation {scheme!r}; choose one of {list(AGGREGATIONS)}.')
    return np.clip(result, 0.0, 1.0)


def select_candidate(values):
    """Index of the best candidate: the base (index 0) unless another is strictly better."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size < 1:
        raise ValueError(f'values must be (N,) with N >= 1, got {values.shape}.')
    if np.isnan(values).any():
        raise ValueError(f'candidate values contain NaN: {values.tolist()}.')
    return int(np.argmax(values))  # first maximum: ties keep the lower seed


def plan(net, clean_latent, text_embedding, layout, *, proprio, seed, num_candidates,
         sampler, stats=None, planning_net=None, config=PlanningConfig(),
         round_proprio_to_bf16=True, known_actions=None):
    """Run best-of-N for one observation and pick a candidate.

    net: the policy network; planning_net: the planning network or None (joint values).
    clean_latent: (1, 16, T, S, S) conditioning latent of the observation.
    text_embedding: (1, L, 1024). proprio: (1, D) normalized. seed: the base seed.
    num_candidates: a positive integer (checked by the caller: CosmosPolicy.infer).
    sampler: SamplerConfig of the policy pass. known_actions: optional (1, k, d) normalized
    known first steps, inpainted in every candidate (engine.generate). Returns a PlanResult.
    """
    if clean_latent.shape[0] != 1:
        raise ValueError(f'plan() takes one observation: clean_latent must have batch 1, got '
                         f'{tuple(clean_latent.shape)}.')
    return plan_batch(net, clean_latent, text_embedding, layout, proprio=proprio,
                      seeds=[seed], num_candidates=num_candidates, sampler=sampler,
                      stats=stats, planning_net=planning_net, config=config,
                      round_proprio_to_bf16=round_proprio_to_bf16,
                      known_actions=known_actions)[0]


def plan_batch(net, clean_latent, text_embedding, layout, *, proprio, seeds, num_candidates,
               sampler, stats=None, planning_net=None, config=PlanningConfig(),
               round_proprio_to_bf16=True, known_actions=None):
    """Best-of-N for B observations in one batch of B * N samples; a PlanResult for each.

    Observation b's candidate j is sample b * N + j with seed seeds[b] + j, so each result
    equals plan() of that observation alone (every sample has its own noise stream; only the
    rounding of batched kernels may differ).
    clean_latent: (B, 16, T, S, S); text_embedding: (1 or B, L, 1024); proprio: (B, D)
    normalized; seeds: B base seeds; known_actions: optional (B, k, d) normalized.
    """
    batch, n = clean_latent.shape[0], num_candidates
    seeds = list(seeds)
    if len(seeds) != batch:
        raise ValueError(f'`seeds` must give one base seed per observation: {batch} expected, '
                         f'got {len(seeds)}.')
    candidate_seeds = [(seed + j) % SEED_MODULUS for seed in seeds for j in range(n)]
    proprio = torch.as_tensor(proprio).reshape(batch, -1)
    # One row per sample, b-major: (B, ...) -> (B * N, ...); a batch-1 text broadcasts.
    if batch == 1:
        latent_n, proprio_n = clean_latent.expand(n, -1, -1, -1, -1), proprio.expand(n, -1)
        text_n = text_embedding
    else:
        latent_n = clean_latent.repeat_interleave(n, dim=0)
        proprio_n = proprio.repeat_interleave(n, dim=0)
        text_n = (text_embedding if text_embedding.shape[0] == 1
                  else text_embedding.repeat_interleave(n, dim=0))
    policy = generate(net, latent_n, text_n, layout, proprio=proprio_n, mode='policy',
                      seeds=candidate_seeds, sampler=sampler, stats=stats,
                      round_proprio_to_bf16=round_proprio_to_bf16,
                      known_actions=_per_candidate(known_actions, batch, n))
    predictions = None
    if planning_net is None:
        values = policy.value.astype(np.float64).reshape(batch, n)
    else:
        predictions = score_with_planning_net(
            planning_net, policy.latent, text_n, layout, proprio=proprio_n,
            seeds=candidate_seeds, sampler=sampler, config=config,
            round_proprio_to_bf16=round_proprio_to_bf16)
        values = aggregate_values(predictions, config.aggregation).reshape(batch, n)
    return [PlanResult(samples(policy, b * n, (b + 1) * n), values[b],
                       select_candidate(values[b]),
                       None if predictions is None else predictions[:, b * n:(b + 1) * n])
            for b in range(batch)]


def samples(result, start, stop):
    """The GenerateResult of samples start..stop - 1 of a batched one (the same fields)."""
    def rows(value):
        return None if value is None else value[start:stop]
    seeds = result.seeds if not isinstance(result.seeds, tuple) else result.seeds[start:stop]
    return dataclasses.replace(
        result, latent=rows(result.latent), clean_latent=rows(result.clean_latent),
        actions_normalized=rows(result.actions_normalized), actions=rows(result.actions),
        value=rows(result.value), future_proprio_normalized=rows(
            result.future_proprio_normalized), future_proprio=rows(result.future_proprio),
        seeds=seeds)


def score_with_planning_net(planning_net, policy_latent, text_embedding, layout, *, proprio,
                            seeds, sampler, config, round_proprio_to_bf16=True):
    """Raw value predictions of N candidates: V(s') (E_w * E_v, N) from world-model, then
    value passes; or with config.value_from 'world_model' Q(s, a) (E_w, N), the world-model
    passes' own values.

    policy_latent: (N, 16, T, S, S) latents of the policy pass; proprio: (1 or N, D)
    normalized; text_embedding: (1 or N, L, 1024); seeds: the N candidate seeds. Row
    i * E_v + k is future state i, value pass k (row i: world-model pass i).
    """
    n = policy_latent.shape[0]
    proprio_n = proprio.expand(n, -1) if proprio.shape[0] == 1 else proprio
    futures, q_values = [], []
    for i, steps in enumerate(config.world_model_schedule):
        result = generate(planning_net, policy_latent, text_embedding, layout,
                          proprio=proprio_n, mode='world_model',
                          seeds=[(seed + i) % SEED_MODULUS for seed in seeds],
                          sampler=_with_steps(sampler, steps),
                          round_proprio_to_bf16=round_proprio_to_bf16)
        futures.append(result.latent)
        q_values.append(result.value)
    if config.value_from == 'world_model':
        return np.stack(q_values)  # E_w x (N,) -> (E_w, N)
    e_w = len(futures)
    stacked = torch.cat(futures, dim=0)  # E_w x (N, ...) -> (E_w * N, 16, T, S, S)
    # Row i * N + j of the stack is future state i of candidate j: repeat per-candidate inputs.
    text = text_embedding if text_embedding.shape[0] == 1 else text_embedding.repeat(
        e_w, 1, 1)
    predictions = []
    for k, steps in enumerate(config.value_schedule):
        result = generate(planning_net, stacked, text, layout,
                          proprio=proprio_n.repeat(e_w, 1), mode='value',
                          seeds=[(seed + k) % SEED_MODULUS for _ in range(e_w)
                                 for seed in seeds],
                          sampler=_with_steps(sampler, steps),
                          mask_current_state_action=config.mask_current_state_action,
                          round_proprio_to_bf16=round_proprio_to_bf16)
        predictions.append(result.value.reshape(e_w, n))  # (E_w * N,) -> (E_w, N)
    # E_v x (E_w, N) -> (E_w, E_v, N) -> (E_w * E_v, N): row i * E_v + k.
    return np.stack(predictions, axis=1).reshape(e_w * len(predictions), n)


def _per_candidate(known_actions, batch, n):
    """(B, k, d) known actions repeated for n candidates each, b-major; None stays None."""
    if known_actions is None:
        return None
    known = torch.as_tensor(np.asarray(known_actions, dtype=np.float64))
    if known.ndim != 3 or known.shape[0] != batch:
        raise ValueError(f'`known_actions` of plan() must be ({batch}, k, d); got '
                         f'{tuple(known.shape)}.')
    return known.expand(n, -1, -1) if batch == 1 else known.repeat_interleave(n, dim=0)


def _with_steps(sampler, steps):
    return dataclasses.replace(sampler, num_steps=steps)


def _linspace_steps(most, count):
    return tuple(int(steps) for steps in np.linspace(1, most, count).astype(int))
