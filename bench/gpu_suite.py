"""The GPU suite: the 2B DiT and CosmosPolicy.infer at the released sizes, in one short run.

    python bench/run.py --suite gpu --device cuda          # CUDA machine: ~5-7 min, H200
    python bench/run.py --suite gpu --device cpu --quick   # same code, tiny sizes (rehearsal)

Random weights at the released dimensions: the 2B DiT in bf16 and the Wan2.1 VAE, LIBERO /
RoboCasa / ALOHA latent shapes at 224 px with 512 T5 tokens, full-size (480 x 640) camera
images. Sections, in order of value, each written to the result file as soon as it is done (a
run stopped at its time limit still leaves every finished section):

  environment   GPU, versions, a bf16 matmul rate (the ceiling the forwards are read against)
  dit_forward   one DiT forward per layout: eager vs CUDA-graph replay; FLOP rate
  infer         CosmosPolicy.infer end to end, LIBERO 1 / 5 / 10 steps and RoboCasa / ALOHA at
                their default steps: eager vs CUDA graphs; stage times; peak memory
  best_of_n     infer(num_candidates=8) vs one infer vs 8 sequential infers (eager, graphs)
  fleet         the policy server's batched ticks: infer_batch of 1 / 2 / 4 / 8 robots'
                observations (each its own seed) at the LIBERO and ALOHA shapes, eager;
                chunks/s, each robot's chunk against its single infer, peak memory
  attention     every attention backend of engine.acceleration that runs here, vs native
  compile       torch.compile (LIBERO shape only: one compile) and compile + CUDA graphs,
                forward and infer
  pytest_gpu    ``pytest -m gpu test/engine`` in a subprocess (with the time left)

A section whose estimated cost exceeds the time left of ``--budget`` is skipped with that reason.
Writes <out>/gpu-<device>.json and <out>/gpu-<device>.md (the table for the README, with the
reference deployment's published figures beside it) and prints a short summary.
"""
import json
import os
from pathlib import Path
import re
import subprocess
import sys
import time

import harness
from model_cost import dit_flops
import numpy as np
import torch
import workloads

from cosmos_policy_ros.engine.acceleration import (
    ATTENTION_BACKENDS, compile_network, CUDAGraphNetwork, set_attention_backend)
from cosmos_policy_ros.engine.images import ImagePipelineConfig
from cosmos_policy_ros.engine.policy import CosmosPolicy, DEFAULT_STEPS
from cosmos_policy_ros.engine.sampling import SamplerConfig
from cosmos_policy_ros.engine.synthetic_checkpoints import dataset_statistics, t5_embeddings
from cosmos_policy_ros.engine.text import TextEmbeddings
from cosmos_policy_ros.engine.vae import CosmosVAE
from cosmos_policy_ros.interface import InferenceRequest, Observation
from cosmos_policy_ros.normalization import NormStats

LAYOUTS = ('libero', 'robocasa', 'aloha')
STEPS = (1, 5, 10)
CANDIDATES = 8
INSTRUCTION = 'put the bowl on the plate'
# The reference deployment's published figures (second-hand): s per chunk on an H100, GB.
REFERENCE = {'device': 'H100', 'infer_seconds': {1: 0.16, 5: 0.61, 10: 0.95},
             'memory_gb': {'libero': 6.8, 'robocasa': 8.9, 'aloha': 6.0}}
TARGETS = {'libero_5_steps_seconds': 0.15, 'peak_memory_gb': 5.0, 'best_of_8_over_one': 3.0,
           'fleet_batch8_throughput_over_batch1': 5.0}
HIGHER_IS_BETTER = ('fleet_batch8_throughput_over_batch1',)  # the others are upper bounds
FLEET_BATCHES = (1, 2, 4, 8)
FLEET_LAYOUTS = ('libero', 'aloha')
# Rough cost of each section on an H200 (seconds), for the budget check; CPU quick is cheaper.
ESTIMATES = {'environment': 10, 'dit_forward': 30, 'infer': 60, 'best_of_n': 45,
             'fleet': 90, 'attention': 20, 'compile': 150, 'pytest_gpu': 60}
SECTIONS = tuple(ESTIMATES)


def device_slug(device):
    """'nvidia-h200' for an NVIDIA H200, 'cpu' for the CPU: the result file's <device>."""
    if device.type != 'cuda':
        return 'cpu'
    return re.sub(r'[^a-z0-9]+', '-', torch.cuda.get_device_name(device).lower()).strip('-')


