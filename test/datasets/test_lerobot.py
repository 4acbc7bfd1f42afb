"""import-lerobot: small LeRobot v2.1 and v3.0 datasets written here with pyarrow + PyAV (the
libraries LeRobot writes with), exported and read back with h5py."""
import io
import json

import av
import h5py
import numpy as np
from PIL import Image
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cosmos_policy_ros.cli.dataset import main as dataset_main

FPS, FRAMES, SIZE = 10, 8, 32
TASKS = ['stack the cups', 'open the box']


def _frames(episode, camera):
    rng = np.random.default_rng(100 * episode + camera)
    frames = np.zeros((FRAMES, SIZE, SIZE, 3), np.uint8)
    for t in range(FRAMES):
        frames[t] = rng.integers(40, 60, 3)
        frames[t, 8 + t:16 + t, 4:12] = rng.integers(0, 255, 3)  # a moving square
    return frames


def _encode(path, episodes):
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), 'w') as container:
        stream = container.add_stream('libx264', rate=FPS)
        stream.width = stream.height = SIZE
        stream.pix_fmt = 'yuv420p'
        for count, frame in enumerate(np.concatenate([_frames(e, 0) for e in episodes])):
            video = av.VideoFrame.from_ndarray(frame, format='rgb24')
            video.pts = count
            for packet in stream.encode(video):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _png(image):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format='PNG')
    return buffer.getvalue()


def _table(episodes, start_index=0):
    rows = {'observation.state': [], 'action': [], 'timestamp': [], 'frame_index': [],
            'episode_index': [], 'index': [], 'task_index': [], 'observation.images.wrist': []}
    for episode in episodes:
        rng = np.random.default_rng(episode)
        for t in range(FRAMES):
            rows['observation.state'].append(rng.normal(size=3).astype(np.float32).tolist())
            rows['action'].append(rng.normal(size=3).astype(np.float32).tolist())
            rows['timestamp'].append(np.float32(t / FPS))
            rows['frame_index'].append(t)
            rows['episode_index'].append(episode)
            rows['index'].append(start_index + episode * FRAMES + t)
            rows['task_index'].append(episode)
            rows['observation.images.wrist'].append({'bytes': _png(_frames(episode, 1)[t]),
                                                     'path': None})
    return pa.table({
        'observation.state': pa.array(rows['observation.state'], pa.list_(pa.float32(), 3)),
        'action': pa.array(rows['action'], pa.list_(pa.float32(), 3)),
        'timestamp': pa.array(rows['timestamp'], pa.float32()),
        **{key: pa.array(rows[key], pa.int64()) for key in ('frame_index', 'episode_index',
                                                            'index', 'task_index')},
        'observation.images.wrist': pa.array(rows['observation.images.wrist'], pa.struct(
            [('bytes', pa.binary()), ('path', pa.string())]))})


def _info(version, data_path, video_path):
    video = {'dtype': 'video', 'shape': [SIZE, SIZE, 3],
             'names': ['height', 'width', 'channel']}
    return {'codebase_version': version, 'fps': FPS, 'chunks_size': 1000,
            'total_episodes': 2, 'data_path': data_path, 'video_path': video_path,
            'features': {
                'observation.images.top': video,
                'observation.images.wrist': {'dtype': 'image', 'shape': [SIZE, SIZE, 3]},
                'observation.state': {'dtype': 'float32', 'shape': [3],
                                      'names': {'motors': ['a', 'b', 'c']}},
                'action': {'dtype': 'float32', 'shape': [3], 'names': ['x', 'y', 'z']},
                'timestamp': {'dtype': 'float32', 'shape': [1]}}}


def write_v21(root):
    (root / 'meta').mkdir(parents=True)
    (root / 'meta' / 'info.json').write_text(json.dumps(_info(
        'v2.1', 'data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet',
        'videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4')))
    (root / 'meta' / 'episodes.jsonl').write_text(''.join(
        json.dumps({'episode_index': e, 'tasks': [TASKS[e]], 'length': FRAMES}) + '\n'
        for e in range(2)))
    (root / 'meta' / 'tasks.jsonl').write_text(''.join(
        json.dumps({'task_index': i, 'task': task}) + '\n' for i, task in enumerate(TASKS)))
    for episode in range(2):
        path = root / f'data/chunk-000/episode_{episode:06d}.parquet'
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(_table([episode]), path)
        _encode(root / f'videos/chunk-000/observation.images.top/episode_{episode:06d}.mp4',
                [episode])


