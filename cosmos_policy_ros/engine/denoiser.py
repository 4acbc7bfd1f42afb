"""The x0 denoiser: rectified-flow preconditioning and frame conditioning around the network.

The sampler state is EDM-style, ``x_sigma = x0 + sigma * eps``. The released Cosmos Policy
network is a rectified-flow model (reference sections 3, 4 and 9): with sigma_data = 1 and
``t = sigma / (1 + sigma)`` it sees ``x_sigma / (1 + sigma) = (1 - t) x0 + t eps`` and the time
t in [0, 1), and it returns a velocity-like F (about eps - x0). So

    c_skip = c_in = 1 / (1 + sigma) = 1 - t,    c_out = -sigma / (1 + sigma) = -t,
    c_noise = t,                                  x0 = c_skip * x_sigma + c_out * F.

Conditioning frames (blank, current proprio and cameras, ...) are clean: the network gets the
clean latent there instead of ``c_in * x_sigma``, the time 0 there, and the frame mask as an
extra input; the returned x0 takes the clean latent on those frames.

Network protocol. ``net`` is any callable

    net(x, timesteps, condition_mask, text_embedding) -> F
      x: (B, 16, T, H, W) preconditioned latent, in net.dtype
      timesteps: (B, T) per-frame t in [0, 1), in net.dtype
      condition_mask: (B, 1, T, H, W), 1.0 on conditioning frames, in net.dtype
      text_embedding: (B, L, 1024) T5 embedding, in net.dtype (expand a (1, L, 1024) one to B)
      returns F: (B, 16, T, H, W) in net.dtype, the raw (velocity-like) network output
      attributes: net.dtype (torch.dtype), net.device (torch.device)

This module is the only place where tensors are cast around the network: the inputs go to
net.dtype and net.device (so the timesteps are rounded to bf16 for a bf16 network, like the
reference), F comes back as float32, and x0 is computed in float32.
"""
import torch

TEXT_CHANNELS = 1024  # width of a T5-11B encoder embedding


def rectified_flow_scaling(sigma):
    """(c_skip, c_out, c_in, c_noise) for a sigma tensor of any shape (sigma_data = 1).

    Computed as the reference does: t = sigma / (sigma + 1); c_skip = c_in = 1 - t;
    c_out = -t; c_noise = t.
    """
    t = sigma / (sigma + 1)
    return 1.0 - t, -t, 1.0 - t, t


