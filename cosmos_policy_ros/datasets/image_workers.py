"""The cameras' image work of an export, in worker processes beside the main one (datasets/).

Turning camera frames into their stored form (the node's image pipeline, JPEG encoding, MP4
encoding) is most of an export's CPU time, and it holds Python's GIL (PIL's resize and
encoders, PyAV's scaler and encoder: two threads measured 1.0 core), so it runs in worker
processes while the main process reads the bag, runs the sync and writes the HDF5 file (h5py
from one thread):

    work = start_work(jobs, workers, deliver, frame_bytes=..., origins=...)
    work.submit(camera, frame)  # deliver(camera, row) runs for earlier frames, in their order
    work.finish()               # every row delivered, every job closed (its MP4 complete)
    work.abort()                # after an error or an interrupt: workers stopped, no waiting

A job (episode_files.CameraJob) is one camera's work, ``process(frame) -> row or None`` and
``close()``. A camera's frames all go to one worker, in order (an MP4 encoder is one stream):
camera i to worker i % workers. ``workers`` 0 or 1: the jobs run in this process, one frame
at a time; that is the reference: a parallel export stores the same rows, byte for byte.

The workers are forked at an episode's first frame: they inherit the jobs and the imported
modules (nothing is imported again). Frames go through a ring of shared-memory slots of the
first frames' size (``SLOTS_PER_CAMERA`` per camera, so memory does not grow with the
episode), the pipe carries slot numbers; a row comes back in its frame's slot when it fits,
larger frames and rows go through the pipe. A worker ignores SIGINT (Ctrl-C reaches the main
process, which stops the workers) and exits when the main process goes away (its pipe
closes). A job's exception is raised again in the main process, as it was; a worker that dies
is a WorkerError naming the camera's origin (bag and topic), the worker's pid and its end.
"""
from collections import deque
import gc
import mmap
import multiprocessing
from multiprocessing.connection import wait
import os
import signal

import numpy as np

SLOTS_PER_CAMERA = 8  # frames of a camera handed to its worker and not yet delivered
STOP_TIMEOUT_S = 5.0  # a stopped worker gets this long before SIGKILL
ERROR, CLOSED = 'error', 'closed'


class WorkerError(ValueError):
    """An image worker process died before it finished (killed, crashed)."""


