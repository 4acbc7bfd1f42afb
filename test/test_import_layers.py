"""The import layers of docs/architecture.md: core is numpy-only, engine never imports rclpy,
and in the whole package no import cycle, no import against the layers, and function-level
imports only of optional heavy dependencies, each with its reason."""
import ast
from pathlib import Path
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


def test_datasets_import_without_rclpy():
    datasets = ['cosmos_policy_ros.datasets'] + _modules('cosmos_policy_ros.datasets.')
    assert 'cosmos_policy_ros.datasets.steps' in datasets
    result = _import_with_poison(datasets, ['rclpy', 'cosmos_policy_ros.ros'])
    assert result.returncode == 0, 'datasets modules need rclpy:\n' + result.stderr


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


# --- the whole import graph, read from the source (no import needed) ---------------------------
# Each folder's layer and the folders it may import besides itself (docs/architecture.md).
# 'core' is the package's own top-level modules. A new folder must be placed here.
BELOW_ROS = ('core', 'engine', 'bags', 'evaluation', 'datasets', 'sim', 'training', 'fleet')
LAYERS = {
    'core': (),
    'engine': ('core',),
    'bags': ('core',),
    'evaluation': ('core', 'bags'),
    'datasets': ('core', 'engine', 'bags', 'evaluation'),
    'sim': ('core', 'engine', 'bags', 'evaluation', 'datasets'),
    'training': ('core', 'engine', 'bags', 'datasets', 'sim'),
    'fleet': ('core', 'engine'),
    'ros': BELOW_ROS + ('msg',),
    'cli': BELOW_ROS + ('ros', 'msg'),
}
# Optional heavy dependencies: the only targets a function-level import may have, and only when
# the importing module does not import them at its top already (it must import without them).
OPTIONAL = ('torch', 'torch.distributed', 'diffusers', 'transformers', 'safetensors', 'PIL',
            'matplotlib', 'tqdm', 'rosbags', 'h5py', 'av', 'pyarrow', 'rclpy',
            'ament_index_python', 'launch', 'launch_ros', 'rosidl_runtime_py', 'rcl_interfaces',
            'lifecycle_msgs', 'diagnostic_msgs', 'sensor_msgs', 'std_msgs', 'geometry_msgs',
            'trajectory_msgs', 'rosgraph_msgs', 'builtin_interfaces', 'cosmos_policy_ros.msg')


def _module_files(root, package):
    """{module name: path} of every .py file of the package at `root` (generated msg/ skipped)."""
    files = {}
    for path in sorted(root.rglob('*.py')):
        parts = path.relative_to(root).with_suffix('').parts
        if parts[0] == 'msg' or '__pycache__' in parts:
            continue
        name = '.'.join((package,) + (parts[:-1] if parts[-1] == '__init__' else parts))
        files[name] = path
    return files


def _imports(name, path, modules):
    """[(target, lineno, top_level, has_reason)] of every import statement in a module."""
    source = path.read_text()
    lines = source.splitlines()
    found = []

    def target_names(node):
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        base = node.module or ''
        if node.level:
            package = name if path.name == '__init__.py' else name.rpartition('.')[0]
            package = '.'.join(package.split('.')[:len(package.split('.')) - node.level + 1])
            base = f'{package}.{base}' if base else package
        return [f'{base}.{alias.name}' if f'{base}.{alias.name}' in modules else base
                for alias in node.names]

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                # On the statement, or a comment line above its group of plain imports.
                first = child.lineno - 1
                while first > 0 and lines[first - 1].lstrip().startswith(('import ', 'from ')) \
                        and '#' not in lines[first - 1]:
                    first -= 1
                reason = any('#' in line for line in lines[child.lineno - 1:child.end_lineno]) \
                    or (first > 0 and lines[first - 1].lstrip().startswith('#'))
                found.extend((target, child.lineno, not in_function, reason)
                             for target in target_names(child))
            visit(child, in_function or isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(source), False)
    return found


def _layer(module, modules):
    """'core' for the package and its own modules, else the folder the module is in."""
    parts = module.split('.')
    if len(parts) == 1:
        return 'core'
    if parts[1] == 'msg':
        return 'msg'
    in_folder = len(parts) > 2 or modules[module].name == '__init__.py'
    return parts[1] if in_folder else 'core'


def _internal(target, modules, package):
    """The package module `target` names (a module, or the package it is in), or None."""
    if target != package and not target.startswith(package + '.'):
        return None
    if target.startswith(package + '.msg'):
        return None  # generated: an optional dependency like rclpy
    while target not in modules and '.' in target:
        target = target.rpartition('.')[0]
    return target if target in modules else None