class Recording:
    """A protocol network that remembers the inputs of its last call (the policy's real ones)."""

    def __init__(self, net):
        self.net, self.inputs = net, None

    @property
    def dtype(self):
        return self.net.dtype

    @property
    def device(self):
        return self.net.device

    def __call__(self, *inputs):
        self.inputs = inputs
        return self.net(*inputs)


class Suite:
    """One run of the GPU suite: shared networks, the record, partial writes."""

    def __init__(self, ctx, out_dir, *, budget, skip=(), clock=time.perf_counter,
                 compile_backend=None):
        self.ctx, self.out_dir, self.budget, self.skip = ctx, Path(out_dir), budget, set(skip)
        self.clock, self.start = clock, clock()
        self.full = not ctx.quick
        self.dit_preset = '2b' if self.full else 'tiny'
        self.vae_preset = 'wan2.1' if self.full else 'tiny'
        self.image_size = 224 if self.full else 64
        self.compile_backend = compile_backend or ('inductor' if ctx.cuda or self.full
                                                   else 'aot_eager')
        self.slug = device_slug(ctx.device) + ('-quick' if ctx.quick else '')
        self.record = {
            'name': f'gpu-{self.slug}', 'suite': 'gpu', 'device': str(ctx.device),
            'title': '2B DiT and CosmosPolicy.infer at released sizes (bench/gpu_suite.py)',
            'dtype': ctx.dtype_name, 'quick': ctx.quick, 'repetitions': ctx.repetitions,
            'preset': f'{self.dit_preset} DiT + {self.vae_preset} VAE (random weights), '
                      f'{self.image_size} px, {workloads.TEXT_TOKENS} T5 tokens, 480x640 '
                      f'camera images',
            'timing': 'median of interleaved repetitions after warm-up, milliseconds',
            'reference': REFERENCE, 'targets': TARGETS, 'budget_seconds': budget,
            'machine': harness.machine_info(ctx.device), 'sections': {}}
        self.dit = self.vae = None
        self.policies = {}
        self.graphed = None

    # --- bookkeeping -----------------------------------------------------------------------------
    @property
    def json_path(self):
        return self.out_dir / f'gpu-{self.slug}.json'

    @property
    def markdown_path(self):
        return self.out_dir / f'gpu-{self.slug}.md'

    def elapsed(self):
        return self.clock() - self.start

    def write(self):
        self.record['elapsed_seconds'] = round(self.elapsed(), 1)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.json_path.write_text(json.dumps(self.record, indent=2, default=_json_value) + '\n')
        self.markdown_path.write_text(markdown(self.record))

    def run(self, sections=SECTIONS):
        for name in sections:
            left = self.budget - self.elapsed()
            estimate = ESTIMATES[name] * (1 if self.ctx.cuda or self.full else 0.2)
            if name in self.skip:
                result = {'status': 'skipped', 'reason': '--skip'}
            elif left < estimate:
                result = {'status': 'skipped',
                          'reason': f'budget: {left:.0f} s left, estimated {estimate:.0f} s'}
            else:
                print(f'[gpu] {name} ({left:.0f} s of the budget left)', flush=True)
                began = self.clock()
                try:
                    with torch.no_grad():
                        result = getattr(self, f'section_{name}')()
                    result.setdefault('status', 'ok')
                except Exception as error:  # one failing section must not hide the others
                    import traceback
                    traceback.print_exc()
                    result = {'status': 'error', 'reason': f'{type(error).__name__}: {error}'}
                result['seconds'] = round(self.clock() - began, 1)
            self.record['sections'][name] = result
            print(f'[gpu] {name}: {result["status"]} {result.get("headline", "")}'
                  f'{result.get("reason", "")}', flush=True)
            self.write()
        self.record['targets_met'] = targets_met(self.record)
        self.record['headline'] = '; '.join(
            f'{name} {entry["value"]:.3g} ({_met(entry["met"])})'
            for name, entry in self.record['targets_met'].items()) or 'no target measured'
        self.write()
        return self.record

    # --- shared objects --------------------------------------------------------------------------
    def networks(self):
        if self.dit is None:
            self.dit = workloads.dit(self.dit_preset, self.ctx)
            torch.manual_seed(1)
            default = torch.get_default_dtype()
            torch.set_default_dtype(self.ctx.dtype)
            try:
                with torch.device(self.ctx.device):
                    vae = CosmosVAE(self.vae_preset)
            finally:
                torch.set_default_dtype(default)
            self.vae = vae.eval().to(device=self.ctx.device, dtype=self.ctx.dtype)
            for parameter in self.vae.parameters():
                parameter.requires_grad_(False)
        return self.dit, self.vae

    def policy(self, name, net=None, steps=None):
        """A CosmosPolicy for layout `name` around `net` (default: the eager DiT)."""
        dit, vae = self.networks()
        layout = workloads.layout(name, self.image_size)
        stats = NormStats.from_dict(dataset_statistics(layout), layout=layout)
        return CosmosPolicy(
            dit=dit if net is None else net, vae=vae, layout=layout, stats=stats,
            text_embeddings=TextEmbeddings.from_dict(t5_embeddings([INSTRUCTION])),
            images=ImagePipelineConfig.for_layout(layout),
            sampler=SamplerConfig(num_steps=steps or DEFAULT_STEPS[name]),
            model_id=f'random-{self.dit_preset}-{name}')

    def observation(self, layout, seed=195):
        rng = np.random.default_rng(seed)
        images = {camera: workloads.camera_image(480, 640, seed=index)
                  for index, camera in enumerate(layout.cameras)}
        return Observation(images=images, proprio=rng.uniform(-0.5, 0.5, layout.proprio_dim),
                           instruction=INSTRUCTION, seed=seed)

    def graphs(self):
        """The CUDA-graph wrapper of the eager DiT (one per process); None on a CPU or when a
        capture failed (the failure is recorded once in the record's 'cuda_graphs_error')."""
        if not self.ctx.cuda or 'cuda_graphs_error' in self.record:
            return None
        if self.graphed is None:
            graphed = CUDAGraphNetwork(self.networks()[0], max_graphs=16)
            try:
                graphed(*self.policy_inputs('libero'))  # capture once here, not while timing
            except Exception as error:
                self.record['cuda_graphs_error'] = f'{type(error).__name__}: {error}'[:1000]
                print(f'[gpu] CUDA-graph capture failed: {self.record["cuda_graphs_error"]}',
                      flush=True)
                return None
            self.graphed = graphed
        return self.graphed

    def memory(self):
        """Memory now and at the peak since reset_peak (GB). process_peak_gb is what the
        device showed for this process at the peak: the CUDA context and library workspaces
        (device use minus torch's reservation now) plus torch's peak reservation."""
        if not self.ctx.cuda:
            return {}
        device = self.ctx.device
        torch.cuda.synchronize(device)
        free, total = torch.cuda.mem_get_info(device)
        reserved = torch.cuda.memory_reserved(device)
        peak_reserved = torch.cuda.max_memory_reserved(device)
        return {'allocated_gb': torch.cuda.memory_allocated(device) / 1e9,
                'peak_allocated_gb': torch.cuda.max_memory_allocated(device) / 1e9,
                'reserved_gb': reserved / 1e9, 'peak_reserved_gb': peak_reserved / 1e9,
                'device_used_gb': (total - free) / 1e9,
                'process_peak_gb': (total - free - reserved + peak_reserved) / 1e9}

    def reset_peak(self):
        if self.ctx.cuda:
            torch.cuda.synchronize(self.ctx.device)
            torch.cuda.reset_peak_memory_stats(self.ctx.device)

    # --- sections --------------------------------------------------------------------------------
    def section_environment(self):
        ctx = self.ctx
        size = 8192 if ctx.cuda else 256
        generator = torch.Generator(device=ctx.device).manual_seed(0)
        a = torch.randn(size, size, device=ctx.device, dtype=ctx.dtype, generator=generator)
        b = torch.randn(size, size, device=ctx.device, dtype=ctx.dtype, generator=generator)
        medians = ctx.compare({'matmul': lambda: a @ b}, repetitions=5, warmup=2)
        info = {'matmul_tflops': 2 * size ** 3 / (medians['matmul'] / 1e3) / 1e12,
                'matmul_size': size}
        if ctx.cuda:
            props = torch.cuda.get_device_properties(ctx.device)
            info.update({'gpu': props.name, 'capability': f'{props.major}.{props.minor}',
                         'multiprocessors': props.multi_processor_count,
                         'memory_gb': props.total_memory / 1e9,
                         'sdpa_flash': torch.backends.cuda.flash_sdp_enabled(),
                         'sdpa_mem_efficient': torch.backends.cuda.mem_efficient_sdp_enabled(),
                         'sdpa_cudnn': torch.backends.cuda.cudnn_sdp_enabled(),
                         'cuda': torch.version.cuda, 'cudnn': torch.backends.cudnn.version()})
        try:
            import triton
            info['triton'] = triton.__version__
        except ImportError:
            info['triton'] = None
        return {'headline': f'{ctx.dtype_name} matmul {size}^3: {info["matmul_tflops"]:.3g} '
                            f'TFLOP/s', 'info': info, 'medians_ms': medians}

    def section_dit_forward(self):
        ctx = self.ctx
        dit, _ = self.networks()
        weights = self.memory()
        # The peak of one policy, before any CUDA graph holds memory: one eager 5-step infer.
        self.reset_peak()
        policy = self.policy('libero')
        policy.infer(self.observation(policy.layout), num_steps=5)
        one_policy = self.memory()
        rows = {}
        for name in LAYOUTS:
            inputs = self.policy_inputs(name)
            variants = {'eager': lambda: dit(*inputs)}
            graphed = self.graphs()
            if graphed is not None:
                variants['cuda_graphs'] = lambda: graphed(*inputs)
            medians = ctx.compare(variants)
            x = inputs[0]
            _, _, frames, height, width = x.shape
            tokens = frames * height * width // 4  # 2 x 2 patches
            flops = dit_flops(self.dit_preset, tokens, frames)['total']
            best = min(medians.values())
            rows[name] = {'medians_ms': medians, 'tokens': tokens, 'gflop': flops / 1e9,
                          'tflops_best': flops / (best / 1e3) / 1e12,
                          'latent': list(x.shape)}
            if 'cuda_graphs' in medians:
                rows[name]['eager_over_cuda_graphs'] = harness.ratio(medians['eager'],
                                                                     medians['cuda_graphs'])
        libero = rows['libero']
        return {'headline': 'LIBERO forward ' + ', '.join(
                    f'{k} {v:.1f} ms' for k, v in libero['medians_ms'].items())
                + f' ({libero["tflops_best"]:.3g} TFLOP/s)', 'layouts': rows,
                'memory_weights': weights, 'memory_one_policy': one_policy,
                'memory': self.memory()}

    def policy_inputs(self, name):
        """The exact DiT inputs (shapes, dtypes) of one policy step of layout `name`."""
        dit, _ = self.networks()
        recording = Recording(dit)
        policy = self.policy(name, recording, steps=1)
        policy.infer(self.observation(policy.layout))
        return recording.inputs

    def timed_infers(self, policies, observation, num_steps, repetitions=None):
        """Interleaved medians (ms) of infer per policy, and one output's stage times (ms)."""
        outputs = {}

        def call(name):
            def fn():
                outputs[name] = policies[name].infer(observation, num_steps=num_steps)
            return fn
        medians = self.ctx.compare({name: call(name) for name in policies},
                                   repetitions=repetitions)
        stages = {name: {stage: round(seconds * 1e3, 2)
                         for stage, seconds in output.timings.items()}
                  for name, output in outputs.items()}
        network = {name: round(sum(output.evaluation_times) * 1e3, 2)
                   for name, output in outputs.items()}
        return medians, stages, network, outputs

    def section_infer(self):
        rows, memory = {}, {}
        for name in LAYOUTS:
            policies = {'eager': self.policy(name)}
            observation = self.observation(policies['eager'].layout)
            if self.graphs() is not None:
                policies['cuda_graphs'] = self.policy(name, self.graphs())
            for steps in (STEPS if name == 'libero' else (DEFAULT_STEPS[name],)):
                medians, stages, network, _ = self.timed_infers(policies, observation, steps)
                rows[f'{name}_{steps}'] = {'layout': name, 'steps': steps, 'medians_ms': medians,
                                           'stages_ms': stages, 'network_ms': network}
        memory['after'] = self.memory()
        five = rows['libero_5']['medians_ms']
        return {'headline': 'LIBERO 5 steps ' + ', '.join(
                    f'{k} {v / 1e3:.3f} s' for k, v in five.items()),
                'rows': rows, 'memory': memory}

    def section_best_of_n(self):
        ctx = self.ctx
        variants = {'eager': self.policy('libero')}
        if self.graphs() is not None:
            variants['cuda_graphs'] = self.policy('libero', self.graphs())
        observation = self.observation(variants['eager'].layout)
        repetitions = max(2, ctx.repetitions - 2)
        rows = {}
        for label, policy in variants.items():
            if label == 'eager':
                self.reset_peak()
                before = self.memory()
                policy.infer(observation, num_candidates=CANDIDATES)
                peak = dict(self.memory(), before=before)
            seeds = [observation.seed + j for j in range(CANDIDATES)]

            def sequential(policy=policy):
                return [policy.infer(Observation(observation.images, observation.proprio,
                                                 INSTRUCTION, seed=seed)) for seed in seeds]
            medians = ctx.compare({
                'one': lambda policy=policy: policy.infer(observation),
                'batched': lambda policy=policy: policy.infer(observation,
                                                              num_candidates=CANDIDATES),
                'sequential': sequential}, repetitions=repetitions)
            best = policy.infer(observation, num_candidates=CANDIDATES)
            alone = policy.infer(Observation(observation.images, observation.proprio,
                                             INSTRUCTION, seed=seeds[best.selected_candidate]))
            rows[label] = {'medians_ms': medians,
                           'batched_over_one': harness.ratio(medians['batched'], medians['one']),
                           'sequential_over_batched': harness.ratio(medians['sequential'],
                                                                    medians['batched']),
                           'selected_max_abs_action_difference':
                               float(np.abs(best.actions - alone.actions).max())}
        best_label = min(rows, key=lambda label: rows[label]['medians_ms']['batched'])
        row = rows[best_label]
        return {'headline': f'best-of-{CANDIDATES} batched = {row["batched_over_one"]}x one '
                            f'infer, {row["sequential_over_batched"]}x faster than sequential '
                            f'({best_label})',
                'candidates': CANDIDATES, 'steps': DEFAULT_STEPS['libero'], 'rows': rows,
                'memory_eager_best_of_8': peak}

    def section_fleet(self):
        """infer_batch of B robots' observations (their own proprio and seeds) per layout."""
        ctx = self.ctx
        repetitions = max(2, ctx.repetitions - 2)
        rows = {}
        for name in FLEET_LAYOUTS:
            policy = self.policy(name)
            requests = [InferenceRequest(self.observation(policy.layout, seed=195 + robot))
                        for robot in range(max(FLEET_BATCHES))]
            self.reset_peak()
            medians = ctx.compare({f'batch_{size}': (
                lambda size=size: policy.infer_batch(requests[:size]))
                for size in FLEET_BATCHES}, repetitions=repetitions)
            memory = self.memory()
            batched = policy.infer_batch(requests)
            differences = [
                float(np.abs(output.actions - single.actions).max()
                      / max(float(np.abs(single.actions).max()), 1e-12))
                for output, single in zip(batched, (policy.infer(r.observation)
                                                    for r in requests))]
            speed = {str(size): size / (medians[f'batch_{size}'] / 1e3)
                     for size in FLEET_BATCHES}  # str keys: as the JSON file has them
            rows[name] = {'steps': policy.sampler.num_steps, 'medians_ms': medians,
                          'chunks_per_s': speed,
                          'throughput_over_batch1': {size: value / speed['1']
                                                     for size, value in speed.items()},
                          'max_relative_difference_to_single': max(differences),
                          'memory_after_batch_8': memory}
        largest = str(max(FLEET_BATCHES))
        return {'headline': f'chunks/s at batch {largest} / batch 1: LIBERO '
                            f'{rows["libero"]["throughput_over_batch1"][largest]:.2f}x, ALOHA '
                            f'{rows["aloha"]["throughput_over_batch1"][largest]:.2f}x',
                'batches': list(FLEET_BATCHES), 'rows': rows}

    def section_attention(self):
        ctx = self.ctx
        dit, _ = self.networks()
        inputs = self.policy_inputs('libero')
        reference = dit(*inputs).float()
        rows = {}
        try:
            for name in ATTENTION_BACKENDS:
                try:
                    set_attention_backend(dit, name)
                    output = dit(*inputs).float()
                except Exception as error:  # a backend missing here is a finding, not a failure
                    rows[name] = {'status': 'unavailable',
                                  'reason': f'{type(error).__name__}: {str(error)[:300]}'}
                    continue
                median = ctx.compare({name: lambda: dit(*inputs)},
                                     repetitions=max(2, ctx.repetitions - 2))[name]
                difference = (output - reference).norm() / reference.norm()
                rows[name] = {'status': 'ok', 'median_ms': median,
                              'relative_difference_to_native': float(difference)}
        finally:
            set_attention_backend(dit, 'native')
        ok = {name: row['median_ms'] for name, row in rows.items() if row['status'] == 'ok'}
        fastest = min(ok, key=ok.get) if ok else None
        return {'headline': f'{len(ok)} of {len(rows)} backends run; fastest {fastest} '
                            f'({ok.get(fastest, float("nan")):.1f} ms vs native '
                            f'{ok.get("native", float("nan")):.1f} ms)',
                'backends': rows}

    def section_compile(self):
        ctx = self.ctx
        dit, _ = self.networks()
        compiled = compile_network(dit, backend=self.compile_backend)
        policies = {'eager': self.policy('libero'),
                    'compiled': self.policy('libero', compiled)}
        observation = self.observation(policies['eager'].layout)
        first, _ = ctx.once(lambda: policies['compiled'].infer(observation))
        both = None
        if self.graphs() is not None:
            both = CUDAGraphNetwork(compiled)
            policies['cuda_graphs'] = self.policy('libero', self.graphs())
            policies['compiled_cuda_graphs'] = self.policy('libero', both)
        medians, stages, network, outputs = self.timed_infers(
            policies, observation, DEFAULT_STEPS['libero'])
        inputs = self.policy_inputs('libero')
        forward = {'eager': lambda: dit(*inputs), 'compiled': lambda: compiled(*inputs)}
        if both is not None:
            forward['compiled_cuda_graphs'] = lambda: both(*inputs)
        forward_medians = ctx.compare(forward)
        difference = float(np.abs(outputs['compiled'].actions
                                  - outputs['eager'].actions).max())
        return {'headline': f'first call (compile) {first:.0f} s; LIBERO 5 steps ' + ', '.join(
                    f'{k} {v / 1e3:.3f} s' for k, v in medians.items()),
                'backend': self.compile_backend, 'first_infer_seconds': first,
                'compile_first_call_seconds': list(compiled.first_call_seconds.values()),
                'infer_medians_ms': medians, 'stages_ms': stages, 'network_ms': network,
                'forward_medians_ms': forward_medians,
                'max_abs_action_difference_compiled_vs_eager': difference,
                'memory': self.memory()}

    def section_pytest_gpu(self):
        left = max(30, int(self.budget - self.elapsed()))
        root = Path(__file__).resolve().parent.parent
        command = [sys.executable, '-m', 'pytest', '-m', 'gpu', 'test/engine', '-q',
                   '-p', 'no:cacheprovider', f'--timeout={left}']
        env = dict(os.environ, PYTHONUNBUFFERED='1')
        try:
            done = subprocess.run(command, cwd=root, capture_output=True, text=True,
                                  timeout=left, env=env)
        except subprocess.TimeoutExpired as error:
            tail = (error.stdout or b'')
            tail = tail.decode() if isinstance(tail, bytes) else tail
            return {'status': 'error', 'reason': f'timed out after {left} s',
                    'output_tail': tail[-3000:]}
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        summary = lines[-1] if lines else ''
        return {'status': 'ok' if done.returncode in (0, 5) else 'failed',
                'headline': summary, 'returncode': done.returncode, 'command': ' '.join(command),
                'output_tail': (done.stdout + done.stderr)[-4000:]}


