"""The 2-D multimodality benchmark: DDGAN on mixtures of sharp Gaussians, on a CPU.

The model sees the data times `data_scale` (2: the 25 modes at {-4..4}^2 with
std 0.1, the usual 25-Gaussians scale); the metrics are computed on
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

from .diffusion import ForwardProcess
from .methods.ddgan import discriminator_step, generator_step
from .networks import MLPDiscriminator, MLPGenerator
from .samplers import ddgan_sampler

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


# Defaults for about 40 s per run on one CPU core. What mattered, measured on js at T = 4:
# Fourier features of x_{t-1} in D and of x_t in G (plain MLPs learn the sharp, step-like
# maps too slowly: 0-2 modes without them), batch 256 over 64, Adam(0, 0.99) at 5e-4 over
# (0.5, 0.9), and one thread (small matrices run slower on two). Twice the iterations,
# EMA sampling, other widths, depths, latent sizes, R1 weights and data scales did not help.
TOY_DEFAULTS = {"iters": 4000, "batch_size": 256, "hidden": 128, "depth": 3, "nz": 2,
                "lr_g": 5e-4, "lr_d": 5e-4, "betas": (0.0, 0.99), "r1_gamma": 0.05,
                "lr_decay": True, "fourier_features": 64, "g_fourier_scale": 0.5,
                "d_fourier_scale": 1.0, "data_scale": 2.0}


def run_toy(data="25gaussians", divergence="js", steps=4, out=None, iters=None, seed=0,
            **overrides):
    """Train a 2-D DDGAN; returns the metrics (and writes metrics.json + a PNG to `out`).

    `iters` counts discriminator steps, so that every divergence gets the same budget:
    with n_critic critic steps per generator step (5 for wgan-gp) G takes iters / n_critic
    steps. R1 (r1_gamma) regularises the f-divergences; wgan-gp has its gradient penalty.
    """
    unknown = set(overrides) - set(TOY_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown toy option(s) {sorted(unknown)}; valid: {sorted(TOY_DEFAULTS)}")
    hp = {**TOY_DEFAULTS, **overrides, "iters": TOY_DEFAULTS["iters"] if iters is None else iters}
    torch.manual_seed(seed)
    centres = mode_centres(data)
    process = ForwardProcess(steps)
    div = get_divergence(divergence)
    generator = MLPGenerator(nz=hp["nz"], hidden=hp["hidden"], depth=hp["depth"],
                             fourier_features=hp["fourier_features"],
                             fourier_scale=hp["g_fourier_scale"])
    discriminator = MLPDiscriminator(hidden=hp["hidden"], depth=hp["depth"],
                                     fourier_features=hp["fourier_features"],
                                     fourier_scale=hp["d_fourier_scale"])
    opt_g = torch.optim.Adam(generator.parameters(), lr=hp["lr_g"], betas=hp["betas"])
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=hp["lr_d"], betas=hp["betas"])

    schedulers = [torch.optim.lr_scheduler.CosineAnnealingLR(opt, hp["iters"] // div.n_critic)
                  for opt in (opt_g, opt_d)] if hp["lr_decay"] else []
    r1_weight = 0.0 if div.gp_weight else hp["r1_gamma"] / 2
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    started = time.perf_counter()
    try:
        for _ in tqdm(range(hp["iters"] // div.n_critic), desc=f"toy {data} {divergence} T={steps}",
                      unit="G step"):
            for _ in range(div.n_critic):
                x0 = sample_mixture(centres, hp["batch_size"]) * hp["data_scale"]
                discriminator_step(generator, discriminator, opt_d, process, div, x0, hp["nz"],
                                   r1_weight=r1_weight)
            generator_step(generator, discriminator, opt_g, process, div, x0, hp["nz"])
            for scheduler in schedulers:
                scheduler.step()
    finally:
        torch.set_num_threads(threads)
    train_seconds = time.perf_counter() - started

    rng = torch.Generator().manual_seed(seed + 1)
    x_T = torch.randn(NUM_EVAL_SAMPLES, 2, generator=rng)
    samples = ddgan_sampler(generator.eval(), process, x_T, hp["nz"], rng) / hp["data_scale"]
    metrics = {"data": data, "divergence": divergence, "steps": steps, "seed": seed,
               **mode_metrics(samples, centres), "num_samples": NUM_EVAL_SAMPLES,
               "train_seconds": round(train_seconds, 1),
               "hyperparameters": {k: list(v) if isinstance(v, tuple) else v
                                   for k, v in hp.items()}}
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        scatter_plot(samples, centres, metrics, out / "samples.png")
    return metrics


def scatter_plot(samples, centres, metrics, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(samples[:, 0], samples[:, 1], s=1, alpha=0.3, label="DDGAN samples")
    ax.scatter(centres[:, 0], centres[:, 1], s=20, c="red", marker="x", label="modes")
    ax.set_title(f"{metrics['data']}, {metrics['divergence']}, T={metrics['steps']}: "
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
