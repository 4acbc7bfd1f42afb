"""LeRobot datasets (v2.0 / v2.1 / v3.0 on disk) as export sources, read with pyarrow + PyAV.

The ``lerobot`` package itself is not used: it pins torchvision and another torch than this
package's. The on-disk format (``meta/info.json`` names the version):

* v2.x: ``meta/episodes.jsonl`` ({episode_index, tasks, length}: the task texts), one
  parquet file per episode at ``info['data_path']`` and one MP4 per
  episode and camera at ``info['video_path']`` (``episode_chunk`` = index // chunks_size);
* v3.0: ``meta/episodes/chunk-*/file-*.parquet`` (episode_index, tasks, length,
  ``data/chunk_index``, ``data/file_index``, ``videos/<key>/{chunk_index,file_index,
  from_timestamp,to_timestamp}``), several episodes per data and video
  file (an episode's frames start at ``from_timestamp`` in its video file).

Every parquet row is one frame: ``timestamp``, ``frame_index``, ``episode_index``,
``task_index``, the state and action features (lists of floats) and, for features of dtype
``image``, the encoded image (struct of ``bytes`` and ``path``); features of dtype ``video`` are
decoded from the MP4 files frame by frame. A LeRobot frame is already one synchronized
observation with its action, so each frame is one step (``LeRobotEpisode.steps``), exported
by the same writers as a bag's steps (export.py).
"""
from collections import Counter
from dataclasses import dataclass
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from cosmos_policy_ros.conversions import NS_PER_S
from cosmos_policy_ros.datasets.steps import Step

STATE_KEY, ACTION_KEY = 'observation.state', 'action'


@dataclass(frozen=True)
class EpisodeRecord:
    """Where one episode's rows and frames are."""

    index: int
    length: int
    tasks: tuple
    data_file: Path
    videos: dict  # feature key -> (MP4 path, first frame time in seconds)


class LeRobotDataset:
    """A LeRobot dataset directory: its metadata and episodes (see the module docstring)."""

    def __init__(self, root):
        self.root = Path(root)
        try:
            self.info = json.loads((self.root / 'meta' / 'info.json').read_text())
        except FileNotFoundError:
            raise ValueError(f'{self.root} is not a LeRobot dataset: no meta/info.json') from None
        except ValueError as error:
            raise ValueError(f'{self.root}/meta/info.json is not valid JSON: {error}') from None
        self.version = str(self.info.get('codebase_version', ''))
        if not self.version.startswith(('v2.', 'v3.')):
            raise ValueError(f'{self.root}: LeRobot codebase_version {self.version!r}; this '
                             f'reader knows v2.x and v3.0')
        self.fps = float(self.info['fps'])
        self.features = self.info['features']
        self.episodes = (self._episodes_v3() if self.version.startswith('v3.')
                         else self._episodes_v2())

    # --- metadata ----------------------------------------------------------------------------
    def _episodes_v2(self):
        chunk_size = int(self.info.get('chunks_size', 1000))
        records = []
        for row in _jsonl(self.root / 'meta' / 'episodes.jsonl'):
            index = int(row['episode_index'])
            chunk = index // chunk_size
            videos = {key: (self.root / self.info['video_path'].format(
                episode_chunk=chunk, video_key=key, episode_index=index), 0.0)
                for key in self.video_keys}
            records.append(EpisodeRecord(
                index, int(row['length']), tuple(row.get('tasks') or ()),
                self.root / self.info['data_path'].format(episode_chunk=chunk,
                                                          episode_index=index), videos))
        return sorted(records, key=lambda record: record.index)

    def _episodes_v3(self):
        import pyarrow.parquet as pq  # pyarrow: LeRobot datasets only (the datasets extra)
        files = sorted((self.root / 'meta' / 'episodes').glob('chunk-*/file-*.parquet'))
        if not files:
            raise ValueError(f'{self.root}: no meta/episodes/chunk-*/file-*.parquet')
        records = []
        for path in files:
            for row in pq.read_table(path).to_pylist():
                videos = {key: (self.root / self.info['video_path'].format(
                    video_key=key, chunk_index=int(row[f'videos/{key}/chunk_index']),
                    file_index=int(row[f'videos/{key}/file_index'])),
                    float(row[f'videos/{key}/from_timestamp'])) for key in self.video_keys}
                records.append(EpisodeRecord(
                    int(row['episode_index']), int(row['length']), tuple(row.get('tasks') or ()),
                    self.root / self.info['data_path'].format(
                        chunk_index=int(row['data/chunk_index']),
                        file_index=int(row['data/file_index'])), videos))
        return sorted(records, key=lambda record: record.index)

    @property
    def video_keys(self):
        return [key for key, spec in self.features.items() if spec.get('dtype') == 'video']

    @property
    def image_keys(self):
        return [key for key, spec in self.features.items()
                if spec.get('dtype') in ('video', 'image')]

    def names(self, key):
        """The value names of a vector feature (or a0, a1, ...)."""
        spec = self.features[key]
        names = spec.get('names')
        if isinstance(names, dict):
            names = next(iter(names.values()), None)
        size = int(np.prod(spec.get('shape', [0])))
        if not isinstance(names, list) or len(names) != size:
            names = [f'{key}_{i}' for i in range(size)]
        return tuple(str(name) for name in names)

    def check_keys(self, cameras, state_key, action_key):
        """ValueError naming a mapped feature the dataset does not have (or of the wrong kind)."""
        for camera, key in cameras.items():
            if key not in self.image_keys:
                raise ValueError(f'{self.root}: --camera {camera}={key}: no image or video '
                                 f'feature {key!r}; it has {self.image_keys}')
        for option, key in (('--state', state_key), ('--action', action_key)):
            if key not in self.features:
                raise ValueError(f'{self.root}: {option} {key}: no feature {key!r}; it has '
                                 f'{sorted(self.features)}')

    def sources(self, cameras, *, state_key=STATE_KEY, action_key=ACTION_KEY):
        """One LeRobotEpisode per episode, in episode order."""
        self.check_keys(cameras, state_key, action_key)
        return [LeRobotEpisode(self, record, cameras, state_key, action_key)
                for record in self.episodes]


