"""Opt-in speed-ups around a network: torch.compile, CUDA-graph replay, and host-sync audits.

Every wrapper here follows the network protocol of ``cosmos_policy_ros.engine.denoiser``
(``net(x, timesteps, condition_mask, text_embedding) -> F`` with ``.dtype`` and ``.device``), so
it drops in wherever a network goes (``generate``, ``ConditionedDenoiser``, the policy facade):

- ``compile_network(net, ...)`` -> ``CompiledNetwork``: ``torch.compile`` of the whole forward
  (for ``CosmosDiT``: the adapter, the per-frame AdaLN and bf16 parity patches and the diffusers
  transformer, in one graph with no graph break). Compilation is lazy: the first call for each
  input signature compiles (seconds to minutes); ``first_call_seconds`` keeps those times
  visible and ``warmup`` triggers it on purpose (at start-up, not at the first control tick).
- ``CUDAGraphNetwork(net, ...)``: captures one forward per input signature into a
  ``torch.cuda.CUDAGraph`` with static input buffers and replays it (inputs are copied into the
  buffers; a new shape captures a new graph). Removes the per-kernel launch cost, which matters
  on Jetson-class CPUs. CUDA only.
- ``AccelerationConfig`` + ``accelerate(net, config)``: the two above and the attention
  backend (``set_attention_backend``) from one validated config (YAML/ROS parameters), composed
  in the right order.
- ``graph_breaks(net, *inputs)``: what ``torch._dynamo.explain`` reports for a network.
- ``HostSyncCounter``: counts the Python-level tensor-to-host conversions (``.item()``,
  ``bool(t)``, ``.tolist()``, ``.cpu()``, ...) that stall a GPU pipeline; the sampler loop is
  tested to make none per step.
"""
from collections import OrderedDict
import contextlib
from dataclasses import dataclass, fields
import logging
import threading
import time
from typing import Optional, Tuple

import torch

from cosmos_policy_ros.config_files import from_mapping
from cosmos_policy_ros.engine.denoiser import check_net

LOGGER = logging.getLogger(__name__)

# diffusers attention backends that compute exact softmax attention and download nothing:
# PyTorch SDPA (automatic choice, or one kernel forced), flash-attn 2 / 3, xFormers. (The
# '*_hub' backends fetch kernels at run time; Sage attention quantizes q/k.)
ATTENTION_BACKENDS = ('native', '_native_flash', '_native_efficient', '_native_cudnn',
                      '_native_math', 'flash', '_flash_3', 'xformers')
COMPILE_MODES = ('default', 'reduce-overhead', 'max-autotune', 'max-autotune-no-cudagraphs')
# Modes in which inductor records CUDA graphs itself (do not wrap those in CUDAGraphNetwork).
CUDAGRAPH_COMPILE_MODES = ('reduce-overhead', 'max-autotune')


# --- torch.compile -------------------------------------------------------------------------------
@dataclass(frozen=True)
class CompileConfig:
    """How `compile_network` calls torch.compile.

    mode: 'default', 'reduce-overhead' (inductor's own CUDA graphs), 'max-autotune' (autotuned
        GEMMs + CUDA graphs, long compile) or 'max-autotune-no-cudagraphs'.
    backend: torch.compile backend ('inductor'; 'eager' / 'aot_eager' only trace, for debugging).
    dynamic: False compiles one graph per input shape (the policy has fixed shapes per layout
        and batch); True asks for shape-generic kernels.
    fullgraph: True raises at the first call if the forward has a graph break (CosmosDiT has
        none); False lets dynamo split the forward instead.
    """

    mode: str = 'default'
    backend: str = 'inductor'
    dynamic: bool = False
    fullgraph: bool = True

    def __post_init__(self):
        if self.mode not in COMPILE_MODES:
            raise ValueError(f'`mode` must be one of {list(COMPILE_MODES)}. Got {self.mode!r}.')
        if not isinstance(self.backend, str) or not self.backend:
            raise ValueError(f'`backend` must be a torch.compile backend name. '
                             f'Got {self.backend!r}.')
        for field in ('dynamic', 'fullgraph'):
            if not isinstance(getattr(self, field), bool):
                raise ValueError(f'`{field}` must be true or false. Got {getattr(self, field)!r}.')


