"""The planar-reach model: the shipped one, its layout, and which model an evaluation runs.

``cosmos_policy_ros/models/planar_reach/`` (model.json, dit/vae safetensors, statistics, T5
embeddings) is trained by ``cosmos-policy-train`` (docs/sim.md) and installed by both colcon
(the package directory is installed whole) and pip (package data). Without it (or with
``--model``) an evaluation runs another model directory, or a random-weight stand-in of the
same layout (``engine/standin.py``).
"""
import json
from pathlib import Path

from cosmos_policy_ros.layout import LatentLayout
from cosmos_policy_ros.sim.arm import CAMERAS, JOINT_NAMES, SimConfig, TASKS

SHIPPED_MODEL = 'planar_reach'
LAYOUT_CAMERAS = ('wrist', 'primary')  # the model's camera order (the sim renders both)
DEFAULT_GAMMA = 0.99
STANDIN_NOTE = ('a tiny RANDOM-WEIGHT stand-in in the released formats (engine/synthetic.py + '
                'cosmos-policy-convert): no trained model is installed, so expect ~0 % success')
TRAINED_NOTE = ('a tiny Cosmos Policy (same classes and file formats as the released '
                'checkpoints) trained on this sim by cosmos-policy-train; its value comes from '
                'the planning network beside it (--planning)')
assert sorted(LAYOUT_CAMERAS) == sorted(CAMERAS)


def shipped_model_dir():
    """Path of the shipped planar-reach model directory (load with CosmosPolicy.from_model_dir)."""
    return Path(__file__).resolve().parents[1] / 'models' / SHIPPED_MODEL


def shipped_model():
    """The shipped model directory, or None when the package has none."""
    path = shipped_model_dir()
    return path if (path / 'model.json').is_file() else None


def model_label(path):
    """How reports name a model directory: the shipped one as ``cosmos_policy_ros/models/
    planar_reach`` (the same on every machine and install), any other by its path."""
    path = Path(path)
    if path.resolve() == shipped_model_dir():
        return f'cosmos_policy_ros/models/{SHIPPED_MODEL}'
    return str(path)


def sim_layout(chunk_size=8, image_size=SimConfig().image_size):
    """The latent layout of a planar-reach model: two cameras, 3 joints in and out."""
    return LatentLayout(SHIPPED_MODEL, LAYOUT_CAMERAS, chunk_size=chunk_size,
                        action_dim=len(JOINT_NAMES), proprio_dim=len(JOINT_NAMES),
                        image_size=image_size)


def resolve_model(arg, out):
    """(model dir, description): `arg` (--model), else the shipped model, else a stand-in
    written under <out>/standin."""
    if arg:
        path = Path(arg)
        if not (path / 'model.json').is_file():
            raise ValueError(f'--model {arg}: no model.json there (a directory written by '
                             f'cosmos-policy-convert or cosmos-policy-train)')
        return path, 'the model at ' + str(path)
    shipped = shipped_model()
    if shipped is not None:
        return shipped, TRAINED_NOTE + f' ({model_label(shipped)})'
    return make_standin_model(Path(out) / 'standin'), STANDIN_NOTE


def make_standin_model(out, *, seed=0):
    """A random-weight model directory of the sim's layout (instructions = the sim's tasks)."""
    from cosmos_policy_ros.engine.standin import write_standin_model  # torch: stand-in only
    return write_standin_model(out, sim_layout(), instructions=TASKS, images='aloha', seed=seed)


def model_gamma(model):
    """The discount the model was trained with (model.json source.gamma), or DEFAULT_GAMMA."""
    try:
        gamma = json.loads((Path(model) / 'model.json').read_text())['source']['gamma']
        return float(gamma)
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_GAMMA
