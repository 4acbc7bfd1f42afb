"""The stored image of a camera frame: the node's image pipeline up to its center crop.

The node turns every camera image into a model frame with the model's image pipeline
(engine/images.py: flip, pre-resize, JPEG round trip, resize to 224, center crop). Training
applies its own random crop to the stored images (reference ``preprocess_image``), so what the
exporter stores is the pipeline's image before the crop: ``preprocess_image`` with
``crop_area=None``. Trained on these, a model sees at training what the node gives it at run
time; the reference's training resize to 224 is then a no-op.

``--images`` picks the pipeline: ``camera`` (default): the format's released preset without the
vertical flip (a real camera is upright; robosuite renders are not): LIBERO / RoboCasa a JPEG
round trip at quality 95 then 224 x 224, ALOHA 256 x 256 then 224 x 224 (PIL bicubic);
``released``: the preset as released (flips LIBERO / RoboCasa renders, as the reference's
regeneration scripts do); ``none``: the frame as recorded (any size); a model directory: its
model.json pipeline (the sim's model keeps its 64 x 64 renders). The export writes the
pipeline to ``image_pipeline.yaml`` beside the data, for ``cosmos-policy-convert --images``: the
node then prepares every camera image as the training data was.

Capability layer (datasets/): the pipeline is the engine's (torch is imported with it).
"""
import dataclasses
from pathlib import Path

from cosmos_policy_ros.engine.images import ImagePipelineConfig, preprocess_image
from cosmos_policy_ros.engine.model_dir import read_spec

CAMERA, RELEASED, NONE = 'camera', 'released', 'none'
CHOICES = (CAMERA, RELEASED, NONE)


def image_pipeline(choice, format_name):
    """The node's ImagePipelineConfig of an --images choice (its crop included: the node
    crops; the stored images stop before it); None for 'none'."""
    if choice == NONE:
        return None
    if choice in (CAMERA, RELEASED):
        pipeline = ImagePipelineConfig.preset(format_name)
        if choice == CAMERA:
            pipeline = dataclasses.replace(pipeline, flip_vertical=False)
    elif Path(choice).is_dir():
        pipeline = read_spec(choice).images
    else:
        raise ValueError(f'--images {choice!r}: choose one of {list(CHOICES)} or a model '
                         f'directory.')
    return pipeline


def describe(pipeline):
    """One line for the manifest and the summary."""
    if pipeline is None:
        return 'as recorded'
    steps = ['vertical flip'] if pipeline.flip_vertical else []
    if pipeline.pre_resize:
        steps.append(f'{pipeline.pre_resize} x {pipeline.pre_resize} bicubic')
    if pipeline.jpeg_quality:
        steps.append(f'JPEG round trip q{pipeline.jpeg_quality}')
    steps.append(f'{pipeline.image_size} x {pipeline.image_size} bicubic')
    if pipeline.crop_area:
        steps.append(f'(the node then crops {pipeline.crop_area:g} of the area)')
    return ', '.join(steps)


def stored_image(frame, pipeline, camera):
    """uint8 (H, W, 3) camera frame -> the stored uint8 image (a new array)."""
    if pipeline is None:
        return frame
    return preprocess_image(frame, dataclasses.replace(pipeline, crop_area=None), camera)
