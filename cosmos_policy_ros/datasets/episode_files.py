"""The files of one exported episode, written one step at a time (datasets/).

An episode is streamed once, in its format's rollout layout (formats.py), into a staging
folder: each camera in a worker thread of its own (the stored image, images.py, appended as a
raw row, as JPEG bytes of quality ``JPEG_QUALITY``, or to an MP4 encoder, video.py), at most
``MAX_QUEUED`` steps in flight per camera, so memory does not grow with the episode. ``finish``
writes the vectors (proprio and actions as float64, the messages' own values) and the
attributes; ``place`` moves the file to its rollout place and, for a demonstration, makes the
demonstration file from it: LIBERO / RoboCasa copy the datasets into their demo layout (HDF5's
own object copy), ALOHA's demonstration is the same file (hard-linked, with its MP4 files).
Files only get their final names once complete; ``abort`` removes what an episode left.

Next to the upstream datasets every file has a group ``cosmos_policy_ros`` (ignored by the
upstream classes): ``stamps_ns`` (T, streams) header stamps of each step's observation members
(attribute ``streams``), ``action_stamps_ns`` (T,) the stamp of the message each action row
came from (an ActionChunk's header stamp for executed rows), and the attributes
``source_bag`` and ``episode_outcome`` (the outcome message as recorded).
"""
from collections import deque
from concurrent.futures import ThreadPoolExecutor
import os
from pathlib import Path
import shutil

import h5py
import numpy as np

from cosmos_policy_ros.bags.sample_scene import encode_jpeg
from cosmos_policy_ros.datasets.formats import (DEMO_GROUP, JPEG, JPEG_SUFFIX, MP4,
                                                OWN_GROUP, RAW, VIDEO_PATHS_GROUP)
from cosmos_policy_ros.datasets.images import stored_image
from cosmos_policy_ros.datasets.video import VideoWriter

JPEG_QUALITY = 95  # the reference writers' quality (RL:319-326) and the node's round trip
MAX_QUEUED = 4  # steps per camera handed to its worker and not yet written
PARTIAL = '.partial'


def video_file_name(index, upstream_camera):
    """episode000003_cam_high.mp4: the same name next to the demo and the rollout file."""
    return f'episode{index:06d}_{upstream_camera}.mp4'


def link_or_copy(source, target):
    """Hard-link `source` at `target` (a copy across file systems)."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


class _Camera:
    """One camera's sink: a worker thread appending stored frames in order."""

    def __init__(self, writer, camera):
        self.writer, self.camera = writer, camera
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f'camera-{camera}')
        self.queued = deque()
        self.dataset = None
        self.video = None
        self.video_path = None

    def submit(self, frame):
        while len(self.queued) >= MAX_QUEUED:
            self.queued.popleft().result()
        self.queued.append(self.pool.submit(self._write, frame))

    def drain(self):
        while self.queued:
            self.queued.popleft().result()

    def close(self):
        try:
            self.drain()
        finally:
            self.pool.shutdown(wait=True)
            if self.video is not None:
                self.video.close()

    def _write(self, frame):
        writer = self.writer
        if writer.storage == MP4:
            self._write_video(frame)
            return
        image = stored_image(frame, writer.pipeline, self.camera)
        if self.dataset is None:
            self.dataset = writer.create_images(self.camera, image.shape)
        elif writer.storage == RAW and image.shape != self.dataset.shape[1:]:
            raise ValueError(f'camera {self.camera!r}: a frame of {image.shape[1]} x '
                             f'{image.shape[0]} after {self.dataset.shape[2]} x '
                             f'{self.dataset.shape[1]}; the stored size must not change')
        row = np.frombuffer(encode_jpeg(image, JPEG_QUALITY), np.uint8) if (
            writer.storage == JPEG) else image
        count = self.dataset.shape[0]
        self.dataset.resize(count + 1, axis=0)
        self.dataset[count] = row

    def _write_video(self, frame):
        writer = self.writer
        if self.video is None:
            pipeline = writer.pipeline
            name = video_file_name(writer.index, writer.fmt.video_names[self.camera])
            self.video_path = writer.staging / name
            size = None if pipeline is None else (pipeline.image_size, pipeline.image_size)
            self.video = VideoWriter(self.video_path, writer.rate, size=size,
                                     flip=bool(pipeline and pipeline.flip_vertical))
            writer.h5[VIDEO_PATHS_GROUP][writer.fmt.video_names[self.camera]] = name.encode()
        if writer.pipeline is not None and writer.pipeline.jpeg_quality:
            frame = stored_image(frame, writer.pipeline, self.camera)  # exact pipeline first
        self.video.add(frame)