class CompiledNetwork:
    """A protocol network whose forward runs through torch.compile.

    Calls go to the compiled forward; `eager` is the original network (same weights).
    `first_call_seconds` maps each input signature (shapes, dtypes, devices) seen so far to the
    wall time of its first call, which is where torch.compile compiles: the compile time of that
    shape plus one forward.
    """

    def __init__(self, net, config=CompileConfig(), *, clock=time.perf_counter):
        check_net(net)
        if not isinstance(config, CompileConfig):
            raise TypeError(f'`config` must be a CompileConfig, got {type(config).__name__}.')
        self.eager = net
        self.config = config
        self.first_call_seconds = {}
        self._clock = clock
        self._lock = threading.Lock()
        target = net if isinstance(net, torch.nn.Module) else net.__call__
        mode = None if config.mode == 'default' else config.mode
        self._compiled = torch.compile(target, mode=mode, backend=config.backend,
                                       dynamic=config.dynamic, fullgraph=config.fullgraph)

    @property
    def dtype(self):
        return self.eager.dtype

    @property
    def device(self):
        return self.eager.device

    def __call__(self, *inputs):
        """F = net(x, timesteps, condition_mask, text_embedding), compiled (see the protocol)."""
        key = input_signature(inputs)
        if key in self.first_call_seconds:
            return self._compiled(*inputs)
        with self._lock:  # one compile per signature even with several calling threads
            start = self._clock()
            output = self._compiled(*inputs)
            if key not in self.first_call_seconds:
                if isinstance(output, torch.Tensor) and output.is_cuda:
                    torch.cuda.synchronize(output.device)  # the forward's GPU time too
                self.first_call_seconds[key] = self._clock() - start
                LOGGER.info('torch.compile (%s, mode %s) of %s for %s: first call %.1f s',
                            self.config.backend, self.config.mode, type(self.eager).__name__,
                            _describe_signature(key), self.first_call_seconds[key])
        return output

    def warmup(self, *inputs):
        """Compile for these inputs now (one forward without autograd, as the sampler calls).

        Returns the seconds the first call of this signature took (compile time + one forward).
        """
        with torch.no_grad():
            self(*inputs)
            return self.first_call_seconds[input_signature(inputs)]


def compile_network(net, *, mode='default', backend='inductor', dynamic=False, fullgraph=True,
                    clock=time.perf_counter):
    """`net` behind torch.compile: a CompiledNetwork (lazy: the first call per shape compiles).

    net: a protocol network, typically a CosmosDiT (any nn.Module or callable with .dtype and
    .device works). See CompileConfig for the options. The result is callable like `net`, has
    its .dtype and .device, and equals it in float32 to rounding (tested on CPU); in bf16 it
    agrees within bf16 noise (inductor fuses and may keep fp32 intermediates).
    """
    config = CompileConfig(mode=mode, backend=backend, dynamic=dynamic, fullgraph=fullgraph)
    return CompiledNetwork(net, config, clock=clock)


@dataclass(frozen=True)
class GraphBreakReport:
    """What torch._dynamo.explain found: graphs, graph breaks and their reasons."""

    graph_count: int
    break_count: int
    reasons: Tuple[str, ...]

    def __str__(self):
        lines = [f'{self.graph_count} graph(s), {self.break_count} graph break(s)']
        lines += [f'  - {reason}' for reason in self.reasons]
        return '\n'.join(lines)


def graph_breaks(net, *inputs):
    """Trace net(*inputs) with torch._dynamo.explain (no compilation) and report graph breaks.

    Each reason names the source line that broke the graph. Runs the forward once in eager
    mode; a few seconds for the tiny DiT on a CPU.
    """
    target = net if isinstance(net, torch.nn.Module) else net.__call__
    with torch.no_grad():
        explanation = torch._dynamo.explain(target)(*inputs)
    reasons = []
    for record in explanation.break_reasons:
        where = ''
        if record.user_stack:
            frame = record.user_stack[-1]
            where = f' at {frame.filename}:{frame.lineno}'
        reasons.append(f'{record.reason}{where}')
    return GraphBreakReport(explanation.graph_count, explanation.graph_break_count,
                            tuple(reasons))


def input_signature(inputs):
    """(shape, dtype, device) of each tensor input (other values by type): a cache key."""
    key = []
    for value in inputs:
        if isinstance(value, torch.Tensor):
            key.append((tuple(value.shape), value.dtype, value.device))
        else:
            key.append(type(value).__name__)
    return tuple(key) + (torch.is_grad_enabled(),)


