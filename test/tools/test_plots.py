"""The evaluation plots are valid PNG files of the requested size with something drawn."""
import numpy as np
from PIL import Image
import pytest

from cosmos_policy_ros.tools import plots

T0 = 1_700_000_000 * 1_000_000_000


def _png(path):
    assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    with Image.open(path) as image:
        image.load()
        return image.size, np.asarray(image.convert('RGB'))


def _drawn(pixels):
    """Fraction of pixels that are not the white background."""
    return np.mean(np.any(pixels < 250, axis=2))


@pytest.mark.parametrize('dim', [1, 5])  # one column; two columns with an empty cell
def test_actions_plot(tmp_path, dim):
    stamps = T0 + np.arange(100) * 40_000_000
    t = (stamps - T0) / 1e9
    recorded = np.sin(t[:, None] + np.arange(dim)[None])  # (100, d)
    chunk_stamps = stamps[::25]
    chunks = np.stack([np.sin((s - T0) / 1e9 + 0.04 * np.arange(50)[:, None]
                              + np.arange(dim)[None]) + 0.05 for s in chunk_stamps])
    path = plots.plot_actions(tmp_path / 'actions.png', stamps, recorded, chunk_stamps, chunks,
                              0.04, executed=25,
                              action_names=[f'joint_{j}' for j in range(dim)], width_px=800)
    size, pixels = _png(path)
    rows = dim if dim <= 4 else (dim + 1) // 2
    assert size == (800, 80 + 140 * rows)
    assert _drawn(pixels) > 0.02
    # The executed parts are drawn in the two chunk colours (blue and orange).
    blue = np.all(np.abs(pixels.astype(int) - [31, 119, 180]) < 30, axis=2)
    orange = np.all(np.abs(pixels.astype(int) - [255, 127, 14]) < 30, axis=2)
    assert blue.sum() > 50 and orange.sum() > 50


def test_value_and_latency_plots(tmp_path):
    stamps = T0 + np.arange(30) * 100_000_000
    values = np.linspace(0.1, 0.9, 30)
    values[5] = np.nan
    size, pixels = _png(plots.plot_value(tmp_path / 'value.png', stamps, values,
                                         width_px=640, height_px=360))
    assert size == (640, 360) and _drawn(pixels) > 0.01
    latencies = np.random.RandomState(0).gamma(4.0, 0.02, size=200)
    size, pixels = _png(plots.plot_latency_histogram(tmp_path / 'latency.png', latencies))
    assert size == (900, 400) and _drawn(pixels) > 0.03
    size, _ = _png(plots.plot_latency_histogram(tmp_path / 'none.png', [np.nan]))
    assert size == (900, 400)


def test_plot_input_errors(tmp_path):
    with pytest.raises(ValueError, match='same d'):
        plots.plot_actions(tmp_path / 'a.png', [T0], np.zeros((1, 2)), [T0], np.zeros((1, 3, 3)),
                           0.1)
    with pytest.raises(ValueError, match='`width_px`'):
        plots.plot_value(tmp_path / 'v.png', [T0], [0.5], width_px=10)
    with pytest.raises(ValueError, match='equal length'):
        plots.plot_value(tmp_path / 'v.png', [T0, T0], [0.5])
