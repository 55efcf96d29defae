"""DDGAN's training step: one discriminator step against real and fake pairs, one generator step.

The two step functions work on any G(x_t, z, t) and D(x_{t-1}, x_t, t), image or
2-D; the DDGAN class binds them to the networks, optimisers and EMA of a run.
"""
import torch

from divergences import get_divergence, gradient_penalty, r1_penalty

from ..diffusion import ForwardProcess
from ..networks import Discriminator
from ..samplers import ddgan_sampler
from ..speed import adam, compiled, match_optimizer, prepare_module, resolve
from .common import build_unet as build_generator
from .common import grad_norm, make_ema, optimizer_step


def random_steps(process, batch, device):
    """t ~ Uniform{1..T}, one per sample."""
    return torch.randint(1, process.num_steps + 1, (batch,), device=device)


def generated_prev(generator, process, x_t, t, nz):
    """x_{t-1} ~ q(x_{t-1} | x_t, x_0 = G(x_t, z, t)) with z ~ N(0, I)."""
    z = torch.randn(x_t.shape[0], nz, device=x_t.device)
    return process.posterior_sample(generator(x_t, z, t), x_t, t)


LAZY_R1_RULES = ("stylegan2", "ddgan")


def lazy_r1_weight(r1_gamma, r1_every, d_step, rule="stylegan2"):
    """R1's weight at discriminator step d_step (0-based), applied every r1_every-th step and
    0 in between (REFERENCE §3). 'stylegan2' multiplies gamma / 2 by r1_every there, so the
    average per step stays gamma / 2; 'ddgan' (the authors' --lazy_reg) does not, so it is
    gamma / (2 r1_every)."""
    if rule not in LAZY_R1_RULES:
        raise ValueError(f"the lazy R1 rule must be one of {', '.join(LAZY_R1_RULES)}, got {rule!r}")
    if d_step % r1_every:
        return 0.0
    return r1_gamma / 2 * (r1_every if rule == "stylegan2" else 1)


def discriminator_step(generator, discriminator, optimizer, process, divergence, x0, nz,
                       r1_weight=0.0, backward=torch.Tensor.backward, penalised=None,
                       max_grad_norm=0.0):
    """One update of D on a real pair (x_{t-1}, x_t) and a fake pair with the same x_t and t.

    r1_weight multiplies E||grad V(real)||^2 (gamma / 2, times k when lazy every k).
    penalised: D itself where `discriminator` is its compiled form, for the passes the
    penalties differentiate twice (compiled graphs have no double backward).
    Returns the losses, including the total with its regularisers, as detached tensors.
    """
    penalised = discriminator if penalised is None else penalised
    t = random_steps(process, x0.shape[0], x0.device)
    x_prev, x_t = process.q_sample_pair(x0, t)
    x_prev.requires_grad_(r1_weight > 0)
    real_out = (penalised if r1_weight > 0 else discriminator)(x_prev, x_t, t).float()
    with torch.no_grad():
        fake_prev = generated_prev(generator, process, x_t, t, nz)
    fake_out = discriminator(fake_prev, x_t, t).float()

    loss = divergence.d_loss(real_out, fake_out)
    stats = {"d_loss": loss.detach(), "d_real": real_out.detach().mean(),
             "d_fake": fake_out.detach().mean()}
    if r1_weight > 0:
        r1 = r1_penalty(real_out, x_prev)
        loss = loss + r1_weight * r1
        stats["r1"] = r1.detach()
    if divergence.gp_weight > 0:
        gp = gradient_penalty(penalised, x_prev, fake_prev, x_t, t)
        loss = loss + divergence.gp_weight * gp
        stats["gp"] = gp.detach()
    stats["d_total"] = loss.detach()
    optimizer.zero_grad(set_to_none=True)
    backward(loss)
    optimizer_step(optimizer, max_grad_norm)
    return stats


def generator_step(generator, discriminator, optimizer, process, divergence, x0, nz,
                   backward=torch.Tensor.backward, max_grad_norm=0.0):
    """One update of G against a frozen D. Pass D unwrapped (not DDP): it only routes gradients."""
    t = random_steps(process, x0.shape[0], x0.device)
    x_t = process.q_sample(x0, t)
    fake_prev = generated_prev(generator, process, x_t, t, nz)
    discriminator.requires_grad_(False)
    try:
        loss = divergence.g_loss(discriminator(fake_prev, x_t, t).float())
    finally:
        discriminator.requires_grad_(True)
    optimizer.zero_grad(set_to_none=True)
    backward(loss)
    optimizer_step(optimizer, max_grad_norm)
    return {"g_loss": loss.detach()}


def build_discriminator(cfg, image_shape):
    d = cfg["discriminator"]  # every key is a Discriminator option
    return Discriminator(image_shape[1], image_shape[0],
                         **dict(d, channel_mult=tuple(d["channel_mult"])))


def build_process(cfg):
    d = cfg["diffusion"]
    return ForwardProcess(d["num_steps"], beta_min=d["beta_min"], beta_max=d["beta_max"], eps=d["eps"])


def build_divergence(cfg):
    divergence = get_divergence(cfg["divergence"]["name"], **cfg["divergence"]["options"])
    if divergence.gp_weight > 0 and cfg["discriminator"]["minibatch_std_group"]:
        raise ValueError("wgan-gp needs a per-sample critic: set "
                         "discriminator.minibatch_std_group=0 (minibatch statistics make "
                         "each gradient depend on the other samples)")
    return divergence


