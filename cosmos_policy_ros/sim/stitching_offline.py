"""The stitching grid offline, on recorded bags (``cosmos-policy-sim stitching
--offline-episodes N``): scripted-expert episodes of the sim recorded as bags with the node's
input topics, run through the offline evaluator for every stitching method and latency; the
metrics are of what a time-aligned controller would execute from the published chunks
(sim/stitching.py's module docstring).
"""
import math
from pathlib import Path
import shutil
import time

import numpy as np

from cosmos_policy_ros.bags.typestore import make_typestore, ns_to_stamp
from cosmos_policy_ros.bags.writer import BagWriter
from cosmos_policy_ros.evaluation.evaluate import evaluate
from cosmos_policy_ros.execution import (boundary_jumps, executed_sequence, jerk,
                                         STITCHING_METHODS)
from cosmos_policy_ros.node_config import load_parameter_file
from cosmos_policy_ros.policy_loading import load_checked_policy
from cosmos_policy_ros.sim.arm import expert_chunk, JOINT_NAMES, PlanarReachEnv
from cosmos_policy_ros.sim.stitching_grid import DEFAULT_LATENCIES, DEFAULT_OVERLAP, latency_steps

BAG_START_NS = 1_700_000_000 * 1_000_000_000


BAG_STEPS = 30  # steps per recorded bag (3 s at 0.1 s)


def record_expert_bag(path, seed, *, config_path, horizon=8, steps=BAG_STEPS):
    """`steps` steps of the scripted expert on the sim from `seed` as a bag with the node's
    input topics (sim.yaml): images and joint states stamped on the step grid from BAG_START_NS,
    the task at the start. The expert keeps commanding (holding at the target) after success, so
    every bag has the same length."""
    config = load_parameter_file(config_path, overrides={'model_path': '-'})
    topic = {camera.name: '/' + camera.topic.lstrip('/') for camera in config.cameras}
    joints_topic = '/' + config.proprio_sources[0].topic.lstrip('/')
    task_topic = '/' + config.task_topic.lstrip('/')
    env = PlanarReachEnv()
    env.reset(seed)
    period = env.config.step_period
    period_ns = round(period * 1e9)
    typestore = make_typestore()
    types = typestore.types
    with BagWriter(path, typestore=typestore) as bag:
        for name in topic.values():
            bag.add_topic(name, 'sensor_msgs/msg/Image')
        bag.add_topic(joints_topic, 'sensor_msgs/msg/JointState')
        bag.add_topic(task_topic, 'std_msgs/msg/String', latched=True)
        bag.write(task_topic, BAG_START_NS, types['std_msgs/msg/String'](data=env.task))
        plan = None
        for step in range(steps):
            stamp = BAG_START_NS + step * period_ns
            header = types['std_msgs/msg/Header'](stamp=ns_to_stamp(stamp, typestore),
                                                  frame_id='')
            for camera, image in env.render().items():
                height, width, channels = image.shape
                bag.write(topic[camera], stamp, types['sensor_msgs/msg/Image'](
                    header=header, height=height, width=width, encoding='rgb8',
                    is_bigendian=0, step=width * channels, data=image.reshape(-1)))
            bag.write(joints_topic, stamp, types['sensor_msgs/msg/JointState'](
                header=header, name=list(JOINT_NAMES),
                position=np.asarray(env.joint_positions(), np.float64),
                velocity=np.zeros(0), effort=np.zeros(0)))
            if step % 4 == 0:
                plan = expert_chunk(env, horizon, period)
            env.step(plan[step % 4], period)


def offline_cell(policy, config, bags, out):
    """Metrics of one (method, latency) on the recorded bags (module docstring)."""
    ratios, jerks, chunks, conditioned, blended = [], [], 0, 0, 0
    for index, bag in enumerate(bags):
        report = evaluate(bag, policy, config, Path(out) / f'{index}', plots=False,
                          progress=False)
        published = [tick.chunk for tick in report.chunks]
        chunks += len(published)
        conditioned += sum(1 for c in published if c.conditioned_steps)
        blended += sum(1 for c in published if c.blended_steps)
        if len(published) < 2:
            continue
        executed, ids, switches = executed_sequence(
            [c.stamp_ns for c in published], [c.actions for c in published],
            published[0].step_period_ns, [c.takeover_step for c in published])
        jumps, _ = boundary_jumps(executed, switches, ids)
        ratios += [float(r) for r in jumps if math.isfinite(r)]
        if len(executed) > 3:
            jerks.append(float(np.sqrt(np.mean(jerk(executed, config.step_period) ** 2))))

    def stat(values, fn):
        return float(fn(values)) if values else math.nan

    return {'episodes': len(bags), 'chunks': chunks, 'conditioned_chunks': conditioned,
            'blended_chunks': blended, 'switches': len(ratios),
            'jump_ratio_median': stat(ratios, np.median),
            'jump_ratio_mean': stat(ratios, np.mean),
            'jump_ratio_p90': stat(ratios, lambda v: np.percentile(v, 90)),
            'jump_ratio_max': stat(ratios, np.max),
            'rms_command_jerk_mean': stat(jerks, np.mean)}


def run_offline(model, config_path, seeds, out, *, methods=STITCHING_METHODS,
                fractions=DEFAULT_LATENCIES, overlap=DEFAULT_OVERLAP, printer=print):
    """[cell dicts] of every method x latency on expert bags of `seeds` (in-process policy)."""
    out = Path(out)
    bags = []
    for seed in seeds:
        path = out / 'bags' / f'expert_{seed}'
        if not path.exists():
            record_expert_bag(path, seed, config_path=config_path)
        bags.append(path)
    shutil.rmtree(out / 'offline', ignore_errors=True)  # evaluate() wants new directories
    config = load_parameter_file(config_path, overrides={'model_path': str(model)})
    policy = load_checked_policy(config)
    execute = config.execute_steps or policy.layout.chunk_size
    cells = []
    for fraction in fractions:
        steps = latency_steps(fraction, execute)
        for method in methods:
            started = time.monotonic()
            cell_config = config.replace(stitching=method, stitching_overlap=overlap,
                                         latency_margin=steps * config.step_period)
            metrics = offline_cell(policy, cell_config, bags,
                                   out / 'offline' / f'{method}_{steps}')
            cells.append(dict(method=method, latency_fraction=fraction, latency_steps=steps,
                              **metrics))
            printer(f'  offline latency {100 * fraction:3.0f} %  {method:14s} jump/step median '
                    f'{metrics["jump_ratio_median"]:5.2f} max {metrics["jump_ratio_max"]:5.2f}'
                    f'  command jerk {metrics["rms_command_jerk_mean"]:7.1f}  '
                    f'({time.monotonic() - started:.0f} s)')
    return cells