class EpisodeWriter:
    """One episode's rollout-layout file in `staging`, then its final places (see above).

    fmt: a formats.DatasetFormat; index: the episode's number in the export; storage: raw,
    jpeg or mp4; pipeline: images.image_pipeline(...) (None: as recorded); rate: the step
    rate (MP4 frame rate); streams: the names of the observation's members, in order.
    """

    def __init__(self, fmt, staging, index, *, storage, pipeline, rate, streams):
        if storage not in fmt.storages:
            raise ValueError(f'the {fmt.name} format stores images as {list(fmt.storages)}; '
                             f'not {storage!r}')
        self.fmt, self.staging, self.index = fmt, Path(staging), index
        self.storage, self.pipeline, self.rate = storage, pipeline, rate
        self.streams = tuple(streams)
        self.staging.mkdir(parents=True, exist_ok=True)
        self.path = self.staging / f'episode{index:06d}.hdf5{PARTIAL}'
        self.h5 = h5py.File(self.path, 'w')
        if storage == MP4:  # here, not in the camera threads (a check-then-create race)
            self.h5.create_group(VIDEO_PATHS_GROUP)
        self.cameras = {camera: _Camera(self, camera) for camera in fmt.cameras}
        self.proprio, self.actions, self.stamps, self.action_stamps = [], [], [], []

    def create_images(self, camera, shape):
        """The growing image dataset of `camera` (raw rows or JPEG bytes)."""
        name = self.fmt.rollout_images[camera]
        if self.storage == JPEG:
            return self.h5.create_dataset(name + JPEG_SUFFIX, shape=(0,), maxshape=(None,),
                                          dtype=h5py.vlen_dtype(np.uint8), chunks=(64,))
        return self.h5.create_dataset(name, shape=(0, *shape), maxshape=(None, *shape),
                                      dtype=np.uint8, chunks=(1, *shape))

    def add(self, step):
        """One steps.Step: its camera frames go to the workers, its vectors are kept."""
        for camera, sink in self.cameras.items():
            sink.submit(step.images[camera])
        self.proprio.append(step.proprio)
        self.actions.append(step.action)
        self.stamps.append([step.stamps[name] for name in self.streams])
        self.action_stamps.append(step.action_stamp_ns)

    @property
    def num_steps(self):
        return len(self.actions)

    def finish(self, *, task, success, score=None, source_bag='', outcome_text=''):
        """Wait for the cameras, write the vectors and attributes, close the file."""
        for sink in self.cameras.values():
            sink.close()
        fmt, h5 = self.fmt, self.h5
        h5.create_dataset(fmt.rollout_actions, data=np.stack(self.actions))  # (T, d) float64
        h5.create_dataset(fmt.rollout_proprio, data=np.stack(self.proprio))  # (T, D) float64
        own = h5.create_group(OWN_GROUP)
        own.create_dataset('stamps_ns', data=np.array(self.stamps, np.int64))  # (T, streams)
        own.create_dataset('action_stamps_ns', data=np.array(self.action_stamps, np.int64))
        own.attrs['streams'] = list(self.streams)
        own.attrs['source_bag'] = str(source_bag)
        own.attrs['episode_outcome'] = outcome_text
        h5.attrs['task_description'] = task
        h5.attrs['success'] = bool(success)
        if score is not None and fmt.name == 'aloha':
            h5.attrs['success_score'] = float(score)
        h5.close()
        self.h5 = None

    def videos(self):
        """{camera: staged MP4 path} (MP4 storage)."""
        return {camera: sink.video_path for camera, sink in self.cameras.items()
                if sink.video_path is not None}

    def place(self, *, rollout=None, demo=None, task=''):
        """Give the finished episode its final files; returns their paths.

        rollout: path of the rollout file (None: none); demo: path of the demonstration file
        (None: not a demonstration). MP4 files go next to each HDF5 file that names them.
        """
        placed = []
        videos = self.videos()
        if demo is not None:
            demo = Path(demo)
            demo.parent.mkdir(parents=True, exist_ok=True)
            partial = demo.with_name(demo.name + PARTIAL)
            if self.fmt.one_file_per_demo:
                link_or_copy(self.path, partial)
            else:
                self._write_demo(partial, task)
            for video in videos.values():
                link_or_copy(video, demo.parent / video.name)
                placed.append(demo.parent / video.name)
            partial.replace(demo)
            placed.append(demo)
        if rollout is not None:
            rollout = Path(rollout)
            rollout.parent.mkdir(parents=True, exist_ok=True)
            for video in videos.values():
                video.replace(rollout.parent / video.name)
                placed.append(rollout.parent / video.name)
            self.path.replace(rollout)
            placed.append(rollout)
        self.discard()
        return placed

    def _write_demo(self, path, task):
        """The LIBERO / RoboCasa demonstration file: the datasets copied into data/demo_0."""
        fmt = self.fmt
        with h5py.File(self.path, 'r') as source, h5py.File(path, 'w') as target:
            group = target.require_group(DEMO_GROUP)
            suffix = JPEG_SUFFIX if self.storage == JPEG else ''
            for camera in fmt.cameras:
                parent, _, name = (fmt.demo_images[camera] + suffix).rpartition('/')
                source.copy(source[fmt.rollout_images[camera] + suffix],
                            group.require_group(parent), name=name)
            source.copy(source[fmt.rollout_actions], group, name=fmt.demo_actions)
            source.copy(source[fmt.rollout_proprio], group, name=fmt.demo_proprio)
            source.copy(source[OWN_GROUP], group, name=OWN_GROUP)
            group.attrs['task_description'] = task  # RoboCasa's command (R:188)
            group.attrs['num_samples'] = source[fmt.rollout_actions].shape[0]

    def discard(self):
        """Remove what is left in the staging folder of this episode."""
        for path in [self.path, *self.videos().values()]:
            if path.exists():
                path.unlink()

    def abort(self):
        """Stop writing (an error or an interrupt): close everything, remove the files."""
        for sink in self.cameras.values():
            try:
                sink.close()
            except Exception:  # the error that brought us here is the one to report
                pass
        if self.h5 is not None:
            self.h5.close()
            self.h5 = None
        self.discard()
