"""Reading configuration: YAML files and {'preset': name, ...overrides} mappings.

Shared by the latent layout, the image pipeline and the node's parameter files, so every one of
them reports a bad file, key or value the same way: naming the file (or section) and the key.
numpy-free, PyYAML only.
"""
import dataclasses
from typing import Mapping

import yaml


def read_yaml(path, what):
    """The parsed YAML of `path`; ValueError naming `what` (e.g. 'layout file') and the path."""
    try:
        with open(path) as stream:
            return yaml.safe_load(stream)
    except OSError as error:
        raise ValueError(f'cannot read {what} {path}: {error.strerror}') from None
    except yaml.YAMLError as error:
        raise ValueError(f'{what} {path} is not valid YAML: {error}') from None


def from_mapping(cls, data, *, source, preset=None, optional=()):
    """A validated `cls` (a dataclass) from {field: value} or {'preset': name, **overrides}.

    preset: name -> instance of cls (raises ValueError for an unknown name); without it a
    'preset' key is unknown. optional: fields that may be missing without a preset (they keep
    their defaults). Errors are ValueErrors prefixed with `source`.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f'{source}: expected a mapping, got {type(data).__name__}.')
    data = dict(data)
    fields = {field.name for field in dataclasses.fields(cls)}
    keys = fields | ({'preset'} if preset is not None else set())
    unknown = sorted(set(data) - keys)
    if unknown:
        raise ValueError(f'{source}: unknown key(s) {unknown}; known keys are {sorted(keys)}.')
    try:
        if 'preset' in data:
            return dataclasses.replace(preset(data.pop('preset')), **data)
        missing = sorted(fields - set(data) - set(optional))
        if missing:
            hint = ' (or give `preset`)' if preset is not None else ''
            raise ValueError(f'missing key(s) {missing}{hint}.')
        return cls(**data)
    except (TypeError, ValueError) as error:
        raise ValueError(f'{source}: {error}') from None
