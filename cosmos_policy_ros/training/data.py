"""Episodes -> training samples: the recorded episodes (sim/episodes.py bags), their dataset
statistics, and every sample as indices into per-state arrays (``Samples``): the states kept,
the (current, future) pair of each sample, its value targets, whether its actions are imitated.
"""
import json
from pathlib import Path

import numpy as np
import torch

from cosmos_policy_ros.datasets.reader import complete_manifest, read_episodes
from cosmos_policy_ros.engine.images import preprocess_images
from cosmos_policy_ros.engine.training import value_targets
from cosmos_policy_ros.normalization import dataset_statistics
from cosmos_policy_ros.sim.arm import CAMERAS, COLORS, TASKS
from cosmos_policy_ros.sim.episodes import Episode, POLICY_KIND, read_episode_bag

FAILURE_STRIDE = 4  # states kept of a failed episode (every 4th; divides the chunk size)


def load_episodes(data_dir):
    bags = sorted(p for p in Path(data_dir).iterdir()
                  if p.is_dir() and (p / 'metadata.yaml').is_file())
    if not bags:
        raise ValueError(f'no episode bags in {data_dir} (record some with --record N).')
    return [read_episode_bag(path) for path in bags]


def record_fractions(tokens):
    """{kind: share} from --record-kinds tokens `KIND` (share 1) or `KIND=SHARE`; None: the
    default mix of demonstration_plan."""
    if not tokens:
        return None
    fractions = {}
    for token in tokens:
        kind, _, share = token.partition('=')
        try:
            fractions[kind] = float(share) if share else 1.0
        except ValueError:
            raise ValueError(f'--record-kinds {token}: SHARE must be a number.') from None
        if not fractions[kind] > 0:
            raise ValueError(f'--record-kinds {token}: SHARE must be > 0.')
    return fractions


def statistics(episodes):
    """Released-format statistics of the recorded actions and joint positions."""
    return dataset_statistics(np.concatenate([e.actions for e in episodes]),
                              np.concatenate([e.joints for e in episodes]))


class Samples:
    """Every training sample as indices into per-state arrays; latents built per batch."""

    def __init__(self, episodes, layout, norm, gamma):
        self.layout = layout
        states, samples = [], []  # states: (episode, index); samples: (state t, state f, ...)
        index_of = {}
        for e, episode in enumerate(episodes):
            last = episode.num_steps
            keep = range(last + 1) if episode.success else sorted(
                set(range(0, last + 1, FAILURE_STRIDE)) | {last})
            for i in keep:
                index_of[(e, i)] = len(states)
                states.append((e, i))
            values = value_targets(last + 1, episode.success, gamma)
            for t in keep:
                if t == last:
                    continue
                f = min(t + layout.chunk_size, last)
                if (e, f) not in index_of:
                    f = max(i for i in keep if i <= f)
                rows = [min(t + k, last - 1) for k in range(layout.chunk_size)]
                samples.append((index_of[(e, t)], index_of[(e, f)], e, rows, values[f],
                                episode.success, values[t]))
        self.states = states
        self.episodes = episodes
        self.current = torch.tensor([s[0] for s in samples])
        self.future = torch.tensor([s[1] for s in samples])
        self.success = torch.tensor([s[5] for s in samples])
        # Actions imitated: successful demonstrations; never failures or a policy's rollouts.
        self.imitate = self.success & torch.tensor(
            [episodes[s[2]].kind != POLICY_KIND for s in samples])
        self.value = torch.tensor([s[4] for s in samples], dtype=torch.float32)  # at state f
        # The return from the sample's own state t: the planning network's target, Q(s_t, a).
        self.value_now = torch.tensor([s[6] for s in samples], dtype=torch.float32)
        self.task = torch.tensor([TASKS.index(episodes[s[2]].task) for s in samples])
        self.actions = torch.from_numpy(np.stack([
            norm.normalize_actions(episodes[s[2]].actions[s[3]]) for s in samples])).float()
        self.proprio = torch.from_numpy(np.stack([
            norm.normalize_proprio(episodes[e].joints[i]) for e, i in states])).float()

    def __len__(self):
        return len(self.current)

    def state_targets(self):
        """(num_states, 2 * colours) disc positions (red x, y, blue x, y) of every kept state."""
        return torch.tensor([
            [v for color in COLORS for v in self.episodes[e].info['targets'][color]]
            for e, _ in self.states], dtype=torch.float32)

    def state_images(self, images_config):
        """(num_states, N, 3, S, S) uint8 camera images of every kept state (layout order)."""
        frames = []
        for e, i in self.states:
            images = {c: self.episodes[e].images[c][i] for c in CAMERAS}
            frames.append(preprocess_images(images, images_config,
                                            cameras=self.layout.cameras))
        return torch.from_numpy(np.stack(frames)).permute(0, 1, 4, 2, 3)  # NHWC -> NCHW


def encode_states(vae, pixels, batch=32, log=print):
    """Latents (num_states, 16, 2 + N, h, w) of every state, in batches."""
    out = []
    for start in range(0, len(pixels), batch):
        out.append(vae.encode_conditioning(pixels[start:start + batch]).float())
        log(f'[train] encoded {min(start + batch, len(pixels))}/{len(pixels)} states')
    return torch.cat(out)


def dataset_episodes(directory):
    """The Episodes of a directory exported by cosmos-policy-dataset (its train split, in its
    order): states = the exported steps, actions = all rows but the last (the last state's
    action is the command still in force, which no training sample uses), info = the
    recorded outcome JSON (seed, targets, ...). Demonstrations are imitated; rollouts not
    (kind POLICY_KIND), as the upstream classes treat them."""
    step_period = float(complete_manifest(directory)['step_period'])
    for exported in read_episodes(directory):
        text = exported.outcome_text.strip()
        info = json.loads(text) if text.startswith('{') else {}
        info.update(success=exported.success, task=exported.task)
        yield Episode(seed=int(info.get('seed', exported.index)),
                      kind='demonstration' if exported.demonstration else POLICY_KIND,
                      task=exported.task, step_period=step_period, images=exported.images,
                      joints=exported.proprio, actions=exported.actions[:-1],
                      success=exported.success, info=info)
