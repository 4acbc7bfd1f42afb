"""Min/max normalization of actions and proprio, from the released dataset statistics.

Cosmos Policy maps every action and proprio dimension to [-1, 1] with the min and max over the
training demonstrations (reference section 2):

    x_n = 2 * (x - min) / (max - min) - 1          (normalize)
    x   = 0.5 * (x_n + 1) * (max - min) + min      (unnormalize)

The statistics ship with each checkpoint as ``{libero,robocasa,aloha}_dataset_statistics.json``:
a JSON object with the lists ``actions_min``, ``actions_max``, ``proprio_min`` and
``proprio_max`` (one value per dimension). Other keys (mean, std, median, ...) are ignored.
``dataset_statistics`` computes that object, every key the reference writes, from the rows.

numpy only. The statistics are float64 arrays, like the reference's, and the maps follow
numpy's promotion exactly as the reference's expressions do (results are float64).
"""
from dataclasses import dataclass
import json

import numpy as np

REQUIRED_KEYS = ('actions_min', 'actions_max', 'proprio_min', 'proprio_max')
STATISTICS = ('min', 'max', 'mean', 'std', 'median')  # per dimension, as the reference writes


def dataset_statistics(actions, proprio):
    """The released statistics object of action rows (N, d) and proprio rows (M, D).

    Keys ``{actions,proprio}_{min,max,mean,std,median}``, each a list of one float per
    dimension over all rows (numpy's population std), as the reference's
    ``calculate_dataset_statistics`` writes ``dataset_statistics.json``.
    """
    stats = {}
    for prefix, rows in (('actions', actions), ('proprio', proprio)):
        rows = np.asarray(rows)
        for name, reduce in zip(STATISTICS, (np.min, np.max, np.mean, np.std, np.median)):
            stats[f'{prefix}_{name}'] = reduce(rows, axis=0).tolist()
    return stats


@dataclass(frozen=True)
class NormStats:
    """Per-dimension min/max of actions (d,) and proprio (D,), validated and read-only.

    source names where the numbers came from (a file path) and appears in every error.
    """

    actions_min: np.ndarray
    actions_max: np.ndarray
    proprio_min: np.ndarray
    proprio_max: np.ndarray
    source: str = 'statistics'

    def __post_init__(self):
        for key in REQUIRED_KEYS:
            object.__setattr__(self, key, _vector(getattr(self, key), key, self.source))
        for kind in ('actions', 'proprio'):
            low, high = getattr(self, f'{kind}_min'), getattr(self, f'{kind}_max')
            if low.shape != high.shape:
                raise ValueError(
                    f'{self.source}: `{kind}_min` has {low.size} values but `{kind}_max` has '
                    f'{high.size}.')
            for dim in range(low.size):
                if not high[dim] > low[dim]:
                    raise ValueError(
                        f'{self.source}: {kind} dimension {dim} has max <= min '
                        f'(`{kind}_min`[{dim}] = {float(low[dim])!r}, `{kind}_max`[{dim}] = '
                        f'{float(high[dim])!r}); it cannot be normalized.')

    # --- construction ----------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, data, *, layout=None, source='statistics'):
        """Build from a mapping with the released keys; extra keys are ignored.

        layout: optional LatentLayout; when given, the lengths must match its action_dim and
        proprio_dim.
        """
        if not isinstance(data, dict):
            raise ValueError(f'{source}: expected a JSON object with keys {list(REQUIRED_KEYS)}, '
                             f'got {type(data).__name__}.')
        missing = [key for key in REQUIRED_KEYS if key not in data]
        if missing:
            raise ValueError(f'{source}: missing key(s) {missing}; the dataset statistics need '
                             f'{list(REQUIRED_KEYS)}.')
        stats = cls(*(data[key] for key in REQUIRED_KEYS), source=source)
        if layout is not None:
            stats.check_layout(layout)
        return stats

    @classmethod
    def from_json(cls, path, *, layout=None):
        """Read a released ``*_dataset_statistics.json`` file."""
        try:
            with open(path) as stream:
                data = json.load(stream)
        except OSError as error:
            raise ValueError(f'cannot read dataset statistics {path}: {error.strerror}') from None
        except ValueError as error:  # json.JSONDecodeError and bad encodings
            raise ValueError(f'dataset statistics {path} is not valid JSON: {error}') from None
        return cls.from_dict(data, layout=layout, source=str(path))

    def check_layout(self, layout):
        """Raise unless the action and proprio sizes match `layout`."""
        for kind, want in (('actions', layout.action_dim), ('proprio', layout.proprio_dim)):
            have = getattr(self, f'{kind}_min').size
            if have != want:
                field = 'action_dim' if kind == 'actions' else 'proprio_dim'
                raise ValueError(
                    f'{self.source}: `{kind}_min`/`{kind}_max` have {have} values but layout '
                    f'{layout.name!r} has `{field}` = {want}.')

    # --- sizes -----------------------------------------------------------------------------------
    @property
    def action_dim(self):
        return self.actions_min.size

    @property
    def proprio_dim(self):
        return self.proprio_min.size

    # --- maps ------------------------------------------------------------------------------------
    def normalize_proprio(self, proprio):
        """Raw proprio (..., D) -> float64 values, [-1, 1] over the training range."""
        return _normalize(proprio, self.proprio_min, self.proprio_max, 'proprio', self.source)

    def unnormalize_proprio(self, proprio):
        """Normalized proprio (..., D) -> float64 proprio in robot units."""
        return _unnormalize(proprio, self.proprio_min, self.proprio_max, 'proprio', self.source)

    def normalize_actions(self, actions):
        """Raw actions (..., d) -> float64 values, [-1, 1] over the training range."""
        return _normalize(actions, self.actions_min, self.actions_max, 'actions', self.source)

    def unnormalize_actions(self, actions):
        """Normalized actions (..., d), e.g. a chunk (B, K, d) -> float64 robot units."""
        return _unnormalize(actions, self.actions_min, self.actions_max, 'actions', self.source)


def _vector(values, key, source):
    """A read-only finite float64 vector from a list (or array) of numbers."""
    try:
        array = np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f'{source}: `{key}` must be a list of numbers, got '
                         f'{_preview(values)}.') from None
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f'{source}: `{key}` must be a non-empty flat list of numbers, got '
                         f'shape {array.shape}.')
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise ValueError(f'{source}: `{key}`[{bad[0]}] is {float(array[bad[0]])!r}; the '
                         f'statistics must be finite.')
    array.flags.writeable = False
    return array


def _checked(values, size, kind, source):
    array = np.asarray(values)
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    if array.ndim == 0 or array.shape[-1] != size:
        raise ValueError(f'{kind} must have {size} values in its last axis (from {source}); '
                         f'got shape {array.shape}.')
    if not np.all(np.isfinite(array)):
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        raise ValueError(f'{kind} has a non-finite value {float(array[index])!r} at index '
                         f'{index}.')
    return array


def _normalize(values, low, high, kind, source):
    array = _checked(values, low.size, kind, source)
    return 2.0 * ((array - low) / (high - low)) - 1.0


def _unnormalize(values, low, high, kind, source):
    array = _checked(values, low.size, f'normalized {kind}', source)
    return 0.5 * (array + 1.0) * (high - low) + low


def _preview(values):
    text = repr(values)
    return text if len(text) <= 60 else text[:57] + '...'