def _describe_signature(key):
    shapes = [str(entry[0]) if isinstance(entry, tuple) else entry for entry in key[:-1]]
    return 'inputs ' + ', '.join(shapes)


# --- CUDA graphs ---------------------------------------------------------------------------------
class CUDAGraphCapture:
    """Records CUDA graphs with torch.cuda.graphs (the default capture of CUDAGraphNetwork).

    warmup(fn, iterations) runs fn on a side stream, as the torch.cuda.graphs documentation
    requires before a capture (lazy initialisation, cuBLAS workspaces, autotuning);
    record(fn) -> (graph, output) captures one call of fn into a torch.cuda.CUDAGraph whose
    private memory pool holds every tensor the call allocates, `output` included.
    """

    def __init__(self, device):
        device = torch.device(device)
        if device.type != 'cuda':
            raise ValueError(f'CUDA graphs need a network on a CUDA device; net.device is '
                             f'{device}. Move the network to the GPU (net.to("cuda")) or turn '
                             f'`cuda_graphs` off.')
        if not torch.cuda.is_available():
            raise ValueError('CUDA graphs need CUDA, but torch.cuda.is_available() is False '
                             f'(torch {torch.__version__}). Turn `cuda_graphs` off.')
        self.device = device

    def warmup(self, fn, iterations):
        with torch.cuda.device(self.device):
            current = torch.cuda.current_stream()
            side = torch.cuda.Stream()
            side.wait_stream(current)
            with torch.cuda.stream(side):
                for _ in range(iterations):
                    fn()
            current.wait_stream(side)

    def record(self, fn):
        with torch.cuda.device(self.device):
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                output = fn()
        return graph, output


@dataclass
class _Graph:
    graph: object
    inputs: Tuple[torch.Tensor, ...]
    output: torch.Tensor


