"""Pieces every method uses: the shared U-Net, the EMA copy and gradient norms."""
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..networks import UNet


def build_unet(cfg, image_shape):
    """The U-Net of cfg's `generator` section: DDGAN's generator, or the DDPM/EDM backbone
    (whose configs switch z and tanh off, as their check_config requires)."""
    channels, height, width = image_shape
    if height != width:
        raise ValueError(f"images must be square, got {height}x{width}")
    g = cfg["generator"]
    return UNet(height, channels, base_channels=g["base_channels"],
                channel_mult=tuple(g["channel_mult"]), num_res_blocks=g["num_res_blocks"],
                attn_resolutions=tuple(g["attn_resolutions"]), dropout=g["dropout"],
                nz=g["nz"], z_emb_dim=g["z_emb_dim"], n_mlp=g["n_mlp"],
                tanh_output=g["tanh_output"])


def make_ema(model, decay, device):
    """An EMA copy of `model` (make it before accelerate wraps the model, so it stays plain)."""
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay),
                         use_buffers=True).to(device).requires_grad_(False)


def ema_weights(ema_state):
    """The averaged module's state dict, from an AveragedModel's state dict."""
    return {k.removeprefix("module."): v for k, v in ema_state.items() if k.startswith("module.")}


def grad_norm(module):
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
