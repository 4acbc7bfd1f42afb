"""Two robots on one shared model, without a graph: nothing robot A does reaches robot B.

Each robot is a ControlLoop (its own rules) whose policy is a client of one BatchingEngine
around the shipped planar-reach model, driven as a node drives it: messages into `receive`, a
tick per 0.1 s of (fake) ROS time, each job completed on the robot's own thread so that the
engine batches them. Robot A then gets NaN joints, a camera that stops, a task change or a
deactivation while its chunk is computed, or a chunk its limits reject; robot B's chunks must
be those it gets with nobody beside it, bit for bit (the engine is batch-invariant on the CPU:
engine/dit.py, engine/vae.py), and A's trouble is counted on A only."""
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from cosmos_policy_ros.control_loop import ControlLoop, DEACTIVATED, Job, TASK_CHANGED
from cosmos_policy_ros.fleet.engine import BatchingEngine
from cosmos_policy_ros.node_config import config_from_parameters
from cosmos_policy_ros.safety import LIMITS
from cosmos_policy_ros.sim.arm import JOINT_NAMES, PlanarReachEnv, TASKS
from cosmos_policy_ros.sim.model import shipped_model_dir
from cosmos_policy_ros.sync import MISSING, SKEW, STALE
from cosmos_policy_ros.testing import fake_header

S = 1_000_000_000
T0 = 2_000 * S
PERIOD = S // 10
TICKS = 5


@pytest.fixture(scope='module')
def policy():
    if not (shipped_model_dir() / 'model.json').is_file():
        pytest.skip('no trained model shipped (cosmos_policy_ros/models/planar_reach)')
    from cosmos_policy_ros.engine.policy import load_policy
    return load_policy(shipped_model_dir(), device='cpu', dtype='fp32')


def arm_config(**changes):
    """config/sim.yaml's robot, every tick a chunk (replan_mode every_tick)."""
    parameters = {
        'model_path': 'unused', 'cameras': ['wrist', 'primary'], 'proprio_sources': ['arm'],
        'proprio': {'arm': {'type': 'joint_state', 'joints': list(JOINT_NAMES)}},
        'action_space': 'joint_position', 'action_names': list(JOINT_NAMES),
        'task': TASKS[1], 'sync_tolerance': 0.02, 'max_observation_age': 0.15,
        'max_publish_age': 30.0, 'step_period': 0.1, 'rate': 10.0, 'seed': 0}
    parameters.update(changes)
    return config_from_parameters(parameters)


class Arm:
    """A simulated arm (fixed pose, its own seed) feeding its ControlLoop."""

    def __init__(self, client, seed, **config):
        self.env = PlanarReachEnv()
        self.env.reset(seed)
        self.loop = ControlLoop(client, arm_config(**config))
        self.loop.start()
        self.published = {}  # tick stamp -> chunk actions
        self.rejected = {}  # tick stamp -> reason
        self.active = True  # a node ticks its loop only while active

    def feed(self, stamp_ns, *, joints=None, cameras=('wrist', 'primary')):
        images = self.env.render()
        positions = self.env.joint_positions() if joints is None else joints
        for stream in self.loop.streams:
            if stream.name in images and stream.name in cameras:
                rgb = images[stream.name]
                msg = SimpleNamespace(header=fake_header(stamp_ns), height=rgb.shape[0],
                                      width=rgb.shape[1], encoding='rgb8', is_bigendian=0,
                                      step=rgb.shape[1] * 3, data=rgb.tobytes())
            elif stream.name == 'arm':
                msg = SimpleNamespace(header=fake_header(stamp_ns), name=list(JOINT_NAMES),
                                      position=[float(v) for v in positions], velocity=[],
                                      effort=[])
            else:
                continue
            self.loop.receive(stream, msg)

    def finish(self, job, now_ns):
        finished, _, _ = self.loop.complete(job, lambda: now_ns)
        if finished.ok:
            self.published[job.reference_ns] = finished.chunk.actions
        else:
            self.rejected[job.reference_ns] = finished.reason


