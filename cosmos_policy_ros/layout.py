"""The latent sequence of Cosmos Policy: which latent frame holds what.

One synthetic "video" is built per query: a blank frame, then one slot of four pixel frames for
each of current proprio, each current camera, the action chunk, future proprio, each future
camera and the value. The causal Wan2.1 VAE maps ``1 + 4k`` pixel frames to ``1 + k`` latent
frames of ``16 x S x S`` (S = image_size / 8), so every slot becomes one latent frame:

    index 0            blank frame
    index 1            current proprio                  (conditioning)
    index 2 .. 1+n     current cameras, in layout order  (conditioning)
    index 2+n          action chunk
    index 3+n          future proprio
    index 4+n .. 3+2n  future cameras, in layout order
    index 4+2n         value                             (the last frame)

The first ``2 + n`` frames condition the policy pass. The presets reproduce the released
checkpoints (reference section 1): LIBERO 9 frames, RoboCasa and ALOHA 11.
"""
import dataclasses
from dataclasses import dataclass
import re

from cosmos_policy_ros.config_files import from_mapping, read_yaml

LATENT_CHANNELS = 16  # channels of a Wan2.1 latent frame
VAE_SPATIAL_FACTOR = 8  # pixels per latent cell along each image axis
VAE_TEMPORAL_FACTOR = 4  # pixel frames per latent frame (after the first)
MAX_CAMERAS = 4

_CAMERA_NAME = re.compile(r'^[a-z][a-z0-9_]*$')


