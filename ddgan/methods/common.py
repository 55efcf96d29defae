"""Pieces every method uses: the EMA copy and gradient norms."""
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


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
