"""The forward (noising) process of DDGAN: a VP SDE observed at T+1 times.

Conventions (docs/THEORY.md §1): steps are 1-indexed, t in 1..T; index i of every
per-step array is step t = i + 1; abar_0 = 1, so x_0 is the clean image.
"""
import torch

from .checks import check_count


def per_sample(values, x):
    """Per-sample values [B] shaped to broadcast against x [B, ...]."""
    return values.reshape(-1, *([1] * (x.ndim - 1)))


class ForwardProcess:
    """q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I), t = 1..T."""

    def __init__(self, num_steps, beta_min=0.1, beta_max=20.0, eps=1e-3):
        check_count("num_steps (T)", num_steps)
        # The schedule is computed in float64 and stored in float32.
        s = eps + (1 - eps) * torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
        abar_vp = torch.exp(-0.5 * s**2 * (beta_max - beta_min) - s * beta_min)
        self._set_betas(1 - abar_vp[1:] / abar_vp[:-1])

    @classmethod
    def from_betas(cls, betas):
        """The same process with given betas, e.g. DDPM's linear schedule (ddgan.samplers.linear_betas)."""
        process = cls.__new__(cls)
        process._set_betas(torch.as_tensor(betas, dtype=torch.float64))
        return process

    def _set_betas(self, betas):
        self.num_steps = len(betas)
        alphas = 1 - betas
        abar = torch.cumprod(alphas, 0)
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        self.betas = betas.float()
        self.alphas_cumprod = abar.float()
        self.alphas_cumprod_prev = abar_prev.float()
        self.posterior_variance = ((1 - abar_prev) / (1 - abar) * betas).float()
        self.posterior_mean_coef_x0 = (abar_prev.sqrt() * betas / (1 - abar)).float()
        self.posterior_mean_coef_xt = (alphas.sqrt() * (1 - abar_prev) / (1 - abar)).float()
        # (name, device, dtype) -> that array there; the arrays are fixed once set here.
        self._copies = {}

    def _at(self, name, t, x):
        """The per-step array `name` at t - 1, shaped to broadcast against x ([B] -> [B, 1, ...])."""
        in_range = ((t >= 1) & (t <= self.num_steps)).all()
        if t.device.type == "cpu":
            if not in_range:
                raise ValueError(f"t must lie in 1..{self.num_steps}, got values in "
                                 f"{int(t.min())}..{int(t.max())}")
        else:  # checked on the device: reading the result on the host would stall every call
            torch._assert_async(in_range, f"t must lie in 1..{self.num_steps}")
        key = (name, x.device, x.dtype)
        if key not in self._copies:  # copied once: a copy from the host would stall every call
            self._copies[key] = getattr(self, name).to(device=x.device, dtype=x.dtype)
        return per_sample(self._copies[key][t - 1], x)

    def q_sample(self, x0, t, noise=None):
        """x_t ~ q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)."""
        noise = torch.randn_like(x0) if noise is None else noise
        abar = self._at("alphas_cumprod", t, x0)
        return abar.sqrt() * x0 + (1 - abar).sqrt() * noise

    def q_sample_pair(self, x0, t):
        """A real pair (x_{t-1}, x_t): x_{t-1} ~ q(x_{t-1} | x_0), x_t ~ q(x_t | x_{t-1})."""
        abar_prev = self._at("alphas_cumprod_prev", t, x0)
        # abar_0 = 1 makes x_prev exactly x0 at t = 1.
        x_prev = abar_prev.sqrt() * x0 + (1 - abar_prev).sqrt() * torch.randn_like(x0)
        beta = self._at("betas", t, x0)
        x_t = (1 - beta).sqrt() * x_prev + beta.sqrt() * torch.randn_like(x0)
        return x_prev, x_t

    def posterior_mean_var(self, x0, x_t, t):
        """Mean and variance of the Gaussian q(x_{t-1} | x_t, x_0)."""
        mean = (self._at("posterior_mean_coef_x0", t, x_t) * x0
                + self._at("posterior_mean_coef_xt", t, x_t) * x_t)
        return mean, self._at("posterior_variance", t, x_t)

    def posterior_sample(self, x0, x_t, t, noise=None):
        """x_{t-1} ~ q(x_{t-1} | x_t, x_0); at t = 1 the variance is 0 and this is x_0."""
        mean, var = self.posterior_mean_var(x0, x_t, t)
        noise = torch.randn_like(x_t) if noise is None else noise
        return mean + var.sqrt() * noise

    def __repr__(self):
        return f"ForwardProcess(num_steps={self.num_steps})"

