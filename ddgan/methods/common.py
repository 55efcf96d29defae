"""Pieces every method uses: the shared U-Net, the EMA copy, gradient norms and clipping."""
import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from ..networks import UNet


def build_unet(settings, image_shape):
    """The U-Net of the `backbone` settings: DDGAN's generator, or a baseline's network
    (whose configs switch z and tanh off, as their check_config requires)."""
    channels, height, width = image_shape
    if height != width:
        raise ValueError(f"images must be square, got {height}x{width}")
    return UNet(height, channels, **vars(settings.backbone))  # every key is a UNet option


def make_ema(model, decay, device, warmup=True):
    """An EMA copy of `model` (make it before accelerate wraps the model, so it stays plain)."""
    update = warmup_ema_update(decay) if warmup else get_ema_multi_avg_fn(decay)
    return AveragedModel(model, multi_avg_fn=update, use_buffers=True).to(device).requires_grad_(False)


def ema_decay_after(num_updates, max_decay):
    """The warm-up EMA's decay after n updates (a tensor): min(max_decay, (1 + n) / (10 + n)),
    TensorFlow's ExponentialMovingAverage rule. A constant decay keeps max_decay^n of the
    initial weights in the average, too much of them for a short run (docs/GUIDE.md, EMA)."""
    return ((1 + num_updates) / (10 + num_updates)).clamp(max=max_decay)


def warmup_ema_update(max_decay):
    """AveragedModel's multi_avg_fn for the warm-up EMA. The decay is computed on the device
    from AveragedModel's update count (so reading it costs no host sync), and a resumed run,
    whose count is in the checkpoint, continues the same schedule."""
    @torch.no_grad()
    def update(averaged, current, num_updates):
        if torch.is_floating_point(averaged[0]):
            weight = 1 - ema_decay_after(num_updates.to(averaged[0].device, torch.float32), max_decay)
            # One weight tensor per parameter: the list overload reads it on the device, where a
            # single tensor would be turned into a Python number (a host sync).
            torch._foreach_lerp_(averaged, current, [weight.to(averaged[0].dtype)] * len(averaged))
        else:  # integer buffers are counters: take the model's
            torch._foreach_copy_(averaged, current)
    return update


def ema_weights(ema_state):
    """The averaged module's state dict, from an AveragedModel's state dict."""
    return {k.removeprefix("module."): v for k, v in ema_state.items() if k.startswith("module.")}


def grad_norm(module):
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))


def optimizer_step(optimizer, max_grad_norm=0.0):
    """optimizer.step(), after rescaling the gradients to a global norm of at most
    max_grad_norm (0: no clipping; Ho et al. clip DDPM's at 1)."""
    if max_grad_norm:
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()


def cosine_schedules(optimizers, hp, num_updates):
    """The 2-D benchmark's learning-rate decay (hp['lr_decay']): cosine to 0 over num_updates."""
    if not hp["lr_decay"]:
        return []
    return [torch.optim.lr_scheduler.CosineAnnealingLR(opt, num_updates) for opt in optimizers]