def write_v30(root):
    (root / 'meta' / 'episodes' / 'chunk-000').mkdir(parents=True)
    (root / 'meta' / 'info.json').write_text(json.dumps(_info(
        'v3.0', 'data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet',
        'videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4')))
    key = 'videos/observation.images.top'
    pq.write_table(pa.table({
        'episode_index': [0, 1], 'tasks': [[TASKS[0]], [TASKS[1]]], 'length': [FRAMES] * 2,
        'data/chunk_index': [0, 0], 'data/file_index': [0, 0],
        'dataset_from_index': [0, FRAMES], 'dataset_to_index': [FRAMES, 2 * FRAMES],
        f'{key}/chunk_index': [0, 0], f'{key}/file_index': [0, 0],
        f'{key}/from_timestamp': [0.0, FRAMES / FPS],
        f'{key}/to_timestamp': [FRAMES / FPS, 2 * FRAMES / FPS]}),
        root / 'meta' / 'episodes' / 'chunk-000' / 'file-000.parquet')
    pq.write_table(pa.table({'task_index': [0, 1], 'task': TASKS}), root / 'meta' /
                   'tasks.parquet')
    (root / 'data' / 'chunk-000').mkdir(parents=True)
    pq.write_table(_table([0, 1]), root / 'data' / 'chunk-000' / 'file-000.parquet')
    _encode(root / 'videos/observation.images.top/chunk-000/file-000.mp4', [0, 1])


def _decoded(path):
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format='rgb24') for f in container.decode(video=0)])


@pytest.mark.parametrize('version', ['v2.1', 'v3.0'])
def test_import_lerobot(tmp_path, version):
    source = tmp_path / 'lerobot'
    (write_v21 if version == 'v2.1' else write_v30)(source)
    out = tmp_path / 'out'
    assert dataset_main(['import-lerobot', str(source), '--format', 'libero', '--out', str(out),
                         '--camera', 'primary=observation.images.top', '--camera',
                         'wrist=observation.images.wrist', '--images', 'none',
                         '--val-fraction', '0', '--t5-stand-in', '0', '--no-progress']) == 0
    record = json.loads((out / 'export.json').read_text())
    assert record['tasks'] == sorted(TASKS) and record['step_period'] == 1 / FPS
    assert record['action_names'] == ['x', 'y', 'z'] and record['proprio_labels'] == [
        'a', 'b', 'c']
    videos = ([_decoded(source / f'videos/chunk-000/observation.images.top/'
                                 f'episode_{e:06d}.mp4') for e in range(2)]
              if version == 'v2.1' else np.split(_decoded(
                  source / 'videos/observation.images.top/chunk-000/file-000.mp4'), 2))
    table = pq.read_table(next(source.glob('data/chunk-000/*.parquet')) if version == 'v3.0'
                          else source / 'data/chunk-000/episode_000001.parquet')
    for episode, entry in enumerate(record['episodes']):
        assert entry['task'] == TASKS[episode] and entry['steps'] == FRAMES
        with h5py.File(out / entry['demo_file'], 'r') as h5:
            demo = h5['data/demo_0']
            assert np.array_equal(demo['obs/agentview_rgb'][:], videos[episode])
            assert np.array_equal(demo['obs/eye_in_hand_rgb'][:], _frames(episode, 1))  # PNG
            if version == 'v3.0' or episode == 1:
                rows = [r for r in table.to_pylist() if r['episode_index'] == episode]
                assert np.array_equal(demo['actions'][:], np.array([r['action'] for r in rows],
                                                                   np.float32))
                assert np.array_equal(demo['robot_states'][:], np.array(
                    [r['observation.state'] for r in rows], np.float32))
    assert dataset_main(['check', str(out)]) == 0


def test_import_lerobot_names_a_missing_feature(tmp_path, capsys):
    source = tmp_path / 'lerobot'
    write_v21(source)
    assert dataset_main(['import-lerobot', str(source), '--format', 'libero', '--out',
                         str(tmp_path / 'out'), '--camera', 'primary=observation.images.top',
                         '--camera', 'wrist=observation.images.side', '--t5-stand-in', '0',
                         '--no-progress']) == 2
    assert ('--camera wrist=observation.images.side: no image or video feature '
            "'observation.images.side'") in capsys.readouterr().err
