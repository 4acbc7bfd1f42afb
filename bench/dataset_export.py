"""cosmos-policy-dataset export: throughput, peak memory and fidelity on a three-camera robot.

    python bench/dataset_export.py [--short 60] [--long 600] [--only throughput,memory,fidelity]
        [--work DIR] [--out-dir bench/results]   # dataset_{throughput,memory,fidelity}.json

The episode (ALOHA's rig): three cameras of 480 x 640 at 30 Hz (cam_high, cam_left_wrist,
cam_right_wrist), 14 joint positions at 100 Hz, the 14 commanded positions at 30 Hz and the
task, written as ``ros2 bag record`` writes by default (mcap, no compression) with raw
sensor_msgs/Image rgb8 frames; 60 distinct frames per camera (coloured shapes moving over a
textured gradient) repeat, so every frame costs the exporter the same work as a new one. The
node configuration is config/aloha.yaml's, with ``step_period`` 1/30 s so that every frame is
a step (for RoboCasa the same streams under its camera names).

* throughput: wall time of the export of the ``--short`` episode (the command in a process of
  its own, timed around ``main()``, interpreter start-up excluded), per format and image
  storage, with the default worker count (the CPUs it may use) and then serially
  (``--workers 1``) on the same bag; real-time factor = episode seconds / wall seconds; CPU
  seconds of the export process and its image workers beside it, and the cores used (CPU /
  wall).
* memory: peak RSS of the export process (its VmHWM), ``--long`` vs ``--short`` episode,
  ALOHA with MP4, the default worker count (beside it the largest image worker's peak RSS,
  shared pages of the fork included); both bags with sensor_msgs/CompressedImage (JPEG q90)
  cameras, as the raw ten minutes would take 50 GB of disk.
* fidelity: the ``--short`` export read back: actions and proprio against the bag's messages at
  the recorded stamps (largest difference), raw images against the node's image pipeline
  (engine/images.py, before its crop) bit for bit, JPEG bytes against PIL's quality-95
  encoding of that image, MP4 frames (PyAV) against it in PSNR (every 10th step).
"""
import argparse
import io
import json
from pathlib import Path
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import yaml

if str(Path(__file__).resolve().parent) not in sys.path:  # harness.py beside this file
    sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import script_record  # noqa: E402, I100, I202

HEIGHT, WIDTH, RATE = 480, 640, 30.0
CAMERAS = {'cam_high': 'primary', 'cam_left_wrist': 'left_wrist',
           'cam_right_wrist': 'right_wrist'}
ROBOCASA_NAMES = {'cam_high': 'primary', 'cam_left_wrist': 'secondary',
                  'cam_right_wrist': 'wrist'}
JOINTS = [f'{side}_{joint}' for side in ('left', 'right') for joint in (
    'waist', 'shoulder', 'elbow', 'forearm_roll', 'wrist_angle', 'wrist_rotate', 'gripper')]
DISTINCT = 60
START_NS = 1_700_000_000 * 10**9
TASK = 'fold the towel'
VARIANTS = (('aloha', 'raw'), ('aloha', 'mp4'), ('robocasa', 'raw'), ('robocasa', 'jpeg'))


def frames(camera_index):
    """DISTINCT frames (480, 640, 3) uint8 of one camera."""
    rng = np.random.default_rng(camera_index)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    base = np.stack([60 + 100 * y / HEIGHT, 80 + 60 * x / WIDTH,
                     120 + 40 * np.sin(x / 37.0 + camera_index)], -1)
    base += rng.normal(0, 6, base.shape)  # sensor-like texture
    out = []
    for k in range(DISTINCT):
        image = base.copy()
        for shape in range(3):
            cx = WIDTH * (0.3 + 0.4 * np.sin(2 * np.pi * (k / DISTINCT + shape / 3)))
            cy = HEIGHT * (0.5 + 0.3 * np.cos(2 * np.pi * (k / DISTINCT + shape / 5)))
            mask = (x - cx) ** 2 + (y - cy) ** 2 < (40 + 10 * shape) ** 2
            image[mask] = (200 - 60 * shape, 40 + 70 * shape, 90 + 50 * shape)
        out.append(np.clip(image, 0, 255).astype(np.uint8))
    return out


