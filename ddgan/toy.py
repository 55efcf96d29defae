"""The 2-D multimodality benchmark: DDGAN, DDPM and EDM on mixtures of sharp Gaussians, on a CPU.

The model sees the data times `data_scale` (DDGAN's 2: the 25 modes at {-4..4}^2
with std 0.1, the usual 25-Gaussians scale); the metrics are computed on
10,000 samples in the original coordinates:
  modes_covered          modes holding >= 1% of the samples within 3 std
  high_quality_fraction  samples within 3 std of some mode
"""
import json
import math
import time
from pathlib import Path

import torch
from tqdm import tqdm

from divergences import get_divergence

from .config import DEFAULTS, check_count
from .diffusion import ForwardProcess
from .files import atomic_write, check_writable
from .methods import METHODS
from .methods.ddgan import discriminator_step, generator_step, lazy_r1_weight
from .methods.ddpm import build_ddpm_process, ddpm_loss
from .methods.edm import edm_loss
from .networks import MLPDiscriminator, MLPGenerator
from .networks.precond import EDMPrecond
from .samplers import ddgan_sampler, nfe

MODE_STD = 0.05
NUM_EVAL_SAMPLES = 10_000


def mode_centres(name):
    if name == "25gaussians":
        grid = torch.arange(-2.0, 3.0)
        return torch.cartesian_prod(grid, grid)
    if name == "8gaussians":
        angles = torch.arange(8) * (2 * math.pi / 8)
        return 2.0 * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
    raise ValueError(f"unknown toy data {name!r}; valid: 25gaussians, 8gaussians")


def sample_mixture(centres, num, generator=None):
    index = torch.randint(len(centres), (num,), generator=generator)
    return centres[index] + MODE_STD * torch.randn(num, 2, generator=generator)


def mode_metrics(samples, centres):
    distance = torch.cdist(samples, centres)  # [N, K]
    nearest, mode = distance.min(dim=1)
    good = nearest < 3 * MODE_STD
    counts = torch.bincount(mode[good], minlength=len(centres))
    return {"num_modes": len(centres),
            "modes_covered": int((counts >= 0.01 * len(samples)).sum()),
            "high_quality_fraction": float(good.float().mean())}


# Defaults for about 90 s per run on one CPU core. What mattered, measured on js at T = 4
# (seeds 0-2): the learning rate and the budget (5e-4 for 4,000 steps left 11-18 modes at
# HQ 0.29-0.48; 2e-3 for 16,000 reaches 18-25 at 0.90-0.92), then a smoother D for
# coverage (lazy R1 every 4 steps at gamma 0.2: 22-25 modes); Fourier features of x_{t-1}
# in D and of x_t in G (plain MLPs learn the sharp, step-like maps too slowly: 0-2 modes
# without them), Adam(0, 0.99) over (0.5, 0.9), and one thread (small matrices run slower
# on two). EMA sampling, other widths, depths, latent sizes and data scales did not help.
TOY_DEFAULTS = {"iters": 16000, "batch_size": 256, "hidden": 128, "depth": 3, "nz": 2,
                "lr_g": 2e-3, "lr_d": 2e-3, "betas": (0.0, 0.99), "r1_gamma": 0.2, "r1_every": 4,
                "lr_decay": True, "fourier_features": 64, "g_fourier_scale": 0.5,
                "d_fourier_scale": 1.0, "data_scale": 2.0}
# The baselines' denoisers regress, so they take Adam's usual betas and their own budget
# (4,000 steps at 5e-4: with 1,000 calls DDPM covers 25/25 modes). EDM sees the data at
# std 0.7, near its sigma_data = 0.5 as images in [-1, 1] are (15/25 modes at 35 NFE at
# scale 2, 25/25 at 0.5); DDPM covers 25/25 at 1000 steps at scale 2 (0/25 at 0.5).
BASELINE_RECIPE = {"iters": 4000, "lr_g": 5e-4, "betas": (0.9, 0.999)}
BASELINE_DEFAULTS = {"ddpm": BASELINE_RECIPE, "edm": {**BASELINE_RECIPE, "data_scale": 0.5}}


