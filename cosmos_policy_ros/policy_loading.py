"""Loading a node's policy and warming it up (numpy + stdlib; the factory brings its own torch).

``import_factory(spec)``: a 'module:function' string to the callable;
``load_policy_for(config)``: the factory called as the node calls it;
``load_checked_policy(config)``: the same, checked to be a Policy, every failure a ValueError
naming the parameter; ``warm_up(policy, config, binding)``: the configure-time
inferences on a synthetic observation, with their latencies; ``load_control_loop(config)``:
all of it, what the node's configure does (the ControlLoop and the warm-up latencies).
"""
import importlib
import time

import numpy as np

from cosmos_policy_ros.control_loop import ControlLoop
from cosmos_policy_ros.interface import Observation
from cosmos_policy_ros.node_config import FACTORY_PATTERN

WARMUP_TEXT_SHAPE = (512, 1024)  # T5 tokens x width of the released models
POLICY_ATTRIBUTES = ('layout', 'model_id', 'infer', 'reset')


def import_factory(spec):
    """Resolve a 'package.module:function' string to the callable (errors name `spec`)."""
    if not isinstance(spec, str) or not FACTORY_PATTERN.match(spec):
        raise ValueError(f"`policy_factory` must look like 'package.module:function'. "
                         f'Got {spec!r}.')
    module_name, function_name = spec.split(':')
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f'`policy_factory` {spec!r}: cannot import {module_name!r}: '
                         f'{error}') from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise ValueError(f'`policy_factory` {spec!r}: {module_name!r} has no callable '
                         f'{function_name!r}.')
    return function


def load_policy_for(config):
    """The policy a node with `config` runs: `policy_factory` called as the node calls it.

    factory(model_path, device=..., dtype=..., decode_future_images=publish_future_images,
    [acceleration={...} when compile_network, cuda_graphs or attention_backend is set]).
    """
    factory = import_factory(config.policy_factory)
    return factory(config.model_path, device=config.device, dtype=config.dtype,
                   **factory_options(config))


def factory_options(config):
    """The keyword arguments besides device and dtype that the factory gets (load_policy_for)."""
    options = {'decode_future_images': config.publish_future_images}
    if config.acceleration() is not None:
        options['acceleration'] = config.acceleration()
    return options


def load_checked_policy(config):
    """The policy of `config`, checked to be a Policy; ValueError naming the parameter."""
    import_factory(config.policy_factory)  # a bad name fails here, naming the parameter
    try:
        policy = load_policy_for(config)
    except ValueError as error:
        raise ValueError(f'`model_path` {config.model_path!r}: {error}') from None
    except Exception as error:
        raise ValueError(f'loading the policy from `model_path` {config.model_path!r} '
                         f'failed: {type(error).__name__}: {error}') from None
    for attribute in POLICY_ATTRIBUTES:
        if not hasattr(policy, attribute):
            raise ValueError(f'`policy_factory` {config.policy_factory!r} returned '
                             f'{type(policy).__name__}, which has no {attribute!r}.')
    return policy


def load_control_loop(config, *, check=lambda: None):
    """The warmed-up ControlLoop of `config`: (loop, warm-up latencies in seconds).

    Loads the policy, checks the configuration against its layout, warms it up. check(): called
    between the steps and before each warm-up inference (raises to stop, e.g. on shutdown).
    Every failure is a ValueError naming the parameter.
    """
    policy = load_checked_policy(config)
    loop = ControlLoop(policy, config)
    check()
    latencies = warm_up(policy, config, loop.binding, check=check)
    check()
    return loop, latencies


def warm_up(policy, config, binding, *, check=lambda: None, clock=time.perf_counter):
    """Run `warmup_iterations` inferences on a synthetic observation; returns the latencies.

    check(): called before each iteration (raises to stop, e.g. on shutdown). Raises ValueError
    when an inference fails, returns the wrong shape, or the median latency (first excluded)
    exceeds `max_warmup_latency`. The policy is reset afterwards.
    """
    layout = policy.layout
    size = layout.image_size
    observation = Observation(
        images={name: np.zeros((size, size, 3), np.uint8) for name in layout.cameras},
        proprio=np.zeros(layout.proprio_dim), instruction=config.task or None,
        # Without a task yet, an all-zero T5 embedding (what padding tokens hold) is a
        # valid input for any model: it only has to exercise the network.
        text_embedding=None if config.task else np.zeros(WARMUP_TEXT_SHAPE, np.float32),
        seed=config.seed)
    latencies = []
    for _ in range(config.warmup_iterations):
        check()
        start = clock()
        try:
            output = policy.infer(observation, num_steps=config.num_denoising_steps,
                                  num_candidates=config.num_candidates)
        except Exception as error:
            hint = '' if config.task else ' (is `task` an instruction the model knows?)'
            raise ValueError(f'warm-up inference failed{hint}: {type(error).__name__}: '
                             f'{error}') from None
        latencies.append(clock() - start)
        shape = np.shape(output.actions)
        if shape != (binding.horizon, len(binding.action_names)):
            raise ValueError(f'the policy returned actions of shape {shape}; its layout '
                             f'promises ({binding.horizon}, {len(binding.action_names)}).')
    policy.reset()
    median = steady_median(latencies)
    if latencies and config.max_warmup_latency and median > config.max_warmup_latency:
        raise ValueError(f'warm-up latency {median:.3f} s exceeds `max_warmup_latency` '
                         f'{config.max_warmup_latency:g} s (fewer num_denoising_steps or a '
                         f'faster device?)')
    return tuple(latencies)


def steady_median(latencies):
    """Median latency after the first (compiling, caching) one; the lower middle; NaN if none."""
    if not latencies:
        return float('nan')
    steady = sorted(latencies[1:] or latencies)
    return steady[(len(steady) - 1) // 2]
