"""export.json: what an exported dataset directory holds (datasets/, stdlib only).

The exporter writes it after every finished episode (the journal a rerun continues from) and
a last time with ``complete: true`` just before the directory gets its final name; ``check``
and the package's trainer read it. Fields:

    tool, version, complete        'cosmos-policy-dataset', MANIFEST_VERSION, bool
    format, kind                   libero|robocasa|aloha, demonstrations|rollouts
    settings, settings_digest      everything that decides the files, and its sha256 (a rerun
                                   with other settings starts clean)
    data_dir, rollout_data_dir,    folders relative to the dataset: the upstream data_dir
    val_dir                        (demonstrations), rollout_data_dir, held-out demonstrations
    statistics, t5_embeddings      files relative to the dataset
    step_period, cameras,          seconds per step; camera -> upstream name; the names of the
    action_names, proprio_labels   action and proprio values
    tasks                          every task text, sorted
    episodes                       per episode: index, source, task, success, score, split,
                                   steps, skipped_steps, surplus_frames, dropped_messages,
                                   demo_file, rollout_file (relative paths or null), files
                                   (every file it placed: what a rerun keeps)
    image_pipeline                 image_pipeline.yaml (the node's pipeline of the images) or
                                   null (stored as recorded)
    upstream_change                the one-line upstream change the dataset needs, or null
"""
import hashlib
import json
from pathlib import Path

MANIFEST = 'export.json'
MANIFEST_VERSION = 1
TOOL = 'cosmos-policy-dataset'
DEMONSTRATIONS, ROLLOUTS = 'demonstrations', 'rollouts'
ROLLOUT_DIR, VAL_DIR = 'all_episodes', 'val'  # (the data_dir is the format's)
TRAIN, VAL = 'train', 'val'


def settings_digest(settings):
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def read_manifest(directory):
    """The manifest of a dataset directory; ValueError naming the file when there is none."""
    path = Path(directory) / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f'{directory} is not an exported dataset: no {MANIFEST}') from None
    except (OSError, ValueError) as error:
        raise ValueError(f'cannot read {path}: {error}') from None
    if not isinstance(data, dict) or data.get('tool') != TOOL:
        raise ValueError(f'{path} was not written by {TOOL}')
    if data.get('version') != MANIFEST_VERSION:
        raise ValueError(f'{path}: manifest version {data.get("version")!r}; this package '
                         f'reads version {MANIFEST_VERSION}')
    return data


def write_manifest(directory, data):
    """Write the manifest atomically (a temporary file renamed over the old one)."""
    path = Path(directory) / MANIFEST
    temporary = path.with_name(path.name + '.tmp')
    temporary.write_text(json.dumps(data, indent=1, sort_keys=False) + '\n')
    temporary.replace(path)
