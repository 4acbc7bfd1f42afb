"""MP4 files of one camera (PyAV): the ALOHA class's video storage (datasets/).

The ALOHA class reads an episode's cameras from MP4 files named in the HDF5 (``video_paths``),
decoded with OpenCV to RGB (A:59-91). The reference preprocessing writes them with OpenCV's
``mp4v`` (MPEG-4 part 2) at 25 fps; here they are H.264 (libx264, CRF ``CRF``, preset
ultrafast) in YUV 4:4:4, which any FFmpeg-based reader (OpenCV's included) decodes: without
chroma subsampling the sharp colour edges of camera images stay within the fidelity target
(PSNR >= 40 dB against the stored image; bench/bench_dataset_export.py measures it).

Frames are scaled by FFmpeg's own scaler (swscale, bicubic) straight into YUV, which costs a
fifth of PIL's resize; the pipeline's image (images.py) is only approximated, within the same
PSNR budget (measured with it). One frame per step, presentation times 0, 1, 2, ... at the
step rate, so the decoded frame count equals the action rows.
"""
from fractions import Fraction
from pathlib import Path

import numpy as np

CODEC = 'libx264'
PIXEL_FORMAT = 'yuv444p'
CRF = 12
PRESET = 'ultrafast'
THREADS = 1  # x264 in the calling thread: the same bytes on every machine (workers: processes)


def step_rate(step_period):
    """The frame rate of one frame per step, as an exact-enough fraction (1/0.04 -> 25)."""
    return Fraction(1.0 / step_period).limit_denominator(1001)


class VideoWriter:
    """Encode RGB frames into a new MP4 file at `path` (see the module docstring).

    size: (width, height) of the stored frames; None keeps each frame's size (which must not
    change). flip: turn frames upside down first (a pipeline with flip_vertical).
    """

    def __init__(self, path, rate, *, size=None, flip=False):
        import av  # PyAV: only the MP4 storage needs it
        self._av = av
        self.path = Path(path)
        self.rate = Fraction(rate)
        self.size = size
        self.flip = flip
        self.count = 0
        self._container = av.open(str(self.path), mode='w', format='mp4')
        self._stream = None

    def _open_stream(self, width, height):
        stream = self._container.add_stream(CODEC, rate=self.rate)
        stream.width, stream.height = width, height
        stream.pix_fmt = PIXEL_FORMAT
        stream.time_base = 1 / self.rate
        stream.options = {'crf': str(CRF), 'preset': PRESET, 'threads': str(THREADS)}
        self._stream = stream

    def add(self, rgb):
        """Append one uint8 (H, W, 3) RGB frame."""
        if self.flip:
            rgb = np.ascontiguousarray(rgb[::-1])
        height, width = rgb.shape[:2]
        out_w, out_h = self.size or (width, height)
        if self._stream is None:
            self._open_stream(out_w, out_h)
        elif self.size is None and (width, height) != (
                self._stream.width, self._stream.height):
            raise ValueError(f'{self.path.name}: frame {self.count} is {width} x {height}, '
                             f'the first was {self._stream.width} x {self._stream.height}')
        # the frame's own memory (no copy): it is only read, by the scaler, before add returns
        frame = self._av.VideoFrame.from_numpy_buffer(np.ascontiguousarray(rgb), format='rgb24')
        frame = frame.reformat(width=out_w, height=out_h, format=PIXEL_FORMAT,
                               interpolation='BICUBIC')
        frame.pts = self.count
        frame.time_base = 1 / self.rate  # not the stream's: the muxer changes that one
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.count += 1

    def close(self):
        """Flush the encoder and finish the file."""
        if self._container is None:
            return
        try:
            if self._stream is not None:
                for packet in self._stream.encode():
                    self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None


def read_video(path):
    """Every frame of an MP4 file as uint8 (T, H, W, 3) RGB (PyAV)."""
    import av  # PyAV: only the MP4 storage needs it
    with av.open(str(path)) as container:
        frames = [frame.to_ndarray(format='rgb24') for frame in container.decode(video=0)]
    if not frames:
        raise ValueError(f'{path}: no video frames')
    return np.stack(frames)
