"""Demonstrations of the planar reach task: scripted rollouts and their rosbag2 episodes.

Rollout kinds (`KINDS`), all executed chunk by chunk in lockstep like a policy (a chunk of
`horizon` commands, then a new chunk from the reached state):

    expert        the scripted expert (`arm.expert_chunk`)
    noisy         the expert plus Gaussian noise on every command
    early_stop    the expert for a few steps, then holding still until the timeout
    wrong_target  the expert reaching for the other colour's target
    near_miss     the expert aiming NEAR_MISS_OFFSET beside the named target (random
                  direction), with small noise: it hovers there, as a policy that misjudges
                  the target's position does (not in the default mix; see docs/sim.md)
    policy        a trained policy (`policy_rollout`), executed as config/sim.yaml makes
                  policy_node do it: the first `execute_steps` (4) commands of each chunk,
                  then a new chunk from the reached state. Its episodes teach the value
                  the returns of that policy; training never imitates their actions.
    recovery      the expert taking over at a state a policy rollout reached
                  (`recovery_rollout`): demonstrations from the states the policy visits,
                  e.g. hovering beside the target (DAgger's idea, with the scripted expert)

The imperfect kinds mostly fail, so the value target sees failures. A bag holds (stamps =
sim time from START_NS, header stamps = log times):

    /cameras/primary/image, /cameras/wrist/image   sensor_msgs/Image rgb8, every step
    /joint_states       sensor_msgs/JointState (names = JOINT_NAMES), every step
    /recorded_actions   sensor_msgs/JointState: the command executed after each step
    /task               std_msgs/String, latched
    /episode            std_msgs/String (latched): JSON outcome {success, steps, seed, kind,
                        goal, step_period, ...}, written last

State i (images, joints) is observed at START_NS + i * step_period; action i is sent at the
same stamp and takes the arm to state i + 1. An episode of N actions has N + 1 states.
"""
from dataclasses import dataclass
import json
from pathlib import Path
from typing import Dict

import numpy as np

from cosmos_policy_ros.bags.reader import BagReader
from cosmos_policy_ros.bags.typestore import make_typestore, ns_to_stamp
from cosmos_policy_ros.bags.writer import BagWriter
from cosmos_policy_ros.conversions import stamp_to_ns
from cosmos_policy_ros.interface import Observation
from cosmos_policy_ros.sim.arm import CAMERAS, expert_chunk, JOINT_NAMES, PlanarReachEnv

KINDS = ('expert', 'noisy', 'early_stop', 'wrong_target', 'near_miss')  # scripted (`rollout`)
POLICY_KIND = 'policy'  # `policy_rollout`
RECORD_KINDS = KINDS + (POLICY_KIND,)
RECOVERY_KIND = 'recovery'  # `recovery_rollout`, recorded after a policy rollout
POLICY_EXECUTE_STEPS = 4  # config/sim.yaml: execute_steps 4, replan_threshold 0
START_NS = 1_700_000_000 * 1_000_000_000
TASK_TOPIC = '/task'
JOINT_TOPIC = '/joint_states'
ACTION_TOPIC = '/recorded_actions'
EPISODE_TOPIC = '/episode'
NOISE_STD = 0.08  # rad, on every command of a noisy rollout
NEAR_MISS_OFFSET = (0.1, 0.2)  # distance of a near miss's aim point from the target (uniform)
NEAR_MISS_NOISE_STD = 0.02  # rad, on every command of a near miss


def camera_topic(camera):
    return f'/cameras/{camera}/image'


@dataclass
class Episode:
    """One recorded episode (see the module docstring for the indexing)."""

    seed: int
    kind: str
    task: str
    step_period: float
    images: Dict[str, np.ndarray]  # camera -> (N + 1, S, S, 3) uint8
    joints: np.ndarray             # (N + 1, 3)
    actions: np.ndarray            # (N, 3) executed commands
    success: bool
    info: dict

    @property
    def num_steps(self):
        return len(self.actions)