def write_bag(path, seconds, *, compressed):
    """The episode bag (see the module docstring)."""
    from cosmos_policy_ros.bags.typestore import make_typestore, ns_to_stamp
    from cosmos_policy_ros.bags.writer import BagWriter
    from cosmos_policy_ros.bags.sample_scene import encode_jpeg
    store = make_typestore()
    types = store.types
    images = {camera: frames(i) for i, camera in enumerate(CAMERAS)}
    jpegs = {camera: [np.frombuffer(encode_jpeg(f, 90), np.uint8) for f in shots]
             for camera, shots in images.items()} if compressed else None
    suffix = '/compressed' if compressed else ''
    image_type = 'sensor_msgs/msg/CompressedImage' if compressed else 'sensor_msgs/msg/Image'
    events = [(START_NS + round(i * 1e9 / RATE), 0, i) for i in range(int(seconds * RATE))]
    events += [(START_NS + i * 10**7, 1, i) for i in range(int(seconds * 100))]
    events.sort()

    def header(ns):
        return types['std_msgs/msg/Header'](stamp=ns_to_stamp(ns, store), frame_id='')

    def joint_state(ns, t):
        position = 0.5 * np.sin(0.3 * t + np.arange(len(JOINTS)))
        return types['sensor_msgs/msg/JointState'](header=header(ns), name=JOINTS,
                                                   position=position, velocity=np.zeros(0),
                                                   effort=np.zeros(0))
    with BagWriter(path, typestore=store, compression='none') as bag:
        for camera in CAMERAS:
            bag.add_topic(f'/{camera}/image_raw{suffix}', image_type)
        bag.add_topic('/joint_states', 'sensor_msgs/msg/JointState')
        bag.add_topic('/recorded_actions', 'sensor_msgs/msg/JointState')
        bag.add_topic('/task', 'std_msgs/msg/String', latched=True)
        bag.write('/task', START_NS, types['std_msgs/msg/String'](data=TASK))
        for ns, kind, index in events:
            t = (ns - START_NS) / 1e9
            if kind == 1:
                bag.write('/joint_states', ns, joint_state(ns, t))
                continue
            for camera in CAMERAS:
                if compressed:
                    message = types['sensor_msgs/msg/CompressedImage'](
                        header=header(ns), format='rgb8; jpeg compressed bgr8',
                        data=jpegs[camera][index % DISTINCT])
                else:
                    message = types['sensor_msgs/msg/Image'](
                        header=header(ns), height=HEIGHT, width=WIDTH, encoding='rgb8',
                        is_bigendian=0, step=WIDTH * 3,
                        data=images[camera][index % DISTINCT].reshape(-1))
                bag.write(f'/{camera}/image_raw{suffix}', ns, message)
            bag.write('/recorded_actions', ns, joint_state(ns, t + 1 / RATE))


def config(path, fmt, compressed):
    """config/aloha.yaml's parameters on the bench bag's topics, a step per frame."""
    names = ROBOCASA_NAMES if fmt == 'robocasa' else CAMERAS
    suffix = '/compressed' if compressed else ''
    parameters = {
        'model_path': '', 'cameras': list(names.values()),
        'camera': {name: {'topic': f'{camera}/image_raw{suffix}',
                          'transport': 'compressed' if compressed else 'raw'}
                   for camera, name in names.items()},
        'proprio_sources': ['arms'],
        'proprio': {'arms': {'type': 'joint_state', 'topic': 'joint_states',
                             'field': 'position', 'joints': JOINTS}},
        'action_space': 'joint_position', 'action_names': JOINTS,
        'step_period': 1 / RATE, 'rate': RATE, 'sync_tolerance': 0.01,
        'max_observation_age': 0.2, 'recorded_actions_topic': '/recorded_actions'}
    Path(path).write_text(yaml.safe_dump({'/**': {'ros__parameters': parameters}}))
    return path


