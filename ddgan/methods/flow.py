"""Rectified flow (Liu et al. 2022), flow matching on the linear path (Lipman et al. 2022).

x_t = (1 - t) x_0 + t eps for t in [0, 1]; the network regresses the velocity
dx_t/dt = eps - x_0, and sampling integrates dx/dt = v(x, t) from noise at t = 1 to
the data at t = 0. The network is the shared backbone, given 1000 t as its time label
(the range of DDPM's step labels, for which its embedding is laid out).
"""
import torch
import torch.nn.functional as F

from ..checks import check_count
from ..diffusion import per_sample
from .base import Sampler
from .denoising import DenoisingMethod

SECTIONS = {
    "flow": {
        # uniform: every t weighs the same (Liu et al.). Few-step sampling evaluates the ends
        # of [0, 1], t = 1 (pure noise) above all, where logit-normal (Esser et al. 2024)
        # trains rarely. logit_normal: t = sigmoid(n), n ~ N(logit_mean, logit_std^2).
        "time_distribution": "uniform",
        "logit_mean": 0.0,
        "logit_std": 1.0,
        "sampling_steps": 32,     # N steps of t from 1 to 0: NFE N (Euler), 2N - 1 (Heun)
        "time_scale": 1000.0,     # the network's time label is time_scale * t
    },
}
TIME_DISTRIBUTIONS = ("uniform", "logit_normal")

# N of the sample grids and the periodic evaluation when eval.steps is unset (see DDPM's PREVIEW_CALLS).
PREVIEW_STEPS = 20


def sample_times(batch, device, distribution="uniform", logit_mean=0.0, logit_std=1.0):
    """t in [0, 1], one per sample."""
    if distribution == "uniform":
        return torch.rand(batch, device=device)
    return torch.sigmoid(torch.randn(batch, device=device) * logit_std + logit_mean)


def flow_loss(velocity, x0, times):
    """E || (eps - x_0) - v(x_t, t) ||^2 with x_t = (1 - t) x_0 + t eps, eps ~ N(0, I)."""
    noise = torch.randn_like(x0)
    t = per_sample(times, x0)
    return F.mse_loss(velocity((1 - t) * x0 + t * noise, times).float(), noise - x0)


def sampling_times(num_steps, device=None):
    """The N + 1 times of an N-step sampler: uniform from 1 (noise) to 0 (data)."""
    check_count("the flow sampler's number of steps N", num_steps)
    return torch.linspace(1.0, 0.0, num_steps + 1, device=device)


def _velocity_at(velocity, x, t):
    """v(x, t) at one time t for the batch, in x's dtype (a bf16 network's output is cast up)."""
    return velocity(x, torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device)).to(x.dtype)


@torch.no_grad()
def euler_sampler(velocity, noise, times, rng=None):
    """x_{i+1} = x_i + (t_{i+1} - t_i) v(x_i, t_i): one call per step, N in all."""
    x = noise
    for t, t_next in zip(times[:-1].tolist(), times[1:].tolist()):
        x = x + (t_next - t) * _velocity_at(velocity, x, t)
    return x


@torch.no_grad()
def heun_sampler(velocity, noise, times, rng=None):
    """Heun's trapezoidal steps, Euler on the last (as EDM's sampler): 2N - 1 calls."""
    x = noise
    for t, t_next in zip(times[:-1].tolist(), times[1:].tolist()):
        slope = _velocity_at(velocity, x, t)
        x_next = x + (t_next - t) * slope
        if t_next > 0:
            x_next = x + (t_next - t) * 0.5 * (slope + _velocity_at(velocity, x_next, t_next))
        x = x_next
    return x


SAMPLERS = {"euler": (euler_sampler, lambda n: n), "heun": (heun_sampler, lambda n: 2 * n - 1)}


def velocity_of(network, time_scale):
    """v(x, t) from a backbone called as network(x, z, label) with label = time_scale * t."""
    return lambda x, times: network(x, None, time_scale * times)


class Flow(DenoisingMethod):
    name = "flow"
    sections = SECTIONS
    samplers = tuple(SAMPLERS)
    steps_symbol = "N"
    # The 2-D benchmark: four times the denoisers' learning rate, which its straight paths
    # need within their 4,000 updates (docs/GUIDE.md, the 2-D benchmark).
    toy_recipe = {**DenoisingMethod.toy_recipe, "lr_g": 2e-3}

    @classmethod
    def check_config(cls, settings):
        super().check_config(settings)
        f = settings.flow
        if f.time_distribution not in TIME_DISTRIBUTIONS:
            raise ValueError(f"flow.time_distribution must be one of {', '.join(TIME_DISTRIBUTIONS)}, "
                             f"got {f.time_distribution!r}")
        if f.logit_std <= 0:
            raise ValueError(f"flow.logit_std must be > 0, got {f.logit_std}")
        check_count("flow.sampling_steps (sampling steps N)", f.sampling_steps)

    @classmethod
    def objective(cls, settings):
        f = settings.flow

        def loss(network, x0):
            times = sample_times(x0.shape[0], x0.device, f.time_distribution, f.logit_mean, f.logit_std)
            return flow_loss(velocity_of(network, f.time_scale), x0, times)
        return loss

    @classmethod
    def default_steps(cls, settings):
        return settings.flow.sampling_steps

    @staticmethod
    def preview_steps(settings):
        """N of the sample grids and the periodic evaluation: eval.steps, else min(20, N)."""
        return settings.eval.steps or min(PREVIEW_STEPS, settings.flow.sampling_steps)

    @classmethod
    def sampler(cls, settings, steps=None, name=None, device="cpu"):
        """'euler' (N calls) or 'heun' (2N - 1 calls) over N = steps steps of t from 1 to 0."""
        name, f = cls.sampler_name(name), settings.flow
        times = sampling_times(f.sampling_steps if steps is None else steps, device)
        sampler, calls = SAMPLERS[name]
        return Sampler(name, len(times) - 1, calls(len(times) - 1),
                       lambda network, noise, rng: sampler(velocity_of(network, f.time_scale),
                                                           noise, times, rng))
