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
from cosmos_policy_ros.sim.metrics import discounted_returns


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