class _Recorder:
    """The states, renders and executed commands of one episode as it runs."""

    def __init__(self, env):
        self.env = env
        self.images = {camera: [] for camera in CAMERAS}
        self.joints, self.actions = [], []
        self.frame = None
        self.observe()

    def observe(self):
        self.frame = self.env.render()
        for camera in CAMERAS:
            self.images[camera].append(self.frame[camera])
        self.joints.append(self.env.joint_positions())

    def step(self, command):
        self.env.step(command, self.env.config.step_period)
        self.actions.append(np.asarray(command, dtype=np.float64))
        self.observe()

    def episode(self, seed, kind, **extra):
        env = self.env
        info = {'seed': int(seed), 'kind': kind, 'task': env.task,
                'success': bool(env.success), 'steps': len(self.actions),
                'step_period': env.config.step_period, 'goal': env.goal_color,
                'targets': {c: p.tolist() for c, p in env.targets.items()},
                'final_distance': env.distance_to_goal(), **extra}
        return Episode(seed=int(seed), kind=kind, task=env.task,
                       step_period=env.config.step_period,
                       images={c: np.stack(v) for c, v in self.images.items()},
                       joints=np.stack(self.joints), actions=np.stack(self.actions),
                       success=bool(env.success), info=info)


def rollout(env, seed, kind='expert', *, horizon=8, noise_seed=None):
    """Run one episode of a scripted `kind` from env.reset(seed); returns an Episode."""
    if kind not in KINDS:
        raise ValueError(f'unknown rollout kind {kind!r}; choose one of {list(KINDS)}.')
    env.reset(seed)
    rng = np.random.RandomState((seed * 7919 + KINDS.index(kind)) % 2**32
                                if noise_seed is None else noise_seed)
    dt = env.config.step_period
    stop_after = int(rng.randint(1, 6)) if kind == 'early_stop' else None
    aim = None
    if kind == 'near_miss':
        angle, distance = rng.uniform(0, 2 * np.pi), rng.uniform(*NEAR_MISS_OFFSET)
        aim = env.goal + distance * np.array([np.cos(angle), np.sin(angle)])
    recorder = _Recorder(env)
    while not env.done:
        if kind == 'wrong_target':
            goal_color = env.goal_color
            env.goal_color = next(c for c in env.targets if c != goal_color)
            chunk = expert_chunk(env, horizon, dt)
            env.goal_color = goal_color
        else:
            chunk = expert_chunk(env, horizon, dt, aim=aim)
        for command in chunk:
            if kind == 'noisy':
                command = command + rng.normal(0.0, NOISE_STD, size=command.shape)
            elif kind == 'near_miss':
                command = command + rng.normal(0.0, NEAR_MISS_NOISE_STD, size=command.shape)
            elif stop_after is not None and len(recorder.actions) >= stop_after:
                command = recorder.joints[-1]
            recorder.step(command)
            if env.done:
                break
    return recorder.episode(seed, kind)


def policy_rollout(env, seed, policy, *, execute_steps=POLICY_EXECUTE_STEPS, model=None):
    """Run `policy` (a cosmos_policy_ros.interface.Policy) for one episode from
    env.reset(seed): a chunk from each reached state, its first `execute_steps` commands
    executed; the diffusion seed of tick k is seed * 1000 + k. The Episode's info also holds
    the step and predicted value of every tick (`tick_steps`, `values`) and `model`."""
    env.reset(seed)
    recorder = _Recorder(env)
    tick_steps, values = [], []
    while not env.done:
        output = policy.infer(Observation(images=recorder.frame, proprio=env.joint_positions(),
                                          instruction=env.task,
                                          seed=int(seed) * 1000 + len(tick_steps)))
        tick_steps.append(len(recorder.actions))
        values.append(float(output.value))
        for command in np.asarray(output.actions, dtype=np.float64)[:execute_steps]:
            recorder.step(command)
            if env.done:
                break
    return recorder.episode(seed, POLICY_KIND, tick_steps=tick_steps, values=values,
                            model=model)