def run_ticks(arms, *, before_finish=lambda tick, jobs: None, feed=None):
    """TICKS ticks: every arm fed, ticked, its job completed on its own thread."""
    for tick in range(TICKS):
        now = T0 + tick * PERIOD
        for index, arm in enumerate(arms):
            (feed or (lambda index, arm, tick, now: arm.feed(now)))(index, arm, tick, now)
        jobs = {index: arm.loop.tick(now) for index, arm in enumerate(arms) if arm.active}
        jobs = {index: job for index, job in jobs.items() if isinstance(job, Job)}
        before_finish(tick, jobs)
        threads = [threading.Thread(target=arms[index].finish, args=(job, now))
                   for index, job in jobs.items()]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)


@pytest.fixture
def serve(policy):
    engines = []

    def make():
        # The window lets a tick's two requests meet in one batch however threads are timed.
        engine = BatchingEngine(policy, max_batch=8, batch_window=1.0)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


@pytest.fixture
def alone(serve):
    """Robot B's chunks with no other robot on the server."""
    engine = serve()
    b = Arm(engine.client('b'), seed=100001)
    run_ticks([b])
    assert len(b.published) == TICKS
    return b.published


def assert_b_unaffected(b, alone):
    assert list(b.published) == list(alone)  # every tick, the same observations and seeds
    for stamp, actions in alone.items():
        np.testing.assert_array_equal(b.published[stamp], actions, err_msg=str(stamp))


def test_robots_share_batches_and_b_gets_its_own_chunks(serve, alone):
    engine = serve()
    a, b = Arm(engine.client('a'), seed=100000), Arm(engine.client('b'), seed=100001)
    run_ticks([a, b])
    assert engine.stats.snapshot()['batch_sizes'] == {2: TICKS}  # every tick: one pass
    assert_b_unaffected(b, alone)
    # A's chunks are A's: another observation, another chunk.
    stamp = next(iter(alone))
    assert np.abs(a.published[stamp] - alone[stamp]).max() > 1e-3


def test_nan_joints_and_a_silent_camera_on_a_stay_with_a(serve, alone):
    engine = serve()
    a, b = Arm(engine.client('a'), seed=100000), Arm(engine.client('b'), seed=100001)

    def feed(index, arm, tick, now):
        if index == 1 or tick == 0:
            arm.feed(now)
        elif tick < 3:  # NaN joints: dropped at the conversion, counted
            arm.feed(now, joints=[np.nan, 0.0, 0.0])
        else:  # the primary camera stopped: A's newest set gets old
            arm.feed(now, cameras=('wrist',))

    run_ticks([a, b], feed=feed)
    assert_b_unaffected(b, alone)
    assert list(a.published) == [T0]  # A: only its healthy first tick
    counts = a.loop.input_counts.snapshot()
    assert counts[('arm', 'non_finite')] == 2
    assert b.loop.input_counts.total() == b.loop.input_counts.get('arm', 'received') * 3
    reasons = {a.loop.tick(T0 + TICKS * PERIOD).reason}
    assert reasons <= {MISSING, SKEW, STALE}


def test_a_task_change_or_deactivation_mid_batch_rejects_only_a(serve, alone):
    engine = serve()
    a, b = Arm(engine.client('a'), seed=100000), Arm(engine.client('b'), seed=100001)

    def meddle(tick, jobs):
        if tick == 1 and 0 in jobs:
            a.loop.set_task(TASKS[0])  # while its chunk is being computed
        if tick == 3 and 0 in jobs:
            a.loop.stop()  # deactivated while its chunk is being computed
            a.active = False

    run_ticks([a, b], before_finish=meddle)
    assert_b_unaffected(b, alone)
    assert a.rejected == {T0 + PERIOD: TASK_CHANGED, T0 + 3 * PERIOD: DEACTIVATED}
    assert list(a.published) == [T0, T0 + 2 * PERIOD]


def test_a_chunk_rejected_by_a_s_limits_does_not_touch_b(serve, alone):
    engine = serve()
    a = Arm(engine.client('a'), seed=100000, action_lower_limits=[-0.01] * 3,
            action_upper_limits=[0.01] * 3)  # nothing the model says fits
    b = Arm(engine.client('b'), seed=100001)
    run_ticks([a, b])
    assert_b_unaffected(b, alone)
    assert set(a.rejected.values()) == {LIMITS} and len(a.rejected) == TICKS
