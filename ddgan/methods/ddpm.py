"""DDPM (Ho et al. 2020): epsilon prediction with the simple loss, on the shared backbone."""
import torch
import torch.nn.functional as F

from ..checks import check_count
from ..diffusion import ForwardProcess
from ..samplers import (SPACINGS, ancestral_sampler, ddim_sampler, linear_betas, respaced_schedule,
                        select_steps)
from .base import Sampler
from .denoising import DenoisingMethod

SECTIONS = {
    "ddpm": {
        "train_timesteps": 1000,  # T, the forward process's steps (sampling takes K <= T)
        "beta_start": 1e-4,
        "beta_end": 0.02,
        "variance": "posterior",  # ancestral sampling: beta | posterior
        "spacing": "uniform",     # step selection with fewer calls: uniform | leading | quadratic
        "eta": 0.0,               # DDIM
        "clip_x0": True,          # clip the predicted x_0 to [-1, 1] when sampling (Ho's code)
    },
}

# K of the sample grids and the periodic evaluation when eval.steps is unset: a grid at all
# T = 1,000 calls would cost minutes on a CPU (docs/GUIDE.md, "Sample grids").
PREVIEW_CALLS = 20


def build_ddpm_process(ddpm):
    """The forward process of the `ddpm` settings section."""
    return ForwardProcess.from_betas(linear_betas(ddpm.train_timesteps, ddpm.beta_start, ddpm.beta_end))


def ddpm_loss(network, process, x0):
    """E || eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t) ||^2, t ~ U{1..T}."""
    t = torch.randint(1, process.num_steps + 1, (x0.shape[0],), device=x0.device)
    noise = torch.randn_like(x0)
    return F.mse_loss(network(process.q_sample(x0, t, noise), None, t).float(), noise)


class DDPM(DenoisingMethod):
    name = "ddpm"
    sections = SECTIONS
    samplers = ("ancestral", "ddim")
    eval_samplers = ("ancestral", "ddim")
    steps_symbol = "K"
    renamed = {"ddpm.num_steps": "ddpm.train_timesteps"}
    # The 2-D data are not in [-1, 1], so x0 is not clipped there.
    toy_overrides = {"ddpm": {"clip_x0": False}}

    @classmethod
    def check_config(cls, settings):
        super().check_config(settings)
        d = settings.ddpm
        check_count("ddpm.train_timesteps (DDPM's training T)", d.train_timesteps)
        if d.spacing not in SPACINGS:
            raise ValueError(f"ddpm.spacing must be one of {', '.join(SPACINGS)}, got {d.spacing!r}")
        if d.variance not in ("beta", "posterior"):
            raise ValueError(f"ddpm.variance must be beta or posterior, got {d.variance!r}")
        try:  # fail now, not at the first grid
            select_steps(d.train_timesteps, cls.preview_steps(settings), d.spacing)
        except ValueError as error:
            raise ValueError(f"eval.steps={settings.eval.steps}: {error}; set eval.steps to a K "
                             f"the sampler can use") from None

    @classmethod
    def objective(cls, settings):
        process = build_ddpm_process(settings.ddpm)
        return lambda network, x0: ddpm_loss(network, process, x0)

    @classmethod
    def default_steps(cls, settings):
        """K = T: every training step."""
        return settings.ddpm.train_timesteps

    @classmethod
    def check_steps(cls, settings, counts):
        limit = settings.ddpm.train_timesteps
        if max(counts) > limit or min(counts) < 1:
            raise ValueError(f"a DDPM with T = {limit} samples with K in 1..{limit} calls")

    @staticmethod
    def preview_steps(settings):
        """K of the sample grids and the periodic evaluation: eval.steps, else min(20, T)."""
        return settings.eval.steps or min(PREVIEW_CALLS, settings.ddpm.train_timesteps)

    @classmethod
    def sampler(cls, settings, steps=None, name=None, device="cpu"):
        """'ancestral' or 'ddim' over K = steps of the T training steps (default all T): K calls."""
        name, d = cls.sampler_name(name), settings.ddpm
        process = build_ddpm_process(d)
        selected = select_steps(process.num_steps, process.num_steps if steps is None else steps,
                                d.spacing)
        schedule = respaced_schedule(process.alphas_cumprod.to(device), selected)

        def sample(network, x_T, rng):
            eps_model = lambda x, t: network(x, None, t)  # noqa: E731
            if name == "ancestral":
                return ancestral_sampler(eps_model, x_T, schedule, rng, d.variance, d.clip_x0)
            return ddim_sampler(eps_model, x_T, schedule, rng, d.eta, d.clip_x0)
        return Sampler(name, len(selected), len(selected), sample)