def recovery_rollout(env, episode, start, *, horizon=8):
    """The expert from state `start` of `episode` on (reached by replaying its first `start`
    commands from env.reset(episode.seed)), recorded from that state; 0 < start < its steps."""
    if not 0 < start < episode.num_steps:
        raise ValueError(f'`start` must be in (0, {episode.num_steps}); got {start}.')
    env.reset(episode.seed)
    for command in episode.actions[:start]:
        env.step(command, env.config.step_period)
    recorder = _Recorder(env)
    while not env.done:
        for command in expert_chunk(env, horizon, env.config.step_period):
            recorder.step(command)
            if env.done:
                break
    return recorder.episode(episode.seed, RECOVERY_KIND, start_step=int(start),
                            source_kind=episode.kind)


def demonstration_plan(count, *, seed=0, fractions=None):
    """[(episode seed, kind)] for `count` episodes: seeds seed, seed+1, ...; kinds by fraction.

    fractions: {kind: share}; default 70 % expert, 10 % noisy, 10 % early_stop,
    10 % wrong_target (interleaved deterministically).
    """
    fractions = fractions or {'expert': 0.7, 'noisy': 0.1, 'early_stop': 0.1,
                              'wrong_target': 0.1}
    unknown = sorted(set(fractions) - set(RECORD_KINDS))
    if unknown:
        raise ValueError(f'unknown rollout kind(s) {unknown}; choose from {list(RECORD_KINDS)}.')
    total = sum(fractions.values())
    plan, credit = [], {kind: 0.0 for kind in fractions}
    for index in range(count):
        for kind in fractions:
            credit[kind] += fractions[kind] / total
        kind = max(credit, key=lambda k: credit[k])
        credit[kind] -= 1.0
        plan.append((seed + index, kind))
    return plan


# --- bags --------------------------------------------------------------------------------------
def write_episode_bag(episode, path, *, typestore=None, storage='mcap', compression='zstd'):
    """Write `episode` as a rosbag2 bag at `path` (a new directory)."""
    typestore = typestore if typestore is not None else make_typestore()
    types = typestore.types
    step_ns = int(round(episode.step_period * 1e9))

    def header(stamp_ns, frame_id=''):
        return types['std_msgs/msg/Header'](stamp=ns_to_stamp(stamp_ns, typestore),
                                            frame_id=frame_id)

    def joint_state(stamp_ns, position):
        return types['sensor_msgs/msg/JointState'](
            header=header(stamp_ns), name=list(JOINT_NAMES),
            position=np.asarray(position, dtype=np.float64), velocity=np.zeros(0),
            effort=np.zeros(0))

    with BagWriter(path, storage=storage, typestore=typestore, compression=compression) as bag:
        bag.add_topic(TASK_TOPIC, 'std_msgs/msg/String', latched=True)
        for camera in CAMERAS:
            bag.add_topic(camera_topic(camera), 'sensor_msgs/msg/Image')
        bag.add_topic(JOINT_TOPIC, 'sensor_msgs/msg/JointState')
        bag.add_topic(ACTION_TOPIC, 'sensor_msgs/msg/JointState')
        bag.add_topic(EPISODE_TOPIC, 'std_msgs/msg/String', latched=True)
        bag.write(TASK_TOPIC, START_NS, types['std_msgs/msg/String'](data=episode.task))
        for index in range(episode.num_steps + 1):
            stamp_ns = START_NS + index * step_ns
            for camera in CAMERAS:
                image = episode.images[camera][index]
                height, width, channels = image.shape
                bag.write(camera_topic(camera), stamp_ns, types['sensor_msgs/msg/Image'](
                    header=header(stamp_ns, f'{camera}_optical_frame'), height=height,
                    width=width, encoding='rgb8', is_bigendian=0, step=width * channels,
                    data=image.reshape(-1)))  # (H, W, 3) -> (H*W*3,)
            bag.write(JOINT_TOPIC, stamp_ns, joint_state(stamp_ns, episode.joints[index]))
            if index < episode.num_steps:
                bag.write(ACTION_TOPIC, stamp_ns,
                          joint_state(stamp_ns, episode.actions[index]))
        end_ns = START_NS + episode.num_steps * step_ns
        bag.write(EPISODE_TOPIC, end_ns,
                  types['std_msgs/msg/String'](data=json.dumps(episode.info, sort_keys=True)))
    return Path(path)