TIMED = '''
import json, resource, sys, time
from cosmos_policy_ros.cli.dataset import main
start, cpu = time.perf_counter(), time.process_time()
code = main(sys.argv[1:])
wall, cpu = time.perf_counter() - start, time.process_time() - cpu
workers = resource.getrusage(resource.RUSAGE_CHILDREN)  # the image workers, ended and reaped
peak = [int(line.split()[1]) for line in open('/proc/self/status') if line.startswith('VmHWM')]
print(json.dumps({'code': code, 'wall_s': wall, 'cpu_s': cpu,
                  'workers_cpu_s': workers.ru_utime + workers.ru_stime,
                  'peak_rss_kb': peak[0], 'worker_peak_rss_kb': workers.ru_maxrss}))
'''


def text_file(work):
    """The task's embeddings as a user brings them (the stand-in generator would import
    diffusers, seconds a real export does not spend)."""
    from cosmos_policy_ros.datasets.text import write_pickle
    from cosmos_policy_ros.engine.synthetic_checkpoints import t5_embeddings
    path = work / 't5_embeddings.pkl'
    if not path.exists():
        write_pickle(path, t5_embeddings([TASK]))
    return path


def run_export(bag, out, fmt, storage, config_path, workers=None):
    """(result of TIMED, peak RSS MB) of one export process (its VmHWM: the high-water mark
    of its own memory since exec, whatever the parent holds). workers: --workers (None: the
    command's default)."""
    args = ['export', str(bag), '--config', str(config_path), '--format', fmt, '--out',
            str(out), '--image-storage', storage, '--val-fraction', '0', '--t5-embeddings',
            str(text_file(Path(out).parent)), '--no-progress', '--force']
    args += [] if workers is None else ['--workers', str(workers)]
    process = subprocess.run([sys.executable, '-c', TIMED, *args], capture_output=True,
                             text=True)
    if process.returncode != 0 or not process.stdout.strip():
        raise SystemExit(f'export failed ({process.returncode}): {process.stderr[-2000:]}')
    result = json.loads(process.stdout.strip().splitlines()[-1])
    if result['code'] != 0:
        raise SystemExit(f'export reported {result["code"]}: {process.stderr[-2000:]}')
    return result, result['peak_rss_kb'] / 1024  # KB -> MB


def timing(result, seconds):
    """wall, CPU (the export process and its image workers), real-time factor, cores used."""
    cpu = result['cpu_s'] + result['workers_cpu_s']
    return {'wall_s': round(result['wall_s'], 2), 'cpu_s': round(cpu, 2),
            'workers_cpu_s': round(result['workers_cpu_s'], 2),
            'real_time_factor': round(seconds / result['wall_s'], 2),
            'cores_used': round(cpu / result['wall_s'], 2)}


def throughput(work, seconds):
    """Each variant with the default worker count, then serially (--workers 1), the same bag."""
    from cosmos_policy_ros.datasets.image_workers import default_workers
    bag = work / 'short_raw'
    write_bag(bag, seconds, compressed=False)
    rows = {}
    for fmt, storage in VARIANTS:
        config_path = config(work / f'{fmt}.yaml', fmt, False)
        result, rss = run_export(bag, work / f'out_{fmt}_{storage}', fmt, storage, config_path)
        serial, _ = run_export(bag, work / 'out_serial', fmt, storage, config_path, workers=1)
        shutil.rmtree(work / 'out_serial')
        row = rows[f'{fmt}_{storage}'] = {
            **timing(result, seconds), 'workers': default_workers(), 'peak_rss_mb': round(rss),
            'worker_peak_rss_mb': round(result['worker_peak_rss_kb'] / 1024),
            'serial': timing(serial, seconds)}
        row['speedup_over_serial'] = round(serial['wall_s'] / result['wall_s'], 2)
        print(f'[throughput] {fmt} {storage}: {row}', flush=True)
    return rows


