"""The fleet file of a policy server: shared model and engine settings, one entry per robot.

    server:                         # shared by every robot (one model, one engine)
      model_path: /models/aloha     # also: policy_factory, device, dtype, compile_network,
      device: cuda                  #   cuda_graphs, attention_backend, publish_future_images,
      dtype: auto                   #   python_switch_interval, executor (default: events)
      max_batch: 8                  # most robots' ticks in one batched pass
      batch_window: 0.01            # seconds an idle engine waits for more (0: none)
    robot_defaults: aloha.yaml      # policy_node parameters every robot starts from: a
                                    #   parameter file, a mapping, or a list of them (optional)
    robots:                         # name = the robot's namespace (its topics live there)
      left_cell:
        config: left_cell.yaml      # its own parameter file(s) (optional), then
        parameters: {task: fold the towel}          # inline parameters (optional), then
        remappings: {joint_states: /left_cell/arm/joint_states}   # topic remaps (optional)
      right_cell: {}

A robot is the policy node's parameters (docs/node.md), composed in that order, validated as a
NodeConfig (errors name the fleet file, the robot and the parameter); adding or removing one is
one entry (and its own file), the others' files stay as they are. Model and engine settings
are the server's alone: a robot's file may hold them only unset or equal to the server's
(config/sim.yaml's `model_path: ''`), anything else is an error. Relative file names resolve
beside the fleet file. ``load_fleet(path, robots=[...])`` takes a subset (several servers split
one fleet file by namespace) and launch overrides. numpy-free: PyYAML and the core.
"""
from dataclasses import dataclass
import os
import re
from typing import Mapping, Optional, Tuple

from cosmos_policy_ros.config_files import read_yaml
from cosmos_policy_ros.node_config import (check_value, config_from_parameters,
                                           flatten_parameters, NodeConfig, parameter_fields,
                                           read_parameter_file)
from cosmos_policy_ros.policy_loading import factory_options

SHARED_FACTORY = 'cosmos_policy_ros.fleet.engine:shared_policy'
# Node parameters that are the server's: the one model and how it runs.
SHARED_PARAMETERS = ('model_path', 'policy_factory', 'device', 'dtype', 'compile_network',
                     'cuda_graphs', 'attention_backend', 'publish_future_images',
                     'python_switch_interval', 'executor')
# A server's defaults where they differ from a lone node's: the EventsExecutor (dispatch in C++)
# for its robots, since with the multi-threaded one the Python dispatch of N robots' messages
# starved the engine (4 sim arms in real time: 0.25-0.75 chunks/s and 0 of 4 episodes in 2 of
# 3 runs, against 5.7-7.1 and 8 of 8 with events; docs/fleet.md).
SERVER_DEFAULTS = {'executor': 'events'}
DEFAULT_MAX_BATCH = 8
# An idle engine waits this long for the other robots' requests (never when every robot already
# waits): measured to help (4 sim arms, CPU: lockstep throughput 1.58x one at a time instead of
# 1.34x without it, real-time p99 latency 1.6x one arm's instead of 2.2x; docs/fleet.md).
DEFAULT_BATCH_WINDOW = 0.01
MAX_BATCH_LIMIT = 256
ROBOT_KEYS = ('config', 'parameters', 'remappings')
TOP_KEYS = ('server', 'robot_defaults', 'robots')
NODE_NAME = 'cosmos_policy'  # each robot's node: /<namespace>/cosmos_policy, as policy_node
_NAMESPACE = re.compile(r'^[A-Za-z][A-Za-z0-9_]*(/[A-Za-z][A-Za-z0-9_]*)*$')


@dataclass(frozen=True)
class RobotSpec:
    """One robot of the fleet: its node's namespace, parameters and remappings."""

    name: str  # as in the fleet file, e.g. 'arm_0' or 'cell_a/arm_0'
    parameters: Mapping[str, object]  # {dotted name: value} of its node (shared ones included)
    config: NodeConfig  # the same, validated
    remappings: Tuple[Tuple[str, str], ...] = ()

    @property
    def namespace(self):
        return '/' + self.name

    @property
    def node_name(self):
        """The robot node's fully qualified name (its /diagnostics statuses carry it)."""
        return f'{self.namespace}/{NODE_NAME}'