def read_episode_bag(path):
    """Read a bag written by `write_episode_bag` back into an Episode."""
    images = {camera: [] for camera in CAMERAS}
    joints, actions, task, info = [], [], None, None
    topics = [TASK_TOPIC, JOINT_TOPIC, ACTION_TOPIC, EPISODE_TOPIC] + [
        camera_topic(c) for c in CAMERAS]
    by_topic = {camera_topic(c): c for c in CAMERAS}
    with BagReader(path) as bag:
        bag.check_topics(topics)
        for item in bag.messages(topics):
            message = item.message
            if item.topic == TASK_TOPIC:
                task = message.data
            elif item.topic == EPISODE_TOPIC:
                info = json.loads(message.data)
            elif item.topic in by_topic:
                shape = (message.height, message.width, 3)
                images[by_topic[item.topic]].append(
                    np.asarray(message.data, dtype=np.uint8).reshape(shape))
            else:
                index = [list(message.name).index(n) for n in JOINT_NAMES]
                row = np.asarray(message.position, dtype=np.float64)[index]
                (joints if item.topic == JOINT_TOPIC else actions).append(
                    (stamp_to_ns(message.header.stamp), row))
    if info is None or task is None:
        raise ValueError(f'{path}: no {EPISODE_TOPIC} outcome or {TASK_TOPIC} message.')
    joints = np.stack([row for _, row in sorted(joints, key=lambda x: x[0])])
    actions = np.stack([row for _, row in sorted(actions, key=lambda x: x[0])])
    if len(joints) != len(actions) + 1 or any(len(v) != len(joints) for v in images.values()):
        raise ValueError(f'{path}: expected N + 1 states for N actions; got {len(joints)} '
                         f'joint states, {len(actions)} actions, '
                         f'{ {c: len(v) for c, v in images.items()} } images.')
    return Episode(seed=int(info['seed']), kind=info['kind'], task=task,
                   step_period=float(info['step_period']),
                   images={c: np.stack(v) for c, v in images.items()}, joints=joints,
                   actions=actions, success=bool(info['success']), info=info)


def record_demonstrations(out_dir, count, *, seed=0, fractions=None, horizon=8, config=None,
                          log=None, policy=None, model=None, recovery_every=0):
    """Roll out `demonstration_plan(count, seed=seed)` and write one bag per episode.

    Bags are named episode_<seed>_<kind>. Episodes of kind 'policy' run `policy`
    (`policy_rollout`; `model` names it in their info); with recovery_every K > 0 each is
    followed by the expert's recoveries from its states K, 2K, ... before its last
    (`recovery_rollout`; bags episode_<seed>_recovery_<state>). Returns the bag paths.
    """
    plan = demonstration_plan(count, seed=seed, fractions=fractions)
    if policy is None and any(kind == POLICY_KIND for _, kind in plan):
        raise ValueError(f'rollout kind {POLICY_KIND!r} needs a policy to roll out.')
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    env = PlanarReachEnv(config)
    typestore = make_typestore()
    paths = []
    for episode_seed, kind in plan:
        episode = (policy_rollout(env, episode_seed, policy, model=model)
                   if kind == POLICY_KIND else rollout(env, episode_seed, kind, horizon=horizon))
        episodes = [(f'episode_{episode_seed:06d}_{kind}', episode)]
        if kind == POLICY_KIND and recovery_every > 0:
            episodes += [(f'episode_{episode_seed:06d}_{RECOVERY_KIND}_{start:02d}',
                          recovery_rollout(env, episode, start, horizon=horizon))
                         for start in range(recovery_every, episode.num_steps, recovery_every)]
        for name, recorded in episodes:
            path = out_dir / name
            write_episode_bag(recorded, path, typestore=typestore)
            paths.append(path)
            if log is not None:
                log(f'[record] {path.name}: {"success" if recorded.success else "failure"} '
                    f'after {recorded.num_steps} steps')
    return paths
