"""Parity of live and offline chunks: a live node's chunks (recorded from a replay) against the
offline evaluator's chunks of the same observations (``evaluate``'s 'observations' mode), and
the check the demo runs.
"""
from dataclasses import dataclass
import math
from pathlib import Path
import shutil

import numpy as np

from cosmos_policy_ros.bags.arrays import chunk_arrays
from cosmos_policy_ros.bags.reader import BagReader
from cosmos_policy_ros.conversions import stamp_to_ns
from cosmos_policy_ros.evaluation.evaluate import evaluate
from cosmos_policy_ros.evaluation.offline_node import CHUNK


def compare_chunks(reference, other, *, atol=1e-5, rtol=1e-5):
    """Compare two chunk sets by observation stamp (values, not bytes).

    reference, other: ChunkArrays (bags.arrays.chunk_arrays) or sequences of Tick. Returns
    (matched stamps, stamps of `other` missing from `reference`, largest |difference|).
    """
    first, second = _by_stamp(reference), _by_stamp(other)
    matched = sorted(set(first) & set(second))
    missing = sorted(set(second) - set(first))
    worst = 0.0
    for stamp in matched:
        a, b = first[stamp], second[stamp]
        if a.shape != b.shape or not np.allclose(a, b, atol=atol, rtol=rtol):
            worst = math.inf if a.shape != b.shape else max(worst, float(np.abs(a - b).max()))
        else:
            worst = max(worst, float(np.abs(a - b).max()))
    return matched, missing, worst


def chunk_sources(items):
    """{reference stamp: {stream: stamp}} of recorded ActionChunk BagMessages (their inputs)."""
    return {stamp_to_ns(item.message.header.stamp): {
        name: stamp_to_ns(stamp)
        for name, stamp in zip(item.message.source_names, item.message.source_stamps)}
        for item in items}


def _by_stamp(chunks):
    if hasattr(chunks, 'stamps_ns'):
        return {int(s): np.asarray(a) for s, a in zip(chunks.stamps_ns, chunks.actions)}
    return {tick.reference_ns: tick.actions for tick in chunks if tick.status == CHUNK}


@dataclass(frozen=True)
class Parity:
    """The demo's parity check of a live replay (``check_parity``)."""

    live_chunks: int     # chunks the live node published
    same_sets: int       # live frames for which the offline sync rules pick the same messages
    recomputed: int      # live chunks recomputed offline from exactly their source messages
    not_recomputed: int  # live chunks the offline run could not recompute
    largest_difference: float

    @property
    def ok(self):
        return (self.recomputed > 0 and self.not_recomputed == 0
                and self.largest_difference <= 1e-5)


def check_parity(bag, recorded, policy, config, out):
    """Compare the live chunks recorded in `recorded` (/action_chunk) with offline chunks of the
    same observations of `bag`, written to directories in `out`:

    (a) the offline sync rules, asked for the live chunks' camera frames, pick the same
        messages (the node may have had to do without a late one);
    (b) each live chunk recomputed offline from exactly the messages the node used (its
        source stamps) is the same chunk.
    """
    out = Path(out)
    with BagReader(recorded) as reader:
        items = list(reader.messages(['/action_chunk']))
    live = chunk_arrays(items)
    sources = chunk_sources(items)
    frames_dir, parity_dir = out / 'eval_live_frames', out / 'eval_live_observations'
    for path in (frames_dir, parity_dir):
        shutil.rmtree(path, ignore_errors=True)
    frames = evaluate(bag, policy, config, frames_dir, tick_mode='observations', plots=False,
                      progress=False, references=set(sources))
    same_sets = sum(dict(tick.stamps) == sources.get(tick.reference_ns)
                    for tick in frames.chunks)
    same = evaluate(bag, policy, config, parity_dir, tick_mode='observations', plots=False,
                    progress=False, references=sources)
    matched, missing, worst = compare_chunks(same.chunks, live)
    return Parity(len(live.stamps_ns), same_sets, len(matched), len(missing), worst)
