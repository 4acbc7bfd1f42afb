"""Where the shipped planar-reach model lives: a model directory installed with the package.

``cosmos_policy_ros/models/planar_reach/`` (model.json, dit/vae safetensors, statistics, T5
embeddings) is trained by ``cosmos-policy-train`` (docs/sim.md) and installed by both colcon
(the package directory is installed whole) and pip (package data).
"""
from pathlib import Path

SHIPPED_MODEL = 'planar_reach'


def shipped_model_dir():
    """Path of the shipped planar-reach model directory (load with CosmosPolicy.from_model_dir)."""
    return Path(__file__).resolve().parents[1] / 'models' / SHIPPED_MODEL


def model_label(path):
    """How reports name a model directory: the shipped one as ``cosmos_policy_ros/models/
    planar_reach`` (the same on every machine and install), any other by its path."""
    path = Path(path)
    if path.resolve() == shipped_model_dir():
        return f'cosmos_policy_ros/models/{SHIPPED_MODEL}'
    return str(path)
