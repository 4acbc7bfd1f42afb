"""Validation of an exported dataset directory against what the upstream classes read.

``check_dataset(dir)`` reads the directory the way the upstream classes do (formats.py has
their rules) and lists every violation, one line each naming the file:

* the export finished (``complete`` in export.json; a ``.partial`` directory never passes);
* every ``*.h5/.hdf5/.he5`` below the data_dir is a listed demonstration (the classes parse
  them all), ALOHA's in a ``train`` or ``val`` folder;
* each file has its format's datasets with the right dtypes (uint8 (T, H, W, 3) frames, vlen
  uint8 JPEG bytes that decode to RGB, or MP4 files with T frames next to it), and as many
  frames as action and proprio rows;
* the task the class derives (LIBERO: the file name; RoboCasa: the attribute; ALOHA: the task
  folder, with the documented one-line change where needed) is the episode's task; rollouts
  carry ``task_description`` and a boolean ``success``;
* dataset_statistics.json equals the statistics of the train demonstrations, and no action or
  proprio dimension is constant (the classes' normalization divides by max - min);
* t5_embeddings.pkl holds a (1, 512, 1024) embedding of every task.

``CheckReport.summary()`` prints episodes, steps, tasks, dimensions and statistics.
"""
from dataclasses import dataclass, field
import io
import json
from pathlib import Path
from typing import List

import h5py
import numpy as np
from PIL import Image

from cosmos_policy_ros.datasets import formats
from cosmos_policy_ros.datasets.export import demo_vectors
from cosmos_policy_ros.datasets.formats import OWN_GROUP
from cosmos_policy_ros.datasets.manifest import (DEMONSTRATIONS, read_manifest, TRAIN, VAL)
from cosmos_policy_ros.datasets.text import read_embeddings
from cosmos_policy_ros.normalization import dataset_statistics, STATISTICS

T5_SHAPE = (1, 512, 1024)


@dataclass
class CheckReport:
    """What check_dataset found: `problems` (empty: valid) and what the dataset holds."""

    path: Path
    problems: List[str] = field(default_factory=list)
    manifest: dict = field(default_factory=dict)
    steps: int = 0
    images: dict = field(default_factory=dict)  # camera -> (H, W) or storage description
    statistics: dict = field(default_factory=dict)

    @property
    def ok(self):
        return not self.problems

    def problem(self, where, text):
        self.problems.append(f'{where}: {text}')

    def summary(self):
        """Lines: episodes, steps, tasks, dims, statistics, then the verdict."""
        data = self.manifest
        episodes = data.get('episodes', [])
        demos = [e for e in episodes if e.get('demo_file')]
        rollouts = [e for e in episodes if e.get('rollout_file')]
        lines = [f'dataset:     {self.path} ({data.get("format")} {data.get("kind")})',
                 f'episodes:    {len(episodes)}: {sum(e["split"] == TRAIN for e in demos)} '
                 f'train + {sum(e["split"] == VAL for e in demos)} val demonstrations, '
                 f'{len(rollouts)} rollouts ({sum(bool(e["success"]) for e in rollouts)} '
                 f'successes, {sum(not e["success"] for e in rollouts)} failures)',
                 f'steps:       {self.steps} (skipped: '
                 f'{_sum_counts(e.get("skipped_steps", {}) for e in episodes) or "none"})',
                 f'tasks:       {len(data.get("tasks", []))}: '
                 + '; '.join(repr(t) for t in data.get('tasks', [])[:6])
                 + (' ...' if len(data.get('tasks', [])) > 6 else ''),
                 f'actions:     {len(data.get("action_names", []))} '
                 f'{list(data.get("action_names", []))}',
                 f'proprio:     {len(data.get("proprio_labels", []))} '
                 f'{list(data.get("proprio_labels", []))}',
                 f'images:      {data.get("settings", {}).get("storage")}, '
                 + ', '.join(f'{c} {v}' for c, v in sorted(self.images.items())),
                 f'step period: {data.get("step_period")} s']
        for kind in ('actions', 'proprio'):
            if f'{kind}_min' in self.statistics:
                low = np.round(self.statistics[f'{kind}_min'], 4).tolist()
                high = np.round(self.statistics[f'{kind}_max'], 4).tolist()
                lines.append(f'{kind + " range:":<14}{low} .. {high}')
        if data.get('upstream_change'):
            lines.append(f'upstream:    needs {data["upstream_change"]}')
        lines.append('check:       OK' if self.ok else
                     f'check:       {len(self.problems)} problem(s)')
        return lines