@dataclass(frozen=True)
class FleetConfig:
    """A parsed, validated fleet file (module docstring)."""

    path: str
    shared: Mapping[str, object]  # the server's node parameters (SHARED_PARAMETERS)
    max_batch: int
    batch_window: float
    robots: Tuple[RobotSpec, ...]

    def loader_config(self):
        """The NodeConfig that loads the shared model (policy_loading.load_checked_policy):
        the first robot's, with the server's own policy factory."""
        return self.robots[0].config.replace(policy_factory=self.shared['policy_factory'])

    def factory_arguments(self):
        """(model_path, device, dtype, options) the robots' shared_policy factory gets
        (policy_loading.load_policy_for calls it so): what fleet.engine.serve registers."""
        config = self.robots[0].config
        return config.model_path, config.device, config.dtype, factory_options(config)


def load_fleet(path, *, robots=None, overrides=None):
    """The FleetConfig of the fleet file `path`.

    robots: names to keep (this server's part of the fleet; None or empty: all), in the
    file's order; overrides: server settings given at launch (model_path, device, max_batch,
    ...) over the file's. ValueError naming the file, robot and key for anything wrong.
    """
    path = str(path)
    data = read_yaml(path, 'fleet file')
    if not isinstance(data, Mapping):
        raise ValueError(f'{path}: expected a mapping with `server` and `robots`.')
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise ValueError(f'{path}: unknown key(s) {unknown}; known keys are {list(TOP_KEYS)}.')
    server = dict(_mapping(data.get('server') or {}, f'{path}: server'))
    server.update(overrides or {})
    shared, max_batch, batch_window = _server_settings(server, f'{path}: server')
    entries = _mapping(data.get('robots'), f'{path}: robots')
    if not entries:
        raise ValueError(f'{path}: `robots` must list at least one robot.')
    selected = list(entries) if not robots else list(robots)
    missing = [name for name in selected if name not in entries]
    if missing:
        raise ValueError(f'{path}: robot(s) {missing} are not in the fleet file; it has '
                         f'{list(entries)}.')
    if len(set(selected)) != len(selected):
        raise ValueError(f'{path}: robots {selected} name one robot twice.')
    base = os.path.dirname(os.path.abspath(path))
    defaults = _layers(data.get('robot_defaults'), base, f'{path}: robot_defaults')
    specs = tuple(_robot(name, entries[name], defaults, shared, base, path)
                  for name in selected)
    return FleetConfig(path=path, shared=shared, max_batch=max_batch,
                       batch_window=batch_window, robots=specs)


# --- internals -------------------------------------------------------------------------------
def _mapping(value, source):
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f'{source}: expected a mapping, got {type(value).__name__}.')
    return value


def _server_settings(server, source):
    """(shared node parameters, max_batch, batch_window) of the server section."""
    meta = {name: field_meta for name, _, field_meta in parameter_fields(NodeConfig)}
    defaults = {name: default for name, default, _ in parameter_fields(NodeConfig)}
    defaults.update(SERVER_DEFAULTS)
    known = set(SHARED_PARAMETERS) | {'max_batch', 'batch_window'}
    unknown = sorted(set(server) - known)
    if unknown:
        raise ValueError(f'{source}: unknown key(s) {unknown}; the server section holds '
                         f'{sorted(known)} (per-robot parameters go under `robots`).')
    shared = {}
    for name in SHARED_PARAMETERS:
        value = server.get(name, defaults[name])
        try:
            shared[name] = check_value(name, value, meta[name])
        except ValueError as error:
            raise ValueError(f'{source}: {error}') from None
    if not shared['model_path']:
        raise ValueError(f'{source}: `model_path` must be set (the model every robot runs; '
                         f'model:=... at launch).')
    max_batch = server.get('max_batch', DEFAULT_MAX_BATCH)
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or not (
            1 <= max_batch <= MAX_BATCH_LIMIT):
        raise ValueError(f'{source}: `max_batch` must be an integer in [1, {MAX_BATCH_LIMIT}]. '
                         f'Got {max_batch!r}.')
    window = server.get('batch_window', DEFAULT_BATCH_WINDOW)
    if isinstance(window, bool) or not isinstance(window, (int, float)) or not (
            0.0 <= window <= 1.0):
        raise ValueError(f'{source}: `batch_window` must be a number of seconds in [0, 1]. '
                         f'Got {window!r}.')
    return shared, max_batch, float(window)


