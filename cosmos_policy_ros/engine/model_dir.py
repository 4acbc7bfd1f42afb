"""The deployable model directory: everything one Cosmos Policy needs, in safe, fast formats.

``cosmos-policy-convert`` writes it from the released files; ``CosmosPolicy.from_model_dir``
(and the node's ``model_path``) reads it::

    model.json                  what is here: format, model id, layout, network presets, image
                                pipeline, sampler defaults, optional planning settings
    dit.safetensors             policy DiT weights, diffusers key names (memory-mapped on load)
    vae.safetensors             Wan2.1 VAE weights, diffusers key names
    dataset_statistics.json     the released min/max statistics (copied as is)
    t5_embeddings.safetensors   instruction -> T5 embedding (converted from the pickle)
    planning_dit.safetensors    optional: the planning model (world model + V(s'))

No pickle is read at load time. Only `model.json` is parsed eagerly; a key that is missing,
unknown or of the wrong type is named with the file.
"""
import dataclasses
from dataclasses import dataclass
import hashlib
import json
from pathlib import Path
from typing import Mapping, Optional

from cosmos_policy_ros.engine.dit import dit_config
from cosmos_policy_ros.engine.images import ImagePipelineConfig
from cosmos_policy_ros.engine.planning import PlanningConfig
from cosmos_policy_ros.engine.sampling import SamplerConfig
from cosmos_policy_ros.engine.vae import vae_config
from cosmos_policy_ros.layout import LatentLayout

FORMAT = 'cosmos_policy_ros.model/1'
SPEC_FILE = 'model.json'
FILES = {
    'dit': 'dit.safetensors',
    'vae': 'vae.safetensors',
    'statistics': 'dataset_statistics.json',
    'text_embeddings': 't5_embeddings.safetensors',
}
PLANNING_DIT_FILE = 'planning_dit.safetensors'


@dataclass(frozen=True)
class ModelSpec:
    """The contents of model.json, validated."""

    model_id: str                       # name@digest, reported in every published message
    layout: LatentLayout
    dit_preset: str                     # engine.dit preset ('2b' for released weights)
    vae_preset: str                     # engine.vae preset ('wan2.1' for the released VAE)
    images: ImagePipelineConfig
    sampler: SamplerConfig              # default denoising steps, solver and sigmas
    planning: Optional[PlanningConfig] = None  # set when a planning DiT is in the directory
    source: Mapping = dataclasses.field(default_factory=dict)  # provenance, informational

    def __post_init__(self):
        if not isinstance(self.model_id, str) or not self.model_id:
            raise ValueError(f'`model_id` must be a non-empty string. Got {self.model_id!r}.')
        dit_config(self.dit_preset)
        vae_config(self.vae_preset)
        if self.images.image_size != self.layout.image_size:
            raise ValueError(f'`images.image_size` ({self.images.image_size}) must equal '
                             f'`layout.image_size` ({self.layout.image_size}).')

    def to_dict(self):
        return {
            'format': FORMAT,
            'model_id': self.model_id,
            'layout': self.layout.to_dict(),
            'dit_preset': self.dit_preset,
            'vae_preset': self.vae_preset,
            'images': self.images.to_dict(),
            'sampler': dataclasses.asdict(self.sampler),
            'planning': None if self.planning is None else dataclasses.asdict(self.planning),
            'source': dict(self.source),
        }

    @classmethod
    def from_dict(cls, data, *, source=SPEC_FILE):
        if not isinstance(data, dict):
            raise ValueError(f'{source}: expected a JSON object, got {type(data).__name__}.')
        if data.get('format') != FORMAT:
            raise ValueError(f'{source}: `format` must be {FORMAT!r} (a directory written by '
                             f'cosmos-policy-convert). Got {data.get("format")!r}.')
        known = {'format', 'model_id', 'layout', 'dit_preset', 'vae_preset', 'images',
                 'sampler', 'planning', 'source'}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f'{source}: unknown key(s) {unknown}.')
        missing = sorted(known - {'planning', 'source'} - set(data))
        if missing:
            raise ValueError(f'{source}: missing key(s) {missing}.')
        try:
            sampler = data['sampler']
            if not isinstance(sampler, dict):
                raise ValueError(f'`sampler` must be an object, got {type(sampler).__name__}.')
            planning = data.get('planning')
            if planning is not None and not isinstance(planning, dict):
                raise ValueError(f'`planning` must be an object or null, got '
                                 f'{type(planning).__name__}.')
            return cls(
                model_id=data['model_id'],
                layout=LatentLayout.from_dict(data['layout'], source='`layout`'),
                dit_preset=data['dit_preset'],
                vae_preset=data['vae_preset'],
                images=ImagePipelineConfig.from_dict(data['images'], source='`images`'),
                sampler=SamplerConfig(**sampler),
                planning=None if planning is None else PlanningConfig(**planning),
                source=data.get('source') or {},
            )
        except (TypeError, ValueError) as error:
            raise ValueError(f'{source}: {error}') from None


