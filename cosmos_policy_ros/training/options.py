"""Every setting of a training run (``TrainOptions``, one field per cosmos-policy-train option),
validated once, here: a bad combination fails at start with the option's name."""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence


@dataclass(frozen=True)
class TrainOptions:
    """A run's settings; the field names are the options' (``--vae-steps`` -> vae_steps)."""

    data: Sequence[Path] = field(default_factory=tuple)  # episode-bag directories, all used
    dataset: Sequence[Path] = field(default_factory=tuple)  # cosmos-policy-dataset exports
    work_dir: Optional[Path] = None  # training state and latent cache (for --resume)
    record: int = 0                  # record N demonstration episodes into the last --data
    record_kinds: Optional[Sequence[str]] = None  # KIND[=SHARE] tokens (data.record_fractions)
    recovery_every: int = 0
    data_seed: int = 0
    out: Optional[Path] = None       # model directory to write (None: train only)
    resume: bool = False
    seed: int = 0
    steps: int = 2000
    time_budget: float = 0.0         # seconds (0: no limit)
    pause_after: int = 0             # steps of this run (0: no limit)
    batch_size: int = 32
    vae_steps: int = 0
    vae_lr: float = 2e-3
    vae_batch_size: int = 16
    vae_foreground_weight: float = 20.0
    vae_probe_weight: float = 1.0
    init_from: Optional[Path] = None
    planning: bool = False
    lr: float = 1e-3
    unimitated_policy_share: float = 0.0
    gamma: float = 0.95
    chunk_size: int = 8
    image_size: int = 64
    dit_preset: str = 'tiny'
    num_steps: int = 5
    save_every: int = 100
    force: bool = False
    quiet: bool = False

    def __post_init__(self):
        if bool(self.data) == bool(self.dataset):
            raise ValueError('give --data (directories of episode bags) or --dataset '
                             '(directories exported by cosmos-policy-dataset), one of them.')
        if self.dataset and self.record:
            raise ValueError('--record writes bags into --data; it does not go with --dataset')
        if self.work_dir is None:
            raise ValueError('--work-dir is required (training state and latent cache).')
        for name in ('steps', 'batch_size', 'save_every', 'num_steps', 'vae_batch_size'):
            if getattr(self, name) < 1:
                raise ValueError(f'--{name.replace("_", "-")} must be >= 1')
        if not 0.0 <= self.unimitated_policy_share <= 1.0:
            raise ValueError('--unimitated-policy-share must be in [0, 1]')
        if self.recovery_every < 0:
            raise ValueError('--recovery-every must be >= 0')
        if self.planning and not self.init_from:
            raise ValueError('--planning trains the planning network of a policy; pass '
                             '--init-from DIR')
        if self.planning and self.unimitated_policy_share:
            raise ValueError('--planning draws no policy samples; drop '
                             '--unimitated-policy-share')
        if self.init_from and self.vae_steps:
            raise ValueError("--init-from keeps its model's VAE; drop --vae-steps")