def _sum_counts(dicts):
    total = {}
    for counts in dicts:
        for key, value in counts.items():
            total[key] = total.get(key, 0) + value
    return ', '.join(f'{key} {value}' for key, value in sorted(total.items()))


def check_dataset(directory):
    """Validate `directory` (see the module docstring); returns a CheckReport."""
    root = Path(directory)
    report = CheckReport(root)
    if not root.is_dir():
        report.problem(root, 'no such directory')
        return report
    try:
        data = read_manifest(root)
    except ValueError as error:
        report.problems.append(str(error))
        return report
    report.manifest = data
    if not data.get('complete'):
        report.problem(root, 'incomplete export (the journal of an interrupted run); rerun '
                             'the same export command to finish it')
        return report
    fmt = formats.get_format(data['format'])
    episodes = data['episodes']
    listed = {e['demo_file'] for e in episodes if e.get('demo_file')}
    if data.get('kind') == DEMONSTRATIONS:
        _check_demo_tree(report, root, data, fmt, listed)
    for entry in episodes:
        for key in ('demo_file', 'rollout_file'):
            if entry.get(key):
                _check_episode_file(report, root, fmt, entry, key, h5py)
    report.steps = sum(e['steps'] for e in episodes)
    if data.get('statistics'):
        _check_statistics(report, root, data, fmt)
    _check_text(report, root, data)
    return report


def _check_demo_tree(report, root, data, fmt, listed):
    data_dir = root / data['data_dir']
    if not data_dir.is_dir():
        report.problem(data_dir, 'the data_dir does not exist')
        return
    for path in sorted(data_dir.rglob('*')):
        if path.suffix not in formats.HDF5_SUFFIXES:
            continue
        relative = str(path.relative_to(root))
        if relative not in listed:
            report.problem(relative, 'an HDF5 file in the data_dir that is no listed '
                                     'demonstration (the classes would read it as one)')
        elif fmt.one_file_per_demo and not {TRAIN, VAL} & set(path.relative_to(data_dir).parts):
            report.problem(relative, 'an ALOHA demonstration must be in a train/ or val/ folder')


def _check_episode_file(report, root, fmt, entry, key, h5py):
    relative = entry[key]
    path = root / relative
    if not path.is_file():
        report.problem(relative, 'listed in export.json but missing')
        return
    demo = key == 'demo_file'
    try:
        with h5py.File(path, 'r') as h5:
            if demo and not fmt.one_file_per_demo:
                keys = list(h5.get('data', {}).keys())
                if keys != ['demo_0']:
                    report.problem(relative, f'expected one group data/demo_0, found {keys}')
                    return
                base = h5[formats.DEMO_GROUP]
            else:
                base = h5
            names = (fmt.demo_images if demo else fmt.rollout_images)
            actions_name = fmt.demo_actions if demo else fmt.rollout_actions
            proprio_name = fmt.demo_proprio if demo else fmt.rollout_proprio
            rows = _vector_rows(report, relative, base, actions_name, proprio_name)
            for camera, name in names.items():
                frames = _camera_frames(report, relative, path, base, fmt, camera, name)
                if frames is not None and rows is not None and frames != rows:
                    report.problem(relative, f'camera {camera!r} has {frames} frames but '
                                             f'there are {rows} action rows')
            _check_task(report, relative, fmt, base if demo else h5, entry, demo)
            if not demo and not isinstance(h5.attrs.get('success'), (bool, np.bool_)):
                report.problem(relative, 'attribute success is missing or not a boolean')
            if OWN_GROUP in base and rows is not None and base[OWN_GROUP][
                    'stamps_ns'].shape[0] != rows:
                report.problem(relative, 'its stamps do not match its rows')
    except OSError as error:
        report.problem(relative, f'cannot read it as HDF5: {error}')


def _vector_rows(report, relative, base, actions_name, proprio_name):
    counts = []
    for name in (actions_name, proprio_name):
        if name not in base:
            report.problem(relative, f'no dataset {name!r}')
            return None
        dataset = base[name]
        if dataset.ndim != 2 or dataset.dtype.kind != 'f':
            report.problem(relative, f'{name!r} must be a 2-d float array; it is '
                                     f'{dataset.dtype} {dataset.shape}')
            return None
        counts.append(dataset.shape[0])
    if counts[0] != counts[1]:
        report.problem(relative, f'{counts[0]} action rows but {counts[1]} proprio rows')
        return None
    if counts[0] < 1:
        report.problem(relative, 'no rows')
        return None
    return counts[0]


