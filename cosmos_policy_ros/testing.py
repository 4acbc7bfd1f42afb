"""A fake Policy for tests and dry runs of the node: no weights, deterministic, instrumented.

    policy_factory: cosmos_policy_ros.testing:load_fake_policy
    model_path: /path/to/fake_policy.yaml      (or a directory holding fake_policy.yaml)

fake_policy.yaml (every key optional except the layout):

    layout: {preset: aloha}          # or the LatentLayout fields
    delay: 0.0                       # seconds each infer() sleeps (a slow model)
    actions: follow                  # follow | nan | huge
    fail_every: 0                    # every n-th call raises RuntimeError (0: never)
    future_images: false             # return predicted images (the current ones, flipped)
    record_path: ''                  # append one JSON line per call (timings, concurrency)
    model_id: fake

Outputs are functions of the observation, so tests can check the data path:
actions[k, j] = proprio[j mod D] + 0.001 * k ('follow'); value = mean of the R channel of the
layout's first camera / 255; with N candidates, candidate i has value min(1, value + 0.01 i)
and the last one is selected. With known_actions (k, d) (stitching by inpainting), the first k
rows are those actions exactly and num_conditioned_steps = k. `infer_batch` (a BatchPolicy)
gives each request of a batch the same output, with one `delay` for the batch. numpy and
PyYAML only.

For tests of the control loop without ROS: `stub_node_config` (a one-camera, two-joint robot)
and `fake_header` (a message header stand-in with a stamp in nanoseconds).
"""
import dataclasses
import json
import os
import threading
import time
from types import SimpleNamespace

import numpy as np
import yaml

from cosmos_policy_ros.interface import PolicyOutput
from cosmos_policy_ros.layout import LatentLayout
from cosmos_policy_ros.node_config import config_from_parameters

ACTION_MODES = ('follow', 'nan', 'huge')
STUB_JOINTS = ('j0', 'j1')
NS_PER_S = 1_000_000_000


def stub_node_config(**changes):
    """The NodeConfig of a robot with one camera ('cam') and two joints (STUB_JOINTS),
    joint-position actions at 10 Hz and the task 'stack'; `changes` override parameters."""
    parameters = {
        'model_path': 'unused', 'cameras': ['cam'], 'proprio_sources': ['arm'],
        'proprio': {'arm': {'type': 'joint_state', 'joints': list(STUB_JOINTS)}},
        'action_space': 'joint_position', 'action_names': list(STUB_JOINTS),
        'task': 'stack', 'sync_tolerance': 0.02, 'max_observation_age': 0.5,
        'max_publish_age': 1.0, 'step_period': 0.1, 'rate': 10.0,
    }
    parameters.update(changes)
    return config_from_parameters(parameters)


def fake_header(stamp_ns):
    """A std_msgs/Header stand-in: `stamp.sec`, `stamp.nanosec` of `stamp_ns`."""
    return SimpleNamespace(stamp=SimpleNamespace(sec=stamp_ns // NS_PER_S,
                                                 nanosec=stamp_ns % NS_PER_S))


