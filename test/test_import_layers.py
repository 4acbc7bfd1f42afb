"""The import layers of architecture.md: core is numpy-only, engine never imports rclpy."""
import pkgutil
import subprocess
import sys

import cosmos_policy_ros

# Modules the message generator puts into the package; they belong to the ROS layer.
GENERATED = ('cosmos_policy_ros.msg',)


def _modules(prefix):
    names = []
    for info in pkgutil.walk_packages(cosmos_policy_ros.__path__, 'cosmos_policy_ros.'):
        if info.name.startswith(GENERATED) or info.name.rsplit('.', 1)[-1].startswith('_'):
            continue
        if prefix is None and info.name.count('.') == 1 and not info.ispkg:
            names.append(info.name)
        elif prefix is not None and info.name.startswith(prefix):
            names.append(info.name)
    return names


def _import_with_poison(modules, poisoned):
    """Import `modules` in a fresh interpreter where every name in `poisoned` fails to import."""
    code = '\n'.join([
        'import importlib, sys',
        f'for name in {poisoned!r}:',
        '    sys.modules[name] = None  # any import of it raises ImportError',
        f'for name in {poisoned!r}:',
        '    try:',
        '        importlib.import_module(name)',
        '    except ImportError:',
        '        pass',
        '    else:',
        '        raise SystemExit("poisoning did not work for " + name)',
        f'for name in {modules!r}:',
        '    importlib.import_module(name)',
        f'leaked = [m for m in sys.modules for p in {poisoned!r}',
        '          if (m == p or m.startswith(p + ".")) and sys.modules[m] is not None]',
        'assert not leaked, leaked',
    ])
    return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)


def test_core_imports_without_torch_or_rclpy():
    core = ['cosmos_policy_ros'] + _modules(None)
    result = _import_with_poison(core, ['torch', 'rclpy', 'diffusers', 'safetensors', 'PIL'])
    assert result.returncode == 0, f'core modules {core} import a forbidden module:\n' + (
        result.stderr)


def test_engine_imports_without_rclpy():
    engine = ['cosmos_policy_ros.engine'] + _modules('cosmos_policy_ros.engine.')
    result = _import_with_poison(engine, ['rclpy', 'cosmos_policy_ros.ros'])
    assert result.returncode == 0, 'engine modules need rclpy:\n' + result.stderr


def test_fleet_imports_without_torch_or_rclpy():
    """The policy server's rules (fleet/) are a capability: no torch (the model comes in as a
    Policy), no rclpy, nothing of the ROS layer."""
    fleet = ['cosmos_policy_ros.fleet'] + _modules('cosmos_policy_ros.fleet.')
    assert 'cosmos_policy_ros.fleet.scheduler' in fleet
    result = _import_with_poison(fleet, ['torch', 'rclpy', 'diffusers', 'cosmos_policy_ros.ros'])
    assert result.returncode == 0, 'fleet modules import a forbidden module:\n' + result.stderr


def test_poisoned_import_is_detected():
    # Negative control: a module that imports torch must fail under the core rule.
    result = _import_with_poison(['json', 'torch.nn'], ['torch'])
    assert result.returncode != 0
