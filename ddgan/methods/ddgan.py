"""DDGAN's training step: one discriminator step against real and fake pairs, one generator step.

The two step functions work on any G(x_t, z, t) and D(x_{t-1}, x_t, t), image or
2-D; the DDGAN class binds them to the networks, optimisers and EMA of a run.
"""
import math

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from divergences import get_divergence, gradient_penalty, r1_penalty

from ..diffusion import ForwardProcess
from ..networks import Discriminator, UNet
from ..samplers import ddgan_sampler


def fake_pair(generator, process, x0, nz):
    """t, x_t ~ q(x_t | x_0) and a generated x_{t-1} ~ q(x_{t-1} | x_t, G(x_t, z, t))."""
    t = torch.randint(1, process.num_steps + 1, (x0.shape[0],), device=x0.device)
    x_t = process.q_sample(x0, t)
    z = torch.randn(x0.shape[0], nz, device=x0.device)
    return t, x_t, process.posterior_sample(generator(x_t, z, t), x_t, t)


def discriminator_step(generator, discriminator, optimizer, process, divergence, x0, nz,
                       r1_weight=0.0, backward=torch.Tensor.backward):
    """One update of D on a real pair (x_{t-1}, x_t) and a fake pair with the same x_t and t.

    r1_weight multiplies E||grad V(real)||^2 (gamma / 2, times k when lazy every k).
    """
    t = torch.randint(1, process.num_steps + 1, (x0.shape[0],), device=x0.device)
    x_prev, x_t = process.q_sample_pair(x0, t)
    x_prev.requires_grad_(r1_weight > 0)
    real_out = discriminator(x_prev, x_t, t)
    with torch.no_grad():
        z = torch.randn(x0.shape[0], nz, device=x0.device)
        fake_prev = process.posterior_sample(generator(x_t, z, t), x_t, t)
    fake_out = discriminator(fake_prev, x_t, t)

    loss = divergence.d_loss(real_out, fake_out)
    stats = {"d_loss": loss.detach(), "d_real": real_out.detach().float().mean(),
             "d_fake": fake_out.detach().float().mean()}
    if r1_weight > 0:
        r1 = r1_penalty(real_out, x_prev)
        loss = loss + r1_weight * r1
        stats["r1"] = r1.detach()
    if divergence.gp_weight > 0:
        gp = gradient_penalty(discriminator, x_prev, fake_prev, x_t, t)
        loss = loss + divergence.gp_weight * gp
        stats["gp"] = gp.detach()
    optimizer.zero_grad(set_to_none=True)
    backward(loss)
    optimizer.step()
    return stats


def generator_step(generator, discriminator, optimizer, process, divergence, x0, nz,
                   backward=torch.Tensor.backward):
    """One update of G against a frozen D. Pass D unwrapped (not DDP): it only routes gradients."""
    t, x_t, fake_prev = fake_pair(generator, process, x0, nz)
    discriminator.requires_grad_(False)
    loss = divergence.g_loss(discriminator(fake_prev, x_t, t))
    discriminator.requires_grad_(True)
    optimizer.zero_grad(set_to_none=True)
    backward(loss)
    optimizer.step()
    return {"g_loss": loss.detach()}


def build_generator(cfg, image_shape):
    channels, height, width = image_shape
    if height != width:
        raise ValueError(f"images must be square, got {height}x{width}")
    g = cfg["generator"]
    return UNet(height, channels, base_channels=g["base_channels"],
                channel_mult=tuple(g["channel_mult"]), num_res_blocks=g["num_res_blocks"],
                attn_resolutions=tuple(g["attn_resolutions"]), dropout=g["dropout"],
                nz=g["nz"], z_emb_dim=g["z_emb_dim"], n_mlp=g["n_mlp"],
                tanh_output=g["tanh_output"])


def build_discriminator(cfg, image_shape):
    d = cfg["discriminator"]
    return Discriminator(image_shape[1], image_shape[0], base_channels=d["base_channels"],
                         channel_mult=tuple(d["channel_mult"]), t_emb_dim=d["t_emb_dim"],
                         minibatch_std_group=d["minibatch_std_group"])


def build_process(cfg):
    d = cfg["diffusion"]
    return ForwardProcess(d["num_steps"], beta_min=d["beta_min"], beta_max=d["beta_max"])


def build_divergence(cfg):
    divergence = get_divergence(cfg["divergence"]["name"], **cfg["divergence"]["options"])
    if divergence.gp_weight > 0 and cfg["discriminator"]["minibatch_std_group"]:
        raise ValueError("wgan-gp needs a per-sample critic: set "
                         "discriminator.minibatch_std_group=0 (minibatch statistics make "
                         "each gradient depend on the other samples)")
    return divergence


