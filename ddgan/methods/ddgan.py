"""DDGAN's training step: one discriminator step against real and fake pairs, one generator step.

The two step functions work on any G(x_t, z, t) and D(x_{t-1}, x_t, t), image or
2-D; the DDGAN class binds them to the networks, optimisers and EMA of a run.
"""
import math
from pathlib import Path

import torch

from divergences import DEFAULT_DIVERGENCE, get_divergence
from divergences.regularizers import LAZY_R1_RULES, input_penalties

from ..checks import check_count
from ..diffusion import ForwardProcess
from ..networks import Discriminator, MLPDiscriminator, MLPGenerator
from ..precision import in_precision, master
from ..samplers import ddgan_sampler
from ..settings import updated
from .base import Method, Sampler
from .common import build_unet as build_generator
from .common import cosine_schedules, grad_norm, optimizer_step
from .state import RunState, check_schedule

SECTIONS = {
    "ddgan": {
        "denoising_steps": 4,    # T: the denoising steps, in training and in sampling
        "beta_min": 0.1,
        "beta_max": 20.0,
        "eps": 1e-3,             # first observed time of the VP SDE
    },
    # D: the DDGAN authors' block layout; at 28x28 its blocks run at 28, 28 -> 14, 14 -> 7
    # (a third halving would take 7 to 3 and drop a row and a column). The Discriminator class's
    # own defaults are this project's earlier layout: stem_kernel 3, downsample_first true,
    # downsample avgpool, head_activation true, near_zero_init false.
    "discriminator": {
        "base_channels": 64,
        "channel_mult": [1, 2, 4],
        "t_emb_dim": 128,
        "minibatch_std_group": 0,  # 0 = off; > 0 breaks per-sample penalties, see docs/GUIDE.md
        "stem_kernel": 1,          # 3 | 1: the stem conv to base_channels
        "downsample_first": False,  # does the first block halve the resolution (later ones do)
        "downsample": "fir",       # avgpool: 2x2 mean after conv2 | fir: [1, 3, 3, 1] blur before conv2
        "head_activation": False,  # leaky ReLU on the last block's output before minibatch std
        "near_zero_init": True,    # conv2 of every block and conv_out start near zero
        "floor_odd_sizes": False,  # true: halve 7 to 3 as runs saved before this key did
    },
    "divergence": {
        "name": DEFAULT_DIVERGENCE,  # a name in divergences.DIVERGENCES
        "options": {},           # passed to divergences.get_divergence (generator_loss, n_critic, gp_weight)
        "r1_gamma": 0.02,        # R1 weight gamma; the penalty is gamma / 2 * E||grad||^2 on real x_{t-1}
        "r2_gamma": None,        # R2, the same on fake x_{t-1}; null: r1_gamma for rpgan, else off
        "r1_every": 1,           # lazy R1 and R2: every k discriminator steps
        "r1_lazy_rule": "stylegan2",  # stylegan2: weight k gamma / 2 there | ddgan: gamma / 2 (authors' code)
    },
}


def random_steps(process, batch, device):
    """t ~ Uniform{1..T}, one per sample."""
    return torch.randint(1, process.num_steps + 1, (batch,), device=device)


def generated_prev(generator, process, x_t, t, nz):
    """x_{t-1} ~ q(x_{t-1} | x_t, x_0 = G(x_t, z, t)) with z ~ N(0, I)."""
    z = torch.randn(x_t.shape[0], nz, device=x_t.device)
    return process.posterior_sample(generator(x_t, z, t), x_t, t)