def default_workers():
    """The default worker count: one more than the CPUs this process may use (its affinity),
    as the main process (bag reading, sync, HDF5 writes) needs about one camera's share of
    CPU time; 1 (serial) on one CPU."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return cpus + 1 if cpus > 1 else 1


def start_work(jobs, workers, deliver, *, frame_bytes, origins):
    """SerialWork (workers <= 1) or ParallelWork over `jobs` (camera -> job).

    deliver(camera, row): called in the main process with each processed frame's row, in
    the order of that camera's frames (the row is valid during the call only). frame_bytes:
    the size of a shared-memory slot; origins: camera -> where its frames come from.
    """
    if workers <= 1:
        return SerialWork(jobs, deliver)
    return ParallelWork(jobs, workers, deliver, frame_bytes=frame_bytes, origins=origins)


class SerialWork:
    """The jobs in this process, one frame at a time."""

    def __init__(self, jobs, deliver):
        self.jobs, self.deliver = jobs, deliver

    def submit(self, camera, frame):
        self.deliver(camera, self.jobs[camera].process(frame))

    def finish(self):
        for job in self.jobs.values():
            job.close()

    def abort(self):
        for job in self.jobs.values():
            try:
                job.close()
            except Exception:  # the error that brought us here is the one to report
                pass


class ParallelWork:
    """The jobs in worker processes (see the module docstring)."""

    def __init__(self, jobs, workers, deliver, *, frame_bytes, origins):
        self.deliver, self.origins = deliver, origins
        cameras = list(jobs)
        count = min(workers, len(cameras))
        self.workers, self.worker_of = [], {}
        context = multiprocessing.get_context('fork')  # the jobs and modules, inherited
        gc.freeze()  # the children never collect (and finalize) the parent's objects
        try:
            for first in range(count):
                group = cameras[first::count]
                worker = _Worker(context, {camera: jobs[camera] for camera in group},
                                 frame_bytes, [other.conn for other in self.workers])
                self.workers.append(worker)
                self.worker_of.update((camera, worker) for camera in group)
        except BaseException:
            self.abort()
            raise
        finally:
            gc.unfreeze()

    def submit(self, camera, frame):
        worker = self.worker_of[camera]
        while not worker.free:
            self._collect(worker)
        try:
            worker.send(camera, frame)
        except OSError:  # a broken pipe: the worker is gone
            raise self._died(worker, camera) from None

    def finish(self):
        for worker in self.workers:
            while worker.pending:
                self._collect(worker)
            try:
                worker.conn.send(None)  # close the jobs
            except OSError:
                raise self._died(worker, worker.cameras[0]) from None
        for worker in self.workers:
            tag, error = self._receive(worker, worker.cameras[0])
            if tag == ERROR:
                raise error
            worker.stop(STOP_TIMEOUT_S)

    def abort(self):
        for worker in self.workers:
            worker.stop(0)

    def _collect(self, worker):
        """Deliver the oldest row of `worker`."""
        camera, slot = worker.pending[0]
        tag, value = self._receive(worker, camera)
        worker.pending.popleft()
        if tag == ERROR:
            raise value
        self.deliver(camera, value if tag is None else worker.view(tag, value))
        worker.free.append(slot)

    def _receive(self, worker, camera):
        ready = wait([worker.conn, worker.process.sentinel])
        if worker.conn in ready:
            try:
                return worker.conn.recv()
            except (EOFError, OSError):
                pass
        raise self._died(worker, camera)

    def _died(self, worker, camera):
        worker.process.join(STOP_TIMEOUT_S)
        code = worker.process.exitcode
        how = ('still running' if code is None else f'killed by signal {-code}' if code < 0
               else f'exit code {code}')
        return WorkerError(f'{self.origins[camera]}: the image worker of camera {camera!r} '
                           f'(pid {worker.process.pid}) ended before it finished ({how})')


class _Worker:
    """One worker process: its pipe, its ring of slots and what is in flight."""

    def __init__(self, context, jobs, frame_bytes, inherited):
        self.cameras = list(jobs)
        slots = SLOTS_PER_CAMERA * len(jobs)
        self.slot_bytes = max(1, frame_bytes)
        self.ring = mmap.mmap(-1, slots * self.slot_bytes)  # shared with the child (fork)
        self.free = list(range(slots))
        self.pending = deque()  # (camera, slot) in the order sent
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=_serve, args=(child, self.ring, self.slot_bytes, jobs,
                                 [*inherited, self.conn]),
            name=f'image-worker-{"-".join(self.cameras)}', daemon=True)
        self.process.start()
        child.close()  # only the child's: its death reads as the end of the pipe

    def view(self, slot, shape):
        return _slot_view(self.ring, slot, self.slot_bytes, shape)

    def send(self, camera, frame):
        slot = self.free.pop()
        if frame.dtype == np.uint8 and frame.nbytes <= self.slot_bytes:
            self.view(slot, frame.shape)[...] = frame
            self.conn.send((camera, slot, frame.shape))
        else:
            self.conn.send((camera, None, frame))
        self.pending.append((camera, slot))

    def stop(self, wait_s):
        """End the process: it gets `wait_s` to exit by itself, then SIGTERM, then SIGKILL."""
        self.conn.close()  # a worker waiting for a frame reads the end of the pipe and exits
        self.process.join(wait_s)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(STOP_TIMEOUT_S)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.pending.clear()
        try:
            self.ring.close()
        except BufferError:  # a view of it is still referenced; freed with it
            pass


def _slot_view(ring, slot, slot_bytes, shape):
    return np.frombuffer(ring, np.uint8, count=int(np.prod(shape)),
                         offset=slot * slot_bytes).reshape(shape)


def _serve(conn, ring, slot_bytes, jobs, inherited):
    """The worker process: frames in, rows out, in order, until told to close the jobs."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for other in inherited:  # the parent's pipe ends: the parent's death must end the pipe
        other.close()
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the main process is gone: nobody to finish for
        if message is None:
            break
        camera, slot, frame = message
        try:
            if slot is not None:
                frame = _slot_view(ring, slot, slot_bytes, frame)
            row = jobs[camera].process(frame)
            if (slot is not None and isinstance(row, np.ndarray) and row.dtype == np.uint8
                    and row.nbytes <= slot_bytes):
                _slot_view(ring, slot, slot_bytes, row.shape)[...] = row
                reply = (slot, row.shape)
            else:
                reply = (None, row)
        except Exception as error:
            reply = (ERROR, error)
        _reply(conn, reply)
    reply = (CLOSED, None)
    try:
        for job in jobs.values():
            job.close()
    except Exception as error:
        reply = (ERROR, error)
    _reply(conn, reply)


def _reply(conn, reply):
    try:
        conn.send(reply)
    except (EOFError, OSError):
        os._exit(0)  # the main process is gone
    except Exception as error:  # an exception that does not pickle: its text then
        conn.send((ERROR, RuntimeError(f'{type(error).__name__}: {error}')))
