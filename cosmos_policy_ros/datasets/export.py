"""An export run: episodes, one at a time, into a dataset directory under a temporary name.

    ExportPlan(format, kind, storage, pipeline, ...)   what to write (settings_digest)
    run_export(sources, plan, out)                     -> the manifest (manifest.py)

Layout of ``out``, the released experiments' (cosmos_policy_experiment_configs.py: named
``LIBERO-Cosmos-Policy``, ``RoboCasa-Cosmos-Policy`` or ``ALOHA-Cosmos-Policy`` under
``BASE_DATASETS_DIR``, it is where their data_dir, t5_text_embeddings_path and
rollout_data_dir point):

    success_only/                data_dir (ALOHA: preprocessed/): the demonstrations
                                 (successful episodes) of the train split,
                                 dataset_statistics.json, t5_embeddings.pkl
        <suite>/episode000000_SCENE_<task words>_demo.hdf5     (libero)
        <suite>/episode000000_demo.hdf5                         (robocasa)
        <task_words>/train/episode000000.hdf5 (+ MP4)           (aloha; val/ beside train/)
    val/<suite>/...              held-out demonstrations (libero, robocasa: outside data_dir,
                                 which the classes read whole)
    all_episodes/                rollout_data_dir: every episode of the train split with its
        episode000000--success=True.hdf5                        success label (rollouts
                                 export: every episode; demonstrations: with --rollout-copy)
    export.json                  the manifest

Safety: everything is written in ``<out>.partial/`` and renamed to ``out`` only when the
last episode, the statistics, the embeddings and the manifest are written (the command then
runs ``check``: a complete dataset can still violate an upstream rule, e.g. a constant action
dimension, which it reports with a non-zero exit); an interrupted export (error, Ctrl-C,
kill) leaves ``<out>.partial`` with its journal (the manifest, ``complete: false``). Rerun
with the same settings, it continues after the last finished episode (files of an unfinished
one are removed); with other settings, or ``restart``, it starts clean.

Sources: steps.EpisodeBag (bags, through the node's rules) or lerobot.LeRobotEpisode; each
gives ``steps()`` and then its task, outcome and counts.
"""
from dataclasses import dataclass, field
import json
from pathlib import Path
import random
import shutil
from typing import Optional

import h5py
import numpy as np
import yaml

from cosmos_policy_ros.datasets import formats, manifest
from cosmos_policy_ros.datasets.episode_files import EpisodeWriter, PARTIAL
from cosmos_policy_ros.datasets.images import describe
from cosmos_policy_ros.datasets.manifest import (DEMONSTRATIONS, ROLLOUT_DIR,
                                                 ROLLOUTS, TRAIN, VAL, VAL_DIR)
from cosmos_policy_ros.datasets.outcomes import combine, Labels
from cosmos_policy_ros.datasets.text import embedding_table, T5_FILE, write_pickle
from cosmos_policy_ros.datasets.video import step_rate
from cosmos_policy_ros.normalization import dataset_statistics

STAGING = '.staging'
STATISTICS_FILE = 'dataset_statistics.json'  # the name the classes load (C:262)
PIPELINE_FILE = 'image_pipeline.yaml'  # the node's image pipeline (cosmos-policy-convert --images)