class CUDAGraphNetwork:
    """Replays one captured CUDA graph of `net` per input signature.

    net: a protocol network on a CUDA device (e.g. a CosmosDiT, or a CompiledNetwork in mode
        'default' / 'max-autotune-no-cudagraphs').
    warmup_iterations: eager calls on a side stream before each capture.
    max_graphs: captured signatures kept (least recently used dropped first); each graph keeps
        the activation memory of one forward.
    clone_output: return a copy of the static output buffer (default). With False the result
        is the buffer itself, overwritten by the next call of the same signature: use it only
        if you consume it before calling again (the denoiser does).
    capture: the object that warms up and records graphs (default CUDAGraphCapture(net.device),
        which raises ValueError on a CPU network); tests pass a fake.

    A call copies the inputs into the static buffers of its signature (capturing a graph first
    if the signature is new: `warmup_iterations` eager calls, then one recorded call) and
    replays the graph. Python-side state of the network is frozen into a graph at capture: call
    `reset()` after changing weights by assignment (in-place copies are seen), the parity or
    AdaLN options, or the attention backend.
    """

    def __init__(self, net, *, warmup_iterations=3, max_graphs=4, clone_output=True,
                 capture=None):
        check_net(net)
        for field, value, low in (('warmup_iterations', warmup_iterations, 1),
                                  ('max_graphs', max_graphs, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f'`{field}` must be an integer >= {low}. Got {value!r}.')
        self.net = net
        self.warmup_iterations = warmup_iterations
        self.max_graphs = max_graphs
        self.clone_output = bool(clone_output)
        self._capture = CUDAGraphCapture(net.device) if capture is None else capture
        self._graphs = OrderedDict()
        self._lock = threading.Lock()
        self.captures = 0  # graphs recorded so far (a new signature or a dropped one)

    @property
    def dtype(self):
        return self.net.dtype

    @property
    def device(self):
        return self.net.device

    @property
    def signatures(self):
        """Input signatures with a captured graph, least recently used first."""
        return tuple(self._graphs)

    def reset(self):
        """Drop every captured graph (and its memory)."""
        with self._lock:
            self._graphs.clear()

    def __call__(self, *inputs):
        """F = net(x, timesteps, condition_mask, text_embedding) by graph replay."""
        for index, value in enumerate(inputs):
            if not isinstance(value, torch.Tensor):
                raise TypeError(f'CUDA-graph replay takes tensor inputs only; input {index} is '
                                f'{type(value).__name__}.')
        key = input_signature(inputs)
        with self._lock, torch.no_grad():
            entry = self._graphs.get(key)
            if entry is None:
                entry = self._record(key, inputs)
            else:
                self._graphs.move_to_end(key)
            for static, value in zip(entry.inputs, inputs):
                static.copy_(value)
            entry.graph.replay()
            return entry.output.clone() if self.clone_output else entry.output

    def _record(self, key, inputs):
        # Static buffers live outside the graph's pool, so they outlive any other capture.
        static = tuple(torch.empty(value.shape, dtype=value.dtype, device=self.net.device)
                       for value in inputs)
        for buffer, value in zip(static, inputs):
            buffer.copy_(value)
        self._capture.warmup(lambda: self.net(*static), self.warmup_iterations)
        graph, output = self._capture.record(lambda: self.net(*static))
        if not isinstance(output, torch.Tensor):
            raise TypeError(f'the captured network must return a tensor, got '
                            f'{type(output).__name__}.')
        while len(self._graphs) >= self.max_graphs:
            self._graphs.popitem(last=False)
        entry = _Graph(graph, static, output)
        self._graphs[key] = entry
        self.captures += 1
        LOGGER.info('captured a CUDA graph of %s for %s', type(self.net).__name__,
                    _describe_signature(key))
        return entry


# --- one config for both -------------------------------------------------------------------------
@dataclass(frozen=True)
class AccelerationConfig:
    """Which speed-ups `accelerate` applies. Everything is off by default (plain eager).

    compile: torch.compile the network (see CompileConfig for mode, backend, dynamic,
        fullgraph). Compiling takes seconds to minutes per input shape at the first call.
    cuda_graphs: replay captured CUDA graphs (CUDA networks only; see CUDAGraphNetwork). With
        compile on, use mode 'default' or 'max-autotune-no-cudagraphs' ('reduce-overhead' and
        'max-autotune' already capture CUDA graphs inside inductor).
    attention_backend: None (diffusers' default: PyTorch SDPA picks flash / memory-efficient /
        cuDNN / math itself, or the DIFFUSERS_ATTN_BACKEND environment variable) or one of
        ATTENTION_BACKENDS (see set_attention_backend: it is process-wide).
    """

    compile: bool = False
    compile_mode: str = 'default'
    compile_backend: str = 'inductor'
    dynamic: bool = False
    fullgraph: bool = True
    cuda_graphs: bool = False
    cuda_graph_warmup: int = 3
    max_cuda_graphs: int = 4
    attention_backend: Optional[str] = None

    def __post_init__(self):
        for field in ('compile', 'cuda_graphs'):
            if not isinstance(getattr(self, field), bool):
                raise ValueError(f'`{field}` must be true or false. Got {getattr(self, field)!r}.')
        self.compile_config()  # validates mode, backend, dynamic, fullgraph
        for field in ('cuda_graph_warmup', 'max_cuda_graphs'):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f'`{field}` must be an integer >= 1. Got {value!r}.')
        if self.attention_backend is not None and self.attention_backend not in ATTENTION_BACKENDS:
            raise ValueError(f'`attention_backend` must be null or one of '
                             f'{list(ATTENTION_BACKENDS)}. Got {self.attention_backend!r}.')
        if self.compile and self.cuda_graphs and self.compile_mode in CUDAGRAPH_COMPILE_MODES:
            raise ValueError(f'`compile_mode` {self.compile_mode!r} already records CUDA graphs; '
                             f'with `cuda_graphs` true use compile_mode "default" or '
                             f'"max-autotune-no-cudagraphs" (or turn `cuda_graphs` off).')

    def compile_config(self):
        return CompileConfig(mode=self.compile_mode, backend=self.compile_backend,
                             dynamic=self.dynamic, fullgraph=self.fullgraph)

    @classmethod
    def from_dict(cls, data, *, source='acceleration'):
        """Build from a mapping of the fields (YAML / ROS parameters); unknown keys are errors."""
        return from_mapping(cls, data, source=source,
                            optional=[field.name for field in fields(cls)])


