"""Process-wide glibc malloc settings for a process that receives camera images.

Each 480 x 640 rgb8 image is a fresh 0.9 MB buffer in rclpy (and another in its conversion),
freed a few milliseconds later. With glibc's defaults such a buffer is mapped from the kernel
and unmapped again every time (the dynamic mmap threshold rises to the freed size but a
request of that same size is still mapped), so every image pays for faulting in and zeroing
fresh pages; freed heap memory above 128 KB is also returned at once. Measured on the node
suite's relay (bench/relay_floor.py, three images and a joint state per observation): the
latency from stamp to reply fell from about 6 ms to about 1.5 ms with ``keep_freed_memory``.

``keep_freed_memory()`` serves requests up to ``MMAP_THRESHOLD`` from the heap and keeps up to
``TRIM_THRESHOLD`` of freed memory for reuse (mallopt M_MMAP_THRESHOLD, M_TRIM_THRESHOLD).
A process-wide setting: the node applies it at configure (parameter ``keep_freed_memory``).
Stdlib only (ctypes); a no-op returning False where the C library is not glibc.
"""
import ctypes
import ctypes.util

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest: a 4K rgb8 image (25 MB) stays in the heap
TRIM_THRESHOLD = 64 * 1024 * 1024  # free memory kept at the top of the heap


def _mallopt():
    """glibc's mallopt, or None."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library('c') or 'libc.so.6')
        function = libc.mallopt
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int)
    function.restype = ctypes.c_int
    return function


def keep_freed_memory(mmap_threshold=MMAP_THRESHOLD, trim_threshold=TRIM_THRESHOLD):
    """Apply both thresholds (bytes); True when glibc accepted them."""
    mallopt = _mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, int(mmap_threshold))) and bool(
        mallopt(M_TRIM_THRESHOLD, int(trim_threshold)))
