"""DDPM (Ho et al. 2020): epsilon prediction with the simple loss, on the shared backbone."""
import torch
import torch.nn.functional as F

from ..diffusion import ForwardProcess
from ..samplers import ancestral_sampler, ddim_sampler, linear_betas, select_steps
from .common import build_unet
from .denoising import DenoisingMethod


def build_ddpm_process(cfg):
    d = cfg["ddpm"]
    return ForwardProcess.from_betas(linear_betas(d["num_steps"], d["beta_start"], d["beta_end"]))


def ddpm_loss(network, process, x0):
    """E || eps - eps_theta(sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, t) ||^2, t ~ U{1..T}."""
    t = torch.randint(1, process.num_steps + 1, (x0.shape[0],), device=x0.device)
    noise = torch.randn_like(x0)
    return F.mse_loss(network(process.q_sample(x0, t, noise), None, t).float(), noise)


class DDPM(DenoisingMethod):
    build_network = staticmethod(build_unet)

    def __init__(self, cfg, image_shape, accelerator):
        super().__init__(cfg, image_shape, accelerator)
        self.process = build_ddpm_process(cfg)

    def loss(self, network, x0):
        return ddpm_loss(network, self.process, x0)

    @staticmethod
    def sample_with(network, cfg, image_shape, num, rng, steps=None, sampler=None):
        """K = steps network calls (default all T) with sampler 'ancestral' or 'ddim'."""
        process, d = build_ddpm_process(cfg), cfg["ddpm"]
        selected = select_steps(process.num_steps, steps or process.num_steps, d["spacing"])
        x_T = torch.randn(num, *image_shape, device=rng.device, generator=rng)
        eps_model = lambda x, t: network(x, None, t)  # noqa: E731
        abar = process.alphas_cumprod.to(x_T.device)
        if (sampler or "ancestral") == "ancestral":
            return ancestral_sampler(eps_model, abar, x_T, selected, d["variance"], rng)
        if sampler == "ddim":
            return ddim_sampler(eps_model, abar, x_T, selected, d["eta"], rng)
        raise ValueError(f"DDPM samplers: ancestral, ddim; got {sampler!r}")
