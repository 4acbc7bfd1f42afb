"""Helpers of the dataset tests: small sample bags and edited copies of them."""
from pathlib import Path

import pytest

from cosmos_policy_ros.bags import sample_episode as se
from cosmos_policy_ros.bags.reader import BagReader
from cosmos_policy_ros.bags.typestore import make_typestore
from cosmos_policy_ros.bags.writer import BagWriter
from cosmos_policy_ros.cli.dataset import main as dataset_main

STEP_HZ = {'libero': 20.0, 'robocasa': 20.0, 'aloha': 25.0, 'sim': 10.0}


def sample_bag(path, preset='libero', *, duration=1.0, size=32, seed=5, storage='mcap'):
    """A make-sample bag of `preset` with its config's topics, frames at the step rate.

    Seed 5: the LIBERO gripper command changes within the first second (no constant action
    dimension)."""
    config = se.EpisodeConfig(preset=preset, duration=duration, camera_rate=STEP_HZ[preset],
                              joint_rate=50.0, image_size=size, seed=seed,
                              params_file=se.preset_params_file(preset))
    se.make_sample(path, config, storage=storage)
    return Path(path)


def copy_bag(source, target, *, drop=(), edit=None, keep=None):
    """Copy a bag, leaving out `drop` topics and messages keep(topic, index) rejects, and
    replacing messages by edit(topic, message) (None: as is)."""
    store = make_typestore()
    counts = {}
    with BagReader(source) as reader, BagWriter(target, typestore=store) as writer:
        topics = {name: info for name, info in reader.info.topics.items() if name not in drop}
        for name, info in topics.items():
            writer.add_topic(name, info.msgtype, latched=info.latched)
        for item in reader.messages(list(topics)):
            index = counts.get(item.topic, 0)
            counts[item.topic] = index + 1
            if keep is not None and not keep(item.topic, index):
                continue
            message = edit(item.topic, item.message) if edit else item.message
            writer.write(item.topic, item.stamp_ns, message)
    return Path(target)


@pytest.fixture(scope='session')
def bags():
    """The bag helpers: bags.sample(path, preset, ...) and bags.copy(source, target, ...)."""
    class Helpers:
        sample = staticmethod(sample_bag)
        copy = staticmethod(copy_bag)
    return Helpers


@pytest.fixture
def export_cli(capsys):
    """export_cli(bags, preset, out, *options) -> (exit code, stdout, stderr)."""

    def run(bags, preset, out, *options, config=None):
        code = dataset_main(['export', *map(str, bags), '--config',
                             str(config or se.preset_params_file(preset)), '--format',
                             'libero' if preset == 'sim' else preset, '--out', str(out),
                             '--actions-topic', '/recorded_actions', '--val-fraction', '0',
                             '--t5-stand-in', '0', '--no-progress', *options])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