# --- targets and the table ---------------------------------------------------------------------
def _best(medians, keys=None):
    items = {k: v for k, v in medians.items() if keys is None or k in keys}
    name = min(items, key=items.get)
    return name, items[name]


def targets_met(record):
    """{target: {'value', 'target', 'met', 'variant'}} for the targets the run measured."""
    sections, out = record['sections'], {}
    infer = sections.get('infer', {})
    compiled = sections.get('compile', {})
    five = dict(infer.get('rows', {}).get('libero_5', {}).get('medians_ms', {}))
    five.update({k: v for k, v in compiled.get('infer_medians_ms', {}).items()
                 if k not in five})
    if five:
        variant, value = _best(five)
        out['libero_5_steps_seconds'] = {'value': value / 1e3, 'variant': variant}
    memory = sections.get('dit_forward', {}).get('memory_one_policy', {})
    if 'process_peak_gb' in memory:
        out['peak_memory_gb'] = {'value': memory['process_peak_gb'],
                                 'variant': 'LIBERO eager, context + peak reserved'}
    best = sections.get('best_of_n', {}).get('rows', {})
    if best:
        variant = min(best, key=lambda label: best[label]['medians_ms']['batched'])
        out['best_of_8_over_one'] = {'value': best[variant]['batched_over_one'],
                                     'variant': variant}
    fleet = sections.get('fleet', {}).get('rows', {}).get('libero')
    if fleet:
        out['fleet_batch8_throughput_over_batch1'] = {
            'value': fleet['throughput_over_batch1'][str(max(FLEET_BATCHES))],
            'variant': f'LIBERO, eager, batch {max(FLEET_BATCHES)} vs 1'}
    applicable = record['device'].startswith('cuda') and not record['quick']
    for name, entry in out.items():
        entry['target'] = TARGETS[name]
        # The targets are for the released sizes on a GPU; a CPU rehearsal only fills the rows.
        met = (entry['value'] >= TARGETS[name] if name in HIGHER_IS_BETTER
               else entry['value'] <= TARGETS[name])
        entry['met'] = bool(met) if applicable else None
    return out


