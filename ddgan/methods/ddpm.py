"""DDPM (Ho et al. 2020): epsilon prediction with the simple loss, on the shared backbone."""
import torch
import torch.nn.functional as F

from ..diffusion import ForwardProcess
from ..samplers import SPACINGS, ancestral_sampler, ddim_sampler, linear_betas, select_steps
from .common import build_unet
from .denoising import DenoisingMethod

# K of the sample grids and the periodic evaluation when eval.steps is unset: a grid at all
# T = 1,000 calls would cost minutes on a CPU (README, "Sample grids").
PREVIEW_CALLS = 20


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
    unused_sections = DenoisingMethod.unused_sections + ("edm",)

    @staticmethod
    def check_config(cfg):
        DenoisingMethod.check_config(cfg)
        d = cfg["ddpm"]
        if isinstance(d["num_steps"], bool) or d["num_steps"] < 1:
            raise ValueError(f"ddpm.num_steps (DDPM's training T) must be >= 1, got {d['num_steps']!r}")
        if d["spacing"] not in SPACINGS:
            raise ValueError(f"ddpm.spacing must be one of {', '.join(SPACINGS)}, got {d['spacing']!r}")
        if d["variance"] not in ("beta", "posterior"):
            raise ValueError(f"ddpm.variance must be beta or posterior, got {d['variance']!r}")
        try:  # fail now, not at the first grid
            select_steps(d["num_steps"], DDPM.preview_steps(cfg), d["spacing"])
        except ValueError as error:
            raise ValueError(f"eval.steps={cfg['eval']['steps']}: {error}; set eval.steps to a K "
                             f"the sampler can use") from None

    @staticmethod
    def preview_steps(cfg):
        """K of the sample grids and the periodic evaluation: eval.steps, else min(20, T)."""
        return cfg["eval"]["steps"] or min(PREVIEW_CALLS, cfg["ddpm"]["num_steps"])

    @staticmethod
    def network_calls(cfg, steps=None, sampler=None):
        """Network calls per image: K (default all T)."""
        return cfg["ddpm"]["num_steps"] if steps is None else steps

    def __init__(self, cfg, image_shape, accelerator):
        super().__init__(cfg, image_shape, accelerator)
        self.process = build_ddpm_process(cfg)

    def loss(self, network, x0):
        return ddpm_loss(network, self.process, x0)

    @staticmethod
    def sample_with(network, cfg, image_shape, num, rng, steps=None, sampler=None):
        """K = steps network calls (default all T) with sampler 'ancestral' or 'ddim'."""
        process, d = build_ddpm_process(cfg), cfg["ddpm"]
        selected = select_steps(process.num_steps, process.num_steps if steps is None else steps,
                                d["spacing"])
        x_T = torch.randn(num, *image_shape, device=rng.device, generator=rng)
        eps_model = lambda x, t: network(x, None, t)  # noqa: E731
        abar = process.alphas_cumprod.to(x_T.device)
        if (sampler or "ancestral") == "ancestral":
            return ancestral_sampler(eps_model, abar, x_T, selected, d["variance"], rng, d["clip_x0"])
        if sampler == "ddim":
            return ddim_sampler(eps_model, abar, x_T, selected, d["eta"], rng, d["clip_x0"])
        raise ValueError(f"DDPM samplers: ancestral, ddim; got {sampler!r}")