def run_toy(data="25gaussians", divergence="js", steps=4, out=None, iters=None, seed=0,
            method="ddgan", sampler=None, overwrite=False, **overrides):
    """Train on a 2-D mixture; returns the metrics (and writes metrics.json + a PNG to `out`,
    which must not hold a result already unless `overwrite`).

    method 'ddgan': T = steps; `iters` counts discriminator steps, so that every divergence
    gets the same budget: with n_critic critic steps per generator step (5 for wgan-gp) G
    takes iters / n_critic steps. R1 (r1_gamma, every r1_every D steps) regularises the
    f-divergences; wgan-gp has its gradient penalty. Methods 'ddpm' and 'edm': the same MLP
    (without z) trained as a denoiser for `iters` steps with the images' defaults (DDPM's
    T = 1000 linear betas, EDM's sigma distribution), sampled with K = steps calls (DDPM,
    sampler ancestral | ddim) or N = steps noise levels (EDM, sampler heun | euler).
    """
    unknown = set(overrides) - set(TOY_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown toy option(s) {sorted(unknown)}; valid: {sorted(TOY_DEFAULTS)}")
    if method not in TOY_METHODS:
        raise ValueError(f"unknown toy method {method!r}; valid: {', '.join(TOY_METHODS)}")
    hp = {**TOY_DEFAULTS, **BASELINE_DEFAULTS.get(method, {}), **overrides}
    if iters is not None:
        hp["iters"] = iters
    check_count("iters", hp["iters"])
    if out is not None:
        out = Path(out)
        if (out / "metrics.json").exists() and not overwrite:
            raise FileExistsError(f"{out} already holds a result (metrics.json); pass "
                                  f"--overwrite to replace it or choose another --out")
        check_writable(out, "--out")
    torch.manual_seed(seed)
    centres = mode_centres(data)
    model = TOY_METHODS[method](hp, method, steps, divergence, sampler)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    started = time.perf_counter()
    try:
        label = f"toy {data} {method} {divergence if method == 'ddgan' else model.sampler} steps={steps}"
        for _ in tqdm(range(model.num_updates), desc=label, unit="update"):
            model.train_step(lambda: sample_mixture(centres, hp["batch_size"]) * hp["data_scale"])
            for scheduler in model.schedulers:
                scheduler.step()
    finally:
        torch.set_num_threads(threads)
    train_seconds = time.perf_counter() - started

    rng = torch.Generator().manual_seed(seed + 1)
    samples = model.sample(NUM_EVAL_SAMPLES, rng) / hp["data_scale"]
    metrics = {"data": data, "method": method, "divergence": divergence if method == "ddgan" else None,
               "sampler": model.sampler, "steps": steps, "nfe": model.nfe, "seed": seed,
               **mode_metrics(samples, centres), "num_samples": NUM_EVAL_SAMPLES,
               "train_seconds": round(train_seconds, 1),
               "hyperparameters": {k: list(v) if isinstance(v, tuple) else v
                                   for k, v in hp.items()}}
    if out is not None:
        text = json.dumps(metrics, indent=2) + "\n"
        atomic_write(out / "metrics.json", lambda f: f.write(text.encode()))
        scatter_plot(samples, centres, metrics, out / "samples.png")
    return metrics


def cosine_schedules(optimizers, hp, num_updates):
    if not hp["lr_decay"]:
        return []
    return [torch.optim.lr_scheduler.CosineAnnealingLR(opt, num_updates) for opt in optimizers]


class ToyDDGAN:
    """MLP generator and discriminator; one update is n_critic D steps and one G step."""
    sampler = "ddgan"

    def __init__(self, hp, method, steps, divergence, sampler=None):
        if sampler not in (None, "ddgan"):
            raise ValueError(f"DDGAN has one sampler; got {sampler!r}")
        self.hp, self.process, self.div = hp, ForwardProcess(steps), get_divergence(divergence)
        self.generator = MLPGenerator(nz=hp["nz"], hidden=hp["hidden"], depth=hp["depth"],
                                      fourier_features=hp["fourier_features"],
                                      fourier_scale=hp["g_fourier_scale"])
        self.discriminator = MLPDiscriminator(hidden=hp["hidden"], depth=hp["depth"],
                                              fourier_features=hp["fourier_features"],
                                              fourier_scale=hp["d_fourier_scale"])
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=hp["lr_g"], betas=hp["betas"])
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=hp["lr_d"], betas=hp["betas"])
        self.num_updates, self.nfe = hp["iters"] // self.div.n_critic, steps
        if self.num_updates < 1:
            raise ValueError(f"iters counts discriminator steps: {divergence} takes "
                             f"{self.div.n_critic} per generator step, so iters must be >= "
                             f"{self.div.n_critic}, got {hp['iters']}")
        self.schedulers = cosine_schedules([self.opt_g, self.opt_d], hp, self.num_updates)
        check_count("r1_every", hp["r1_every"])
        if hp["r1_gamma"] < 0:
            raise ValueError(f"r1_gamma must be >= 0 (0 = no R1), got {hp['r1_gamma']}")
        self.r1_gamma = 0.0 if self.div.gp_weight else hp["r1_gamma"]
        self.d_steps = 0

    def train_step(self, draw_batch):
        for _ in range(self.div.n_critic):
            x0 = draw_batch()
            r1_weight = lazy_r1_weight(self.r1_gamma, self.hp["r1_every"], self.d_steps)
            discriminator_step(self.generator, self.discriminator, self.opt_d, self.process,
                               self.div, x0, self.hp["nz"], r1_weight=r1_weight)
            self.d_steps += 1
        generator_step(self.generator, self.discriminator, self.opt_g, self.process, self.div,
                       x0, self.hp["nz"])

    def sample(self, num, rng):
        x_T = torch.randn(num, 2, generator=rng)
        return ddgan_sampler(self.generator.eval(), self.process, x_T, self.hp["nz"], rng)