def _met(met):
    return 'n/a (CPU rehearsal)' if met is None else ('yes' if met else 'NO')


def _seconds(medians, key):
    return f'{medians[key] / 1e3:.3f}' if key in medians else '-'


def markdown(record):
    """The README-ready table of a GPU-suite record (reference figures beside it)."""
    sections = record['sections']
    machine = record['machine']
    gpu = machine.get('gpu') or f'{machine.get("cpu_count")} CPU cores'
    lines = [f'### GPU suite: {gpu}, {record["dtype"]}, torch {machine.get("torch")}'
             f'{", quick (tiny shapes)" if record["quick"] else ""}', '',
             f'{record["preset"]}. Medians of {record["repetitions"]} interleaved repetitions; '
             f'written by `python bench/run.py --suite gpu` ({record.get("measured_at", "")}).',
             '']
    infer = sections.get('infer', {}).get('rows', {})
    compiled = sections.get('compile', {}).get('infer_medians_ms', {})
    if infer:
        lines += ['| infer, s per chunk | eager | CUDA graphs | compile | compile + graphs | '
                  f'reference ({REFERENCE["device"]}) |', '|---|---|---|---|---|---|']
        for key, row in infer.items():
            medians = dict(row['medians_ms'])
            if key == 'libero_5':
                medians.update({k: v for k, v in compiled.items() if k not in medians})
            reference = REFERENCE['infer_seconds'].get(row['steps']) if row['layout'] == \
                'libero' else None
            lines.append(f'| {row["layout"]}, {row["steps"]} steps | {_seconds(medians, "eager")}'
                         f' | {_seconds(medians, "cuda_graphs")} | {_seconds(medians, "compiled")}'
                         f' | {_seconds(medians, "compiled_cuda_graphs")} | '
                         f'{reference if reference else "-"} |')
        lines.append('')
    forward = sections.get('dit_forward', {}).get('layouts', {})
    if forward:
        lines += ['| DiT forward, ms | tokens | eager | CUDA graphs | TFLOP/s (best) |',
                  '|---|---|---|---|---|']
        for name, row in forward.items():
            medians = row['medians_ms']
            graphs = f'{medians["cuda_graphs"]:.1f}' if 'cuda_graphs' in medians else '-'
            lines.append(f'| {name} | {row["tokens"]} | {medians["eager"]:.1f} | {graphs} | '
                         f'{row["tflops_best"]:.0f} |')
        lines.append('')
    attention = sections.get('attention', {}).get('backends', {})
    if attention:
        lines += ['| attention backend (LIBERO forward) | ms | rel. diff. to native |',
                  '|---|---|---|']
        for name, row in attention.items():
            if row['status'] == 'ok':
                lines.append(f'| `{name}` | {row["median_ms"]:.1f} | '
                             f'{row["relative_difference_to_native"]:.1e} |')
            else:
                lines.append(f'| `{name}` | unavailable | {row["reason"][:80]} |')
        lines.append('')
    met = record.get('targets_met') or targets_met(record)
    labels = {'libero_5_steps_seconds': ('LIBERO 5-step chunk end to end', 's'),
              'peak_memory_gb': ('peak GPU memory, one policy', 'GB'),
              'best_of_8_over_one': ('best-of-8 time / one infer', 'x'),
              'fleet_batch8_throughput_over_batch1': ('policy server: chunks/s at batch 8 / '
                                                      'batch 1', 'x')}
    if met:
        lines += ['| target | measured | target | met |', '|---|---|---|---|']
        for name, entry in met.items():
            label, unit = labels[name]
            bound = '>=' if name in HIGHER_IS_BETTER else '<='
            lines.append(f'| {label} ({entry["variant"]}) | {entry["value"]:.3g} {unit} | '
                         f'{bound} {entry["target"]} {unit} | {_met(entry["met"])} |')
        lines.append('')
    fleet = sections.get('fleet', {}).get('rows', {})
    if fleet:
        lines += ['| policy server, infer_batch: s per batch (chunks/s) | ' + ' | '.join(
                      f'batch {size}' for size in FLEET_BATCHES) + ' |',
                  '|---|' + '---|' * len(FLEET_BATCHES)]
        for name, row in fleet.items():
            cells = [f'{row["medians_ms"][f"batch_{size}"] / 1e3:.3f} '
                     f'({row["chunks_per_s"][str(size)]:.1f})'
                     if f'batch_{size}' in row['medians_ms'] else '-' for size in FLEET_BATCHES]
            lines.append(f'| {name}, {row["steps"]} steps | ' + ' | '.join(cells) + ' |')
        lines.append('')
    one = sections.get('dit_forward', {}).get('memory_one_policy', {})
    if one:
        weights = sections['dit_forward'].get('memory_weights', {})
        lines.append(f'Memory of one policy (LIBERO, eager, 5 steps): {one["process_peak_gb"]:.2f}'
                     f' GB for the process at its peak (torch peak allocated '
                     f'{one["peak_allocated_gb"]:.2f} GB, of which weights '
                     f'{weights.get("allocated_gb", float("nan")):.2f} GB).')
    best = sections.get('best_of_n', {}).get('memory_eager_best_of_8', {})
    if 'peak_allocated_gb' in best:
        lines.append(f'Best-of-{CANDIDATES} (eager) peak allocated {best["peak_allocated_gb"]:.2f}'
                     f' GB ({best["before"]["allocated_gb"]:.2f} GB allocated before it).')
    memory = REFERENCE['memory_gb']
    lines.append(f'Reference memory (published, {REFERENCE["device"]}): ' + ', '.join(
        f'{name} {value} GB' for name, value in memory.items()) + '.')
    others = []
    for name in SECTIONS:
        section = sections.get(name)
        if section is not None and section.get('status') != 'ok':
            others.append(f'{name}: {section["status"]} ({section.get("reason", "")})')
    if 'pytest_gpu' in sections and sections['pytest_gpu'].get('status') == 'ok':
        others.append(f'pytest -m gpu: {sections["pytest_gpu"].get("headline")}')
    if others:
        lines += [''] + [f'- {line}' for line in others]
    return '\n'.join(lines) + '\n'