def _optional(target):
    """The OPTIONAL entry `target` falls under (the longest prefix), or None."""
    matches = [o for o in OPTIONAL if target == o or target.startswith(o + '.')]
    return max(matches, key=len) if matches else None


def analyze(root, package):
    """Import cycles, imports against LAYERS, and function-level imports that break the rule,
    of the package at `root`: {'cycles': [...], 'upward': [...], 'lazy': [...]}."""
    modules = _module_files(Path(root), package)
    imports = {name: _imports(name, path, modules) for name, path in modules.items()}
    edges = {name: set() for name in modules}
    folders = sorted({_layer(name, modules) for name in modules} - set(LAYERS))
    upward = [f'folder {folder!r} has no place in LAYERS' for folder in folders]
    for name, items in imports.items():
        source = _layer(name, modules)
        allowed = LAYERS.get(source, ())
        for target, line, _, _ in items:
            if target.startswith(package + '.msg') and 'msg' not in allowed:
                upward.append(f'{name}:{line} ({source}) imports the generated messages')
            internal = _internal(target, modules, package)
            if internal is not None and internal != target:
                upward.append(f'{name}:{line} imports {target}, which the package does not have')
            if internal is None or internal == name:
                continue
            edges[name].add(internal)
            layer = _layer(internal, modules)
            if source in LAYERS and layer != source and layer not in allowed:
                upward.append(f'{name}:{line} ({source}) imports {internal} ({layer})')
    # Optional dependencies each module pulls in at import time (its top-level closure).
    closure = {}

    def pulled(name, seen=()):
        if name not in closure:
            own = {_optional(t) for t, _, top, _ in imports[name] if top} - {None}
            for target, _, top, _ in imports[name]:
                internal = _internal(target, modules, package)
                if top and internal not in (None, name) and internal not in seen:
                    own |= pulled(internal, seen + (name,))
            closure[name] = own
        return closure[name]

    lazy = []
    for name, items in imports.items():
        for target, line, top, reason in items:
            if top:
                continue
            internal = _internal(target, modules, package)
            heavy = pulled(internal) if internal else {_optional(target)} - {None}
            if not heavy - pulled(name):
                lazy.append(f'{name}:{line} imports {target} in a function, but it pulls in no '
                            f'optional dependency the module lacks: import it at the top')
            elif not reason:
                lazy.append(f'{name}:{line} imports {target} in a function without a '
                            f'comment saying why')
    return {'cycles': _cycles(edges), 'upward': upward, 'lazy': list(dict.fromkeys(lazy))}


def _cycles(edges):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def connect(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(edges[node]):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return found


def test_no_cycle_no_upward_import_and_lazy_imports_only_for_optional_dependencies():
    report = analyze(Path(cosmos_policy_ros.__file__).parent, 'cosmos_policy_ros')
    assert report == {'cycles': [], 'upward': [], 'lazy': []}, report


def test_the_graph_check_finds_cycles_upward_and_needless_lazy_imports(tmp_path):
    # Negative control: a small package with one of each violation, and allowed cases.
    files = {
        '__init__.py': '',
        'core_mod.py': ('from fake.engine import net\n'            # core -> engine: upward
                        'from fake.gone import thing\n'),            # no such module
        'engine/__init__.py': '',
        'engine/net.py': 'import torch\nfrom fake.engine import loop\n',
        'engine/loop.py': 'from fake.engine import net\n',         # a cycle with net
        'bags/__init__.py': '',
        'bags/io.py': ('def read():\n    import json\n'              # stdlib: not optional
                       '    from fake import core_mod  # reason\n'   # pulls torch: allowed
                       '    import matplotlib\n'),                    # no reason given
        'bags/plots.py': 'def draw():\n    import matplotlib  # figures only\n',
        'tools/__init__.py': 'from . import helper\n',  # a folder LAYERS lacks
        'tools/helper.py': '',
    }
    for name, text in files.items():
        path = tmp_path / 'fake' / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    report = analyze(tmp_path / 'fake', 'fake')
    assert report['cycles'] == [['fake.engine.loop', 'fake.engine.net']]
    assert report['upward'] == ["folder 'tools' has no place in LAYERS",
                                'fake.core_mod:1 (core) imports fake.engine.net (engine)',
                                'fake.core_mod:2 imports fake.gone, which the package does not '
                                'have']
    assert report['lazy'] == [
        'fake.bags.io:2 imports json in a function, but it pulls in no optional dependency '
        'the module lacks: import it at the top',
        'fake.bags.io:4 imports matplotlib in a function without a comment saying why']