def accelerate(net, config=AccelerationConfig()):
    """`net` with the speed-ups of `config` applied (the same object when all are off).

    Order: the attention backend first, torch.compile inside, CUDA-graph replay outside (the
    graph records the compiled kernels). Raises ValueError for cuda_graphs on a CPU network or
    an attention backend that is not installed.
    """
    if not isinstance(config, AccelerationConfig):
        raise TypeError(f'`config` must be an AccelerationConfig, got {type(config).__name__}.')
    check_net(net)
    if config.cuda_graphs:
        CUDAGraphCapture(net.device)  # fail before compiling, with the clear error
    if config.attention_backend is not None:
        set_attention_backend(net, config.attention_backend)
    if config.compile:
        net = CompiledNetwork(net, config.compile_config())
    if config.cuda_graphs:
        net = CUDAGraphNetwork(net, warmup_iterations=config.cuda_graph_warmup,
                               max_graphs=config.max_cuda_graphs)
    return net


def set_attention_backend(net, name):
    """Make diffusers run the attention of `net` (a CosmosDiT or a diffusers model) with `name`.

    name: one of ATTENTION_BACKENDS; 'native' is PyTorch SDPA with its automatic kernel choice.
    Process-wide: the Cosmos attention processor reads diffusers' active backend, so this
    affects every diffusers model in the process, and diffusers' ``reset_attention_backend``
    does not undo it (call this again with 'native'). A captured CUDA graph or a compiled graph
    keeps the backend it was made with. Raises ValueError if the backend's package (flash-attn,
    xformers) is missing.
    """
    if name not in ATTENTION_BACKENDS:
        raise ValueError(f'`attention_backend` must be one of {list(ATTENTION_BACKENDS)}. '
                         f'Got {name!r}.')
    model = getattr(net, 'transformer', net)
    if not hasattr(model, 'set_attention_backend'):
        raise TypeError(f'{type(net).__name__} is not a diffusers model (or a CosmosDiT): '
                        f'its attention backend cannot be set.')
    try:
        model.set_attention_backend(name)
    except (RuntimeError, ImportError) as error:
        raise ValueError(f'`attention_backend` {name!r} is not usable here: {error}') from None


# --- host synchronisation audit ------------------------------------------------------------------
# Tensor methods that copy a value to the host and, for a CUDA tensor, wait for the GPU.
SYNC_METHODS = ('item', 'tolist', 'numpy', 'cpu', 'nonzero', '__bool__', '__float__',
                '__int__', '__index__', '__array__')


class HostSyncCounter:
    """Context manager counting Python-level tensor -> host conversions while it is active.

    Counts calls of the Tensor methods in SYNC_METHODS (``.item()``, ``bool(t)``, ``float(t)``,
    ``int(t)``, ``.tolist()``, ``.numpy()``, ``.cpu()``, ``.nonzero()``, numpy conversion) and of
    ``torch.nonzero``, from any thread, on any device. Each one is a host synchronisation for a
    CUDA tensor. ``counts`` maps method name -> calls; ``total`` is their sum. Conversions made
    inside C++ (not through these Python entry points) are not seen: on a GPU use
    ``torch.cuda.set_sync_debug_mode('error')`` as well. The original methods are restored on
    exit. Not for use inside torch.compile'd code.
    """

    def __init__(self):
        self.counts = {}
        self._saved = []
        self._lock = threading.Lock()

    @property
    def total(self):
        return sum(self.counts.values())

    def __enter__(self):
        for name in SYNC_METHODS:
            own = name in torch.Tensor.__dict__
            original = getattr(torch.Tensor, name)
            self._saved.append((torch.Tensor, name, own, original))
            setattr(torch.Tensor, name, self._counting(name, original))
        self._saved.append((torch, 'nonzero', True, torch.nonzero))
        torch.nonzero = self._counting('torch.nonzero', torch.nonzero)
        return self

    def __exit__(self, *exc):
        while self._saved:
            owner, name, own, original = self._saved.pop()
            if own:
                setattr(owner, name, original)
            else:
                delattr(owner, name)
        return False

    def _counting(self, name, original):
        counts, lock = self.counts, self._lock

        def counted(*args, **kwargs):
            with lock:
                counts[name] = counts.get(name, 0) + 1
            return original(*args, **kwargs)

        counted.__name__ = getattr(original, '__name__', name)
        return counted


@contextlib.contextmanager
def count_host_syncs():
    """``with count_host_syncs() as counter: ...`` then ``counter.total`` (HostSyncCounter)."""
    with HostSyncCounter() as counter:
        yield counter