@dataclass(frozen=True)
class LatentLayout:
    """Where each part of an observation and a prediction lives in the latent sequence."""

    name: str                  # preset or robot name, reported in model ids and errors
    cameras: tuple             # camera names in latent order, e.g. ('wrist', 'primary')
    chunk_size: int            # K: actions per chunk
    action_dim: int            # d: values per action
    proprio_dim: int           # D: values of the proprio vector
    image_size: int = 224      # square pixel size the images are resized to

    def __post_init__(self):
        object.__setattr__(self, 'cameras', tuple(self.cameras))
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f'`name` must be a non-empty string. Got {self.name!r}.')
        if not 1 <= len(self.cameras) <= MAX_CAMERAS:
            raise ValueError(f'`cameras` must name 1 to {MAX_CAMERAS} cameras. '
                             f'Got {len(self.cameras)}: {self.cameras!r}.')
        for camera in self.cameras:
            if not isinstance(camera, str) or not _CAMERA_NAME.match(camera):
                raise ValueError(f'`cameras` entries must be lower-case identifiers '
                                 f'(letters, digits, _). Got {camera!r}.')
        if len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f'`cameras` must be unique. Got {self.cameras!r}.')
        for field in ('chunk_size', 'action_dim', 'proprio_dim', 'image_size'):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f'`{field}` must be a positive integer. Got {value!r}.')
        unit = VAE_SPATIAL_FACTOR * 2  # the DiT patchifies latents 2 x 2
        if self.image_size % unit:
            raise ValueError(f'`image_size` must be a multiple of {unit}. Got {self.image_size}.')
        volume = self.frame_elements
        shape = f'{LATENT_CHANNELS} x {self.latent_size} x {self.latent_size}'
        if self.chunk_size * self.action_dim > volume:
            raise ValueError(
                f'the action chunk (`chunk_size` x `action_dim` = {self.chunk_size} x '
                f'{self.action_dim} = {self.chunk_size * self.action_dim} values) does not fit '
                f'in one latent frame ({shape} = {volume} values).')
        if self.proprio_dim > volume:
            raise ValueError(f'`proprio_dim` = {self.proprio_dim} does not fit in one latent '
                             f'frame ({shape} = {volume} values).')

    # --- sizes ---------------------------------------------------------------------------------
    @property
    def num_cameras(self):
        return len(self.cameras)

    @property
    def num_frames(self):
        """T: latent frames in the sequence (2 * cameras + 5)."""
        return 2 * self.num_cameras + 5

    @property
    def num_pixel_frames(self):
        """Pixel frames the VAE encodes into `num_frames` latent frames."""
        return 1 + VAE_TEMPORAL_FACTOR * (self.num_frames - 1)

    @property
    def num_conditioning_frames(self):
        """Frames given to the policy pass: blank, current proprio, current cameras."""
        return 2 + self.num_cameras

    @property
    def latent_size(self):
        return self.image_size // VAE_SPATIAL_FACTOR

    @property
    def latent_shape(self):
        """(C, T, H, W) of one sample's latent sequence."""
        return (LATENT_CHANNELS, self.num_frames, self.latent_size, self.latent_size)

    @property
    def frame_elements(self):
        """Values in one latent frame (16 x S x S): what an injected slot is tiled into."""
        return LATENT_CHANNELS * self.latent_size * self.latent_size

    # --- frame indices -------------------------------------------------------------------------
    blank_index = 0
    proprio_index = 1

    def camera_index(self, camera):
        return 2 + self._camera_position(camera)

    @property
    def action_index(self):
        return 2 + self.num_cameras

    @property
    def future_proprio_index(self):
        return 3 + self.num_cameras

    def future_camera_index(self, camera):
        return 4 + self.num_cameras + self._camera_position(camera)

    @property
    def value_index(self):
        return self.num_frames - 1

    def frame_roles(self):
        """Role of every latent frame, e.g. ('blank', 'proprio', 'camera:wrist', ...)."""
        return (('blank', 'proprio')
                + tuple(f'camera:{camera}' for camera in self.cameras)
                + ('action', 'future_proprio')
                + tuple(f'future_camera:{camera}' for camera in self.cameras)
                + ('value',))

    def pixel_frames(self, index):
        """Range of pixel frames that latent frame `index` is encoded from."""
        if not 0 <= index < self.num_frames:
            raise ValueError(f'latent frame index must be in [0, {self.num_frames}). '
                             f'Got {index}.')
        if index == 0:
            return range(0, 1)
        first = VAE_TEMPORAL_FACTOR * (index - 1) + 1
        return range(first, first + VAE_TEMPORAL_FACTOR)

    def _camera_position(self, camera):
        try:
            return self.cameras.index(camera)
        except ValueError:
            raise ValueError(f'unknown camera {camera!r}; layout {self.name!r} has cameras '
                             f'{list(self.cameras)}.') from None

    # --- construction --------------------------------------------------------------------------
    @classmethod
    def preset(cls, name):
        """One of the released layouts: 'libero', 'robocasa' or 'aloha'."""
        try:
            return PRESETS[name]
        except KeyError:
            raise ValueError(f'unknown layout preset {name!r}; choose one of '
                             f'{sorted(PRESETS)}.') from None

    @classmethod
    def from_dict(cls, data, *, source='layout'):
        """Build from a mapping: either {'preset': name, ...overrides} or all the fields."""
        return from_mapping(cls, data, source=source, preset=cls.preset,
                            optional=('image_size',))

    @classmethod
    def from_yaml(cls, path):
        """Read a layout from a YAML file (the mapping itself, or under a `layout` key)."""
        data = read_yaml(path, 'layout file')
        if isinstance(data, dict) and 'layout' in data:
            data = data['layout']
        return cls.from_dict(data, source=str(path))

    def to_dict(self):
        data = dataclasses.asdict(self)
        data['cameras'] = list(self.cameras)
        return data


PRESETS = {
    # Reference section 1: LIBERO wrist = robot0_eye_in_hand, primary = agentview.
    'libero': LatentLayout('libero', ('wrist', 'primary'), chunk_size=16, action_dim=7,
                           proprio_dim=9),
    # RoboCasa: primary = robot0_agentview_left, secondary = robot0_agentview_right.
    'robocasa': LatentLayout('robocasa', ('wrist', 'primary', 'secondary'), chunk_size=32,
                             action_dim=7, proprio_dim=9),
    # ALOHA: primary = cam_high; proprio = 14 joint positions.
    'aloha': LatentLayout('aloha', ('left_wrist', 'right_wrist', 'primary'), chunk_size=50,
                          action_dim=14, proprio_dim=14),
}