class DDGAN:
    """A DDGAN run's trainable state: G, D, their optimisers, G's EMA, the divergence."""
    unused_sections = ("ddpm", "edm")  # config sections of other methods

    def __init__(self, cfg, image_shape, accelerator):
        self.accelerator, self.cfg = accelerator, cfg
        self.image_shape = tuple(image_shape)
        self.process, self.divergence = self.check_config(cfg)
        self.nz = cfg["generator"]["nz"]
        d = cfg["divergence"]
        self.r1_gamma, self.r1_every, self.r1_lazy_rule = d["r1_gamma"], d["r1_every"], d["r1_lazy_rule"]

        self.speed = speed = resolve(cfg["speed"], accelerator.device)
        generator = prepare_module(build_generator(cfg, image_shape), speed)
        discriminator = prepare_module(build_discriminator(cfg, image_shape), speed)
        # The EMA copy is made before accelerate wraps G, so it stays a plain module.
        self.ema = make_ema(generator, cfg["optim"]["ema_decay"], accelerator.device,
                            cfg["optim"]["ema_warmup"])
        o = cfg["optim"]
        self.max_grad_norm = o["grad_clip"]
        opt_g = adam(generator.parameters(), o["lr_g"], o["betas"], speed)
        opt_d = adam(discriminator.parameters(), o["lr_d"], o["betas"], speed)
        self.generator, self.discriminator, self.opt_g, self.opt_d = accelerator.prepare(
            generator, discriminator, opt_g, opt_d)
        # Compiled forms for the passes that are differentiated once; they share the weights.
        self.fast_generator = compiled(self.generator, speed)
        self.fast_discriminator = compiled(self.discriminator, speed)
        self.fast_frozen_discriminator = compiled(accelerator.unwrap_model(self.discriminator), speed)
        self.schedulers = [
            torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg["train"]["max_steps"], o["lr_min"])
            for opt in (self.opt_g, self.opt_d)] if o["cosine_decay"] else []
        self.last_r1 = None  # lazy R1 is computed every k steps; logs show its latest value

    @staticmethod
    def check_config(cfg):
        """Fail on a bad setting before any data is loaded; returns (process, divergence)."""
        if cfg["generator"]["nz"] < 1:
            raise ValueError("DDGAN needs a latent: set generator.nz >= 1")
        d = cfg["divergence"]
        if d["r1_gamma"] < 0:
            raise ValueError(f"divergence.r1_gamma must be >= 0 (0 = no R1), got {d['r1_gamma']}")
        if d["r1_every"] < 1:
            raise ValueError(f"divergence.r1_every must be >= 1, got {d['r1_every']}")
        if d["r1_lazy_rule"] not in LAZY_R1_RULES:
            raise ValueError(f"divergence.r1_lazy_rule must be one of {', '.join(LAZY_R1_RULES)}, "
                             f"got {d['r1_lazy_rule']!r}")
        return build_process(cfg), build_divergence(cfg)

    @property
    def batches_per_step(self):
        return self.divergence.n_critic

    def train_step(self, batches, step, with_grad_norms=False):
        """n_critic D steps on fresh batches, then one G step on the last batch.

        No autocast here: accelerate runs each prepared network's forward under autocast
        and returns float32, so losses, penalties and the backward passes are float32.
        """
        acc = self.accelerator
        n_critic = self.divergence.n_critic
        for critic_step in range(n_critic):
            d_step = step * n_critic + critic_step  # lazy R1 counts discriminator steps
            x0 = next(batches)
            stats = discriminator_step(self.fast_generator, self.fast_discriminator, self.opt_d,
                                       self.process, self.divergence, x0, self.nz,
                                       lazy_r1_weight(self.r1_gamma, self.r1_every, d_step,
                                                      self.r1_lazy_rule),
                                       acc.backward, penalised=self.discriminator,
                                       max_grad_norm=self.max_grad_norm)
            self.last_r1 = stats.get("r1", self.last_r1)
        if self.last_r1 is not None:
            stats["r1"] = self.last_r1
        if with_grad_norms:
            stats["grad_norm_d"] = grad_norm(self.discriminator)
        stats.update(generator_step(self.fast_generator, self.fast_frozen_discriminator,
                                    self.opt_g, self.process, self.divergence, x0, self.nz,
                                    acc.backward, self.max_grad_norm))
        if with_grad_norms:
            stats["grad_norm_g"] = grad_norm(self.generator)
        self.ema.update_parameters(acc.unwrap_model(self.generator))
        for scheduler in self.schedulers:
            scheduler.step()
        return stats

    build_network = staticmethod(build_generator)

    @staticmethod
    def sample_with(generator, cfg, image_shape, num, rng, steps=None, sampler=None):
        """num images from G with the run's trained T (T network calls)."""
        process = build_process(cfg)
        if steps not in (None, process.num_steps) or sampler is not None:
            raise ValueError(f"a DDGAN samples with its trained T = {process.num_steps} and its own "
                             f"sampler; a sweep over T is a set of runs")
        x_T = torch.randn(num, *image_shape, device=rng.device, generator=rng)
        return ddgan_sampler(generator, process, x_T, cfg["generator"]["nz"], rng)

    @staticmethod
    def preview_steps(cfg):
        """The steps of the sample grids and the periodic evaluation: the trained T."""
        return cfg["diffusion"]["num_steps"]

    @staticmethod
    def network_calls(cfg, steps=None, sampler=None):
        """Generator calls per image: T."""
        return cfg["diffusion"]["num_steps"]

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
        match_optimizer(self.opt_g, self.speed)
        match_optimizer(self.opt_d, self.speed)
        for scheduler, s in zip(self.schedulers, state["schedulers"]):
            scheduler.load_state_dict(s)

