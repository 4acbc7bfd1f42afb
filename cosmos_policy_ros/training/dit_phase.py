"""The DiT phase: the policy network (or, with --planning, the planning network of an
--init-from policy) trained on engine/training.py's objective, resumable, then written as a
model directory (``train``)."""
from pathlib import Path
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from cosmos_policy_ros.engine.dit import CosmosDiT
from cosmos_policy_ros.engine.training import (diffusion_loss, skip_zero_text_rows,
                                               text_rows_in_use)
from cosmos_policy_ros.training.batches import batch_draws, clean_batch, POLICY
from cosmos_policy_ros.training.model_writer import write_model, write_planning_model
from cosmos_policy_ros.training.optimization import (learning_rate, optimizer_step, smooth,
                                                     TrainingState)
from cosmos_policy_ros.training.prepare import prepare

STATE_FILE = 'train_state.pt'


def new_network(options, data):
    """The DiT at its seeded initialization (or --init-from's weights), with the exact
    zero-text-row speed-up."""
    torch.manual_seed(options.seed)
    net = CosmosDiT(options.dit_preset).float().train()
    if data.init is not None:
        net.transformer.load_state_dict(data.init.dit, strict=True)
    skip_zero_text_rows(net.transformer, text_rows_in_use(data.text))
    return net


def batch_loss(net, data, seed, step, batch_size, unimitated_policy_share=0.0, planning=False):
    """The loss of the batch drawn for (seed, step).

    Policy samples whose actions are not imitated (failures, policy rollouts; drawn with
    unimitated_policy_share > 0) generate the action frame but are not supervised on it: their
    values, future images and proprio are learned in the mode the node runs.
    """
    index, modes, sigma, eps = batch_draws(seed, step, data.samples, batch_size, data.layout,
                                           unimitated_policy_share, planning)
    x0, flags = clean_batch(data.samples, data.latents, index, modes, q_target=planning)
    loss_frames = ~flags
    loss_frames[(modes == POLICY) & ~data.samples.imitate[index],
                data.layout.action_index] = False
    return diffusion_loss(net, x0, flags, data.text[data.samples.task[index]], sigma, eps,
                          loss_frames=loss_frames)


def train(options, log=print, data=None):
    """Train (or resume) and write the model directory; returns (net, loss history)."""
    data = data if data is not None else prepare(options, log)
    work = Path(options.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    net = new_network(options, data)
    optimizer = torch.optim.AdamW(net.parameters(), lr=options.lr, weight_decay=0.01)
    key = data.digest + ('/planning' if options.planning else '')
    state = TrainingState(work / STATE_FILE, key, {'net': net, 'optimizer': optimizer})
    step, history = state.load() if options.resume else (0, [])
    if step:
        log(f'[train] resumed at step {step}')

    started = time.monotonic()
    first_step = step
    smoothed = None
    with tqdm(total=options.steps, initial=step, desc='cosmos-policy-train', unit='step',
              file=sys.stderr, mininterval=2.0, disable=options.quiet) as bar:
        while step < options.steps:
            if options.time_budget and time.monotonic() - started > options.time_budget:
                log(f'[train] time budget of {options.time_budget} s reached at step {step}')
                break
            if options.pause_after and step - first_step >= options.pause_after:
                log(f'[train] paused at step {step} (continue with --resume)')
                break
            for group in optimizer.param_groups:
                group['lr'] = learning_rate(step, base=options.lr, steps=options.steps)
            loss = batch_loss(net, data, options.seed, step, options.batch_size,
                              options.unimitated_policy_share, options.planning)
            value = optimizer_step(optimizer, loss, net.parameters())
            step += 1
            history.append(value)
            smoothed = smooth(smoothed, value)
            bar.update(1)
            bar.set_postfix(loss=f'{smoothed:.4f}')
            if step % options.save_every == 0:
                state.save(step, history)
    state.save(step, history)
    if options.out is None:
        return net, history
    run = {'trainer': 'cosmos-policy-train', 'seed': options.seed, 'data_seed': options.data_seed,
           'steps': step, 'episodes': len(data.episodes), 'gamma': options.gamma,
           'final_loss': smoothed}
    if options.planning:
        write_planning_model(options.out, data.init.path, net, source=run, overwrite=options.force)
    else:
        write_model(options.out, net, data.vae, data.layout, data.images, data.stats,
                    data.text_table,
                    source={**run, 'vae_steps': len(data.vae_history),
                            'vae_final_loss': (float(np.mean(data.vae_history[-20:]))
                                               if data.vae_history else None),
                            **({'unimitated_policy_share': options.unimitated_policy_share}
                               if options.unimitated_policy_share else {}),
                            **({'init_from': data.init.source} if data.init else {})},
                    num_steps=options.num_steps, overwrite=options.force)
    log(f'[train] wrote {options.out}')
    return net, history
