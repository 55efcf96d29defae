"""Samplers: plain functions over a network callable, as the papers write them.

One calling convention, as k-diffusion's: sampler(network, x, schedule, rng=None, **options),
with x the starting noise and the schedule computed outside (DDGAN's ForwardProcess, DDPM's
respaced_schedule, EDM's edm_sigmas; flow's times in ddgan/methods/flow.py).
"""
import torch

from .checks import check_count


@torch.no_grad()
def ddgan_sampler(generator, x_T, process, rng=None, nz=1, start=None):
    """DDGAN sampling (Xiao et al. 2022): T generator calls.

    x_T ~ N(0, I); for t = T..1: x_0' = G(x_t, z, t) with z ~ N(0, I), then
    x_{t-1} ~ q(x_{t-1} | x_t, x_0 = x_0'). At t = 1 the posterior is the point x_0'.
    `rng` (a torch.Generator on x_T's device) makes the draws reproducible.
    start: the step x_T is at, if not T (a chain from a noised image, scripts/step_quality.py).
    """
    x = x_T
    batch, device = x.shape[0], x.device
    for step in range(start or process.num_steps, 0, -1):
        t = torch.full((batch,), step, dtype=torch.long, device=device)
        z = torch.randn(batch, nz, device=device, generator=rng)
        x0_pred = generator(x, z, t)
        noise = torch.randn(x.shape, device=device, generator=rng)
        x = process.posterior_sample(x0_pred, x, t, noise=noise)
    return x


# --- DDPM (Ho et al. 2020) with fewer network calls: respacing and DDIM -------------------

def linear_betas(num_steps=1000, beta_start=1e-4, beta_end=0.02):
    """DDPM's linear schedule; index i is step t = i + 1."""
    return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)


SPACINGS = ("uniform", "leading", "quadratic")


