"""EDM (Karras et al. 2022): the preconditioned denoiser on the shared backbone."""
import torch

from ..networks.precond import EDMPrecond
from ..samplers import edm_sampler
from .common import build_unet
from .denoising import DenoisingMethod


def build_edm_network(cfg, image_shape):
    return EDMPrecond(build_unet(cfg, image_shape), cfg["edm"]["sigma_data"])


class EDM(DenoisingMethod):
    build_network = staticmethod(build_edm_network)

    def loss(self, network, x0):
        """lambda(sigma) || D(x_0 + n; sigma) - x_0 ||^2, ln sigma ~ N(P_mean, P_std^2)."""
        e = self.cfg["edm"]
        sigma = (torch.randn(x0.shape[0], device=x0.device) * e["P_std"] + e["P_mean"]).exp()
        sd = e["sigma_data"]
        weight = ((sigma**2 + sd**2) / (sigma * sd) ** 2).view(-1, 1, 1, 1)
        denoised = network(x0 + sigma.view(-1, 1, 1, 1) * torch.randn_like(x0), sigma)
        return (weight * (denoised.float() - x0) ** 2).mean()

    @staticmethod
    def sample_with(network, cfg, image_shape, num, rng, steps=None, sampler=None):
        """N = steps noise levels (NFE 2N - 1 with 'heun', N with 'euler')."""
        if sampler not in (None, "heun", "euler"):
            raise ValueError(f"EDM samplers: heun, euler; got {sampler!r}")
        e = cfg["edm"]
        latents = torch.randn(num, *image_shape, device=rng.device, generator=rng)
        return edm_sampler(network, latents, num_steps=steps or e["num_steps"],
                           sigma_min=e["sigma_min"], sigma_max=e["sigma_max"], rho=e["rho"],
                           second_order=sampler != "euler", rng=rng)
