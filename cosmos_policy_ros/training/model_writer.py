"""The trained model directory, in the formats the package loads for released checkpoints
(engine/model_dir.py): written under a staging name, read back strictly
(engine/conversion.verify_model_dir), then moved into place. A policy (``write_model``), or an
--init-from policy's directory with its planning network added (``write_planning_model``)."""
import dataclasses
import json
from pathlib import Path
import shutil

from safetensors.torch import save_file
import torch

from cosmos_policy_ros.engine.conversion import verify_model_dir
from cosmos_policy_ros.engine.model_dir import (file_sha256, FILES, ModelSpec, PLANNING_DIT_FILE,
                                                read_spec, write_spec)
from cosmos_policy_ros.engine.planning import PlanningConfig
from cosmos_policy_ros.engine.sampling import SamplerConfig
from cosmos_policy_ros.engine.text import TextEmbeddings

# The planning network is stored in bf16, as released checkpoints are (the policy's DiT stays
# fp32): it keeps the shipped model directory well under 10 MB.
PLANNING_DTYPE = torch.bfloat16
# How the planning network of a --planning model scores the policy's chunks (model.json).
# One world-model pass of one step per tick, its value Q(s, a) published (docs/sim.md: it ranks
# the policy's states better than V(s') from value passes, which are not run).
SIM_PLANNING = PlanningConfig(world_model_steps=1, world_model_ensemble=1, value_steps=1,
                              value_ensemble=1, aggregation='average', value_from='world_model',
                              score_single_candidate=True)


def write_model(out, net, vae, layout, images, stats, text_table, *, source, num_steps=5,
                overwrite=False):
    """Write a model directory (model_dir.py formats) and read it back strictly."""

    staging = _staging(out, overwrite)
    staging.mkdir(parents=True)
    save_dit(net, staging / FILES['dit'])
    save_file({k: v.detach().float().contiguous() for k, v in vae.vae.state_dict().items()},
              str(staging / FILES['vae']))
    (staging / FILES['statistics']).write_text(json.dumps(stats, indent=2) + '\n')
    TextEmbeddings.from_dict(dict(text_table)).save(staging / FILES['text_embeddings'])
    digest = file_sha256(staging / FILES['dit'])
    spec = ModelSpec(model_id=f'{layout.name}@{digest[:12]}', layout=layout,
                     dit_preset=net.config.name, vae_preset=vae.config.name, images=images,
                     sampler=SamplerConfig(num_steps=num_steps),
                     source={**source, 'dit_sha256': digest})
    write_spec(staging, spec)
    _publish(staging, out)
    return spec


def write_planning_model(out, init_dir, planning_net, *, source, planning=SIM_PLANNING,
                         overwrite=False):
    """Write `init_dir`'s model directory (its files unchanged) with `planning_net` as its
    planning network and `planning` as its settings; `source` joins model.json's source as
    `planning_net`. Read back strictly. Returns the ModelSpec."""
    staging = _staging(out, overwrite)
    shutil.copytree(init_dir, staging)
    save_dit(planning_net, staging / PLANNING_DIT_FILE, PLANNING_DTYPE)
    spec = read_spec(init_dir)
    digest = file_sha256(staging / PLANNING_DIT_FILE)
    spec = dataclasses.replace(spec, planning=planning, source={
        **spec.source, 'planning_net': {**source, 'planning_dit_sha256': digest}})
    write_spec(staging, spec)
    _publish(staging, out)
    return spec


def save_dit(net, path, dtype=torch.float32):
    """A CosmosDiT's transformer weights as `dtype` safetensors (the released key names)."""
    save_file({k: v.detach().to(dtype).contiguous() for k, v in
               net.transformer.state_dict().items()}, str(path))


def _staging(out, overwrite):
    """The empty-to-be staging path of model directory `out` (refused if `out` exists)."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise ValueError(f'{out} exists; pass --force to replace it.')
    staging = out.with_name(out.name + '.partial')
    shutil.rmtree(staging, ignore_errors=True)
    return staging


def _publish(staging, out):
    """Read the staged directory back strictly, then move it to `out` (replacing it)."""
    verify_model_dir(staging)
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