@dataclass(frozen=True)
class ExportPlan:
    """What an export writes; `settings()` is what a rerun must match to continue."""

    fmt: formats.DatasetFormat
    kind: str = DEMONSTRATIONS
    storage: str = formats.RAW       # one of fmt.storages (the CLI's default: the first)
    pipeline: object = None          # images.image_pipeline(...) (None: as recorded)
    val_fraction: float = 0.0
    split_seed: int = 0
    suite: str = 'robot'
    rollout_copy: bool = True        # demonstrations: every train episode in all_episodes too
    t5: dict = field(default_factory=dict)  # text.embedding_table keyword (one of three)
    labels: Labels = field(default_factory=Labels)
    inputs: tuple = ()               # what the sources are (paths, sizes), for the digest
    extra: dict = field(default_factory=dict)  # source settings (config digest, topics, ...)

    def settings(self):
        return {'format': self.fmt.name, 'kind': self.kind, 'storage': self.storage,
                'images': describe(self.pipeline), 'val_fraction': self.val_fraction,
                'split_seed': self.split_seed, 'suite': self.suite,
                'rollout_copy': self.rollout_copy,
                't5': {key: str(value) for key, value in self.t5.items()},
                'labels': {'label': None if self.labels.default is None
                           else self.labels.default.success,
                           'table': {bag: [o.success, o.score]
                                     for bag, o in sorted(self.labels.table.items())}},
                'inputs': list(self.inputs), **self.extra}

    def val_indices(self, count):
        """The held-out episodes: a seeded draw of round(count * val_fraction) indices."""
        if self.kind == ROLLOUTS or not self.val_fraction:
            return set()
        order = list(range(count))
        random.Random(self.split_seed).shuffle(order)
        return set(order[:round(count * self.val_fraction)])

    def check_task(self, task):
        """ValueError when the format cannot carry `task` (LIBERO and ALOHA: in paths)."""
        if self.kind == ROLLOUTS:
            return
        if self.fmt.name == 'libero':
            formats.libero_file_name(0, task)
        elif self.fmt.name == 'aloha':
            formats.aloha_task_folder(task)

    def demo_path(self, index, task, split):
        """The demonstration file of an episode, relative to the dataset."""
        if self.fmt.name == 'aloha':
            return Path(self.fmt.data_dir, formats.aloha_task_folder(task), split,
                        f'episode{index:06d}.hdf5')
        name = (formats.libero_file_name(index, task) if self.fmt.name == 'libero'
                else f'episode{index:06d}_demo.hdf5')
        return Path(self.fmt.data_dir if split == TRAIN else VAL_DIR, self.suite, name)

    def places(self, index, task, success, split):
        """(demo path or None, rollout path or None) of a finished episode."""
        rollout = Path(ROLLOUT_DIR, formats.rollout_file_name(index, success))
        if self.kind == ROLLOUTS:
            return None, rollout
        demo = self.demo_path(index, task, split) if success else None
        keep_rollout = self.rollout_copy and (split == TRAIN or not success)
        return demo, rollout if keep_rollout else None

    @property
    def text_dir(self):
        """Where the embeddings (and statistics) go: the data_dir, or the root for rollouts."""
        return Path(self.fmt.data_dir) if self.kind == DEMONSTRATIONS else Path('.')


class ExportError(ValueError):
    """An export stopped; the message names the bag (or dataset), topic and reason."""


def partial_path(out):
    out = Path(out)
    return out.with_name(out.name + PARTIAL)


def run_export(sources, plan, out, *, restart=False, force=False, log=print, progress=None,
               workers=1):
    """Export `sources` (in order) into `out`; returns the final manifest.

    progress: a tqdm-like bar (update(seconds), set_description) or None. workers: image
    worker processes (image_workers.py; 0 or 1: the image work in this process); the files
    are the same whatever the count, so it is not one of the plan's settings.
    """
    out = Path(out)
    if out.exists() and not force:
        raise ExportError(f'{out} exists; pass --force to replace it (or choose another --out)')
    work = partial_path(out)
    settings = plan.settings()
    digest = manifest.settings_digest(settings)
    record = _resume(work, digest, restart, log)
    if record is None:
        record = {'tool': manifest.TOOL, 'version': manifest.MANIFEST_VERSION,
                  'complete': False, 'format': plan.fmt.name, 'kind': plan.kind,
                  'settings': settings, 'settings_digest': digest, 'episodes': []}
        work.mkdir(parents=True)
        manifest.write_manifest(work, record)
    done = {entry['index'] for entry in record['episodes']}
    val = plan.val_indices(len(sources))
    staging = work / STAGING
    for index, source in enumerate(sources):
        if index in done:
            if progress is not None:
                progress.update(source.duration_s)
            continue
        if progress is not None:
            progress.set_description(f'export {index + 1}/{len(sources)}')
        entry = export_episode(index, source, plan, work, staging,
                               VAL if index in val else TRAIN, progress, workers)
        record['episodes'].append(entry)
        manifest.write_manifest(work, record)
    shutil.rmtree(staging, ignore_errors=True)
    finish(work, record, plan, sources)
    if out.exists():
        shutil.rmtree(out)
    work.rename(out)
    return record


def _resume(work, digest, restart, log):
    """The journal to continue from, or None (the partial directory removed)."""
    if not work.exists():
        return None
    try:
        record = manifest.read_manifest(work)
    except ValueError:
        record = None
    if restart or record is None or record.get('settings_digest') != digest:
        why = ('--restart' if restart else 'its settings differ' if record else
               'it has no readable journal')
        log(f'[export] starting clean: removing {work} ({why})')
        shutil.rmtree(work)
        return None
    kept = {manifest.MANIFEST}
    for entry in record['episodes']:
        kept.update(entry['files'])
    for path in sorted(work.rglob('*'), reverse=True):  # files of unfinished episodes
        relative = str(path.relative_to(work))
        if path.is_file() and relative not in kept:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    record['complete'] = False
    log(f'[export] continuing {work}: {len(record["episodes"])} episode(s) already done')
    return record