def discriminator_step(generator, discriminator, optimizer, process, divergence, x0, nz,
                       d_step=0, backward=torch.Tensor.backward, penalised=None,
                       max_grad_norm=0.0):
    """One update of D on a real pair (x_{t-1}, x_t) and a fake pair with the same x_t and t,
    with the divergence's regularisers that weigh on this step (d_step, 0-based, counts
    discriminator steps for the lazy ones).

    penalised: D itself where `discriminator` is its compiled form, for the passes the
    penalties differentiate twice (compiled graphs have no double backward).
    Returns the losses, including the total with its regularisers, as detached tensors.
    """
    penalised = discriminator if penalised is None else penalised
    active = [(reg, weight) for reg in divergence.regularizers if (weight := reg.weight_at(d_step))]
    on_real = any(reg.on_real for reg, _ in active)
    on_fake = any(reg.on_fake for reg, _ in active)
    t = random_steps(process, x0.shape[0], x0.device)
    x_prev, x_t = process.q_sample_pair(x0, t)
    x_prev.requires_grad_(on_real)
    real_out = (penalised if on_real else discriminator)(x_prev, x_t, t).float()
    with torch.no_grad():
        fake_prev = generated_prev(generator, process, x_t, t, nz)
    fake_prev.requires_grad_(on_fake)
    fake_out = (penalised if on_fake else discriminator)(fake_prev, x_t, t).float()

    loss = divergence.d_loss(real_out, fake_out)
    stats = {"d_loss": loss.detach(), "d_real": real_out.detach().mean(),
             "d_fake": fake_out.detach().mean()}
    for reg, weight in active:
        value = reg(penalised, x_prev, fake_prev, (x_t, t), real_out, fake_out)
        loss = loss + weight * value
        stats[reg.name] = value.detach()
    stats["d_total"] = loss.detach()
    optimizer.zero_grad(set_to_none=True)
    backward(loss)
    optimizer_step(optimizer, max_grad_norm)
    return stats


def critic_steps(generator, discriminator, optimizer, process, divergence, batches, nz, step,
                 backward=torch.Tensor.backward, penalised=None, max_grad_norm=0.0):
    """The n_critic discriminator steps before generator step `step` (0-based), each on the next
    batch; discriminator step step * n_critic + i is the count the lazy penalties read.
    Returns each step's statistics and the last batch, the generator step's."""
    n_critic, stats = divergence.n_critic, []
    for critic_step in range(n_critic):
        x0 = next(batches)
        stats.append(discriminator_step(generator, discriminator, optimizer, process, divergence,
                                        x0, nz, step * n_critic + critic_step, backward, penalised,
                                        max_grad_norm))
    return stats, x0


def generator_step(generator, discriminator, optimizer, process, divergence, x0, nz,
                   backward=torch.Tensor.backward, max_grad_norm=0.0):
    """One update of G against a frozen D. Pass D unwrapped (not DDP): it only routes gradients.
    A paired divergence also scores a real x_{t-1} of the same x_t and t."""
    t = random_steps(process, x0.shape[0], x0.device)
    if divergence.paired:
        x_prev, x_t = process.q_sample_pair(x0, t)
    else:
        x_t = process.q_sample(x0, t)
    fake_prev = generated_prev(generator, process, x_t, t, nz)
    discriminator.requires_grad_(False)
    try:
        fake_out = discriminator(fake_prev, x_t, t).float()
        if divergence.paired:
            with torch.no_grad():
                real_out = discriminator(x_prev, x_t, t).float()
            loss = divergence.g_loss(fake_out, real_out)
        else:
            loss = divergence.g_loss(fake_out)
    finally:
        discriminator.requires_grad_(True)
    optimizer.zero_grad(set_to_none=True)
    backward(loss)
    optimizer_step(optimizer, max_grad_norm)
    return {"g_loss": loss.detach()}


def build_discriminator(settings, image_shape):
    # every key of the discriminator section is a Discriminator option
    return Discriminator(image_shape[1], image_shape[0], **vars(settings.discriminator))


def build_process(ddgan):
    """The forward process of the `ddgan` settings section."""
    return ForwardProcess(ddgan.denoising_steps, beta_min=ddgan.beta_min, beta_max=ddgan.beta_max,
                          eps=ddgan.eps)


