"""Several simulated arms on one ROS graph and one /clock: the robots of a policy server.

``FleetSim`` drives N SimRobotNodes (ros/sim_node.py), arm i in namespace ``names[i]``, each
following the policy node ``/<name>/cosmos_policy`` (a robot of policy_server, or a lone
policy_node started in that namespace: the same topics and /diagnostics either way). The sims
share one executor and one /diagnostics subscription (routed to the sim it is about). Episodes
run in rounds: in a round every arm starts its episode at the same sim time (the slot of arm
0's seed, so arm 0's episode is the one `cosmos-policy-sim eval` runs with that seed); an arm
whose episode ended idles (its node skips stale ticks) until every arm's has.

lockstep  each step every running arm publishes its observation; if any arm may start a chunk
          now, the sim waits until each such arm's node reports having received it, publishes
          /clock once, waits until every arm's node has dealt with that tick (idle, its chunks
          received here), then every arm steps. Deterministic, and an arm's chunks are the
          ones it gets alone on the same schedule: a robot's inputs and decisions never
          depend on the other arms (bench/fleet_sim.py checks it against separate nodes).
realtime  sim time follows the wall clock; one /clock every clock_period for all arms, each
          arm's cameras at its step period; inference latency costs steps, as on robots.

Waits are failure guards (SimSettings.guard_timeout), never timing assumptions.
"""
import dataclasses
from pathlib import Path
import time

from diagnostic_msgs.msg import DiagnosticArray
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile
import yaml

from cosmos_policy_ros.conversions import NS_PER_S as NS
from cosmos_policy_ros.fleet.config import DEFAULT_BATCH_WINDOW
from cosmos_policy_ros.node_config import load_parameter_file
from cosmos_policy_ros.node_process import PolicyProcess
from cosmos_policy_ros.ros.sim_node import LockstepError, RESEND_PERIOD, SimRobotNode
from cosmos_policy_ros.sim.arm import CAMERAS, JOINT_NAMES, PlanarReachEnv

POLICY_SIDES = ('server', 'separate')  # one policy_server for every arm, one policy_node each


def start_policies(side, names, model, out, *, node_config, parameters=None, max_batch=8,
                   batch_window=DEFAULT_BATCH_WINDOW, env=None):
    """The policy side of a fleet run, as subprocesses (use_sim_time); returns them
    (node_process.PolicyProcess, close() each).

    side 'server': one policy_server for every arm of `names`, node_config (a policy_node
    parameter file, e.g. config/sim.yaml) and then `parameters` ({name: value}) for each,
    ticks batched up to `max_batch` (1: one at a time); 'separate': one policy_node per arm in
    its namespace, the same parameters. Files and logs in `out`.
    """
    parameters = dict(parameters or {})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if side == 'separate':
        overrides = [f'{key}:={value}' for key, value in parameters.items()]
        return [PolicyProcess(model, node_config, out / f'policy_node_{name}.log', env=env,
                              overrides=overrides, ros_args=['-r', f'__ns:=/{name}'])
                for name in names]
    if side != 'server':
        raise ValueError(f'`side` must be one of {list(POLICY_SIDES)}. Got {side!r}.')
    robot = load_parameter_file(node_config, overrides={'model_path': str(model)})
    fleet = {'server': {'model_path': str(model), 'device': robot.device, 'dtype': robot.dtype,
                        'max_batch': int(max_batch), 'batch_window': float(batch_window)},
             'robot_defaults': [str(Path(node_config).resolve()), parameters],
             'robots': {name: {} for name in names}}
    fleet_file = out / 'fleet.yaml'
    fleet_file.write_text(yaml.safe_dump(fleet))
    params = out / 'policy_server.yaml'
    params.write_text(yaml.safe_dump({'/**': {'ros__parameters': {
        'fleet_file': str(fleet_file)}}}))
    return [PolicyProcess(model, params, out / 'policy_server.log', env=env,
                          script='policy_server')]


