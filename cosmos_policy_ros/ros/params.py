"""ROS parameters of the policy node, declared and read from the NodeConfig field table.

Every parameter gets a ParameterDescriptor (description with unit and default, integer or
floating-point range, choices, read_only unless it may change at runtime). Types are checked
by NodeConfig's validation rather than by rclpy (descriptors use dynamic typing), so `rate: 10`
in a YAML file is accepted for a float parameter and every error names the parameter.

Camera and proprio source parameters are declared once their names are known:
`cameras: [wrist, primary]` declares `camera.wrist.topic`, `camera.wrist.transport`, ...
"""
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterAlreadyDeclaredException

from cosmos_policy_ros.node_config import (CameraConfig, check_value, names_list, NodeConfig,
                                           parameter_fields, ProprioSourceConfig,
                                           unknown_parameters_error)

# Parameters of the node that are not NodeConfig fields.
LIST_PARAMETERS = (
    ('cameras', 'Camera names, as in the model layout (declares camera.<name>.*)'),
    ('proprio_sources', 'Proprio source names, in proprio order (declares proprio.<name>.*)'),
)
AUTOSTART = ('autostart', True, 'Configure and activate by itself on start (false: wait for '
                                'lifecycle transitions)')


def descriptor(name, default, meta):
    """The ParameterDescriptor of a config field (metadata from node_config.param)."""
    unit = f' [{meta["unit"]}]' if meta['unit'] else ''
    text = f'{meta["description"]}{unit}. Default: {default!r}.'
    constraints = []
    if meta['choices']:
        constraints.append(f'one of {", ".join(meta["choices"])}')
    if meta['low_exclusive']:
        constraints.append(f'> {meta["low"]}')
    result = ParameterDescriptor(name=name, description=text, dynamic_typing=True,
                                 read_only=not meta['runtime'],
                                 additional_constraints='; '.join(constraints))
    low, high = meta['low'], meta['high']
    if meta['kind'] == 'int' and low is not None and high is not None:
        result.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=0)]
    elif meta['kind'] == 'float' and low is not None and high is not None:
        result.floating_point_range = [FloatingPointRange(from_value=float(low),
                                                          to_value=float(high), step=0.0)]
    return result


def _declare(node, name, default, desc, meta=None):
    """Declare one parameter. An override (file or -p) that fails validation is recorded in
    `node.parameter_errors` and the default is used instead, so the node still starts and
    configure reports the error naming the parameter (rclpy would raise in the constructor)."""
    if node.has_parameter(name):
        return
    if isinstance(default, (tuple, list)):
        default = list(default) or None  # an empty list has no type: declare it unset
    refused = None
    overrides = getattr(node, '_parameter_overrides', {})
    if meta is not None and name in overrides:
        value = overrides[name].value
        if value is None and meta['kind'].endswith('_list'):
            value = ()
        try:
            check_value(name, value, meta)
        except ValueError as error:
            refused = str(error)
    try:
        node.declare_parameter(name, default, desc, ignore_override=refused is not None)
    except ParameterAlreadyDeclaredException:  # pragma: no cover - raced with has_parameter
        pass
    if refused is not None:  # recorded after declaring: declaring runs the set callback
        node.parameter_errors[name] = refused


def declare_parameters(node):
    """Declare every parameter whose name does not depend on other parameters.

    Sets `node.parameter_errors`: {name: message} of overrides that failed validation (a later
    successful `ros2 param set` of that name removes its entry).
    """
    node.parameter_errors = {}  # name -> why its override was refused
    for name, default, meta in parameter_fields(NodeConfig):
        _declare(node, name, default, descriptor(name, default, meta), meta)
    for name, text in LIST_PARAMETERS:
        _declare(node, name, None, ParameterDescriptor(
            name=name, description=text + '.', dynamic_typing=True, read_only=True))
    name, default, text = AUTOSTART
    _declare(node, name, default, ParameterDescriptor(
        name=name, description=text + f'. Default: {default!r}.', dynamic_typing=True,
        read_only=True))


def _value(node, name):
    return node.get_parameter(name).value


def _names(node, name):
    return names_list(name, _value(node, name))


def _nested(node, cls, name):
    """Declare and read the parameters of one camera or proprio source."""
    prefix = f'{cls.GROUP}.{name}.'
    values = {}
    for field, default, meta in parameter_fields(cls):
        full = prefix + field
        _declare(node, full, default, descriptor(full, default, meta), meta)
        value = _value(node, full)
        values[field] = () if value is None and meta['kind'].endswith('_list') else value
    return cls(name, **values)


def read_config(node):
    """Build the NodeConfig from the node's parameters (raises ValueError naming one).

    Names given in parameter files or -p that no parameter has (typos) are errors too.
    """
    if node.parameter_errors:
        raise ValueError('; '.join(node.parameter_errors.values()))
    cameras = tuple(_nested(node, CameraConfig, name) for name in _names(node, 'cameras'))
    sources = tuple(_nested(node, ProprioSourceConfig, name)
                    for name in _names(node, 'proprio_sources'))
    if node.parameter_errors:
        raise ValueError('; '.join(node.parameter_errors.values()))
    values = {}
    for name, _, meta in parameter_fields(NodeConfig):
        value = _value(node, name)
        values[name] = () if value is None and meta['kind'].endswith('_list') else value
    config = NodeConfig(cameras=cameras, proprio_sources=sources, **values)
    unknown = unknown_overrides(node)  # after the camera and proprio ones were declared
    if unknown:
        known = [name for name in node.list_parameters([], 0).names  # 0: every depth
                 if not name.startswith('qos_overrides.')]
        raise ValueError(unknown_parameters_error(unknown, known))
    return config


def unknown_overrides(node):
    """Names given in parameter files / -p that no declared parameter has (typos)."""
    overrides = getattr(node, '_parameter_overrides', {})
    return sorted(name for name in overrides
                  if not node.has_parameter(name) and not name.startswith('qos_overrides.'))


def apply_changes(config, parameters):
    """The config with runtime parameter changes applied (rclpy Parameters); ValueError if bad.

    Returns (new config, names changed). Parameters that may not change at runtime are
    refused by their read_only descriptor before this is called; others are ignored here.
    """
    runtime = set(NodeConfig.runtime_parameters())
    kinds = {name: meta['kind'] for name, _, meta in parameter_fields(NodeConfig)}
    changes = {}
    for parameter in parameters:
        if parameter.name not in runtime:
            continue
        value = parameter.value
        if value is None:
            raise ValueError(f'`{parameter.name}` cannot be unset; give a value.')
        if kinds[parameter.name].endswith('_list'):
            value = tuple(value)
        changes[parameter.name] = value
    if not changes:
        return config, ()
    return config.replace(**changes), tuple(sorted(changes))