def build_divergence(settings):
    """The divergence with its regularisers, R1 and R2 (where their gammas are > 0) first."""
    d = settings.divergence
    divergence = get_divergence(d.name, **d.options)
    divergence.regularizers[:0] = input_penalties(divergence, d.r1_gamma, d.r2_gamma, d.r1_every,
                                                  d.r1_lazy_rule)
    per_sample = [reg.name for reg in divergence.regularizers if reg.per_sample]
    if per_sample and settings.discriminator.minibatch_std_group:
        raise ValueError(f"{d.name}'s penalty {', '.join(per_sample)} needs a per-sample critic: set "
                         "discriminator.minibatch_std_group=0 (minibatch statistics make "
                         "each gradient depend on the other samples)")
    return divergence


class DDGAN(Method):
    """A DDGAN run's trainable state: G, D, their optimisers, G's EMA, the divergence."""
    name = "ddgan"
    sections = SECTIONS
    # Keys added after runs were saved without them, with the value that reproduces how those
    # runs trained: a saved config missing one gets this (config.saved_config).
    legacy_values = {
        ("discriminator", "stem_kernel"): 3,  # D had the earlier layout
        ("discriminator", "downsample_first"): True,
        ("discriminator", "downsample"): "avgpool",
        ("discriminator", "head_activation"): True,
        ("discriminator", "near_zero_init"): False,
        ("discriminator", "floor_odd_sizes"): True,  # and halved 7 to 3 at 28x28
    }
    samplers = ("ddgan",)
    steps_symbol = "T"
    steps_trained = True
    unused_keys = ("eval.steps",)  # it samples with its trained T
    renamed = {"diffusion": "ddgan", "diffusion.num_steps": "ddgan.denoising_steps"}

    def __init__(self, settings, image_shape, accelerator):
        self.accelerator = accelerator
        self.image_shape = tuple(image_shape)
        self.process, self.divergence = self.check_config(settings)
        self.nz = settings.backbone.nz

        o = settings.optim
        self.max_grad_norm = o.grad_clip
        self.state = state = RunState(settings, accelerator)
        self.speed = state.speed
        self.generator, self.opt_g = state.add("generator", build_generator(settings, image_shape),
                                               o.lr, "opt_g", ema=True)
        self.discriminator, self.opt_d = state.add(
            "discriminator", build_discriminator(settings, image_shape), o.lr_discriminator, "opt_d")
        self.ema = state.ema
        # Compiled forms for the passes that are differentiated once; they share the weights.
        self.fast_generator = state.fast(self.generator)
        self.fast_discriminator = state.fast(self.discriminator)
        self.fast_frozen_discriminator = state.fast(accelerator.unwrap_model(self.discriminator))
        self.last_penalties = {}  # a lazy penalty is computed every k steps; logs show its latest value

    @classmethod
    def check_config(cls, settings):
        """Fail on a bad setting before any data is loaded; returns (process, divergence)."""
        check_schedule(settings.optim)
        check_count("ddgan.denoising_steps (T)", settings.ddgan.denoising_steps)
        if settings.backbone.nz < 1:
            raise ValueError("DDGAN needs a latent: set backbone.nz >= 1")
        d = settings.divergence
        if d.r1_gamma < 0:
            raise ValueError(f"divergence.r1_gamma must be >= 0 (0 = no R1), got {d.r1_gamma}")
        if d.r2_gamma is not None and (isinstance(d.r2_gamma, bool) or not isinstance(d.r2_gamma, (int, float))
                                       or d.r2_gamma < 0):
            raise ValueError(f"divergence.r2_gamma must be a number >= 0 (0 = no R2) or null "
                             f"(the divergence's default), got {d.r2_gamma!r}")
        check_count("divergence.r1_every", d.r1_every)
        if d.r1_lazy_rule not in LAZY_R1_RULES:
            raise ValueError(f"divergence.r1_lazy_rule must be one of {', '.join(LAZY_R1_RULES)}, "
                             f"got {d.r1_lazy_rule!r}")
        return build_process(settings.ddgan), build_divergence(settings)

    @classmethod
    def batches_per_step(cls, settings):
        return get_divergence(settings.divergence.name, **settings.divergence.options).n_critic

    def train_step(self, batches, step, with_grad_norms=False):
        """n_critic D steps on fresh batches, then one G step on the last batch.

        No casts here: in every precision a prepared network returns float32 (the wrappers of
        ddgan/precision.py), so the losses and penalties are float32.
        """
        acc = self.accelerator
        every_stats, x0 = critic_steps(self.fast_generator, self.fast_discriminator, self.opt_d,
                                       self.process, self.divergence, batches, self.nz, step,
                                       acc.backward, penalised=self.discriminator,
                                       max_grad_norm=self.max_grad_norm)
        for d_stats in every_stats:
            self.last_penalties.update({reg.name: d_stats[reg.name]
                                        for reg in self.divergence.regularizers if reg.name in d_stats})
        stats = {**every_stats[-1], **self.last_penalties}  # the last D step's, and the penalties' latest
        if with_grad_norms:
            stats["grad_norm_d"] = grad_norm(self.discriminator)
        stats.update(generator_step(self.fast_generator, self.fast_frozen_discriminator,
                                    self.opt_g, self.process, self.divergence, x0, self.nz,
                                    acc.backward, self.max_grad_norm))
        if with_grad_norms:
            stats["grad_norm_g"] = grad_norm(self.generator)
        self.state.end_step()
        return stats

    @torch.no_grad()
    def diagnostics(self, x0):
        """Per step t: D's mean output on the real x_{t-1} and on G's (the same x_t), and its
        accuracy, the fraction of those pairs where it scores the real one higher (ties half):
        0.5 is a D that cannot tell them apart. Drawn from a fixed seed, leaving training's draws alone."""
        generator = self.accelerator.unwrap_model(self.generator)
        discriminator = self.accelerator.unwrap_model(self.discriminator)
        device, values = x0.device, {}
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(0)
            for step in range(1, self.process.num_steps + 1):
                t = torch.full((x0.shape[0],), step, dtype=torch.long, device=device)
                x_prev, x_t = self.process.q_sample_pair(x0, t)
                real = discriminator(x_prev, x_t, t).float().flatten()
                fake = discriminator(generated_prev(generator, self.process, x_t, t, self.nz),
                                     x_t, t).float().flatten()
                values[f"d_real/t{step}"] = real.mean().item()
                values[f"d_fake/t{step}"] = fake.mean().item()
                # A tie counts half: a D that starts near zero scores every pair alike.
                values[f"d_accuracy/t{step}"] = ((real > fake).float().mean()
                                                 + 0.5 * (real == fake).float().mean()).item()
        return values

    build_network = staticmethod(build_generator)

    @classmethod
    def sampler(cls, settings, steps=None, name=None, device="cpu"):
        """G's T steps with the run's trained T (T network calls)."""
        process, nz = build_process(settings.ddgan), settings.backbone.nz
        if steps not in (None, process.num_steps) or name not in (None, "ddgan"):
            raise ValueError(f"a DDGAN samples with its trained T = {process.num_steps} and its own "
                             f"sampler; a sweep over T is a set of runs")
        return Sampler("ddgan", process.num_steps, process.num_steps,
                       lambda generator, x_T, rng: ddgan_sampler(generator, x_T, process, rng, nz=nz))

    @classmethod
    def default_steps(cls, settings):
        return settings.ddgan.denoising_steps

    @classmethod
    def check_steps(cls, settings, counts):
        trained = settings.ddgan.denoising_steps
        if set(counts) != {trained}:
            raise ValueError(f"a DDGAN trained with T = {trained} samples with {trained} steps "
                             f"only, not {' '.join(map(str, counts))} (a sweep over T is a set of runs)")

    preview_steps = default_steps  # the grids and the periodic evaluation: the trained T

    @classmethod
    def labels(cls, settings):
        return {"divergence": settings.divergence.name}

    @classmethod
    def sweep_cells(cls, config_dir, steps, divergences):
        """One run per divergence and T: CONFIG_DIR/ddgan.yaml with the divergence chosen by
        override, or CONFIG_DIR/ddgan_<divergence>.yaml where the divergence has a recipe of its
        own there (wgan-gp's critic steps and optimiser)."""
        cells = []
        for divergence in divergences:
            own = Path(config_dir) / f"{cls.name}_{divergence.replace('-', '_')}.yaml"
            config, choice = ((own, ()) if own.is_file() else
                              (Path(config_dir) / f"{cls.name}.yaml", (f"divergence.name={divergence}",)))
            cells += [(f"{cls.name}_{divergence}_T{t}", config, (*choice, f"ddgan.denoising_steps={t}"))
                      for t in steps]
        return cells

    @classmethod
    def settings_for_steps(cls, settings, steps):
        """T is part of the model: the settings of a run trained with T = steps."""
        return updated(settings, {"ddgan": {"denoising_steps": steps}})

    def cycle(self):
        """Generator steps per repeat of the lazy penalties' pattern (1 without one)."""
        every = math.lcm(1, *(reg.every for reg in self.divergence.regularizers))
        n_critic = self.divergence.n_critic
        return math.lcm(every, n_critic) // n_critic

    @classmethod
    def toy_model(cls, hp, steps, divergence, sampler=None, settings=None):
        return ToyDDGAN(hp, steps, divergence, sampler)  # its MLPs read hp alone

    def state_dict(self):
        return self.state.state_dict()

    def load_state_dict(self, state):
        self.state.load_state_dict(state)


