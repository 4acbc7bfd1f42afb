"""Closed-loop episodes in one process: the env, a chunk source, lockstep execution.

A chunk source is a callable ``source(env, tick) -> (chunk (K, 3), value or NaN)``; the chunk is
executed command by command (one per step_period) until it ends or the episode is done, then
the next chunk is asked for from the reached state. `policy_source` wraps any
``cosmos_policy_ros.interface.Policy`` (CosmosPolicy, FakePolicy); `expert_source`,
`random_source` and `hold_source` are the baselines. numpy only.
"""
from dataclasses import dataclass, field
import math
from typing import List

import numpy as np

from cosmos_policy_ros.interface import Observation
from cosmos_policy_ros.sim.arm import expert_chunk, JOINT_LOWER, JOINT_UPPER


@dataclass
class EpisodeResult:
    seed: int
    task: str
    success: bool
    steps: int                     # commands executed
    time_to_success: float         # sim seconds, NaN on failure
    final_distance: float
    tick_steps: List[int] = field(default_factory=list)     # step index of every chunk request
    values: List[float] = field(default_factory=list)       # value of every chunk (NaN: none)
    distances: List[float] = field(default_factory=list)    # distance to goal at each tick
    commands: List[list] = field(default_factory=list)      # every executed command

    def returns(self, gamma):
        """True discounted return at every tick (`discounted_returns`)."""
        return discounted_returns(self.tick_steps, self.steps if self.success else None,
                                  gamma).tolist()

    def to_dict(self):
        return {'seed': self.seed, 'task': self.task, 'success': self.success,
                'steps': self.steps, 'time_to_success': self.time_to_success,
                'final_distance': self.final_distance, 'tick_steps': self.tick_steps,
                'values': self.values, 'distances': self.distances}


def run_episode(env, source, seed):
    """One lockstep episode from env.reset(seed) with chunks from `source`."""
    env.reset(seed)
    dt = env.config.step_period
    result = EpisodeResult(seed=int(seed), task=env.task, success=False, steps=0,
                           time_to_success=math.nan, final_distance=math.nan)
    tick = 0
    while not env.done:
        chunk, value = source(env, tick)
        result.tick_steps.append(env.steps)
        result.values.append(float(value))
        result.distances.append(env.distance_to_goal())
        for command in np.asarray(chunk, dtype=np.float64):
            env.step(command, dt)
            result.commands.append(command.tolist())
            if env.done:
                break
        tick += 1
    result.success = bool(env.success)
    result.steps = env.steps
    result.time_to_success = env.time if env.success else math.nan
    result.final_distance = env.distance_to_goal()
    return result


def policy_source(policy, *, num_steps=None, seed_offset=0):
    """Chunks from a Policy: the env's renders, joint positions and task; noise seed per tick."""
    def source(env, tick):
        observation = Observation(images=env.render(), proprio=env.joint_positions(),
                                  instruction=env.task, seed=seed_offset + tick)
        output = policy.infer(observation, num_steps=num_steps)
        return np.asarray(output.actions, dtype=np.float64), float(output.value)
    return source


def expert_source(horizon):
    return lambda env, tick: (expert_chunk(env, horizon, env.config.step_period), math.nan)


def random_source(horizon, seed=0):
    """Random actions: every command uniform within the joint limits."""
    rng = np.random.RandomState(seed)

    def source(env, tick):
        return rng.uniform(JOINT_LOWER, JOINT_UPPER, size=(horizon, len(JOINT_LOWER))), math.nan
    return source


def hold_source(horizon):
    return lambda env, tick: (np.repeat(env.joint_positions()[None], horizon, axis=0), math.nan)


def discounted_returns(tick_steps, success_step, gamma):
    """True discounted return at each tick (step index): gamma**(T - 1 - t) when the episode
    succeeded at step T (the step whose result was success; T counts steps from 1), 0 for a
    failed episode (success_step None; the value scale's floor, the training target's -1)."""
    ticks = np.asarray(tick_steps, dtype=np.float64)
    if success_step is None:
        return np.zeros_like(ticks)
    return np.power(gamma, np.maximum(0.0, success_step - 1 - ticks))


def spearman(a, b):
    """Spearman rank correlation of two equal-length sequences (average ranks for ties)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError('spearman needs two 1-d sequences of equal length >= 2.')
    ranks_a, ranks_b = _ranks(a), _ranks(b)
    if ranks_a.std() == 0 or ranks_b.std() == 0:
        return math.nan
    return float(np.corrcoef(ranks_a, ranks_b)[0, 1])


def _ranks(values):
    order = np.argsort(values, kind='mergesort')
    ranks = np.empty(len(values))
    ranks[order] = np.arange(len(values), dtype=np.float64)
    for value in np.unique(values):  # ties share their mean rank
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks
