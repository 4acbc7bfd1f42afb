"""An ActionChunk's serialized bytes (CDR, little endian), built without a message object.

``Publisher.publish(bytes)`` sends them as they are; building rclpy's ActionChunk and letting
rclpy convert it field by field cost ~0.1 ms of the node's path per chunk (docs/performance.md
section 8). The layout is the one rclpy.serialization.serialize_message writes (Fast DDS's
plain CDR), which test/ros/test_action_chunk_wire.py checks byte for byte on random chunks:

    4 bytes      encapsulation: 00 01 00 00 (CDR, little endian)
    then, offsets counted from after it, each value aligned to its size (float64: 8):
    header       int32 sec, uint32 nanosec, string frame_id
    string[]     action_names            uint32 count, then each string
    uint32 horizon, uint32 action_dim, float64 step_period
    float32[]    actions                 uint32 count, then the values
    float32 value
    Time[]       source_stamps           uint32 count, then (int32 sec, uint32 nanosec) each
    string[]     source_names
    uint32 seed, uint32 num_denoising_steps, float32 inference_time
    string model_id, string stitching
    uint32 conditioned_steps, uint32 takeover_step, uint32 blended_steps
    float32 expected_latency

A string is uint32 (bytes + 1), its UTF-8 bytes, a NUL; padding is zeros (rclpy leaves it
undefined). The names and strings of a chunk change only with the configuration: a chunk is
one ``struct.pack`` of a format cached per names, strings and counts.
"""
import functools
import struct

import numpy as np

from cosmos_policy_ros.conversions import ns_to_stamp

ENCAPSULATION = b'\x00\x01\x00\x00'  # CDR, little endian, no options
FIELDS = ('header', 'action_names', 'horizon', 'action_dim', 'step_period', 'actions', 'value',
          'source_stamps', 'source_names', 'seed', 'num_denoising_steps', 'inference_time',
          'model_id', 'stitching', 'conditioned_steps', 'takeover_step', 'blended_steps',
          'expected_latency')  # ActionChunk.msg in order (the test compares them)


def _string(text):
    """A CDR string starting at a 4-aligned offset (its length word needs no padding)."""
    data = text.encode()
    return struct.pack('<I', len(data) + 1) + data + b'\x00'


def _strings(texts):
    """A CDR string sequence starting at a 4-aligned offset."""
    out = struct.pack('<I', len(texts))
    for text in texts:
        out += b'\x00' * (-len(out) % 4) + _string(text)
    return out


class _Format:
    """A struct format over the CDR body, padding each value to its alignment ('x': zeros)."""

    def __init__(self):
        self.parts, self.size = ['<4s'], 0

    def add(self, code, size, align=4):
        pad = -self.size % align
        self.parts.append('x' * pad + code)
        self.size += pad + size


@functools.lru_cache(maxsize=16)
def _layout(frame_id, action_names, source_names, model_id, stitching, values, sources):
    """(struct.Struct of one chunk's body, its constant blocks): one struct per names, counts
    and strings, so that a chunk is one pack call."""
    blocks = {'frame_id': _string(frame_id), 'action_names': _strings(action_names),
              'source_names': _strings(source_names), 'model_id': _string(model_id),
              'stitching': _string(stitching)}
    out = _Format()  # ENCAPSULATION is its first field: offsets count from after it
    out.add('iI', 8)
    out.add(f'{len(blocks["frame_id"])}s', len(blocks['frame_id']))
    out.add(f'{len(blocks["action_names"])}s', len(blocks['action_names']))
    out.add('II', 8)
    out.add('d', 8, align=8)
    out.add(f'I{4 * values}s', 4 + 4 * values)
    out.add('fI', 8)
    out.add('iI' * sources, 8 * sources)
    out.add(f'{len(blocks["source_names"])}s', len(blocks['source_names']))
    out.add('IIf', 12)
    out.add(f'{len(blocks["model_id"])}s', len(blocks['model_id']))
    out.add(f'{len(blocks["stitching"])}s', len(blocks['stitching']))
    out.add('IIIf', 16)
    return struct.Struct(''.join(out.parts)), blocks


def action_chunk_bytes(*, stamp_ns, frame_id, action_names, actions, step_period, value,
                       source_names, source_stamps_ns, seed, num_denoising_steps,
                       inference_time, model_id, stitching='none', conditioned_steps=0,
                       takeover_step=0, blended_steps=0, expected_latency=0.0):
    """The serialized ActionChunk of outputs.action_chunk_msg's arguments (the same message).

    actions (K, d) are flattened row-major as float32, like the message's.
    """
    actions = np.ascontiguousarray(actions, dtype='<f4')
    horizon, action_dim = actions.shape
    layout, blocks = _layout(frame_id, tuple(action_names), tuple(source_names), model_id,
                             stitching, actions.size, len(source_stamps_ns))
    stamps = []
    for ns in source_stamps_ns:
        stamps += ns_to_stamp(ns)
    return layout.pack(
        ENCAPSULATION, *ns_to_stamp(stamp_ns), blocks['frame_id'],
        blocks['action_names'], horizon, action_dim, step_period, actions.size,
        actions.tobytes(), value, len(source_stamps_ns), *stamps, blocks['source_names'],
        seed, num_denoising_steps, inference_time, blocks['model_id'], blocks['stitching'],
        conditioned_steps, takeover_step, blended_steps, expected_latency)