def _layers(value, base, source):
    """[(source, {dotted name: value})] of a parameter-file name, a mapping of parameters
    (nested as in YAML, or dotted), or a list of them (applied in order)."""
    if value is None:
        return []
    items = list(value) if isinstance(value, (list, tuple)) else [value]
    layers = []
    for item in items:
        if isinstance(item, Mapping):
            layers.append((source, flatten_parameters(dict(item))))
        elif isinstance(item, str):
            file = item if os.path.isabs(item) else os.path.join(base, item)
            try:
                layers.append((file, read_parameter_file(file, node_name=NODE_NAME)))
            except ValueError as error:
                raise ValueError(f'{source}: {error}') from None
        else:
            raise ValueError(f'{source}: expected parameter file names or mappings of '
                             f'parameters. Got {item!r}.')
    return layers


def _robot(name, entry, defaults, shared, base, path):
    source = f'{path}: robot {name}'
    if not isinstance(name, str) or not _NAMESPACE.match(name):
        raise ValueError(f'{path}: robot names are their namespaces: letters, digits and _ '
                         f'(nested with /), starting with a letter. Got {name!r}.')
    entry = _mapping(entry, source)
    unknown = sorted(set(entry) - set(ROBOT_KEYS))
    if unknown:
        raise ValueError(f'{source}: unknown key(s) {unknown}; a robot has {list(ROBOT_KEYS)}.')
    layers = list(defaults) + _layers(entry.get('config'), base, f'{source}: config')
    if entry.get('parameters') is not None:
        layers += _layers(_mapping(entry['parameters'], f'{source}: parameters'), base,
                          f'{source}: parameters')
    parameters = {}
    for layer_source, values in layers:
        for key in SHARED_PARAMETERS:
            if key in values and not _agrees(key, values[key], shared[key]):
                raise ValueError(
                    f'{source}: {layer_source} sets `{key}` to {values[key]!r}, but the model '
                    f'and engine settings belong to the server ({key}: {shared[key]!r}); set '
                    f'them under `server` (or leave them out of the robot files).')
        parameters.update(values)
    parameters.update(shared)
    parameters['policy_factory'] = SHARED_FACTORY
    for key in ('use_sim_time', 'autostart'):
        if key in parameters:
            raise ValueError(f'{source}: `{key}` is a server setting (a launch argument), '
                             f'not a robot parameter.')
    config = config_from_parameters(parameters, source=source)
    remappings = _mapping(entry.get('remappings'), f'{source}: remappings')
    for key, value in remappings.items():
        if not (isinstance(key, str) and key and isinstance(value, str) and value):
            raise ValueError(f'{source}: remappings must map topic names to topic names. '
                             f'Got {key!r}: {value!r}.')
    return RobotSpec(name=name, parameters=parameters, config=config,
                     remappings=tuple(remappings.items()))


def _agrees(key, value, shared_value):
    """A robot layer may repeat a shared setting (or leave model_path empty)."""
    if key == 'model_path' and value in ('', None):
        return True
    if isinstance(shared_value, float) and isinstance(value, (int, float)) \
            and not isinstance(value, bool):
        return float(value) == shared_value
    return value == shared_value


def parse_robot_list(value: Optional[str]) -> Tuple[str, ...]:
    """'arm_0, arm_1' (a launch argument) -> ('arm_0', 'arm_1'); '' or None -> () (all)."""
    if not value:
        return ()
    return tuple(item.strip().strip('/') for item in value.split(',') if item.strip())
