"""The 2-D multimodality benchmark: DDGAN on mixtures of sharp Gaussians, on a CPU.

The data are scaled by 1/2 inside (modes in [-1, 1], like images) and the
metrics are computed in the original coordinates:
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
DATA_SCALE = 0.5  # model coordinates = data coordinates * DATA_SCALE
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


# Defaults measured to meet the benchmark's target in about a minute on 2 CPU cores.
TOY_DEFAULTS = {"iters": 3000, "batch_size": 512, "hidden": 256, "depth": 3, "nz": 2,
                "lr_g": 1e-3, "lr_d": 1e-3, "betas": (0.5, 0.9), "r1_gamma": 0.05}


def run_toy(data="25gaussians", divergence="js", steps=4, out=None, iters=None, seed=0,
            **overrides):
    """Train a 2-D DDGAN; returns the metrics (and writes metrics.json + a PNG to `out`)."""
    unknown = set(overrides) - set(TOY_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown toy option(s) {sorted(unknown)}; valid: {sorted(TOY_DEFAULTS)}")
    hp = {**TOY_DEFAULTS, **overrides, "iters": iters or TOY_DEFAULTS["iters"]}
    torch.manual_seed(seed)
    centres = mode_centres(data)
    process = ForwardProcess(steps)
    div = get_divergence(divergence)
    generator = MLPGenerator(nz=hp["nz"], hidden=hp["hidden"], depth=hp["depth"])
    discriminator = MLPDiscriminator(hidden=hp["hidden"], depth=hp["depth"])
    opt_g = torch.optim.Adam(generator.parameters(), lr=hp["lr_g"], betas=hp["betas"])
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=hp["lr_d"], betas=hp["betas"])

    started = time.perf_counter()
    for _ in tqdm(range(hp["iters"]), desc=f"toy {data} {divergence} T={steps}", unit="it"):
        for _ in range(div.n_critic):
            x0 = sample_mixture(centres, hp["batch_size"]) * DATA_SCALE
            discriminator_step(generator, discriminator, opt_d, process, div, x0, hp["nz"],
                               r1_weight=hp["r1_gamma"] / 2)
        generator_step(generator, discriminator, opt_g, process, div, x0, hp["nz"])
    train_seconds = time.perf_counter() - started

    rng = torch.Generator().manual_seed(seed + 1)
    x_T = torch.randn(NUM_EVAL_SAMPLES, 2, generator=rng)
    samples = ddgan_sampler(generator.eval(), process, x_T, hp["nz"], rng) / DATA_SCALE
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
