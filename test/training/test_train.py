"""cosmos-policy-train: a few steps on a few recorded episodes; determinism and resume."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from cosmos_policy_ros.cli.train import main
from cosmos_policy_ros.engine.generate import condition_frames
from cosmos_policy_ros.engine.model_dir import read_spec
from cosmos_policy_ros.engine.policy import CosmosPolicy
from cosmos_policy_ros.interface import Observation
from cosmos_policy_ros.normalization import NormStats
from cosmos_policy_ros.sim.arm import PlanarReachEnv, SimConfig
from cosmos_policy_ros.sim.model import shipped_model_dir
from cosmos_policy_ros.training.batches import batch_draws, clean_batch, WORLD_MODEL
from cosmos_policy_ros.training.data import record_fractions, Samples
from cosmos_policy_ros.training.dit_phase import batch_loss, new_network, train
from cosmos_policy_ros.training.model_writer import SIM_PLANNING
from cosmos_policy_ros.training.options import TrainOptions
from cosmos_policy_ros.training.prepare import prepare
from cosmos_policy_ros.training.vae_phase import build_vae

pytestmark = pytest.mark.slow


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    """Record 5 episodes at 32 px and prepare them once for the tests of this module."""
    root = tmp_path_factory.mktemp('train')
    args = TrainOptions(data=(root / 'demos',), record=5, image_size=32, work_dir=root / 'work',
                        steps=40, batch_size=8, lr=3e-3, quiet=True, out=root / 'model',
                        num_steps=3)
    data = prepare(args, log=lambda *_: None)
    return root, args, data


def _fixed_loss(net, data):
    with torch.no_grad():
        return float(np.mean([float(batch_loss(net, data, 123, 10**6 + i, 16))
                              for i in range(4)]))


def test_loss_falls_and_a_loadable_model_is_written(run):
    root, args, data = run
    before = _fixed_loss(new_network(args, data), data)
    net, history = train(args, log=lambda *_: None, data=data)
    assert len(history) == 40
    after = _fixed_loss(net, data)
    assert after < 0.8 * before, (before, after)
    spec = read_spec(root / 'model')
    assert spec.layout.name == 'planar_reach' and spec.layout.image_size == 32
    assert spec.sampler.num_steps == 3 and spec.source['steps'] == 40
    policy = CosmosPolicy.from_model_dir(root / 'model', device='cpu', dtype='fp32')
    env = PlanarReachEnv(SimConfig(image_size=32))
    env.reset(99)
    output = policy.infer(Observation(images=env.render(), proprio=env.joint_positions(),
                                      instruction=env.task, seed=0))
    assert output.actions.shape == (8, 3) and np.isfinite(output.actions).all()
    assert 0.0 <= output.value <= 1.0
    stats = json.loads((root / 'model' / 'dataset_statistics.json').read_text())
    assert len(stats['actions_min']) == 3


def test_training_is_deterministic_and_resumes_exactly(run, tmp_path):
    _, args, data = run
    short = dataclasses.replace(args, steps=6, out=None,
                                work_dir=str(tmp_path / 'a'))
    _, straight = train(short, log=lambda *_: None, data=data)
    half = dataclasses.replace(short, pause_after=3,
                               work_dir=str(tmp_path / 'b'))
    train(half, log=lambda *_: None, data=data)
    rest = dataclasses.replace(short, work_dir=str(tmp_path / 'b'),
                               resume=True)
    net, resumed = train(rest, log=lambda *_: None, data=data)
    assert resumed == straight  # same losses, bit for bit
    again = dataclasses.replace(short, work_dir=str(tmp_path / 'c'))
    net_again, _ = train(again, log=lambda *_: None, data=data)
    for (name, a), (_, b) in zip(net.state_dict().items(), net_again.state_dict().items()):
        assert torch.equal(a, b), name


def test_bad_arguments(tmp_path, capsys):
    assert main(['--data', str(tmp_path), '--work-dir', str(tmp_path / 'w'),
                 '--steps', '0']) == 2
    assert '--steps must be >= 1' in capsys.readouterr().err
    assert main(['--data', str(tmp_path), '--work-dir', str(tmp_path / 'w')]) == 2
    assert 'no episode bags' in capsys.readouterr().err


def test_vae_phase_lowers_the_reconstruction_loss_and_resumes(run, tmp_path):
    """--vae-steps: the VAE's loss falls in a few steps, the model directory holds the trained
    VAE, and --resume loads the finished phase instead of repeating it."""
    from cosmos_policy_ros.engine.checkpoint import load_vae
    from cosmos_policy_ros.engine.training import vae_reconstruction_loss
    root, args, data = run
    vae_args = dataclasses.replace(args, vae_steps=12, vae_batch_size=4,
                                   vae_lr=3e-3, steps=2, out=str(tmp_path / 'm'),
                                   work_dir=str(tmp_path / 'w'), record=0)
    prepared = prepare(vae_args, log=lambda *_: None)
    history = prepared.vae_history
    assert len(history) == 12
    assert np.mean(history[-3:]) < 0.7 * np.mean(history[:3]), history
    # The reconstruction term alone, on fixed images, before and after the phase.
    pixels = prepared.samples.state_images(prepared.images)[:6]
    with torch.no_grad():
        before = float(vae_reconstruction_loss(build_vae(args.seed + 1), pixels))
        after = float(vae_reconstruction_loss(prepared.vae, pixels))
    assert after < 0.7 * before, (before, after)
    train(vae_args, log=lambda *_: None, data=prepared)
    spec = read_spec(tmp_path / 'm')
    assert spec.source['vae_steps'] == 12
    stored = load_vae(tmp_path / 'm' / 'vae.safetensors', 'tiny', dtype=torch.float32)
    for (name, a), (_, b) in zip(stored.vae.state_dict().items(),
                                 prepared.vae.vae.state_dict().items()):
        assert torch.equal(a, b), name
    logs = []
    again = prepare(dataclasses.replace(vae_args, resume=True),
                    log=logs.append)
    assert again.vae_history == history
    assert any('VAE resumed at step 12' in line for line in logs)
    torch.testing.assert_close(again.latents, prepared.latents)


def test_init_from_continues_a_model_unchanged(run, tmp_path):
    """--init-from: the DiT, VAE, statistics and embeddings of the model directory are the
    starting point (a zero learning rate writes them back bit for bit; the stored VAE, already
    calibrated, gives the first run's latents without calibrating again); the provenance
    chains; a layout mismatch and --vae-steps are refused naming the flag."""
    from safetensors.torch import load_file
    root, args, data = run
    first = dataclasses.replace(args, steps=2, record=0,
                                out=str(tmp_path / 'a'), work_dir=str(tmp_path / 'wa'))
    train(first, log=lambda *_: None, data=data)
    cont = dataclasses.replace(first, init_from=tmp_path / 'a', lr=0.0,
                               steps=1, seed=7, out=str(tmp_path / 'b'),
                               work_dir=str(tmp_path / 'wb'))
    prepared = prepare(cont, log=lambda *_: None)
    torch.testing.assert_close(prepared.latents, data.latents, rtol=1e-4, atol=1e-4)
    _, history = train(cont, log=lambda *_: None, data=prepared)
    assert len(history) == 1
    for name in ('dit.safetensors', 'vae.safetensors', 't5_embeddings.safetensors'):
        a, b = load_file(str(tmp_path / 'a' / name)), load_file(str(tmp_path / 'b' / name))
        assert a.keys() == b.keys(), name
        for key in a:
            assert torch.equal(a[key], b[key]), (name, key)
    assert (tmp_path / 'a' / 'dataset_statistics.json').read_text() == \
        (tmp_path / 'b' / 'dataset_statistics.json').read_text()
    source = read_spec(tmp_path / 'b').source
    assert source['init_from'] == read_spec(tmp_path / 'a').source and source['seed'] == 7
    wrong = dataclasses.replace(cont, image_size=64)
    with pytest.raises(ValueError, match='--init-from'):
        prepare(wrong, log=lambda *_: None)
    assert main(['--data', str(root / 'demos'), '--work-dir', str(tmp_path / 'w'),
                 '--init-from', str(tmp_path / 'a'), '--vae-steps', '3']) == 2


class _ParamNet(torch.nn.Module):
    """net(x, t, mask, text) = a free tensor per element: its gradient shows what is supervised."""

    dtype = torch.float32
    device = torch.device('cpu')

    def __init__(self, shape):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(shape))

    def forward(self, x, timesteps, condition_mask, text_embedding):
        return self.p + 0.0 * x


def _half_imitated(data):
    """A shallow copy of prepared data in which every second sample is not imitated."""
    import copy
    fake = copy.copy(data)
    fake.samples = copy.copy(data.samples)
    fake.samples.imitate = torch.arange(len(data.samples)) % 2 == 0
    return fake


def test_unimitated_samples_never_supervise_their_actions(run):
    """Samples of failed episodes and of policy rollouts are not imitated: world-model samples
    at --unimitated-policy-share 0; at 1 policy samples whose action frame is generated but
    gets no gradient while their value frame does; imitated policy samples keep the action
    loss."""
    _, _, data = run
    fake = _half_imitated(data)
    layout = data.layout
    batch, seed, step = 64, 5, 3
    index, modes, _, _ = batch_draws(seed, step, fake.samples, batch, layout)
    unimitated = ~fake.samples.imitate[index]
    assert unimitated.any() and (modes[unimitated] == 1).all()  # share 0: world model only
    index, modes, _, _ = batch_draws(seed, step, fake.samples, batch, layout, 1.0)
    unimitated = ~fake.samples.imitate[index]
    assert (modes[unimitated] == 0).all()
    net = _ParamNet((batch, *layout.latent_shape))
    batch_loss(net, fake, seed, step, batch, 1.0).backward()
    grad = net.p.grad.abs().sum(dim=(1, 3, 4))  # (B, T)
    imitated_policy = (modes == 0) & ~unimitated
    assert imitated_policy.any()
    assert (grad[unimitated, layout.action_index] == 0).all()
    assert (grad[unimitated, layout.value_index] > 0).all()
    assert (grad[imitated_policy, layout.action_index] > 0).all()


def test_policy_rollouts_and_failures_are_not_imitated(run):
    """Samples.imitate: successful demonstrations only, not a successful policy rollout."""
    import dataclasses
    _, args, data = run
    episodes = list(data.episodes)
    first = next(i for i, e in enumerate(episodes) if e.success)
    episodes[first] = dataclasses.replace(episodes[first], kind='policy')
    samples = Samples(episodes, data.layout, NormStats.from_dict(
        data.stats, layout=data.layout), args.gamma)
    episode_of = torch.tensor([samples.states[i][0] for i in samples.current])
    expected = torch.tensor([episodes[e].success and e != first for e in episode_of.tolist()])
    assert (episode_of == first).any() and (~expected).any() and expected.any()
    assert torch.equal(samples.imitate, expected)
    assert samples.success[episode_of == first].all()


def test_policy_rollouts_need_init_from(run, tmp_path):
    root, args, _ = run
    more = dataclasses.replace(args, data=[tmp_path / 'rollouts'], record=1,
                               record_kinds=['policy'], work_dir=str(tmp_path / 'w'))
    with pytest.raises(ValueError, match='--init-from'):
        prepare(more, log=lambda *_: None)
    more = dataclasses.replace(more, init_from=shipped_model_dir())  # rolls out this model
    prepared = prepare(more, log=lambda *_: None)
    rollout = prepared.episodes[-1]
    assert rollout.kind == 'policy' and len(prepared.episodes) == 1
    assert rollout.info['model'] == read_spec(shipped_model_dir()).source['dit_sha256']
    assert len(rollout.info['values']) == len(rollout.info['tick_steps']) >= 1
    assert not prepared.samples.imitate.any()


def test_recovery_every_needs_policy_rollouts(tmp_path, capsys):
    base = ['--data', str(tmp_path), '--work-dir', str(tmp_path / 'w'), '--record', '1']
    no_policy = ['--recovery-every', '8']
    negative = ['--recovery-every', '-1', '--record-kinds', 'policy']
    for extra in (no_policy, negative):
        assert main(base + extra) == 2
        assert '--recovery-every' in capsys.readouterr().err


def test_record_kinds_into_a_second_data_directory(run, tmp_path):
    """--data A B --record N --record-kinds near_miss: N near misses written into B, the
    episodes of A and B all used; bad shares and a non-empty B are refused."""
    root, args, data = run
    more = dataclasses.replace(args, data=[root / 'demos', tmp_path / 'near'],
                               record=2, data_seed=300, record_kinds=['near_miss'],
                               work_dir=str(tmp_path / 'w'))
    prepared = prepare(more, log=lambda *_: None)
    kinds = [e.kind for e in prepared.episodes]
    assert len(kinds) == len(data.episodes) + 2 and kinds[-2:] == ['near_miss'] * 2
    assert sorted(p.name for p in (tmp_path / 'near').iterdir()) == [
        'episode_000300_near_miss', 'episode_000301_near_miss']
    with pytest.raises(ValueError, match='not empty'):
        prepare(more, log=lambda *_: None)
    assert record_fractions(['near_miss', 'expert=3']) == {'near_miss': 1.0,
                                                           'expert': 3.0}
    for bad in (['expert=x'], ['expert=0']):
        with pytest.raises(ValueError, match='--record-kinds'):
            record_fractions(bad)


def test_planning_samples_are_world_model_samples_of_every_episode(run):
    """--planning draws world-model samples only, from every episode (imitated or not): each
    is supervised on every generated frame (future state and value); the executed actions are
    given."""
    _, _, data = run
    fake = _half_imitated(data)
    layout = data.layout
    batch, seed, step = 64, 5, 4
    index, modes, _, _ = batch_draws(seed, step, fake.samples, batch, layout,
                                     planning=True)
    assert (modes == WORLD_MODEL).all()
    assert (~fake.samples.imitate[index]).any() and fake.samples.imitate[index].any()
    net = _ParamNet((batch, *layout.latent_shape))
    batch_loss(net, fake, seed, step, batch, planning=True).backward()
    supervised = net.p.grad.abs().sum(dim=(1, 3, 4)) > 0  # (B, T)
    generated = ~torch.tensor(condition_frames(layout, 'world_model'))
    assert not generated[layout.action_index] and generated[layout.value_index]
    assert (supervised == generated).all()
    # Its value target is the return from the sample's own state (Q(s_t, a)), the policy's
    # the return from the future state f (the reference's).
    from cosmos_policy_ros.engine.injection import extract_value
    from cosmos_policy_ros.engine.training import value_targets
    samples = fake.samples
    for q_target in (False, True):
        x0, _ = clean_batch(samples, data.latents, index, modes, q_target=q_target)
        expected = []
        for i in index.tolist():
            episode, t = samples.states[int(samples.current[i])]
            f = samples.states[int(samples.future[i])][1]
            targets = value_targets(data.episodes[episode].num_steps + 1,
                                    data.episodes[episode].success, 0.95)
            expected.append((targets[t if q_target else f] + 1) / 2)  # latent -> [0, 1]
        np.testing.assert_allclose(extract_value(x0, layout), expected, atol=1e-6)
        assert len(set(np.round(expected, 6))) > 2  # several distinct targets in the batch


def test_planning_trains_a_value_network_beside_the_policy(run, tmp_path):
    """--planning --init-from A: the loss falls; the written directory is A's files unchanged
    plus planning_dit.safetensors and SIM_PLANNING, so the policy's chunks stay bit for bit
    and the published value is the new network's; bad combinations are refused."""
    root, args, data = run
    first = dataclasses.replace(args, steps=2, record=0,
                                out=str(tmp_path / 'a'), work_dir=str(tmp_path / 'wa'))
    train(first, log=lambda *_: None, data=data)
    planning = dataclasses.replace(first, init_from=tmp_path / 'a',
                                   planning=True, steps=30, lr=3e-3,
                                   out=str(tmp_path / 'p'),
                                   work_dir=str(tmp_path / 'wp'))
    prepared = prepare(planning, log=lambda *_: None)

    def fixed_loss(net):
        with torch.no_grad():
            return float(np.mean([float(batch_loss(
                net, prepared, 123, 10**6 + i, 16, planning=True)) for i in range(4)]))

    before = fixed_loss(new_network(planning, prepared))
    net, history = train(planning, log=lambda *_: None, data=prepared)
    assert len(history) == 30 and fixed_loss(net) < 0.8 * before
    for name in ('dit.safetensors', 'vae.safetensors', 't5_embeddings.safetensors',
                 'dataset_statistics.json'):
        assert (tmp_path / 'a' / name).read_bytes() == (tmp_path / 'p' / name).read_bytes()
    from safetensors.torch import load_file
    stored = load_file(str(tmp_path / 'p' / 'planning_dit.safetensors'))
    assert {v.dtype for v in stored.values()} == {torch.bfloat16}
    spec, base = read_spec(tmp_path / 'p'), read_spec(tmp_path / 'a')
    assert spec.planning == SIM_PLANNING and base.planning is None
    assert spec.model_id == base.model_id and spec.source['planning_net']['steps'] == 30
    env = PlanarReachEnv(SimConfig(image_size=32))
    env.reset(99)
    obs = Observation(images=env.render(), proprio=env.joint_positions(), instruction=env.task,
                      seed=3)
    alone, scored = (CosmosPolicy.from_model_dir(tmp_path / d, device='cpu', dtype='fp32')
                     for d in ('a', 'p'))
    assert alone.planning_dit is None and scored.planning_dit is not None
    out_alone, out_scored = alone.infer(obs), scored.infer(obs)
    np.testing.assert_array_equal(out_alone.actions, out_scored.actions)
    assert out_scored.candidate_values == (out_scored.value,)
    assert abs(out_scored.value - out_alone.value) > 1e-4
    base_args = ['--data', str(root / 'demos'), '--work-dir', str(tmp_path / 'w'), '--planning']
    assert main(base_args) == 2  # no --init-from
    assert main(base_args + ['--init-from', str(tmp_path / 'a'),
                             '--unimitated-policy-share', '0.5']) == 2
