"""The sample cameras: coloured shapes moving smoothly over a gradient, different for every
camera, rendered as uint8 RGB and optionally JPEG-encoded (Pillow, deterministic)."""
from dataclasses import dataclass
import io
import math
from typing import Tuple

import numpy as np
from PIL import Image

from cosmos_policy_ros.bags.sample_robots import random_sinusoids, Sinusoids

JPEG_QUALITY = 90


@dataclass(frozen=True)
class CameraScene:
    """Coloured shapes moving smoothly over a gradient, different for every camera."""

    background: np.ndarray  # (3,) RGB in [0, 1]
    kinds: Tuple[str, ...]  # 'circle', 'square' or 'diamond' per shape
    colors: np.ndarray      # (S, 3) RGB in [0, 1]
    radii: np.ndarray       # (S,) fraction of the image size
    paths: Sinusoids        # (2S,) centre x and y of each shape, fraction of the image size

    def render(self, t, size):
        """Image at time t seconds: (size, size, 3) uint8 RGB."""
        axis = (np.arange(size) + 0.5) / size
        y, x = axis[:, None], axis[None, :]  # (H, 1), (1, W)
        shade = 0.55 + 0.45 * y  # vertical gradient
        image = np.broadcast_to(self.background * shade[..., None], (size, size, 3)).copy()
        centers = self.paths.value(np.array([t]))[0].reshape(-1, 2)  # (2S,) -> (S, 2)
        for kind, color, radius, (cx, cy) in zip(self.kinds, self.colors, self.radii, centers):
            dx, dy = x - cx, y - cy  # (1, W), (H, 1)
            if kind == 'circle':
                mask = dx * dx + dy * dy < radius * radius
            elif kind == 'square':
                mask = (np.abs(dx) < radius) & (np.abs(dy) < radius)
            else:
                mask = np.abs(dx) + np.abs(dy) < radius * 1.3
            image[mask] = color
        return np.round(image * 255).astype(np.uint8)


def make_scene(rng, index):
    """The scene of the camera at position `index` of the layout."""
    kinds = ('circle', 'square', 'diamond')
    count = 3
    hue = (index * 0.37 + rng.uniform(0, 0.1)) % 1.0
    background = 0.25 + 0.5 * np.array([0.5 + 0.5 * math.cos(2 * math.pi * (hue + k / 3))
                                        for k in range(3)])
    centers = rng.uniform(0.3, 0.7, size=2 * count)
    return CameraScene(
        background=background,
        kinds=tuple(kinds[(index + k) % 3] for k in range(count)),
        colors=rng.uniform(0.0, 1.0, size=(count, 3)),
        radii=rng.uniform(0.06, 0.14, size=count),
        paths=random_sinusoids(rng, centers, (0.15, 0.35), (0.05, 0.3)))


def encode_jpeg(image, quality=JPEG_QUALITY):
    """(H, W, 3) uint8 RGB -> JPEG bytes (Pillow, deterministic for the same input)."""
    buffer = io.BytesIO()
    Image.fromarray(image, 'RGB').save(buffer, format='JPEG', quality=quality)
    return buffer.getvalue()