def select_steps(num_train_steps, num_calls, spacing="uniform"):
    """K distinct 1-indexed steps of 1..T, ascending, at which a K-call sampler calls the model.

    The sampler starts from pure noise at the largest. Whatever the spacing, K = T is every
    step and K = 1 is the single step T (one x_0 prediction from pure noise).
    uniform: floor(linspace(0, T - 1, K)) + 1, from 1 to T.
    leading: diffusers' "leading" grid, 1 + j floor(T / K) for j < K (0, 20, ..., 980 in its
        0-indexed steps for K = 50 at T = 1000); DDIM's code's range(0, T, T // K) where K
        divides T (elsewhere that range holds more than K steps).
    quadratic: DDIM's floor(linspace(0, sqrt(0.8 T), K)^2) + 1, dense near the data and
        ending at 0.8 T + 1. For large K it would repeat small steps (from K = 30 at T = 1000),
        each repeat a wasted call; a repeated step is moved to one above the step before it.
    """
    if isinstance(num_calls, bool) or not 1 <= num_calls <= num_train_steps:
        raise ValueError(f"the number of steps must lie in 1..{num_train_steps}, got {num_calls}")
    if spacing not in SPACINGS:
        raise ValueError(f"spacing must be one of {', '.join(SPACINGS)}, got {spacing!r}")
    if num_calls == 1:
        return [num_train_steps]
    if spacing == "uniform":
        steps = torch.linspace(0, num_train_steps - 1, num_calls, dtype=torch.float64).floor().long()
    elif spacing == "leading":
        steps = torch.arange(num_calls) * (num_train_steps // num_calls)
    else:
        steps = (torch.linspace(0, (0.8 * num_train_steps) ** 0.5, num_calls, dtype=torch.float64) ** 2).floor().long()
        # s_j = max(q_j, s_{j-1} + 1), in closed form: the running maximum of q_j - j, plus j.
        index = torch.arange(num_calls)
        steps = torch.cummax(steps - index, 0).values + index
    return (steps + 1).tolist()


def respaced_schedule(alphas_cumprod, steps):
    """The schedule of DDPM's samplers over the selected steps (select_steps): (t, abar_t,
    abar_s) for each step t, from the noisiest down, s the next selected step below (abar 1
    past the last)."""
    abar = alphas_cumprod.double()
    previous = [None] + steps[:-1]
    pairs = [(t, abar[t - 1], abar[s - 1] if s else torch.ones((), dtype=torch.float64))
             for t, s in zip(steps, previous)]
    return list(reversed(pairs))


def _predicted_x0(x, eps, abar_t, clip):
    """x_0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), clipped to the data range [-1, 1] if asked."""
    x0 = (x - (1 - abar_t).sqrt() * eps) / abar_t.sqrt()
    return x0.clamp(-1, 1) if clip else x0


@torch.no_grad()
def ancestral_sampler(eps_model, x_T, schedule, rng=None, variance="posterior", clip_x0=True):
    """DDPM ancestral sampling over the selected steps (all T, or a respaced subset).

    Respacing (Nichol & Dhariwal 2021): between selected steps t > s the process is
    Gaussian with beta = 1 - abar_t / abar_s; the reverse step uses that beta with
    variance beta ('beta') or the posterior's (1 - abar_s) / (1 - abar_t) beta ('posterior').
    The mean is the posterior's at the predicted x_0, clipped to [-1, 1] with clip_x0 as in
    Ho's and Nichol & Dhariwal's code (unclipped, it equals Algorithm 2's eps form).
    eps_model(x, t) predicts the noise, t a LongTensor [B] of 1-indexed steps; the schedule
    is respaced_schedule's.
    """
    if variance not in ("beta", "posterior"):
        raise ValueError(f"variance must be 'beta' or 'posterior', got {variance!r}")
    x = x_T
    for t, abar_t, abar_s in schedule:
        beta = 1 - abar_t / abar_s
        eps = eps_model(x, torch.full((x.shape[0],), t, dtype=torch.long, device=x.device))
        x0 = _predicted_x0(x, eps, abar_t, clip_x0)
        x = (abar_s.sqrt() * beta * x0 + (1 - beta).sqrt() * (1 - abar_s) * x) / (1 - abar_t)
        if abar_s < 1:  # no noise on the last step
            var = beta if variance == "beta" else (1 - abar_s) / (1 - abar_t) * beta
            x = x + var.sqrt() * torch.randn(x.shape, device=x.device, generator=rng)
    return x


@torch.no_grad()
def ddim_sampler(eps_model, x_T, schedule, rng=None, eta=0.0, clip_x0=True):
    """DDIM (Song et al. 2021) over respaced_schedule's steps; eta = 0 is deterministic.

    clip_x0 clips the predicted x_0 to [-1, 1] and keeps the network's eps for the direction
    to x_t (diffusers' clip_sample with its default use_clipped_model_output=False).
    """
    x = x_T
    for t, abar_t, abar_s in schedule:
        eps = eps_model(x, torch.full((x.shape[0],), t, dtype=torch.long, device=x.device))
        x0_pred = _predicted_x0(x, eps, abar_t, clip_x0)
        sigma = eta * ((1 - abar_s) / (1 - abar_t) * (1 - abar_t / abar_s)).sqrt()
        x = abar_s.sqrt() * x0_pred + (1 - abar_s - sigma**2).sqrt() * eps
        if eta > 0 and abar_s < 1:
            x = x + sigma * torch.randn(x.shape, device=x.device, generator=rng)
    return x


# --- EDM (Karras et al. 2022) ---------------------------------------------------------------

def edm_sigmas(num_steps, sigma_min=0.002, sigma_max=80.0, rho=7.0):
    """The N + 1 noise levels of EDM's sampler: N levels from sigma_max to sigma_min, then 0."""
    check_count("EDM's number of noise levels N", num_steps)
    i = torch.arange(num_steps, dtype=torch.float64)
    ramp = i / max(num_steps - 1, 1)
    sigmas = (sigma_max ** (1 / rho) + ramp * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return torch.cat([sigmas, torch.zeros(1, dtype=torch.float64)])


@torch.no_grad()
def edm_sampler(denoiser, latents, sigmas, rng=None, S_churn=0.0, S_min=0.0, S_max=float("inf"),
                S_noise=1.0, second_order=True):
    """EDM's sampler (Karras et al. 2022, Algorithm 2): Heun steps, Euler on the last.

    denoiser(x, sigma) returns D(x; sigma) for sigma of shape [B]; latents ~ N(0, I) are
    scaled by sigmas[0]; sigmas are edm_sigmas' N levels and a final 0. NFE = 2N - 1 (N with
    second_order=False).
    """
    num_steps = len(sigmas) - 1
    sigmas = sigmas.tolist()
    x = latents.double() * sigmas[0]

    def slope(x, sigma):
        sigma_batch = torch.full((x.shape[0],), sigma, dtype=x.dtype, device=x.device)
        return (x - denoiser(x, sigma_batch).double()) / sigma

    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        gamma = min(S_churn / num_steps, 2**0.5 - 1) if S_min <= sigma <= S_max else 0.0
        sigma_hat = sigma * (1 + gamma)
        if gamma > 0:
            noise = torch.randn(x.shape, device=x.device, generator=rng, dtype=x.dtype)
            x = x + (sigma_hat**2 - sigma**2) ** 0.5 * S_noise * noise
        d = slope(x, sigma_hat)
        x_next = x + (sigma_next - sigma_hat) * d
        if second_order and sigma_next > 0:  # trapezoidal correction
            x_next = x + (sigma_next - sigma_hat) * 0.5 * (d + slope(x_next, sigma_next))
        x = x_next
    return x.to(latents.dtype)