def memory(work, short, long):
    rows = {}
    config_path = config(work / 'aloha_compressed.yaml', 'aloha', True)
    for name, seconds in (('short', short), ('long', long)):
        bag = work / f'{name}_jpeg'
        write_bag(bag, seconds, compressed=True)
        result, rss = run_export(bag, work / f'out_{name}', 'aloha', 'mp4', config_path)
        rows[name] = {'episode_s': seconds, 'peak_rss_mb': round(rss, 1),
                      'worker_peak_rss_mb': round(result['worker_peak_rss_kb'] / 1024, 1),
                      'wall_s': round(result['wall_s'], 2),
                      'real_time_factor': round(seconds / result['wall_s'], 2)}
        print(f'[memory] {name}: {rows[name]}', flush=True)
        shutil.rmtree(bag)
        shutil.rmtree(work / f'out_{name}')
    rows['long_over_short'] = round(rows['long']['peak_rss_mb'] / rows['short']['peak_rss_mb'],
                                    3)
    return rows


def fidelity(work):
    """Read the throughput exports back (see the module docstring)."""
    import av
    import h5py
    from PIL import Image

    from cosmos_policy_ros.datasets.images import image_pipeline, stored_image
    from cosmos_policy_ros.bags.reader import read_messages

    bag = work / 'short_raw'
    wanted = set()  # (topic, stamp) of the sampled steps' camera frames
    for fmt, storage in VARIANTS:
        out = work / f'out_{fmt}_{storage}'
        entry = json.loads((out / 'export.json').read_text())['episodes'][0]
        with h5py.File(out / entry['demo_file'], 'r') as h5:
            own = (h5 if fmt == 'aloha' else h5['data/demo_0'])['cosmos_policy_ros']
            streams, stamps = list(own.attrs['streams']), own['stamps_ns'][::10]
        names = ROBOCASA_NAMES if fmt == 'robocasa' else CAMERAS
        wanted.update((f'/{camera}/image_raw', int(s)) for camera, name in names.items()
                      for s in stamps[:, streams.index(name)])
    by_stamp = {}  # the vectors, and only the sampled frames (the bag is 5 GB)
    for item in read_messages(bag):
        header = getattr(item.message, 'header', None)
        if header is not None:
            key = (item.topic, header.stamp.sec * 10**9 + header.stamp.nanosec)
            if not item.topic.endswith('image_raw') or key in wanted:
                by_stamp[key] = item.message
    report = {}
    for fmt, storage in VARIANTS:
        out = work / f'out_{fmt}_{storage}'
        record = json.loads((out / 'export.json').read_text())
        entry = record['episodes'][0]
        names = ROBOCASA_NAMES if fmt == 'robocasa' else CAMERAS
        pipeline = image_pipeline('camera', fmt)
        path = out / entry['demo_file']
        with h5py.File(path, 'r') as h5:
            base = h5 if fmt == 'aloha' else h5['data/demo_0']
            own = base['cosmos_policy_ros']
            streams = list(own.attrs['streams'])
            stamps, action_stamps = own['stamps_ns'][:], own['action_stamps_ns'][:]
            actions = base['action' if fmt == 'aloha' else 'actions'][:]
            proprio = base['observations/qpos' if fmt == 'aloha' else 'robot_states'][:]
            worst = 0.0
            for t in range(len(actions)):
                command = by_stamp[('/recorded_actions', action_stamps[t])]
                joints = by_stamp[('/joint_states', stamps[t, streams.index('arms')])]
                worst = max(worst, float(np.abs(actions[t] - command.position).max()),
                            float(np.abs(proprio[t] - joints.position).max()))
            images = {'exact_steps': 0, 'steps': 0, 'psnr_db': []}
            for camera, name in names.items():
                key = (f'observations/images/{camera}' if fmt == 'aloha' else
                       {'primary': 'obs/robot0_agentview_left_rgb',
                        'secondary': 'obs/robot0_agentview_right_rgb',
                        'wrist': 'obs/robot0_eye_in_hand_rgb'}[name])
                video = None
                if storage == 'mp4':
                    file = path.parent / base[f'observations/video_paths/{camera}'][()].decode()
                    with av.open(str(file)) as container:
                        video = [f.to_ndarray(format='rgb24')
                                 for f in container.decode(video=0)]
                for t in range(0, len(actions), 10):
                    message = by_stamp[(f'/{camera}/image_raw', stamps[t, streams.index(name)])]
                    source = np.frombuffer(bytes(message.data), np.uint8)
                    source = source.reshape(HEIGHT, WIDTH, 3)
                    expected = stored_image(source, pipeline, name)
                    images['steps'] += 1
                    if storage == 'raw':
                        images['exact_steps'] += int(np.array_equal(base[key][t], expected))
                    elif storage == 'jpeg':
                        buffer = io.BytesIO()
                        Image.fromarray(expected).save(buffer, format='JPEG', quality=95)
                        images['exact_steps'] += int(base[key + '_jpeg'][t].tobytes() ==
                                                     buffer.getvalue())
                    else:
                        error = np.mean((video[t].astype(float) - expected) ** 2)
                        images['psnr_db'].append(10 * np.log10(255 ** 2 / max(error, 1e-12)))
        psnr = images.pop('psnr_db')
        if psnr:
            images['psnr_db'] = {'min': round(min(psnr), 2),
                                 'mean': round(float(np.mean(psnr)), 2)}
        report[f'{fmt}_{storage}'] = {'steps': len(actions), 'max_abs_vector_difference': worst,
                                      'images': images}
        print(f'[fidelity] {fmt} {storage}: {report[f"{fmt}_{storage}"]}', flush=True)
    return report


