"""The policy server (console script `policy_server`): one model, several robots, batched ticks.

    policy_server --ros-args -p fleet_file:=fleet.yaml [-p robots:=[arm_0,arm_1]] \\
        [-p model_path:=/models/aloha] [-p device:=cuda:1] [-p use_sim_time:=true]
    ros2 launch cosmos_policy_ros policy_server.launch.py fleet:=fleet.yaml robots:=arm_0,arm_1

One process holds

* the node `policy_server`: its parameters name the fleet file (fleet/config.py), which of its
  robots this server runs and launch overrides of the shared settings; it loads the model once,
  runs the BatchingEngine (fleet/engine.py) and reports it on /diagnostics
  (`<server>: engine`: batches, batch sizes, queue time);
* per robot, the lifecycle node `/<namespace>/cosmos_policy`: the PolicyNode of policy_node
  (ros/policy_node.py) as it is, with the robot's parameters from the fleet file and, as its
  policy, a client of the shared engine (policy_factory fleet.engine:shared_policy). So each
  robot has its own topics (relative to its namespace), control loop, timer, inference thread,
  parameters (`ros2 param`), lifecycle (`ros2 lifecycle`) and /diagnostics, exactly as a lone
  policy_node; only its inference goes through the engine, which batches the robots' ticks.

A bad fleet file or model fails at start (exit code 1, one line naming the file, robot and key);
a robot whose configure fails stays unconfigured with the error on its /diagnostics while the
others run. SIGINT/SIGTERM exit 0; as policy_node, the process ends with the one that started
it (process_lifetime.py).
"""
import sys

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter

from cosmos_policy_ros import process_lifetime
from cosmos_policy_ros.fleet.config import load_fleet, NODE_NAME
from cosmos_policy_ros.fleet.engine import BatchingEngine, serve, unserve
from cosmos_policy_ros.policy_loading import load_checked_policy
from cosmos_policy_ros.ros.policy_node import (make_executor, PolicyNode, spin_nodes,
                                               start_process)

SERVER_NAME = 'policy_server'
# The server's own parameters: (name, default, description). Empty / 0 / negative: the
# fleet file's value.
PARAMETERS = (
    ('fleet_file', '', 'Fleet file (fleet/config.py, docs/fleet.md): shared model settings and '
                       'the robots'),
    ('robots', [''], "Robots (namespaces) of the fleet file this server runs; [''] or empty: "
                     'all of them'),
    ('model_path', '', "Model directory; overrides the fleet file's server.model_path"),
    ('policy_factory', '', "Policy factory; overrides the fleet file's server.policy_factory"),
    ('device', '', "Device; overrides the fleet file's server.device"),
    ('dtype', '', "Weight dtype; overrides the fleet file's server.dtype"),
    ('max_batch', 0, "Most robots' ticks per batched pass; 0: the fleet file's"),
    ('batch_window', -1.0, 'Seconds an idle engine waits for more requests; negative: the '
                           "fleet file's"),
    ('autostart', True, 'Configure and activate every robot node on start (false: leave them '
                        'unconfigured for ros2 lifecycle)'),
    ('diagnostics_period', 1.0, 'Period of the engine status on /diagnostics [s]'),
)
EXECUTOR_THREADS = 4  # multi_threaded: plus one per robot, so every robot's callbacks can run
# while others wait


def robot_parameter_value(value):
    """A fleet parameter as an rclpy Parameter value: lists as lists, a number list with a
    float in it all floats (rclpy has no mixed arrays)."""
    if isinstance(value, (list, tuple)):
        items = list(value)
        if any(isinstance(item, float) for item in items):
            return [float(item) for item in items]
        return items
    return value


def robot_node(spec, *, context, use_sim_time, autostart):
    """The PolicyNode of one robot (fleet.config.RobotSpec): its namespace, its parameters as
    overrides, its remappings; none of the process's global ROS arguments (launch renames the
    server, not its robots)."""
    overrides = [Parameter(name, value=robot_parameter_value(value))
                 for name, value in spec.parameters.items()
                 if not (isinstance(value, (list, tuple)) and not value)]  # empty: the default
    overrides += [Parameter('use_sim_time', value=bool(use_sim_time)),
                  Parameter('autostart', value=bool(autostart))]
    remaps = [item for source, target in spec.remappings
              for item in ('-r', f'{source}:={target}')]
    return PolicyNode(NODE_NAME, namespace=spec.namespace, context=context,
                      use_global_arguments=False, parameter_overrides=overrides,
                      cli_args=['--ros-args', *remaps] if remaps else None)


def engine_status(name, engine, robots, previous_failed):
    """The DiagnosticStatus `<name>: engine` of a BatchingEngine serving `robots` nodes."""
    stats = engine.stats.snapshot()
    values = [('model_id', engine.model_id), ('robots', robots),
              ('max_batch', engine.max_batch), ('batch_window_s', engine.batch_window),
              ('batches', stats['batches']), ('requests', stats['requests']),
              ('mean_batch', f'{stats["mean_batch"]:.3f}'), ('waiting', engine.waiting()),
              ('failed_requests', stats['failed_requests'])]
    values += [(f'batch_size.{size}', count) for size, count in stats['batch_sizes'].items()]
    for key in ('queue_seconds', 'batch_seconds'):
        for percent in ('p50', 'p99', 'max'):
            if percent in stats[key]:
                values.append((f'{key[:-len("_seconds")]}_{percent}_s',
                               f'{stats[key][percent]:.6g}'))
    failed = stats['failed_requests'] > previous_failed
    level = DiagnosticStatus.WARN if failed else DiagnosticStatus.OK
    message = ('requests failed (see the diagnostics of the robots)' if failed else
               f'{stats["batches"]} batches, mean size {stats["mean_batch"]:.2f}')
    return DiagnosticStatus(level=level, name=f'{name}: engine', message=message,
                            hardware_id=name,
                            values=[KeyValue(key=key, value=str(value)) for key, value in values])


