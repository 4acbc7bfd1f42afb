"""The evaluation plots are valid PNG files of the requested size with something drawn."""
import numpy as np
from PIL import Image
import pytest

from cosmos_policy_ros.evaluation import plots

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


def test_value_limits_follow_the_recorded_actions():
    low, high, outside = plots.value_limits([0.0, 1.0, 2.0], [[0.5, 1.5], [10.0, -7.0]])
    assert (low, high, outside) == (-0.3, 2.3, 2)  # range 2, margin 0.15 * 2
    low, high, outside = plots.value_limits([np.nan], [[1.0, 3.0]])  # no recorded: predicted
    assert (low, high, outside) == (1.0 - 0.3, 3.0 + 0.3, 0)
    assert plots.value_limits([5.0, 5.0], [[5.0]]) == (4.5, 5.5, 0)  # flat: 10% of |value|


def test_chunk_legend_labels_name_consecutive_chunks():
    assert plots.chunk_legend_labels(1) == ['chunk 1 (executed)']
    assert plots.chunk_legend_labels(2) == ['chunk 1 (executed)', 'chunk 2 (executed)']
    assert plots.chunk_legend_labels(7) == ['chunks 1, 3, 5, ... (executed)',
                                            'chunks 2, 4, 6 (executed)']


def test_actions_plot_is_scaled_to_the_recorded_actions(tmp_path):
    # Recorded actions in [-1, 1]; one chunk follows them, one is 100 off: the y axis stays on
    # the recorded range and the figure says how many values it leaves out.
    stamps = T0 + np.arange(100) * 40_000_000
    recorded = np.sin((stamps - T0) / 1e9)[:, None]
    recorded[0, 0], recorded[50, 0] = -1.0, 1.0
    chunks = np.stack([np.sin(0.04 * np.arange(50))[:, None], 100.0 + np.zeros((50, 1))])
    figure = plots.actions_figure(stamps, recorded, stamps[[0, 50]], chunks, 0.04,
                                  width_px=600, height_px=300)
    axis = figure.axes[0]
    assert axis.get_ylim() == pytest.approx((-1.3, 1.3))
    texts = [text.get_text() for text in axis.texts]
    assert '50 predicted values beyond the recorded range (not shown)' in texts
    assert texts.count('1') == 1 and texts.count('2') == 1  # the chunks are numbered
    legend = [text.get_text() for text in axis.get_legend().get_texts()]
    assert legend == ['recorded', 'chunk 1 (executed)', 'chunk 2 (executed)']


def test_future_frames_picture(tmp_path):
    red = np.zeros((20, 30, 3), np.uint8)
    red[..., 0] = 255
    green = np.zeros((20, 30, 3), np.uint8)
    green[..., 1] = 255
    path = plots.plot_future_frames(tmp_path / 'future.png',
                                    [('primary, t=1.0 s', red, green),
                                     ('primary, t=2.0 s', green, None)], cell_px=100)
    size, pixels = _png(path)
    assert size == (300, 240)
    top, bottom = pixels[40:140], pixels[140:]

    def share(part, rgb):
        return np.mean(np.all(np.abs(part.astype(int) - rgb) < 40, axis=2))

    # Row 1: red predicted (left third), green real (middle), yellow difference (right).
    assert share(top[:, :100], [255, 0, 0]) > 0.2
    assert share(top[:, 100:200], [0, 255, 0]) > 0.2
    assert share(top[:, 200:], [255, 255, 0]) > 0.2
    # Row 2: no real frame: nothing coloured in the middle and right cells.
    assert share(bottom[:, :100], [0, 255, 0]) > 0.2
    assert share(bottom[:, 100:], [0, 255, 0]) == 0


def test_nearest_frame_indices():
    frames = [300, 100, 200]
    assert plots.nearest_frame_indices(frames, [90, 149, 150, 151, 310]).tolist() == [
        1, 1, 1, 2, 0]
    assert plots.nearest_frame_indices(frames, [140, 500], tolerance_ns=50).tolist() == [1, -1]
    assert plots.nearest_frame_indices([], [1]).tolist() == [-1]


def test_future_frames_input_errors(tmp_path):
    with pytest.raises(ValueError, match='empty'):
        plots.plot_future_frames(tmp_path / 'f.png', [])
    with pytest.raises(ValueError, match=r'x: the predicted frame must be uint8 \(H, W, 3\)'):
        plots.plot_future_frames(tmp_path / 'f.png', [('x', np.zeros((4, 4)), None)])