def _camera_frames(report, relative, path, base, fmt, camera, name):
    """The frame count of one camera, after checking its storage; None on a problem."""
    upstream = name.rsplit('/', 1)[-1]
    if name in base:
        dataset = base[name]
        if dataset.dtype != np.uint8 or dataset.ndim != 4 or dataset.shape[-1] != 3:
            report.problem(relative, f'{name!r} must be uint8 (T, H, W, 3); it is '
                                     f'{dataset.dtype} {dataset.shape}')
            return None
        report.images.setdefault(camera, f'{dataset.shape[2]} x {dataset.shape[1]} raw')
        return dataset.shape[0]
    if name + formats.JPEG_SUFFIX in base:
        dataset = base[name + formats.JPEG_SUFFIX]
        try:
            first = np.asarray(Image.open(io.BytesIO(dataset[0].tobytes())))
        except Exception as error:  # PIL raises many types on bad bytes
            report.problem(relative, f'{name}_jpeg[0] is no JPEG: {error}')
            return None
        if first.ndim != 3 or first.shape[2] != 3:
            report.problem(relative, f'{name}_jpeg decodes to shape {first.shape}, not RGB')
            return None
        report.images.setdefault(camera, f'{first.shape[1]} x {first.shape[0]} JPEG')
        return dataset.shape[0]
    videos = base.get(formats.VIDEO_PATHS_GROUP)
    if fmt.name == 'aloha' and videos is not None and upstream in videos:
        value = videos[upstream][()]
        video = path.parent / (value.decode() if isinstance(value, bytes) else str(value))
        if not video.is_file():
            report.problem(relative, f'its video {video.name} is missing')
            return None
        count, size = _video_frames(video)
        report.images.setdefault(camera, f'{size[0]} x {size[1]} MP4')
        return count
    report.problem(relative, f'no images of camera {camera!r} ({name} raw, '
                             f'{name}{formats.JPEG_SUFFIX} or an MP4)')
    return None


def _video_frames(path):
    """(frames, (width, height)) of an MP4 file, counted by decoding (PyAV)."""
    import av  # PyAV: MP4 storage only
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        count = sum(1 for _ in container.demux(stream) if _.size)
        return count, (stream.width, stream.height)


def _check_task(report, relative, fmt, holder, entry, demo):
    task = entry['task']
    if demo and fmt.name == 'libero':
        derived = formats.libero_command(Path(relative).name)
    elif demo and fmt.name == 'aloha':
        derived = formats.aloha_command(Path(relative).parts[-3])
    else:
        derived = holder.attrs.get('task_description')
        if isinstance(derived, bytes):
            derived = derived.decode()
    if derived != task:
        report.problem(relative, f"the class reads its task as {derived!r}, the episode's is "
                                 f'{task!r}')


def _check_statistics(report, root, data, fmt):
    path = root / data['statistics']
    try:
        stats = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        report.problem(data['statistics'], f'cannot read it: {error}')
        return
    report.statistics = stats
    demos = [root / e['demo_file'] for e in data['episodes']
             if e.get('demo_file') and e['split'] == TRAIN]
    if not demos or any(not p.is_file() for p in demos):
        return
    expected = dataset_statistics(*demo_vectors(fmt, demos))
    for key in expected:
        if key not in stats:
            report.problem(data['statistics'], f'no key {key!r}')
        elif not np.allclose(stats[key], expected[key], rtol=1e-12, atol=0):
            report.problem(data['statistics'], f"{key} differs from the train demonstrations'"
                                               f' statistics (stale file?)')
    labels = {'actions': data.get('action_names', []), 'proprio': data.get('proprio_labels', [])}
    for kind in ('actions', 'proprio'):
        low, high = (np.asarray(expected[f'{kind}_{name}']) for name in STATISTICS[:2])
        for dim in np.flatnonzero(high <= low):
            name = labels[kind][dim] if dim < len(labels[kind]) else dim
            report.problem(data['statistics'], f'{kind} dimension {dim} ({name}) is constant '
                                               f"({float(low[dim])!r}): the classes' "
                                               f'normalization divides by max - min = 0')


def _check_text(report, root, data):
    relative = data.get('t5_embeddings')
    if not relative or not (root / relative).is_file():
        report.problem(relative or root, 'no t5_embeddings.pkl')
        return
    try:
        table = read_embeddings(root / relative)
    except ValueError as error:
        report.problem(relative, str(error))
        return
    for task in data.get('tasks', []):
        if task not in table:
            report.problem(relative, f'no embedding of task {task!r}')
        elif tuple(table[task].shape) != T5_SHAPE:
            report.problem(relative, f'the embedding of {task!r} has shape '
                                     f'{tuple(table[task].shape)}, not {T5_SHAPE}')