class FleetSim:
    """N simulated arms in namespaces `names` (see the module docstring).

    settings: a SimSettings (mode, clock period, replan_steps, guard_timeout) for every arm;
    env_config: the arms' SimConfig (default: the sim's); check(): called while waiting (e.g.
    raises when a policy process died).
    """

    def __init__(self, names, settings, *, context, env_config=None, check=lambda: None,
                 clock_period=None):
        self.names = tuple(names)
        self.settings = settings
        # realtime: seconds between /clock messages (a multiple of settings.clock_period, the
        # physics sub-step); None: every sub-step.
        self.clock_period = clock_period
        self.check = check
        self.executor = SingleThreadedExecutor(context=context)
        self.sims = [SimRobotNode(
            PlanarReachEnv(env_config),
            dataclasses.replace(settings, policy_node=f'/{name}/cosmos_policy'),
            context=context, namespace=name, executor=self.executor, diagnostics=False,
            joint_names=JOINT_NAMES, cameras=CAMERAS) for name in self.names]
        self.node = rclpy.create_node('fleet_sim', context=context)
        self.executor.add_node(self.node)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics,
                                      QoSProfile(depth=100))
        self.clock_ticks = 0
        self._ticks_base = None

    def _on_diagnostics(self, msg):
        for sim in self.sims:
            sim.on_diagnostics(msg)

    def spin(self, seconds):
        self.executor.spin_once(timeout_sec=seconds)

    def wait(self, condition, what, resend=None):
        """Spin until condition() holds; LockstepError after the guard timeout."""
        deadline = time.monotonic() + self.settings.guard_timeout
        resend_at = time.monotonic() + RESEND_PERIOD
        while not condition():
            self.check()
            now = time.monotonic()
            if now > deadline:
                raise LockstepError(
                    f'fleet sim: {what} not reported within {self.settings.guard_timeout:g} s '
                    f'(last diagnostics: ' + '; '.join(
                        f'{name}: {dict(sim.diagnostics)}'
                        for name, sim in zip(self.names, self.sims)) + ')')
            if resend is not None and now > resend_at:
                resend()
                resend_at = now + RESEND_PERIOD
            self.spin(0.02)

    def wait_for_policies(self, timeout=None):
        """Wait until every arm's policy node reports being active and subscribes to every
        input of its arm (the lockstep counts start from the first observation)."""
        settings = self.settings
        if timeout is not None:
            self.settings = dataclasses.replace(settings, guard_timeout=timeout)
        try:
            self.wait(lambda: all(sim.policy_ready() for sim in self.sims),
                      'every policy node active and subscribed')
        finally:
            self.settings = settings

    def publish_clock(self, ns):
        """One /clock for every arm (the first sim's publisher)."""
        self.sims[0].publish_clock(ns)
        for sim in self.sims[1:]:
            sim.now_ns = int(ns)

    def run_round(self, seeds, *, slot_seed=None):
        """One episode per arm (arm i: seeds[i]) from a common start, the slot of `slot_seed`
        (default seeds[0]: arm 0's); their EpisodeTraces."""
        if len(seeds) != len(self.sims):
            raise ValueError(f'one seed per arm: {len(self.sims)} expected, got {len(seeds)}')
        sims = self.sims
        config = sims[0].env.config
        period_ns = round(config.step_period * NS)
        start_ns = sims[0]._start_ns(seeds[0] if slot_seed is None else slot_seed, config)
        latest = max(sim.now_ns for sim in sims)
        if start_ns <= latest:  # keep the one clock monotonic
            start_ns = period_ns * -(-(latest + period_ns) // period_ns)
        traces = [sim.begin_episode(seed, start_ns) for sim, seed in zip(sims, seeds)]
        lockstep = self.settings.mode == 'lockstep'
        if lockstep and self._ticks_base is None:
            self.wait(lambda: all('ticks' in sim.diagnostics and sim._idle(sim.diagnostics)
                                  for sim in sims), 'every tick count')
            self._ticks_base = [int(sim.diagnostics['ticks']) for sim in sims]
        running = set(range(len(sims)))
        step = 0
        wall_origin = time.monotonic()
        while running:
            now_ns = start_ns + step * period_ns
            images = {i: sims[i].observe(traces[i], now_ns) for i in sorted(running)}
            if lockstep:
                self._lockstep_tick(step, now_ns, traces, images)
                for i in sorted(running):
                    sims[i].advance(traces[i], step, now_ns, config.step_period)
            else:
                self._realtime_step(step, now_ns, start_ns, wall_origin, traces, running)
            step += 1
            for i in sorted(running):
                env = sims[i].env
                if env.success and traces[i].success_step is None:
                    traces[i].success_step = step
                if env.done:
                    sims[i].end_episode(traces[i], step)
                    running.discard(i)
        return traces

    def _lockstep_tick(self, step, now_ns, traces, images):
        """The handshake of one lockstep step (module docstring)."""
        sims = self.sims
        due = [i for i in images if sims[i]._decision_due(step, traces[i])]
        if not due:
            return
        self.wait(lambda: all(sims[i]._received_all(sims[i].diagnostics, sims[i].env.task)
                              for i in due),
                  f'arms {[self.names[i] for i in due]} receiving their observations',
                  resend=lambda: [sims[i].publish_observation(now_ns, images[i], resend=True)
                                  for i in due])
        self.publish_clock(now_ns)
        self.clock_ticks += 1
        expected = [base + self.clock_ticks for base in self._ticks_base]
        self.wait(lambda: all(int(sim.diagnostics.get('ticks', -1)) >= want
                              and sim._idle(sim.diagnostics)
                              for sim, want in zip(sims, expected)),
                  f'tick {self.clock_ticks} done on every arm',
                  resend=lambda: self.publish_clock(now_ns))

    def _realtime_step(self, step, now_ns, start_ns, wall_origin, traces, running):
        """One step period of real time: /clock every clock_period, every arm's control."""
        settings = self.settings
        period_ns = round(self.sims[0].env.config.step_period * NS)
        sub_ns = round(settings.clock_period * NS)
        clock_ns = round((self.clock_period or settings.clock_period) * NS)
        moving = set(running)
        for sub in range(0, period_ns, sub_ns):
            t = now_ns + sub
            if sub % clock_ns == 0:
                self.publish_clock(t)
            due = wall_origin + (t - start_ns) / NS * settings.slowdown
            spun = False
            while True:  # at least once: a sim running late still takes its chunks
                left = due - time.monotonic()
                if left <= 0 and spun:
                    break
                self.spin(min(max(left, 0.0), 0.005))
                spun = True
            for i in sorted(moving):
                self.sims[i].advance(traces[i], step, t, min(sub_ns, period_ns - sub) / NS,
                                     record=sub == 0)
                if self.sims[i].env.done:
                    moving.discard(i)
            if not moving:
                break

    def close(self):
        for sim in self.sims:
            sim.close()
        self.executor.shutdown()
        self.node.destroy_node()