def cosine_schedule(optimizer, lr, lr_min, max_steps):
    """LambdaLR from lr to lr_min over max_steps (a factor, so the state is just a step count)."""
    def factor(step):
        progress = min(step / max_steps, 1.0)
        return (lr_min + 0.5 * (lr - lr_min) * (1 + math.cos(math.pi * progress))) / lr
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class DDGAN:
    """A DDGAN run's trainable state: G, D, their optimisers, G's EMA, the divergence."""

    def __init__(self, cfg, image_shape, accelerator):
        self.accelerator = accelerator
        self.image_shape = tuple(image_shape)
        self.process, self.divergence = self.check_config(cfg)
        self.nz = cfg["generator"]["nz"]
        self.r1_gamma, self.r1_every = cfg["divergence"]["r1_gamma"], cfg["divergence"]["r1_every"]

        generator = build_generator(cfg, image_shape)
        discriminator = build_discriminator(cfg, image_shape)
        # The EMA copy is made before accelerate wraps G, so it stays a plain module.
        self.ema = AveragedModel(generator, multi_avg_fn=get_ema_multi_avg_fn(cfg["optim"]["ema_decay"]),
                                 use_buffers=True).to(accelerator.device).requires_grad_(False)
        o = cfg["optim"]
        opt_g = torch.optim.Adam(generator.parameters(), lr=o["lr_g"], betas=tuple(o["betas"]))
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=o["lr_d"], betas=tuple(o["betas"]))
        self.generator, self.discriminator, self.opt_g, self.opt_d = accelerator.prepare(
            generator, discriminator, opt_g, opt_d)
        max_steps = cfg["train"]["max_steps"]
        self.schedulers = [cosine_schedule(opt, lr, o["lr_min"], max_steps)
                           for opt, lr in ((self.opt_g, o["lr_g"]), (self.opt_d, o["lr_d"]))
                           ] if o["cosine_decay"] else []

    @staticmethod
    def check_config(cfg):
        """Fail on a bad setting before any data is loaded; returns (process, divergence)."""
        if cfg["generator"]["nz"] < 1:
            raise ValueError("DDGAN needs a latent: set generator.nz >= 1")
        if cfg["divergence"]["r1_every"] < 1:
            raise ValueError(f"divergence.r1_every must be >= 1, got {cfg['divergence']['r1_every']}")
        return build_process(cfg), build_divergence(cfg)

    @property
    def images_per_step(self):
        return self.divergence.n_critic

    def train_step(self, batches, step, with_grad_norms=False):
        """n_critic D steps on fresh batches, then one G step on the last batch."""
        acc = self.accelerator
        lazy_r1 = self.r1_gamma > 0 and step % self.r1_every == 0
        r1_weight = self.r1_gamma / 2 * self.r1_every if lazy_r1 else 0.0
        with acc.autocast():
            for critic_step in range(self.divergence.n_critic):
                x0 = next(batches)
                stats = discriminator_step(self.generator, self.discriminator, self.opt_d,
                                           self.process, self.divergence, x0, self.nz,
                                           r1_weight if critic_step == 0 else 0.0, acc.backward)
            if with_grad_norms:
                stats["grad_norm_d"] = _grad_norm(self.discriminator)
            stats.update(generator_step(self.generator, acc.unwrap_model(self.discriminator),
                                        self.opt_g, self.process, self.divergence, x0, self.nz,
                                        acc.backward))
            if with_grad_norms:
                stats["grad_norm_g"] = _grad_norm(self.generator)
        self.ema.update_parameters(acc.unwrap_model(self.generator))
        for scheduler in self.schedulers:
            scheduler.step()
        return stats

    def sample(self, num, rng):
        """num images in [-1, 1] from the EMA generator."""
        model = self.ema.module.eval()
        x_T = torch.randn(num, *self.image_shape, device=rng.device, generator=rng)
        return ddgan_sampler(model, self.process, x_T, self.nz, rng)

    def state_dict(self):
        unwrap = self.accelerator.unwrap_model
        return {
            "generator": unwrap(self.generator).state_dict(),
            "discriminator": unwrap(self.discriminator).state_dict(),
            "ema": self.ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "schedulers": [s.state_dict() for s in self.schedulers],
        }

    def load_state_dict(self, state):
        unwrap = self.accelerator.unwrap_model
        unwrap(self.generator).load_state_dict(state["generator"])
        unwrap(self.discriminator).load_state_dict(state["discriminator"])
        self.ema.load_state_dict(state["ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        for scheduler, s in zip(self.schedulers, state["schedulers"]):
            scheduler.load_state_dict(s)


def _grad_norm(module):
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