def is_model_dir(path):
    """Whether `path` is a directory with a model.json."""
    return (Path(path) / SPEC_FILE).is_file()


def read_spec(model_dir):
    """The ModelSpec of a model directory; errors name the file and the key."""
    path = Path(model_dir) / SPEC_FILE
    if not Path(model_dir).is_dir():
        raise ValueError(f'model directory {model_dir} does not exist.')
    if not path.is_file():
        raise ValueError(f'{model_dir} is not a model directory (no {SPEC_FILE}); convert the '
                         f'released files with cosmos-policy-convert.')
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f'cannot read {path}: {error}') from None
    return ModelSpec.from_dict(data, source=str(path))


def model_files(model_dir, spec):
    """{role: Path} of the files `spec` needs, each checked to exist."""
    model_dir = Path(model_dir)
    files = {role: model_dir / name for role, name in FILES.items()}
    if spec.planning is not None:
        files['planning_dit'] = model_dir / PLANNING_DIT_FILE
    missing = sorted(str(path) for path in files.values() if not path.is_file())
    if missing:
        raise ValueError(f'model directory {model_dir} is incomplete: missing {missing}.')
    return files


def write_spec(model_dir, spec):
    """Write model.json (atomically: a reader never sees half a file)."""
    path = Path(model_dir) / SPEC_FILE
    partial = path.with_suffix('.json.partial')
    partial.write_text(json.dumps(spec.to_dict(), indent=2) + '\n')
    partial.replace(path)
    return path


def recorded_digests(spec):
    """{file name: sha256} of the weight files whose digest model.json's `source` records
    (cosmos-policy-convert and cosmos-policy-train write `dit_sha256`; train --planning also
    `planning_net.planning_dit_sha256`)."""
    source = spec.source or {}
    digests = {}
    if isinstance(source.get('dit_sha256'), str):
        digests[FILES['dit']] = source['dit_sha256']
    planning = source.get('planning_net')
    planning_digest = (planning or {}).get('planning_dit_sha256') if isinstance(
        planning, dict) else source.get('planning_dit_sha256')
    if isinstance(planning_digest, str):
        digests[PLANNING_DIT_FILE] = planning_digest
    return digests


def file_sha256(path):
    """The sha256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, 'rb') as stream:
        for block in iter(lambda: stream.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def weights_hint(model_dir, spec):
    """What to say when a freshly loaded model's network produces non-finite values: check the
    weight files; the digests model.json records, compared with the files' now."""
    hint = (f'this happened right after loading {model_dir}: are its weight files intact '
            f'(a copy cut short, a file replaced)? Convert or copy them again')
    digests = recorded_digests(spec)
    if not digests:
        return hint + ' (model.json records no digest to check them against).'
    mismatched = []
    for name, expected in sorted(digests.items()):
        path = Path(model_dir) / name
        actual = file_sha256(path) if path.is_file() else 'missing'
        if actual != expected:
            mismatched.append(f'{name} has sha256 {actual[:12]}..., model.json records '
                              f'{expected[:12]}...')
    if mismatched:
        return hint + '. DIGEST MISMATCH: ' + '; '.join(mismatched) + '.'
    return hint + f' (their sha256 match model.json for {", ".join(sorted(digests))}).'
