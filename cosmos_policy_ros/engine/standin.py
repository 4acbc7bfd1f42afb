"""A random-weight stand-in model directory: synthetic files in the released formats
(``synthetic_checkpoints``), converted exactly as released checkpoints are (``conversion``).

No weights can be downloaded here: the demo and the sim's closed loop without a trained model
run such a stand-in (its actions are meaningless, the pipeline around it is the real one).
"""
from pathlib import Path

from cosmos_policy_ros.engine.conversion import convert_released
from cosmos_policy_ros.engine.synthetic_checkpoints import (write_synthetic_model,
                                                            write_t5_embeddings)

STANDIN_STEPS = 5  # denoising steps of a stand-in (CPU-friendly)


def write_standin_model(out, layout, *, instructions=None, images=None, seed=0, log=print):
    """<out>/model: a tiny random-weight model of `layout`, converted from the released-format
    files written to <out>/released (reused when <out>/model exists). instructions: the T5
    embedding file's texts (default: the layout's sample instructions); images: an
    image-pipeline preset name (default: the layout's)."""
    out = Path(out)
    model = out / 'model'
    if (model / 'model.json').is_file():
        return model
    released = out / 'released'
    paths = write_synthetic_model(released, layout, size='tiny', seed=seed, dtype='fp32',
                                  overwrite=True)
    if instructions is not None:
        write_t5_embeddings(paths['t5_embeddings'], instructions, seed=seed)
    convert_released(released=released, out=model, layout=layout, images=images,
                     num_steps=STANDIN_STEPS, overwrite=True, log=log)
    return model
