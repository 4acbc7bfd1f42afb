"""Exported episodes read back as arrays, from the files the upstream classes read (datasets/).

The package's own trainer (cosmos-policy-train --dataset) reads an exported directory through
this module: the demonstration file where an episode has one (what the classes imitate), else
its rollout file, in the manifest's episode order; the task, the success label and the images
as stored (raw rows, JPEG bytes decoded with PIL, MP4 decoded with PyAV).
(The directory's T5 embedding pickle: ``datasets/text.py``.)
"""
from dataclasses import dataclass
import io
from pathlib import Path
from typing import Dict

import numpy as np
from PIL import Image

from cosmos_policy_ros.datasets import formats
from cosmos_policy_ros.datasets.formats import OWN_GROUP
from cosmos_policy_ros.datasets.manifest import read_manifest, TRAIN
from cosmos_policy_ros.datasets.video import read_video


@dataclass(frozen=True)
class ExportedEpisode:
    """One episode as exported: T steps of images, proprio and actions."""

    index: int
    task: str
    success: bool
    demonstration: bool               # it has a demonstration file (imitated upstream)
    images: Dict[str, np.ndarray]     # camera (the node's name) -> uint8 (T, H, W, 3)
    proprio: np.ndarray               # (T, D) as stored (float64)
    actions: np.ndarray               # (T, d)
    outcome_text: str                 # the outcome message as recorded ('' without one)
    source: str


def complete_manifest(directory):
    """The manifest of a finished export; ValueError for an unfinished one."""
    data = read_manifest(directory)
    if not data.get('complete'):
        raise ValueError(f'{directory}: the export did not finish (export.json says complete: '
                         f'false); rerun it')
    return data


def read_episodes(directory, split=TRAIN):
    """Yield the ExportedEpisodes of `split`, in the manifest's order."""
    import h5py  # the upstream classes' reader
    root = Path(directory)
    data = complete_manifest(root)
    fmt = formats.get_format(data['format'])
    for entry in data['episodes']:
        if entry['split'] != split or not (entry.get('demo_file') or entry.get('rollout_file')):
            continue
        demo = bool(entry.get('demo_file'))
        path = root / (entry['demo_file'] if demo else entry['rollout_file'])
        with h5py.File(path, 'r') as h5:
            base = h5[formats.DEMO_GROUP] if demo and not fmt.one_file_per_demo else h5
            names = fmt.demo_images if demo else fmt.rollout_images
            images = {camera: _frames(base, name, path, fmt, camera)
                      for camera, name in names.items()}
            yield ExportedEpisode(
                index=entry['index'], task=entry['task'], success=bool(entry['success']),
                demonstration=demo, images=images,
                proprio=base[fmt.demo_proprio if demo else fmt.rollout_proprio][:],
                actions=base[fmt.demo_actions if demo else fmt.rollout_actions][:],
                outcome_text=str(base[OWN_GROUP].attrs.get('episode_outcome', '')),
                source=entry['source'])


def _frames(base, name, path, fmt, camera):
    if name in base:
        return base[name][:]
    if name + formats.JPEG_SUFFIX in base:
        return np.stack([np.asarray(Image.open(io.BytesIO(row.tobytes())).convert('RGB'))
                         for row in base[name + formats.JPEG_SUFFIX]])
    value = base[formats.VIDEO_PATHS_GROUP][fmt.video_names[camera]][()]
    return read_video(path.parent / (value.decode() if isinstance(value, bytes) else value))
