"""EDM (Karras et al. 2022): the preconditioned denoiser on the shared backbone."""
import torch

from ..diffusion import per_sample
from ..networks.precond import EDMPrecond
from ..samplers import edm_sampler, edm_sigmas
from .base import Sampler
from .denoising import DenoisingMethod

SECTIONS = {
    "edm": {
        "sigma_data": 0.5,
        "P_mean": -1.2,
        "P_std": 1.2,
        "sampling_levels": 18,    # N noise levels of the sampler: NFE 2N - 1 (Heun), N (Euler)
        "sigma_min": 0.002,
        "sigma_max": 80.0,
        "rho": 7.0,
    },
}


def edm_loss(network, x0, P_mean=-1.2, P_std=1.2, sigma_data=0.5):
    """lambda(sigma) || D(x_0 + n; sigma) - x_0 ||^2, ln sigma ~ N(P_mean, P_std^2), n ~ N(0, sigma^2 I)."""
    sigma = (torch.randn(x0.shape[0], device=x0.device) * P_std + P_mean).exp()
    weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    denoised = network(x0 + per_sample(sigma, x0) * torch.randn_like(x0), sigma)
    return (per_sample(weight, x0) * (denoised.float() - x0) ** 2).mean()


# N of the grids and the periodic evaluation when eval.steps is unset (see DDPM's PREVIEW_CALLS).
PREVIEW_LEVELS = 10


class EDM(DenoisingMethod):
    name = "edm"
    sections = SECTIONS
    samplers = ("heun", "euler")
    steps_symbol = "N"
    renamed = {"edm.num_steps": "edm.sampling_levels"}
    # The 2-D data scaled to std 0.7, near sigma_data = 0.5, as images in [-1, 1] are.
    toy_recipe = {**DenoisingMethod.toy_recipe, "data_scale": 0.5}

    @classmethod
    def objective(cls, settings):
        e = settings.edm
        return lambda network, x0: edm_loss(network, x0, e.P_mean, e.P_std, e.sigma_data)

    @staticmethod
    def wrap(backbone, settings):
        return EDMPrecond(backbone, settings.edm.sigma_data)

    @classmethod
    def default_steps(cls, settings):
        return settings.edm.sampling_levels

    @staticmethod
    def preview_steps(settings):
        """N of the sample grids and the periodic evaluation: eval.steps, else min(10, N) noise
        levels (19 Heun calls, as cheap as DDPM's 20)."""
        return settings.eval.steps or min(PREVIEW_LEVELS, settings.edm.sampling_levels)

    @classmethod
    def sampler(cls, settings, steps=None, name=None, device="cpu"):
        """'heun' (2N - 1 calls) or 'euler' (N calls) over N = steps noise levels."""
        name, e = cls.sampler_name(name), settings.edm
        levels = e.sampling_levels if steps is None else steps
        sigmas = edm_sigmas(levels, e.sigma_min, e.sigma_max, e.rho)
        second_order = name == "heun"
        return Sampler(name, levels, 2 * levels - 1 if second_order else levels,
                       lambda network, latents, rng: edm_sampler(network, latents, sigmas, rng,
                                                                 second_order=second_order))
