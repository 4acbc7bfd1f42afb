"""The optimization both phases share: the warm-up + cosine learning-rate schedule, one clipped
optimizer step, the progress bar's smoothed loss, a digest of a module's weights, and the
resumable state of a phase in one file (``TrainingState``)."""
import hashlib
import math
from pathlib import Path

import torch


def learning_rate(step, *, base, steps, warmup=100):
    warmup = max(1, min(warmup, steps // 10))
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def optimizer_step(optimizer, loss, parameters):
    """One step on `loss` with the gradient norm clipped to 1; returns the loss value."""
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(parameters, 1.0)
    optimizer.step()
    return float(loss.detach())


def smooth(smoothed, value):
    """The progress bar's exponential moving average of the loss."""
    return value if smoothed is None else 0.98 * smoothed + 0.02 * value


def weights_digest(module):
    """sha256 of a module's parameters and buffers (names, shapes, float32 bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()


class TrainingState:
    """The resumable state of one training phase in one file: modules, step, loss history.

    key: what the state belongs to (data and settings); loading another key's file is refused.
    modules: {name: object with state_dict/load_state_dict} (networks, optimizers).
    Saved atomically (a .partial file renamed over the old one).
    """

    def __init__(self, path, key, modules):
        self.path, self.key, self.modules = Path(path), key, modules

    def load(self):
        """(step, history) restored from the file, (0, []) without one."""
        if not self.path.is_file():
            return 0, []
        state = torch.load(self.path, weights_only=False)
        if state.get('key') != self.key:
            raise ValueError(f'{self.path} belongs to other data or settings; remove it or '
                             f'drop --resume.')
        for name, module in self.modules.items():
            module.load_state_dict(state[name])
        return state['step'], state['history']

    def save(self, step, history):
        partial = self.path.with_suffix('.partial')
        torch.save({'key': self.key, 'step': step, 'history': history,
                    **{name: module.state_dict() for name, module in self.modules.items()}},
                   partial)
        partial.replace(self.path)