def summary(record):
    """A few lines for the terminal."""
    lines = [f'[gpu] {record["name"]}: {record["elapsed_seconds"]} s']
    for name, section in record['sections'].items():
        lines.append(f'  {name:12s} {section.get("status")}: '
                     f'{section.get("headline") or section.get("reason", "")}')
    for name, entry in (record.get('targets_met') or {}).items():
        lines.append(f'  target {name}: {entry["value"]:.3g} vs <= {entry["target"]} '
                     f'({entry["variant"]}): {_met(entry["met"])}')
    return '\n'.join(lines)


def _json_value(value):
    if isinstance(value, (torch.dtype, torch.device, Path)):
        return str(value)
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    raise TypeError(f'cannot store {type(value).__name__} in a result file')


def main(ctx, out_dir, *, budget, skip=()):
    from cosmos_policy_ros.evaluation.records import measured_at
    suite = Suite(ctx, out_dir, budget=budget, skip=skip)
    suite.record['measured_at'] = measured_at()
    record = suite.run()
    print(summary(record), flush=True)
    print(f'[gpu] -> {suite.json_path}\n[gpu] -> {suite.markdown_path}', flush=True)
    failed = [name for name, section in record['sections'].items()
              if section.get('status') in ('error', 'failed')]
    return 1 if failed else 0
