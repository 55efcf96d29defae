"""Samplers: plain functions over a network callable, as the papers write them."""
import torch


@torch.no_grad()
def ddgan_sampler(generator, process, x_T, nz, rng=None):
    """DDGAN sampling (Xiao et al. 2022): T generator calls.

    x_T ~ N(0, I); for t = T..1: x_0' = G(x_t, z, t) with z ~ N(0, I), then
    x_{t-1} ~ q(x_{t-1} | x_t, x_0 = x_0'). At t = 1 the posterior is the point x_0'.
    `rng` (a torch.Generator on x_T's device) makes the draws reproducible.
    """
    x = x_T
    batch, device = x.shape[0], x.device
    for step in range(process.num_steps, 0, -1):
        t = torch.full((batch,), step, dtype=torch.long, device=device)
        z = torch.randn(batch, nz, device=device, generator=rng)
        x0_pred = generator(x, z, t)
        noise = torch.randn(x.shape, device=device, generator=rng)
        x = process.posterior_sample(x0_pred, x, t, noise=noise)
    return x