class ToyDenoiser:
    """The generator's MLP without z, trained by the method's regression loss."""

    def __init__(self, hp, method, steps, divergence=None, sampler=None):
        self.method, self.hp, self.steps = method, hp, steps
        self.cfg = {section: dict(DEFAULTS[section]) for section in ("ddpm", "edm")}
        self.cfg["ddpm"]["clip_x0"] = False  # the 2-D data are not in [-1, 1]
        network = MLPGenerator(nz=0, hidden=hp["hidden"], depth=hp["depth"],
                               fourier_features=hp["fourier_features"],
                               fourier_scale=hp["g_fourier_scale"])
        if method == "edm":
            network = EDMPrecond(network, self.cfg["edm"]["sigma_data"])
            self.sampler = sampler or "heun"
        else:
            self.process = build_ddpm_process(self.cfg)
            self.sampler = sampler or "ancestral"
        self.nfe = nfe(method, steps, self.sampler)
        self.network = network
        self.optimizer = torch.optim.Adam(network.parameters(), lr=hp["lr_g"], betas=hp["betas"])
        self.num_updates = hp["iters"]
        self.schedulers = cosine_schedules([self.optimizer], hp, self.num_updates)
        # Fail before training on a sampler or step count the method cannot use.
        METHODS[method].sample_with(network, self.cfg, (2,), 1, torch.Generator(), steps, self.sampler)

    def train_step(self, draw_batch):
        x0 = draw_batch()
        if self.method == "ddpm":
            loss = ddpm_loss(self.network, self.process, x0)
        else:
            e = self.cfg["edm"]
            loss = edm_loss(self.network, x0, e["P_mean"], e["P_std"], e["sigma_data"])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def sample(self, num, rng):
        return METHODS[self.method].sample_with(self.network.eval(), self.cfg, (2,), num, rng,
                                                self.steps, self.sampler)


TOY_METHODS = {"ddgan": ToyDDGAN, "ddpm": ToyDenoiser, "edm": ToyDenoiser}


def scatter_plot(samples, centres, metrics, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(samples[:, 0], samples[:, 1], s=1, alpha=0.3, label=f"{metrics['method']} samples")
    ax.scatter(centres[:, 0], centres[:, 1], s=20, c="red", marker="x", label="modes")
    how = metrics["divergence"] if metrics["method"] == "ddgan" else metrics["sampler"]
    ax.set_title(f"{metrics['data']}, {metrics['method']} {how}, {metrics['nfe']} NFE: "
                 f"{metrics['modes_covered']}/{metrics['num_modes']} modes, "
                 f"HQ {metrics['high_quality_fraction']:.2f}", fontsize=9)
    ax.set_xlim(-3, 3)
    ax.set_ylim(-3, 3)
    ax.set_aspect("equal")
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