class PolicyServer:
    """The server node, the shared engine and the robot nodes of one process."""

    def __init__(self, context=None):
        self.context = context
        self.node = rclpy.create_node(SERVER_NAME, context=context)
        for name, default, description in PARAMETERS:
            self.node.declare_parameter(name, default, ParameterDescriptor(
                name=name, description=f'{description}. Default: {default!r}.',
                read_only=True))
        self.engine = None
        self.fleet = None
        self.robots = []  # PolicyNode per robot, in the fleet file's order
        self._failed = 0
        self._publisher = self._timer = None

    def _value(self, name):
        return self.node.get_parameter(name).value

    def load(self):
        """Read the fleet file, load the model, start the engine; ValueError naming the cause."""
        fleet_file = self._value('fleet_file')
        if not fleet_file:
            raise ValueError('`fleet_file` must name a fleet file (docs/fleet.md).')
        overrides = {name: self._value(name)
                     for name in ('model_path', 'policy_factory', 'device', 'dtype')
                     if self._value(name)}
        if self._value('max_batch') > 0:
            overrides['max_batch'] = self._value('max_batch')
        if self._value('batch_window') >= 0:
            overrides['batch_window'] = self._value('batch_window')
        robots = [name for name in (self._value('robots') or ()) if name]
        self.fleet = fleet = load_fleet(fleet_file, robots=robots, overrides=overrides)
        self.node.get_logger().info(
            f'fleet {fleet_file}: robots {[spec.name for spec in fleet.robots]}; loading '
            f'{fleet.shared["model_path"]!r} once (device {fleet.shared["device"]!r}, dtype '
            f'{fleet.shared["dtype"]!r}), max_batch {fleet.max_batch}')
        policy = load_checked_policy(fleet.loader_config())
        self.engine = BatchingEngine(policy, max_batch=fleet.max_batch,
                                     batch_window=fleet.batch_window)
        model_path, device, dtype, options = fleet.factory_arguments()
        serve(self.engine, model_path, device=device, dtype=dtype, **options)
        self._publisher = self.node.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._timer = self.node.create_timer(
            self._value('diagnostics_period'), self.report,
            clock=Clock(clock_type=ClockType.STEADY_TIME),
            callback_group=MutuallyExclusiveCallbackGroup())

    def start_robots(self):
        """Create every robot node; with autostart configure and activate each (a failure is
        that robot's: logged and on its /diagnostics, the others go on)."""
        use_sim_time = self.node.get_parameter('use_sim_time').value
        autostart = self._value('autostart')
        for spec in self.fleet.robots:
            node = robot_node(spec, context=self.context, use_sim_time=use_sim_time,
                              autostart=autostart)
            self.robots.append(node)
            if autostart and not (node.trigger_configure() == TransitionCallbackReturn.SUCCESS
                                  and node.trigger_activate()
                                  == TransitionCallbackReturn.SUCCESS):
                self.node.get_logger().error(f'robot {spec.name} did not start (see its log '
                                             f'and /diagnostics); serving the others')

    def report(self):
        status = engine_status(self.node.get_fully_qualified_name(), self.engine,
                               len(self.robots), self._failed)
        self._failed = self.engine.stats.snapshot()['failed_requests']
        msg = DiagnosticArray()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.status = [status]
        self._publisher.publish(msg)

    def nodes(self):
        return [self.node, *self.robots]

    def close(self):
        """Release the robots (each waits for its inference), then the engine."""
        for robot in self.robots:
            robot.close()
        self.robots = []
        if self.engine is not None:
            unserve(self.engine)
            self.engine.close()
        self.node.destroy_node()


def main(args=None):
    """Console script: serve until SIGINT/SIGTERM (exit 0); a bad fleet file or model: 1."""
    watch = start_process('policy_server', SERVER_NAME, args)
    if watch is None:
        return 2
    server = None
    code = 0
    try:
        server = PolicyServer()
        try:
            server.load()
        except ValueError as error:
            server.node.get_logger().error(f'cannot start: {error}')
            return 1
        server.start_robots()
        if rclpy.ok():
            executor = make_executor(server.fleet.shared['executor'],
                                     threads=EXECUTOR_THREADS + len(server.robots))
            spin_nodes(executor, server.nodes())
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise
    finally:
        watch.stop()
        # Ctrl-C in a terminal reaches the process twice under ros2 launch (the group's signal
        # and launch's own); releasing N robots takes a moment, and must not be cut short.
        process_lifetime.ignore_stop_signals()
        if server is not None:
            server.close()
        rclpy.try_shutdown()
    return code


if __name__ == '__main__':
    sys.exit(main())