def _jsonl(path):
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        raise ValueError(f'LeRobot dataset: no {path}') from None


class LeRobotEpisode:
    """One episode as an export source: `steps()`, then task and counts (as steps.EpisodeBag)."""

    outcome = None
    outcome_topic = 'an outcome'
    progress = None

    def __init__(self, dataset, record, cameras, state_key, action_key):
        self.dataset, self.record = dataset, record
        self.cameras, self.state_key, self.action_key = dict(cameras), state_key, action_key
        self.label = f'{dataset.root}#episode_{record.index:06d}'
        self.step_period = 1.0 / dataset.fps
        self.duration_s = record.length / dataset.fps
        self.stream_names = (*self.cameras, state_key)
        self.action_names = dataset.names(action_key)
        self.proprio_labels = dataset.names(state_key)
        self.task = record.tasks[0] if record.tasks else None
        self.skipped = Counter()

    def camera_origin(self, camera):
        """Where a camera's frames come from, for messages."""
        return f'{self.label}: feature {self.cameras.get(camera)}'

    def summary(self):
        return {'skipped_steps': dict(self.skipped), 'surplus_frames': 0,
                'dropped_messages': {}}

    def _rows(self):
        # pyarrow: LeRobot datasets only (the datasets extra)
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
        path = self.record.data_file
        if not path.is_file():
            raise ValueError(f'{self.label}: no data file {path}')
        table = pq.read_table(path)
        table = table.filter(pc.equal(table['episode_index'], self.record.index))
        order = np.argsort(np.asarray(table['frame_index'].to_numpy()), kind='stable')
        return table.take(order)

    def steps(self):
        if len(self.record.tasks) > 1:
            raise ValueError(f'{self.label}: {len(self.record.tasks)} tasks '
                             f'{list(self.record.tasks)}; export one task per episode')
        if not self.task:
            raise ValueError(f'{self.label}: the episode names no task')
        table = self._rows()
        if table.num_rows != self.record.length:
            raise ValueError(f'{self.label}: {table.num_rows} rows, the metadata says '
                             f'{self.record.length}')
        states = np.asarray(table[self.state_key].to_pylist(), dtype=np.float64)
        actions = np.asarray(table[self.action_key].to_pylist(), dtype=np.float64)
        stamps = np.round(np.asarray(table['timestamp'].to_numpy(), np.float64) *
                          NS_PER_S).astype(np.int64)
        frames = {camera: self._frames(key, table) for camera, key in self.cameras.items()}
        for t in range(table.num_rows):
            images = {camera: next(source, None) for camera, source in frames.items()}
            missing = [camera for camera, image in images.items() if image is None]
            if missing:
                raise ValueError(f'{self.label}: camera(s) {missing} have only {t} frames for '
                                 f'{table.num_rows} rows')
            stamp = int(stamps[t])
            if self.progress is not None:
                self.progress(self.step_period)
            yield Step(t, stamp, {name: stamp for name in self.stream_names}, images,
                       states[t], actions[t], stamp)

    def _frames(self, key, table):
        """The episode's frames of one image feature, one at a time (uint8 RGB)."""
        if self.dataset.features[key]['dtype'] == 'image':
            for cell in table[key].to_pylist():
                data = cell['bytes'] if isinstance(cell, dict) else cell
                yield np.asarray(Image.open(io.BytesIO(data)).convert('RGB'))
            return
        path, start = self.record.videos[key]
        if not path.is_file():
            raise ValueError(f'{self.label}: no video {path} of {key}')
        import av  # PyAV: the videos are decoded frame by frame
        half = 0.5 / self.dataset.fps
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if start > 0:
                container.seek(int(start / stream.time_base), stream=stream, backward=True)
            count = 0
            for frame in container.decode(stream):
                if frame.time is not None and frame.time < start - half:
                    continue
                yield frame.to_ndarray(format='rgb24')
                count += 1
                if count == self.record.length:
                    return