class ToyDDGAN:
    """The 2-D benchmark's DDGAN (ddgan/toy.py): MLP generator and discriminator trained by the
    step functions above, as the images' DDGAN is; one update is n_critic D steps and one G step."""
    sampler = "ddgan"

    def __init__(self, hp, steps, divergence, sampler=None):
        if sampler not in (None, "ddgan"):
            raise ValueError(f"DDGAN has one sampler; got {sampler!r}")
        self.hp, self.process, self.div = hp, ForwardProcess(steps), get_divergence(divergence)
        self.divergence = divergence
        generator = MLPGenerator(nz=hp["nz"], hidden=hp["hidden"], depth=hp["depth"],
                                 fourier_features=hp["fourier_features"], fourier_scale=hp["g_fourier_scale"])
        discriminator = MLPDiscriminator(hidden=hp["hidden"], depth=hp["depth"],
                                         fourier_features=hp["fourier_features"],
                                         fourier_scale=hp["d_fourier_scale"])
        self.generator = in_precision(generator, hp["mixed_precision"])
        self.discriminator = in_precision(discriminator, hp["mixed_precision"])
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=hp["lr_g"], betas=hp["betas"])
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=hp["lr_d"], betas=hp["betas"])
        self.num_updates, self.nfe = hp["iters"] // self.div.n_critic, steps
        if self.num_updates < 1:
            raise ValueError(f"iters counts discriminator steps: {divergence} takes "
                             f"{self.div.n_critic} per generator step, so iters must be >= "
                             f"{self.div.n_critic}, got {hp['iters']}")
        self.schedulers = cosine_schedules([self.opt_g, self.opt_d], hp, self.num_updates)
        check_count("r1_every", hp["r1_every"])
        penalties = input_penalties(self.div, hp["r1_gamma"], hp["r2_gamma"], hp["r1_every"])
        if not self.div.regularizers:  # wgan-gp keeps its own penalty alone
            self.div.regularizers += penalties
        self.updates = 0

    def train_step(self, draw_batch):
        _, x0 = critic_steps(self.generator, self.discriminator, self.opt_d, self.process, self.div,
                             iter(draw_batch, None), self.hp["nz"], self.updates)
        generator_step(self.generator, self.discriminator, self.opt_g, self.process, self.div,
                       x0, self.hp["nz"])
        self.updates += 1

    def sample(self, num, rng):
        x_T = torch.randn(num, 2, generator=rng)
        return ddgan_sampler(master(self.generator).eval(), x_T, self.process, rng, nz=self.hp["nz"])
