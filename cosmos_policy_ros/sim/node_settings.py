"""How the simulated robot's ROS node runs (``SimSettings``): the clock mode, lockstep's
handshake with the policy node, injected command latency, what it records. Validated here, at
construction; the node itself is ``ros/sim_node.py`` (its module docstring explains the modes).
"""
from dataclasses import dataclass
import math


@dataclass(frozen=True)
class SimSettings:
    """How the sim node runs; see the module docstring."""

    mode: str = 'lockstep'
    slowdown: float = 1.0            # realtime: wall seconds per sim second
    clock_period: float = 0.01       # realtime: /clock and physics sub-step period (s)
    command_source: str = 'action_chunk'   # or joint_trajectory
    policy_node: str = '/cosmos_policy'    # lockstep: whose /diagnostics to follow
    guard_timeout: float = 120.0     # lockstep: wall seconds before a wait counts as a failure
    episode_slot: float = 0.0        # sim seconds between episode starts (0: timeout + 2 s)
    future_images: bool = False      # subscribe to future/<camera>/image (filmstrips)
    record_frames: bool = False      # keep every primary frame of each episode
    # lockstep: steps after a chunk before the node replans (its execute_steps minus
    # replan_threshold); /clock then only advances at those steps, and at every step while no
    # chunk came. 0: /clock at every step (any replan rule, slower: one handshake per step).
    replan_steps: int = 0
    command_delay: float = 0.0       # sim seconds from a chunk's arrival to the controller

    def __post_init__(self):
        if self.mode not in ('lockstep', 'realtime'):
            raise ValueError(f'`mode` must be lockstep or realtime. Got {self.mode!r}.')
        if self.command_source not in ('action_chunk', 'joint_trajectory'):
            raise ValueError(f'`command_source` must be action_chunk or joint_trajectory. '
                             f'Got {self.command_source!r}.')
        if isinstance(self.replan_steps, bool) or not isinstance(self.replan_steps, int) \
                or self.replan_steps < 0:
            raise ValueError(f'`replan_steps` must be an integer >= 0. Got {self.replan_steps!r}.')
        if not (isinstance(self.command_delay, (int, float))
                and not isinstance(self.command_delay, bool)
                and math.isfinite(self.command_delay) and self.command_delay >= 0):
            raise ValueError(f'`command_delay` must be a number >= 0. Got '
                             f'{self.command_delay!r}.')
        for name in ('slowdown', 'clock_period', 'guard_timeout'):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f'`{name}` must be a positive number. Got {value!r}.')
