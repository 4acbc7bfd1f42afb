"""Recorded messages as numpy arrays, for offline evaluation: ActionChunk messages
(``ChunkArrays``) and a recorded action stream (JointState or Float64MultiArray)."""
from dataclasses import dataclass
from typing import Tuple

import numpy as np

from cosmos_policy_ros.bags.storage import BagError
from cosmos_policy_ros.conversions import action_chunk_rows, ConversionError, stamp_to_ns


@dataclass(frozen=True)
class ChunkArrays:
    """M ActionChunk messages as arrays (see msg/ActionChunk.msg)."""

    stamps_ns: np.ndarray       # (M,) int64 header stamps: the observation of each chunk
    log_ns: np.ndarray          # (M,) int64 log times (arrival in the recording)
    actions: np.ndarray         # (M, K, d) float64
    step_period: np.ndarray     # (M,) seconds
    value: np.ndarray           # (M,) NaN when the model gave none
    inference_time: np.ndarray  # (M,) seconds
    action_names: Tuple[str, ...]
    model_ids: Tuple[str, ...]


def chunk_arrays(items):
    """BagMessages of cosmos_policy_ros/msg/ActionChunk -> ChunkArrays (in the given order).

    All chunks must share horizon, action_dim and action names; BagError names the first
    chunk (by log time) that does not.
    """
    items = list(items)
    if not items:
        raise BagError('no ActionChunk messages to convert')
    first = items[0].message
    horizon, dim, names = int(first.horizon), int(first.action_dim), tuple(first.action_names)
    actions = np.empty((len(items), horizon, dim))
    for index, item in enumerate(items):
        message = item.message
        where = f'the ActionChunk on {item.topic!r} at log time {item.stamp_ns}'
        if (int(message.horizon), int(message.action_dim)) != (horizon, dim):
            raise BagError(f'{where} is {message.horizon} x {message.action_dim}; the first '
                           f'chunk was {horizon} x {dim}')
        if tuple(message.action_names) != names:
            raise BagError(f'{where} names its actions {list(message.action_names)}, the '
                           f'first chunk {list(names)}')
        try:
            actions[index] = action_chunk_rows(message)
        except ConversionError as error:
            raise BagError(f'{where} has {error}') from None
    return ChunkArrays(
        stamps_ns=np.array([stamp_to_ns(i.message.header.stamp) for i in items], np.int64),
        log_ns=np.array([i.stamp_ns for i in items], dtype=np.int64),
        actions=actions,
        step_period=np.array([i.message.step_period for i in items], dtype=np.float64),
        value=np.array([i.message.value for i in items], dtype=np.float64),
        inference_time=np.array([i.message.inference_time for i in items], dtype=np.float64),
        action_names=names,
        model_ids=tuple(i.message.model_id for i in items))


def action_stream_arrays(items, names=None):
    """A recorded action stream -> (stamps_ns (N,), values (N, d), names).

    sensor_msgs/JointState: header stamps and `position`, the columns picked and ordered by
    `names` (default: the first message's joint names). std_msgs/Float64MultiArray (or
    Float32MultiArray): log times and `data`, named a0, a1, ... unless `names` is given.
    """
    items = list(items)
    if not items:
        raise BagError('no recorded action messages to convert')
    if hasattr(items[0].message, 'position'):
        names = tuple(names) if names is not None else tuple(items[0].message.name)
        rows, stamps = [], []
        for item in items:
            index = {name: i for i, name in enumerate(item.message.name)}
            missing = [name for name in names if name not in index]
            if missing:
                raise BagError(f'the JointState on {item.topic!r} at log time {item.stamp_ns} '
                               f'has no joint(s) {missing}')
            position = np.asarray(item.message.position, dtype=np.float64)
            rows.append(position[[index[name] for name in names]])
            stamps.append(stamp_to_ns(item.message.header.stamp))
        return np.array(stamps, dtype=np.int64), np.stack(rows), names
    values = [np.asarray(item.message.data, dtype=np.float64) for item in items]
    sizes = {v.size for v in values}
    if len(sizes) != 1:
        raise BagError(f'the action arrays on {items[0].topic!r} have different lengths '
                       f'{sorted(sizes)}')
    dim = sizes.pop()
    names = tuple(names) if names is not None else tuple(f'a{j}' for j in range(dim))
    if len(names) != dim:
        raise BagError(f'{len(names)} names for {dim}-d actions on {items[0].topic!r}')
    return (np.array([item.stamp_ns for item in items], dtype=np.int64), np.stack(values),
            names)