def export_episode(index, source, plan, root, staging, split, progress=None, workers=1):
    """Stream one source into its files; returns its manifest entry."""
    writer = EpisodeWriter(plan.fmt, staging, index, storage=plan.storage,
                           pipeline=plan.pipeline, rate=step_rate(source.step_period),
                           streams=source.stream_names, workers=workers,
                           origins={camera: source.camera_origin(camera)
                                    for camera in plan.fmt.cameras})
    try:
        if progress is not None:
            source.progress = progress.update
        checked = False
        for step in source.steps():
            if not checked:
                _check_task(source, plan)
                checked = True
            writer.add(step)
        outcome = combine(source.outcome, plan.labels.for_bag(source.label), source.label)
        if plan.kind == ROLLOUTS and outcome is None:
            raise ExportError(f'bag {source.label}: no outcome: no {source.outcome_topic} '
                              f'message in the bag and no --label / --labels entry for it')
        success = True if outcome is None else outcome.success
        score = None if outcome is None else outcome.score
        writer.finish(task=source.task, success=success, score=score,
                      source_bag=source.label, outcome_text=outcome.text if outcome else '')
        demo, rollout = plan.places(index, source.task, success, split)
        placed = writer.place(rollout=root / rollout if rollout else None,
                              demo=root / demo if demo else None, task=source.task)
    except BaseException:
        writer.abort()
        raise
    return {'index': index, 'source': source.label, 'task': source.task, 'success': success,
            'score': score, 'split': split, 'steps': writer.num_steps, **source.summary(),
            'demo_file': str(demo) if demo else None,
            'rollout_file': str(rollout) if rollout else None,
            'files': sorted(str(path.relative_to(root)) for path in placed)}


def _check_task(source, plan):
    try:
        plan.check_task(source.task)
    except ValueError as error:
        raise ExportError(f'bag {source.label}: {error}') from None


def finish(work, record, plan, sources):
    """Statistics, T5 embeddings and the complete manifest."""
    episodes = record['episodes']
    tasks = sorted({entry['task'] for entry in episodes})
    text_dir = work / plan.text_dir
    text_dir.mkdir(parents=True, exist_ok=True)
    record['tasks'] = tasks
    record['data_dir'] = plan.fmt.data_dir if plan.kind == DEMONSTRATIONS else None
    record['rollout_data_dir'] = ROLLOUT_DIR if any(e['rollout_file'] for e in episodes) \
        else None
    record['val_dir'] = (VAL_DIR if plan.fmt.name != 'aloha' and any(
        e['demo_file'] and e['split'] == VAL for e in episodes) else None)
    record['statistics'] = None
    if plan.kind == DEMONSTRATIONS:
        demos = [work / e['demo_file'] for e in episodes if e['demo_file'] and e['split'] ==
                 TRAIN]
        if not demos:
            raise ExportError(f'{work}: no demonstration in the train split (every episode '
                              f'failed or is held out); nothing for the statistics')
        actions, proprio = demo_vectors(plan.fmt, demos)
        (text_dir / STATISTICS_FILE).write_text(
            json.dumps(dataset_statistics(actions, proprio), indent=1) + '\n')
        record['statistics'] = str(plan.text_dir / STATISTICS_FILE)
    write_pickle(text_dir / T5_FILE, embedding_table(tasks, **plan.t5))
    record['t5_embeddings'] = str(plan.text_dir / T5_FILE)
    record['image_pipeline'] = None
    if plan.pipeline is not None:
        (work / PIPELINE_FILE).write_text(yaml.safe_dump(plan.pipeline.to_dict()))
        record['image_pipeline'] = PIPELINE_FILE
    first = sources[0]
    record['step_period'] = first.step_period
    record['cameras'] = {camera: plan.fmt.video_names[camera] if plan.fmt.name == 'aloha'
                         else plan.fmt.demo_images[camera] for camera in plan.fmt.cameras}
    record['action_names'] = list(first.action_names)
    record['proprio_labels'] = list(first.proprio_labels)
    record['upstream_change'] = (formats.ALOHA_UPSTREAM_CHANGE if plan.fmt.name == 'aloha' and
                                 plan.kind == DEMONSTRATIONS and any(
                                     formats.aloha_command(formats.aloha_task_folder(task),
                                                           with_change=False) is None
                                     for task in tasks) else None)
    record['complete'] = True
    manifest.write_manifest(work, record)


def demo_vectors(fmt, paths):
    """(actions (N, d), proprio (N, D)) of demonstration files, concatenated."""
    prefix = '' if fmt.one_file_per_demo else formats.DEMO_GROUP + '/'
    actions, proprio = [], []
    for path in paths:
        with h5py.File(path, 'r') as h5:
            actions.append(h5[prefix + fmt.demo_actions][:])
            proprio.append(h5[prefix + fmt.demo_proprio][:])
    return np.concatenate(actions), np.concatenate(proprio)


def total_seconds(sources) -> Optional[float]:
    """The progress bar's total: the sources' recorded seconds."""
    return sum(source.duration_s for source in sources)