TITLES = {
    'throughput': 'cosmos-policy-dataset export: real-time factor of a 3-camera 480x640 30 Hz '
                  'episode',
    'memory': 'cosmos-policy-dataset export: peak RSS, 10-minute vs 1-minute episode',
    'fidelity': 'cosmos-policy-dataset export read back: vectors exact, images against the '
                "node's pipeline"}


def headline(section, rows, args):
    if section == 'throughput':
        return ', '.join(f'{name.replace("_", " ")} {row["real_time_factor"]}x real time '
                         f'({row["cores_used"]} cores; serial '
                         f'{row["serial"]["real_time_factor"]}x)' for name, row in rows.items())
    if section == 'memory':
        return (f'peak RSS {rows["long"]["peak_rss_mb"]:.0f} MB ({args.long:g} s) vs '
                f'{rows["short"]["peak_rss_mb"]:.0f} MB ({args.short:g} s): '
                f'x{rows["long_over_short"]}')
    exact = all(row['max_abs_vector_difference'] == 0 for row in rows.values())
    psnr = [row['images']['psnr_db']['min'] for row in rows.values()
            if 'psnr_db' in row['images']]
    bit = [name for name, row in rows.items()
           if row['images']['exact_steps'] == row['images']['steps'] > 0]
    return (f'actions/proprio {"exact" if exact else "DIFFER"}; images bit-exact: '
            f'{", ".join(bit)}; MP4 min PSNR {min(psnr):.1f} dB')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--short', type=float, default=60.0, help='episode seconds')
    parser.add_argument('--long', type=float, default=600.0, help='memory: the long episode')
    parser.add_argument('--only', default='throughput,fidelity,memory')
    parser.add_argument('--work', type=Path, default=None, help='scratch directory')
    parser.add_argument('--out-dir', type=Path, default=None,
                        help='write dataset_<section>.json records here (bench/results)')
    args = parser.parse_args(argv)
    sections = args.only.split(',')
    work = Path(tempfile.mkdtemp(prefix='dataset_bench_', dir=args.work))
    results = {}
    try:
        if 'throughput' in sections or 'fidelity' in sections:
            results['throughput'] = throughput(work, args.short)
        if 'fidelity' in sections:
            results['fidelity'] = fidelity(work)
        if 'memory' in sections:
            results['memory'] = memory(work, args.short, args.long)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=1, default=float))
    for section in sections if args.out_dir else ():
        path = args.out_dir / f'dataset_{section}.json'
        fields = script_record(
            path, title=TITLES[section],
            preset=f'3 cameras 480x640 at 30 Hz, 14 joints, {args.short:g} s episode',
            headline=headline(section, results[section], args))
        args.out_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**fields, 'episode_s': args.short, 'rows': results[section]},
                                   indent=1, default=float) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
