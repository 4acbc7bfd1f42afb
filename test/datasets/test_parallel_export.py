"""The image work in worker processes (datasets/image_workers.py): the same files as the serial
path, errors as the serial path reports them, and no hang or stray process when a worker or
the exporter dies."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest

from cosmos_policy_ros.datasets import episode_files, image_workers, images
from cosmos_policy_ros.datasets.image_workers import start_work, WorkerError


class Scale:
    """A job: each frame times 2 (mod 256), its camera's frame count in the first pixel."""

    def __init__(self, fail_at=None, kill_at=None):
        self.count, self.fail_at, self.kill_at, self.closed = 0, fail_at, kill_at, False

    def process(self, frame):
        if self.count == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        if self.count == self.fail_at:
            raise ValueError(f'frame {self.count} of {frame.shape} is bad')
        row = (frame.astype(np.uint16) * 2 % 256).astype(np.uint8)
        row.reshape(-1)[0] = self.count
        self.count += 1
        return row

    def close(self):
        self.closed = True


def frames(count, seed=0):
    """Frames of growing size: the first ones fit a slot, the later ones go by the pipe."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (4 + i, 6, 3), dtype=np.uint8) for i in range(count)]


def run(jobs, workers, inputs):
    """{camera: [rows]} of `inputs` (camera -> frames) through start_work."""
    rows = {camera: [] for camera in jobs}
    work = start_work(jobs, workers, lambda camera, row: rows[camera].append(row.copy()),
                      frame_bytes=inputs[next(iter(inputs))][0].nbytes,
                      origins={camera: f'bag b.mcap: topic /{camera}' for camera in jobs})
    try:
        for step in range(len(next(iter(inputs.values())))):
            for camera in jobs:
                work.submit(camera, inputs[camera][step])
        work.finish()
    except BaseException:
        work.abort()
        raise
    return rows


@pytest.mark.parametrize('workers', [2, 3])
def test_workers_deliver_the_serial_rows_in_order(workers):
    inputs = {camera: frames(12, seed) for seed, camera in enumerate('abc')}
    serial = run({camera: Scale() for camera in 'abc'}, 1, inputs)
    parallel = run({camera: Scale() for camera in 'abc'}, workers, inputs)
    for camera in 'abc':
        assert len(parallel[camera]) == 12
        for index, (got, want) in enumerate(zip(parallel[camera], serial[camera])):
            assert got.shape == want.shape and np.array_equal(got, want), (camera, index)
            assert got.reshape(-1)[0] == index  # in the camera's order


def test_a_jobs_error_is_raised_as_in_the_serial_path():
    inputs = {camera: frames(6) for camera in 'ab'}
    errors = []
    for workers in (1, 2):
        with pytest.raises(ValueError) as caught:
            run({'a': Scale(), 'b': Scale(fail_at=3)}, workers, inputs)
        errors.append((type(caught.value), str(caught.value)))
    assert errors[0] == errors[1] == (ValueError, 'frame 3 of (7, 6, 3) is bad')


def _children_alive():
    import multiprocessing
    return [child for child in multiprocessing.active_children()
            if child.name.startswith('image-worker')]


def test_a_killed_worker_is_an_error_naming_its_origin_and_nothing_waits():
    inputs = {camera: frames(8) for camera in 'abc'}
    with pytest.raises(WorkerError) as caught:
        run({'a': Scale(), 'b': Scale(kill_at=2), 'c': Scale()}, 3, inputs)
    message = str(caught.value)
    assert message.startswith("bag b.mcap: topic /b: the image worker of camera 'b' (pid ")
    assert message.endswith(f'ended before it finished (killed by signal {signal.SIGKILL})')
    assert '\n' not in message
    assert not _children_alive()  # the other workers were stopped


ORPHAN = textwrap.dedent('''
    import os, signal, sys
    import numpy as np
    from cosmos_policy_ros.datasets.image_workers import start_work
    class Job:
        def process(self, frame):
            return None
        def close(self):
            pass
    work = start_work({'a': Job(), 'b': Job()}, 2, lambda camera, row: None, frame_bytes=12,
                      origins={})
    work.submit('a', np.zeros((2, 2, 3), np.uint8))
    with open(sys.argv[1], 'w') as pids:
        pids.write(' '.join(str(worker.process.pid) for worker in work.workers))
    os.kill(os.getpid(), signal.SIGKILL)
''')


def _alive(pid):
    try:
        with open(f'/proc/{pid}/stat') as stat:
            return stat.read().split(') ')[-1][0] != 'Z'  # a zombie has exited
    except FileNotFoundError:
        return False


def test_workers_exit_when_the_exporter_is_killed(tmp_path):
    log = tmp_path / 'stderr.txt'
    with open(log, 'w') as stderr:  # no pipe: a stray worker would keep it open
        code = subprocess.run([sys.executable, '-c', ORPHAN, str(tmp_path / 'pids')],
                              stdout=subprocess.DEVNULL, stderr=stderr, timeout=120).returncode
    assert code == -signal.SIGKILL, log.read_text()
    pids = [int(pid) for pid in (tmp_path / 'pids').read_text().split()]
    assert len(pids) == 2
    deadline = time.monotonic() + 30  # a liveness bound, not a speed target
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    stray = [pid for pid in pids if _alive(pid)]
    for pid in stray:
        os.kill(pid, signal.SIGKILL)
    assert not stray


def _datasets(path):
    values = {}

    def visit(name, item):
        if isinstance(item, h5py.Dataset):
            data = np.asarray(item[()])  # scalars (a video path) too
            values[name] = ([bytes(row) for row in data] if data.dtype == object and data.ndim
                            else data)
        values[name + '@'] = {key: str(value) for key, value in item.attrs.items()}
    with h5py.File(path, 'r') as h5:
        visit('', h5)
        h5.visititems(visit)
    return values


def _files(out):
    """Every file of an export but the manifest: HDF5 datasets and attributes, MP4 bytes."""
    files = {}
    for path in sorted(out.rglob('*')):
        name = str(path.relative_to(out))
        if path.suffix == '.hdf5':
            files[name] = _datasets(path)
        elif path.suffix == '.mp4':
            files[name] = path.read_bytes()
    return files


@pytest.mark.parametrize('preset,storage,images', [
    ('aloha', 'mp4', 'camera'),      # three cameras, an MP4 encoder per camera
    ('robocasa', 'jpeg', 'camera'),  # JPEG bytes; rows larger than the 32 px frames' slots
    ('libero', 'raw', 'none'),       # raw rows back through the slots
])
def test_parallel_export_writes_the_serial_files(tmp_path, bags, export_cli, preset, storage,
                                                 images):
    bag = bags.sample(tmp_path / 'bag', preset, duration=1.0)
    outputs = {}
    for workers in ('1', '2', '3'):
        out = tmp_path / f'out_{workers}'
        code, _, err = export_cli([bag], preset, out, '--image-storage', storage, '--images',
                                  images, '--workers', workers)
        assert code == 0, err
        outputs[workers] = _files(out)
    serial = outputs['1']
    assert any(name.endswith('.mp4') for name in serial) == (storage == 'mp4')
    for workers in ('2', '3'):
        assert list(outputs[workers]) == list(serial)
        for name, contents in serial.items():
            if isinstance(contents, bytes):
                assert outputs[workers][name] == contents, name
                continue
            assert list(outputs[workers][name]) == list(contents), name
            for key, value in contents.items():
                other = outputs[workers][name][key]
                equal = (value == other if isinstance(value, (dict, list)) else
                         value.dtype == other.dtype and value.shape == other.shape and
                         bool(np.all(value == other)))
                assert equal, (workers, name, key)


def _failing(monkeypatch, action, parent=None):
    """stored_image that `action`s ('raise' or 'kill') at the fourth frame of camera 'wrist'
    (counted in each process; not in process `parent`)."""
    calls = {}

    def stored_image(frame, pipeline, camera):
        if os.getpid() != parent:
            calls[camera] = calls.get(camera, 0) + 1
            if camera == 'wrist' and calls[camera] == 4:
                if action == 'kill':
                    os.kill(os.getpid(), signal.SIGKILL)
                raise ValueError(f'camera {camera!r}: cannot store frame 3')
        return images.stored_image(frame, pipeline, camera)
    monkeypatch.setattr(episode_files, 'stored_image', stored_image)


def test_export_reports_a_workers_error_as_the_serial_export(tmp_path, bags, export_cli,
                                                             monkeypatch):
    bag = bags.sample(tmp_path / 'bag', 'libero', duration=1.0)
    errors = []
    for workers in ('1', '2'):
        _failing(monkeypatch, 'raise')
        code, _, err = export_cli([bag], 'libero', tmp_path / f'out{workers}', '--workers',
                                  workers)
        assert code == 2
        errors.append(err)
        assert (tmp_path / f'out{workers}.partial').is_dir()
    expected = "cosmos-policy-dataset: error: camera 'wrist': cannot store frame 3\n"
    assert errors[0] == errors[1] == expected


def test_export_names_bag_and_topic_when_a_worker_dies(tmp_path, bags, export_cli,
                                                       monkeypatch):
    bag = bags.sample(tmp_path / 'bag', 'libero', duration=1.0)
    _failing(monkeypatch, 'kill', parent=os.getpid())  # a worker dies, not the test
    code, _, err = export_cli([bag], 'libero', tmp_path / 'out', '--workers', '2')
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f'cosmos-policy-dataset: error: bag {bag}: topic /')
    assert "the image worker of camera 'wrist'" in lines[0]
    assert lines[0].endswith(f'(killed by signal {signal.SIGKILL})')
    assert (tmp_path / 'out.partial').is_dir() and not (tmp_path / 'out').exists()
    assert not _children_alive()


def test_worker_count_defaults_to_one_more_than_the_cpus_it_may_use(monkeypatch):
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: {0, 1})
    assert image_workers.default_workers() == 3
    monkeypatch.setattr(os, 'sched_getaffinity', lambda pid: {0})
    assert image_workers.default_workers() == 1  # one CPU: serial
