"""The files of one exported episode, written one step at a time (datasets/).

An episode is streamed once, in its format's rollout layout (formats.py), into a staging
folder: each camera's frames go to its CameraJob (the stored image, images.py, as a raw row,
as JPEG bytes of quality ``JPEG_QUALITY``, or into an MP4 encoder, video.py), run by
image_workers.py in worker processes (``workers`` >= 2) or in this process, a few frames in
flight per camera, so memory does not grow with the episode; the rows come back in order and
this process appends them to the HDF5 file (h5py from one thread only). ``finish``
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
import os
from pathlib import Path
import shutil

import h5py
import numpy as np

from cosmos_policy_ros.bags.sample_scene import encode_jpeg
from cosmos_policy_ros.datasets.formats import (DEMO_GROUP, JPEG, JPEG_SUFFIX, MP4,
                                                OWN_GROUP, RAW, VIDEO_PATHS_GROUP)
from cosmos_policy_ros.datasets.image_workers import start_work
from cosmos_policy_ros.datasets.images import stored_image
from cosmos_policy_ros.datasets.video import VideoWriter

JPEG_QUALITY = 95  # the reference writers' quality (RL:319-326) and the node's round trip
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


class CameraJob:
    """One camera's image work (image_workers.py runs it): a frame -> its stored row (raw:
    the pipeline's image; JPEG: the bytes of that image at JPEG_QUALITY) or into the camera's
    MP4 file (None)."""

    def __init__(self, camera, storage, pipeline, *, video_path=None, rate=None):
        self.camera, self.storage, self.pipeline = camera, storage, pipeline
        self.video_path, self.rate = video_path, rate
        self.video = None

    def process(self, frame):
        pipeline = self.pipeline
        if self.storage == MP4:
            if self.video is None:
                size = None if pipeline is None else (pipeline.image_size, pipeline.image_size)
                self.video = VideoWriter(self.video_path, self.rate, size=size,
                                         flip=bool(pipeline and pipeline.flip_vertical))
            if pipeline is not None and pipeline.jpeg_quality:
                frame = stored_image(frame, pipeline, self.camera)  # exact pipeline first
            self.video.add(frame)
            return None
        image = stored_image(frame, pipeline, self.camera)
        if self.storage == JPEG:
            return np.frombuffer(encode_jpeg(image, JPEG_QUALITY), np.uint8)
        return image

    def close(self):
        if self.video is not None:
            self.video.close()


class EpisodeWriter:
    """One episode's rollout-layout file in `staging`, then its final places (see above).

    fmt: a formats.DatasetFormat; index: the episode's number in the export; storage: raw,
    jpeg or mp4; pipeline: images.image_pipeline(...) (None: as recorded); rate: the step
    rate (MP4 frame rate); streams: the names of the observation's members, in order.
    """

    def __init__(self, fmt, staging, index, *, storage, pipeline, rate, streams, workers=1,
                 origins=None):
        if storage not in fmt.storages:
            raise ValueError(f'the {fmt.name} format stores images as {list(fmt.storages)}; '
                             f'not {storage!r}')
        self.fmt, self.staging, self.index = fmt, Path(staging), index
        self.storage, self.pipeline, self.rate = storage, pipeline, rate
        self.streams = tuple(streams)
        self.workers = workers
        self.origins = origins or {camera: f'camera {camera}' for camera in fmt.cameras}
        self.staging.mkdir(parents=True, exist_ok=True)
        self.path = self.staging / f'episode{index:06d}.hdf5{PARTIAL}'
        self.h5 = h5py.File(self.path, 'w')
        if storage == MP4:
            self.h5.create_group(VIDEO_PATHS_GROUP)
        self.jobs = {camera: CameraJob(camera, storage, pipeline, rate=rate,
                                       video_path=self.staging / video_file_name(
                                           index, fmt.video_names[camera]) if storage == MP4
                                       else None)
                     for camera in fmt.cameras}
        self.datasets = {}  # camera -> its growing image dataset (raw, JPEG)
        self.started = set()  # cameras with a frame (MP4: named in video_paths)
        self.work = None  # image_workers' SerialWork or ParallelWork, from the first step
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
        """One steps.Step: its camera frames go to the image work, its vectors are kept."""
        if self.work is None:
            self.work = start_work(
                self.jobs, self.workers, self._append,
                frame_bytes=max(step.images[camera].nbytes for camera in self.jobs),
                origins=self.origins)
        for camera in self.jobs:
            if camera not in self.started and self.storage == MP4:
                name = self.jobs[camera].video_path.name
                self.h5[VIDEO_PATHS_GROUP][self.fmt.video_names[camera]] = name.encode()
            self.started.add(camera)
            self.work.submit(camera, step.images[camera])
        self.proprio.append(step.proprio)
        self.actions.append(step.action)
        self.stamps.append([step.stamps[name] for name in self.streams])
        self.action_stamps.append(step.action_stamp_ns)

    def _append(self, camera, row):
        """A camera's next stored row (None: it went to the MP4 file)."""
        if row is None:
            return
        dataset = self.datasets.get(camera)
        if dataset is None:
            dataset = self.datasets[camera] = self.create_images(camera, row.shape)
        elif self.storage == RAW and row.shape != dataset.shape[1:]:
            raise ValueError(f'camera {camera!r}: a frame of {row.shape[1]} x '
                             f'{row.shape[0]} after {dataset.shape[2]} x '
                             f'{dataset.shape[1]}; the stored size must not change')
        count = dataset.shape[0]
        dataset.resize(count + 1, axis=0)
        dataset[count] = row

    @property
    def num_steps(self):
        return len(self.actions)

    def finish(self, *, task, success, score=None, source_bag='', outcome_text=''):
        """Wait for the cameras, write the vectors and attributes, close the file."""
        if self.work is not None:
            self.work.finish()
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
        return {camera: self.jobs[camera].video_path for camera in self.jobs
                if self.storage == MP4 and camera in self.started}

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
        if self.work is not None:
            self.work.abort()
        if self.h5 is not None:
            self.h5.close()
            self.h5 = None
        self.discard()
