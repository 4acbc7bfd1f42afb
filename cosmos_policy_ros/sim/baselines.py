"""The closed loop without ROS: an episode in lockstep where a chunk function stands in for the
node (``run_offline_episode``, executed by the same ChunkController as the sim node), and the
baselines of the evaluation on it: the scripted expert, random joint targets, holding still."""
import numpy as np

from cosmos_policy_ros.conversions import NS_PER_S as NS
from cosmos_policy_ros.sim.arm import (expert_chunk, JOINT_LOWER, JOINT_NAMES, JOINT_UPPER,
                                       PlanarReachEnv)
from cosmos_policy_ros.sim.controller import ChunkController
from cosmos_policy_ros.sim.episode_trace import ChunkRecord, EpisodeTrace

BASELINES = ('expert', 'random', 'hold')


def run_offline_episode(env, seed, chunk_fn, *, joint_names, horizon, step_period,
                        replan_steps, start_ns=0, record_frames=False):
    """One lockstep episode without ROS: chunk_fn(env, step) -> (horizon, d) array or None
    (None: no new chunk, keep executing) every `replan_steps` steps, executed by the same
    ChunkController as the ROS sim node (stamp = the step's time). Returns an EpisodeTrace."""
    env.reset(seed)
    controller = ChunkController(tuple(joint_names))
    controller.reset(env.joint_positions())
    period_ns = round(step_period * NS)
    trace = EpisodeTrace(seed=seed, task=env.task, start_ns=start_ns, step_period=step_period)
    step = 0
    while not env.done:
        now_ns = start_ns + step * period_ns
        if record_frames:
            trace.frames.append(env.render()['primary'])
        if step % replan_steps == 0:
            actions = chunk_fn(env, step)
            if actions is not None:
                actions = np.asarray(actions, dtype=np.float64)
                reason, detail = controller.offer_chunk(
                    stamp_ns=now_ns, action_names=joint_names, horizon=len(actions),
                    action_dim=actions.shape[1], step_period=step_period, actions=actions,
                    now_ns=now_ns)
                if not reason:
                    trace.chunks.append(ChunkRecord(stamp_ns=now_ns, step=step,
                                                    actions=actions, arrival_delay=0.0))
        applied = controller.command(now_ns)
        trace.record_step(env.joint_positions(), env.distance_to_goal(), applied)
        env.step(applied.command, step_period)
        step += 1
        if env.success and trace.success_step is None:
            trace.success_step = step
    trace.steps = step
    trace.refused = dict(controller.refused)
    return trace


def run_baseline(name, seeds, *, horizon=8, replan_steps=4, on_episode=None,
                 record_frames=False):
    """The scripted expert, random joint targets or holding still, without ROS."""
    env = PlanarReachEnv()
    period = env.config.step_period
    traces = []
    for seed in seeds:
        rng = np.random.RandomState(seed)
        if name == 'expert':
            def chunk_fn(env, step):
                return expert_chunk(env, horizon, period)
        elif name == 'random':
            def chunk_fn(env, step, rng=rng):
                return rng.uniform(JOINT_LOWER, JOINT_UPPER, size=(horizon, len(JOINT_NAMES)))
        elif name == 'hold':
            def chunk_fn(env, step):
                return None
        else:
            raise ValueError(f'unknown baseline {name!r}; one of {list(BASELINES)}')
        trace = run_offline_episode(env, seed, chunk_fn, joint_names=JOINT_NAMES,
                                    horizon=horizon, step_period=period,
                                    replan_steps=replan_steps, record_frames=record_frames)
        traces.append(trace)
        if on_episode is not None:
            on_episode(trace)
    return traces
