"""Gradient regularisers of the discriminator, for every divergence.

The squared norms and their means are taken in float32; under bf16 autocast the
input gradients themselves come through the network's bf16 kernels.
"""
import torch


def _squared_grad_norm(outputs, inputs):
    (grad,) = torch.autograd.grad(outputs.float().sum(), inputs, create_graph=True)
    return grad.float().flatten(1).pow(2).sum(1)


def r1_penalty(real_out, real_input):
    """E_P ||grad_x V(x)||^2 on real inputs (Mescheder et al. 2018).

    real_input must have requires_grad set before the forward pass that made
    real_out. The caller multiplies by gamma / 2 (and by k when lazy every k).
    """
    return _squared_grad_norm(real_out, real_input).mean()


def gradient_penalty(critic, real, fake, *condition):
    """E[(||grad V(x_hat, *condition)|| - 1)^2], x_hat on the segment from fake to real.

    One uniform mixing weight per sample; the condition (x_t, t) is shared by the
    real and fake inputs, so only x_{t-1} is interpolated.
    """
    mix = torch.rand(real.shape[0], *([1] * (real.ndim - 1)), device=real.device)
    x_hat = (mix * real.detach() + (1 - mix) * fake.detach()).requires_grad_(True)
    # The floor only keeps sqrt's gradient finite at an exactly zero gradient: one near real
    # norms (1e-12 was, for a near-zero-initialised critic) would switch the penalty off.
    grad_norm = _squared_grad_norm(critic(x_hat, *condition), x_hat).clamp_min(1e-30).sqrt()
    return (grad_norm - 1).pow(2).mean()