class FakePolicy:
    """Implements the Policy protocol with closed-form outputs (see the module docstring)."""

    def __init__(self, layout, *, delay=0.0, actions='follow', fail_every=0,
                 future_images=False, record_path='', model_id='fake', default_steps=5):
        if actions not in ACTION_MODES:
            raise ValueError(f'`actions` must be one of {list(ACTION_MODES)}. Got {actions!r}.')
        if delay < 0:
            raise ValueError(f'`delay` must be >= 0. Got {delay!r}.')
        if fail_every < 0:
            raise ValueError(f'`fail_every` must be >= 0. Got {fail_every!r}.')
        self.layout = layout
        self.model_id = model_id
        self.delay = float(delay)
        self.actions_mode = actions
        self.fail_every = int(fail_every)
        self.future_images = bool(future_images)
        self.record_path = record_path
        self.default_steps = default_steps
        self.calls = 0
        self.resets = 0
        self.batches = []  # size of every infer_batch call
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    def infer(self, observation, *, num_steps=None, num_candidates=None, known_actions=None):
        with self._lock:
            self.calls += 1
            call = self.calls
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            concurrent = self.in_flight
        start = time.monotonic()
        try:
            self._check(observation)
            if self.delay:
                time.sleep(self.delay)
            if self.fail_every and call % self.fail_every == 0:
                raise RuntimeError(f'fake failure (fail_every={self.fail_every})')
            return self._output(observation, num_steps, num_candidates, known_actions)
        finally:
            end = time.monotonic()
            with self._lock:
                self.in_flight -= 1
            self._record({'call': call, 'start': start, 'end': end, 'in_flight': concurrent,
                          'seed': observation.seed, 'num_steps': num_steps,
                          'num_candidates': num_candidates,
                          'instruction': observation.instruction,
                          'proprio': np.asarray(observation.proprio).tolist()})

    def infer_batch(self, requests):
        """interface.BatchPolicy: every request's `infer` output, computed together: one
        `delay` for the whole batch (a batched pass costs about one inference), `fail_every`
        counts batches, a request that fails its checks fails alone. Records one line per
        batch ({'batch': size, 'seeds': [...]}); each output has batch_size."""
        with self._lock:
            self.calls += 1
            call = self.calls
            self.batches.append(len(requests))
        start = time.monotonic()
        if self.delay:
            time.sleep(self.delay)
        results = []
        for request in requests:
            try:
                if self.fail_every and call % self.fail_every == 0:
                    raise RuntimeError(f'fake failure (fail_every={self.fail_every})')
                self._check(request.observation)
                output = self._output(request.observation, request.num_steps,
                                      request.num_candidates, request.known_actions)
                results.append(dataclasses.replace(output, batch_size=len(requests)))
            except Exception as error:  # this request's failure only
                results.append(error)
        self._record({'call': call, 'start': start, 'end': time.monotonic(),
                      'batch': len(requests),
                      'seeds': [request.observation.seed for request in requests]})
        return results

    def reset(self):
        with self._lock:
            self.resets += 1
        self._record({'reset': self.resets})

    def _check(self, observation):
        layout = self.layout
        if set(observation.images) != set(layout.cameras):
            raise ValueError(f'observation cameras {sorted(observation.images)} are not the '
                             f'layout cameras {sorted(layout.cameras)}')
        for name, image in observation.images.items():
            image = np.asarray(image)
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f'camera {name}: expected uint8 (H, W, 3), got {image.dtype} '
                                 f'{image.shape}')
        proprio = np.asarray(observation.proprio)
        if proprio.shape != (layout.proprio_dim,):
            raise ValueError(f'proprio has shape {proprio.shape}, expected '
                             f'({layout.proprio_dim},)')

    def _output(self, observation, num_steps, num_candidates, known_actions=None):
        layout = self.layout
        K, d = layout.chunk_size, layout.action_dim
        proprio = np.asarray(observation.proprio, dtype=np.float64)
        base = proprio[np.arange(d) % proprio.size]  # (d,)
        actions = base[None, :] + 0.001 * np.arange(K)[:, None]  # (K, d)
        if self.actions_mode == 'nan':
            actions[K // 2, d - 1] = np.nan
        elif self.actions_mode == 'huge':
            actions = actions + 1e3
        conditioned = 0
        if known_actions is not None:
            known = np.asarray(known_actions, dtype=np.float64).reshape(-1, d)
            conditioned = min(len(known), K)
            actions[:conditioned] = known[:conditioned]
        first = np.asarray(observation.images[layout.cameras[0]])
        value = float(first[:, :, 0].mean() / 255.0)
        candidates = num_candidates or 1
        candidate_values = ()
        selected = 0
        if candidates > 1:
            candidate_values = tuple(min(1.0, value + 0.01 * i) for i in range(candidates))
            selected = candidates - 1
            value = candidate_values[selected]
        future = None
        if self.future_images:
            future = {name: np.ascontiguousarray(np.asarray(image)[::-1])
                      for name, image in observation.images.items()}
        return PolicyOutput(actions=actions.astype(np.float32), value=value,
                            future_proprio=proprio.copy(), future_images=future,
                            timings={'total': self.delay}, seed=observation.seed,
                            num_steps=num_steps or self.default_steps,
                            candidate_values=candidate_values, selected_candidate=selected,
                            num_conditioned_steps=conditioned)

    def _record(self, entry):
        if not self.record_path:
            return
        line = json.dumps(entry) + '\n'
        with self._lock, open(self.record_path, 'a') as stream:
            stream.write(line)


def load_fake_policy(model_path, *, device='auto', dtype='auto', decode_future_images=False):
    """Policy factory: a FakePolicy described by a YAML file (or dir/fake_policy.yaml).

    decode_future_images: the node's publish_future_images; the file's `future_images` wins.
    """
    path = os.path.join(model_path, 'fake_policy.yaml') if os.path.isdir(model_path) else (
        model_path)
    try:
        with open(path) as stream:
            data = yaml.safe_load(stream) or {}
    except OSError as error:
        raise ValueError(f'cannot read fake policy file {path}: {error.strerror}') from None
    if not isinstance(data, dict) or 'layout' not in data:
        raise ValueError(f'{path}: expected a mapping with a `layout` key.')
    data = dict(data)
    layout = LatentLayout.from_dict(data.pop('layout'), source=f'{path}: layout')
    known = {'delay', 'actions', 'fail_every', 'future_images', 'record_path', 'model_id'}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f'{path}: unknown key(s) {unknown}; known keys are '
                         f'{sorted(known | {"layout"})}.')
    data.setdefault('model_id', f'fake-{layout.name}')
    data.setdefault('future_images', bool(decode_future_images))
    return FakePolicy(layout, **data)
