"""What the node says about its parameters at configure: the parameter files it read (full
paths) and the values that differ from the preset they were copied from.

    parameter files read: /home/me/my_aloha.yaml
    2 values differ from the preset aloha.yaml (/opt/.../config/aloha.yaml): policy_factory
        'cosmos_policy_ros.testing:load_fake_policy' (preset: ...); rate 12.5 (preset: 25.0)

The preset is the one of the files read when it is an installed preset, else the preset whose
values are closest (fewest differences). `model_path` is left out (logged with the policy
load). The same lines serve `cosmos-policy-replay eval`. A core module: stdlib and PyYAML.
"""
import os
from pathlib import Path

from cosmos_policy_ros.node_config import config_parameters, load_parameter_file

LAUNCH_PARAMS_PREFIX = 'launch_params_'  # temporary files ros2 launch writes its arguments to
MAX_SHOWN = 40  # differences listed in one line (the rest are counted)


def parameter_files(argv):
    """Absolute paths of the `--params-file` arguments in the `--ros-args` sections of argv."""
    files, ros_args, waiting = [], False, False
    for argument in argv or ():
        if argument == '--ros-args':
            ros_args = True
        elif argument == '--':
            ros_args = False
        elif ros_args and waiting:
            files.append(os.path.abspath(argument))
            waiting = False
        elif ros_args and argument == '--params-file':
            waiting = True
        elif ros_args and argument.startswith('--params-file='):
            files.append(os.path.abspath(argument.split('=', 1)[1]))
    return files


def differences(config, reference):
    """[(name, value, preset value)] of the parameters of two NodeConfigs that differ (None:
    the parameter does not exist there), model_path excepted, sorted by name."""
    ours, theirs = config_parameters(config), config_parameters(reference)
    return [(name, ours.get(name), theirs.get(name)) for name in sorted(set(ours) | set(theirs))
            if name != 'model_path' and ours.get(name) != theirs.get(name)]


def closest_preset(config, presets, files=()):
    """(preset path, differences) of the preset `config` came from, or (None, []) when no
    preset can be read: a preset among `files` (the files the node read), else the one with
    the fewest differences (the first by name on a tie)."""
    readable = []
    for preset in presets:
        try:
            reference = load_parameter_file(preset, overrides={'model_path': config.model_path})
        except ValueError:  # not a node preset (or a broken one): nothing to compare with
            continue
        readable.append((Path(preset), differences(config, reference)))
    if not readable:
        return None, []
    read = {Path(path).resolve() for path in files}
    among = [item for item in readable if item[0].resolve() in read]
    return min(among or readable, key=lambda item: len(item[1]))


def _value(value):
    if value is None:
        return '(not set)'
    return repr(list(value) if isinstance(value, tuple) else value)


def report_lines(config, files, presets):
    """The lines to log: the parameter files read, and the differences from the preset."""
    if files:
        named = [f'{path} (written by ros2 launch from its arguments)'
                 if Path(path).name.startswith(LAUNCH_PARAMS_PREFIX) else str(path)
                 for path in files]
        lines = ['parameter files read: ' + ', '.join(named)]
    else:
        lines = ['parameter files read: none (defaults and -p overrides only)']
    preset, changed = closest_preset(config, presets, files)
    if preset is None:
        return lines
    where = f'the preset {preset.name} ({preset})'
    if not changed:
        lines.append(f'every value equals {where} (model_path aside)')
        return lines
    shown = [f'{name} {_value(value)} (preset: {_value(before)})'
             for name, value, before in changed[:MAX_SHOWN]]
    more = f'; and {len(changed) - MAX_SHOWN} more' if len(changed) > MAX_SHOWN else ''
    count = '1 value differs' if len(changed) == 1 else f'{len(changed)} values differ'
    lines.append(f'{count} from {where}: ' + '; '.join(shown) + more)
    return lines
