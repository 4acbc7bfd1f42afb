"""What happened in one simulated episode, step by step (``EpisodeTrace``), and the chunks the
closed loop executed (``ChunkRecord``); the same record for the sim node, the baselines and
the stitching grid, summarized by ``EpisodeTrace.summary`` with ``sim.metrics``."""
from dataclasses import dataclass, field
import math
from typing import List, Optional

import numpy as np

from cosmos_policy_ros.sim import metrics
from cosmos_policy_ros.sim.controller import Applied


@dataclass
class ChunkRecord:
    """An executed chunk as the closed loop saw it."""

    stamp_ns: int
    step: int  # episode step of its observation
    actions: np.ndarray
    value: float = math.nan
    inference_time: float = math.nan
    arrival_delay: float = math.nan  # sim seconds from its stamp to its arrival
    seed: int = 0
    # The ActionChunk's stitching fields (docs/stitching.md); '' for a trajectory.
    stitching: str = ''
    conditioned_steps: int = 0
    takeover_step: int = 0
    blended_steps: int = 0


@dataclass
class EpisodeTrace:
    """What happened in one episode, step by step (step k covers [t0 + k p, t0 + (k+1) p))."""

    seed: int
    task: str
    start_ns: int
    step_period: float
    positions: List[np.ndarray] = field(default_factory=list)  # at the start of each step
    distances: List[float] = field(default_factory=list)
    commands: List[np.ndarray] = field(default_factory=list)
    plans: List[int] = field(default_factory=list)
    chunks: List[ChunkRecord] = field(default_factory=list)
    success_step: Optional[int] = None  # steps done when success was first seen
    steps: int = 0
    refused: dict = field(default_factory=dict)
    frames: List[np.ndarray] = field(default_factory=list)  # primary camera, when recorded

    def record_step(self, positions, distance, applied: Applied):
        self.positions.append(np.asarray(positions, dtype=np.float64).copy())
        self.distances.append(float(distance))
        self.commands.append(applied.command)
        self.plans.append(applied.plan)

    @property
    def success(self):
        return self.success_step is not None

    def summary(self, gamma):
        jumps = metrics.boundary_jumps(self.plans, self.commands) if self.commands else {
            'ratios': [], 'jumps': [], 'within_median': math.nan}
        values = [c.value for c in self.chunks]
        returns = metrics.discounted_returns([c.step for c in self.chunks], self.success_step,
                                             gamma)
        latencies = [c.inference_time for c in self.chunks if math.isfinite(c.inference_time)]
        ratios = [r for r in jumps['ratios'] if math.isfinite(r)]
        return {
            'seed': self.seed, 'task': self.task, 'success': self.success,
            'steps': self.steps,
            'time_to_success': (self.success_step * self.step_period if self.success
                                else math.nan),
            'final_distance': self.distances[-1] if self.distances else math.nan,
            'rms_jerk': metrics.rms_jerk(np.array(self.positions), self.step_period)
            if self.positions else math.nan,
            'chunks': len(self.chunks),
            'boundary_jump_ratio_mean': float(np.mean(ratios)) if ratios else math.nan,
            'boundary_jump_ratio_max': float(np.max(ratios)) if ratios else math.nan,
            'latency_mean': float(np.mean(latencies)) if latencies else math.nan,
            'latency_max': float(np.max(latencies)) if latencies else math.nan,
            'values': values, 'returns': returns.tolist(),
            'refused': dict(self.refused),
        }