class ConditionedDenoiser:
    """x0_fn(x, sigma) for the sampler: a network, a clean latent and its conditioning frames.

    net: a callable following the protocol in the module docstring.
    clean_latent: (B, 16, T, H, W) clean latent sequence (image latents, injected proprio, ...);
        only its conditioning frames are used. Kept (float32) on the network's device.
    condition_frames: (B, T) or (T,) bool, True on conditioning frames.
    text_embedding: (B, L, 1024) or (1, L, 1024) T5 embedding.

    Calling it with x (B, 16, T, H, W) and sigma (B,) returns the float32 x0 prediction.
    """

    def __init__(self, net, clean_latent, condition_frames, text_embedding):
        check_net(net)
        if not isinstance(clean_latent, torch.Tensor) or clean_latent.ndim != 5:
            raise ValueError('`clean_latent` must be a (B, 16, T, H, W) tensor, got '
                             f'{_describe(clean_latent)}.')
        batch, _, frames, height, width = clean_latent.shape
        condition_frames = torch.as_tensor(condition_frames, device=net.device)
        if condition_frames.ndim == 1:
            condition_frames = condition_frames.expand(batch, -1)  # (T,) -> (B, T)
        if condition_frames.shape != (batch, frames) or condition_frames.dtype != torch.bool:
            raise ValueError(f'`condition_frames` must be a bool tensor of shape ({batch}, '
                             f'{frames}) or ({frames},), got {_describe(condition_frames)}.')
        if (not isinstance(text_embedding, torch.Tensor) or text_embedding.ndim != 3
                or text_embedding.shape[0] not in (1, batch)
                or text_embedding.shape[2] != TEXT_CHANNELS):
            raise ValueError(f'`text_embedding` must be a (1 or {batch}, L, {TEXT_CHANNELS}) '
                             f'tensor, got {_describe(text_embedding)}.')
        self.net = net
        self.clean_latent = clean_latent.to(device=net.device, dtype=torch.float32)
        self.condition_frames = condition_frames
        # (B, T) -> (B, 1, T, 1, 1): broadcasts over channels and space.
        self._frame_mask = condition_frames[:, None, :, None, None]
        # The network's copies of the mask and the text, made once.
        mask = self._frame_mask.expand(-1, -1, -1, height, width)  # -> (B, 1, T, H, W)
        self._net_mask = mask.to(device=net.device, dtype=net.dtype)
        text = text_embedding.expand(batch, -1, -1)  # (1 or B, L, 1024) -> (B, L, 1024)
        self._net_text = text.to(device=net.device, dtype=net.dtype)

    def __call__(self, x, sigma):
        """x0 prediction (B, 16, T, H, W) float32 for x (B, 16, T, H, W) and sigma (B,).

        Computed on the network's device; returned on x's device.
        """
        if x.shape != self.clean_latent.shape:
            raise ValueError(f"x must have the clean latent's shape "
                             f'{tuple(self.clean_latent.shape)}, got {tuple(x.shape)}.')
        if sigma.shape != (x.shape[0],):
            raise ValueError(f'sigma must have shape ({x.shape[0]},), got {tuple(sigma.shape)}.')
        device = x.device
        x = x.to(device=self.clean_latent.device, dtype=torch.float32)
        sigma = sigma.to(device=x.device, dtype=torch.float32)
        sigma = sigma.reshape(-1, 1, 1, 1, 1)  # (B,) -> (B, 1, 1, 1, 1)
        c_skip, c_out, c_in, c_noise = rectified_flow_scaling(sigma)
        # Network input: clean latent on conditioning frames, c_in * x elsewhere.
        net_x = torch.where(self._frame_mask, self.clean_latent, c_in * x)
        # Per-frame time: c_noise(sigma_conditional = 0) = 0 on conditioning frames, t elsewhere.
        c_noise = c_noise.reshape(-1, 1)  # (B, 1, 1, 1, 1) -> (B, 1)
        timesteps = torch.where(self.condition_frames, 0.0, c_noise)  # (B, T)
        output = self.net(net_x.to(device=self.net.device, dtype=self.net.dtype),
                          timesteps.to(device=self.net.device, dtype=self.net.dtype),
                          self._net_mask, self._net_text)
        if not isinstance(output, torch.Tensor) or output.shape != x.shape:
            raise ValueError(f'the network must return F of shape {tuple(x.shape)} (see the '
                             f'protocol in cosmos_policy_ros.engine.denoiser); got '
                             f'{_describe(output)}.')
        output = output.to(device=x.device, dtype=torch.float32)
        # x0 = c_skip * x + c_out * F in float32, then the clean latent on conditioning frames.
        x0 = c_skip * x + c_out * output
        return torch.where(self._frame_mask, self.clean_latent, x0).to(device)


def check_net(net):
    """Raise unless `net` is callable with a floating `dtype` and a `device` (the protocol)."""
    if not callable(net):
        raise TypeError(f'`net` must be callable, got {type(net).__name__}.')
    dtype, device = getattr(net, 'dtype', None), getattr(net, 'device', None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f'`net.dtype` must be a floating torch.dtype, got {dtype!r}.')
    if not isinstance(device, torch.device):
        raise TypeError(f'`net.device` must be a torch.device, got {device!r}.')


def _describe(value):
    if isinstance(value, torch.Tensor):
        return f'{tuple(value.shape)} {value.dtype}'
    return type(value).__name__
