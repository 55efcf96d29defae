"""The 2-D multimodality benchmark: every registered method on mixtures of sharp Gaussians, on a CPU.

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

from divergences import DEFAULT_DIVERGENCE

from .checks import check_count
from .config import load_config
from .files import atomic_write, check_writable
from .methods import DEFAULT_METHOD, get_method
from .precision import PRECISIONS, check_precision

MODE_STD = 0.05
TOY_PRECISIONS = tuple(p for p in PRECISIONS if p != "auto")  # auto times image networks
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


# Defaults for a short run on one CPU core, chosen on js at T = 4; docs/GUIDE.md ("What
# mattered", under the 2-D benchmark) has the measurements behind each, and the run's time.
TOY_DEFAULTS = {"iters": 16000, "batch_size": 256, "hidden": 128, "depth": 3, "nz": 2,
                "lr_g": 2e-3, "lr_d": 2e-3, "betas": (0.0, 0.99), "r1_gamma": 0.2, "r2_gamma": None,
                "r1_every": 4,
                "lr_decay": True, "fourier_features": 64, "g_fourier_scale": 0.5,
                "d_fourier_scale": 1.0, "data_scale": 2.0, "mixed_precision": "no"}


def run_toy(data="25gaussians", divergence=DEFAULT_DIVERGENCE, steps=4, out=None, iters=None, seed=0,
            method=DEFAULT_METHOD, sampler=None, overwrite=False, **overrides):
    """Train on a 2-D mixture; returns the metrics (and writes metrics.json + a PNG to `out`,
    which must not hold a result already unless `overwrite`).

    The method's toy_model holds the networks and the training step (its toy_recipe
    changes the hyperparameters above). method 'ddgan': T = steps; `iters` counts
    discriminator steps, so that every divergence gets the same budget: with n_critic critic
    steps per generator step (5 for wgan-gp) G takes iters / n_critic steps. R1 (r1_gamma,
    every r1_every D steps) regularises the f-divergences, with R2 on fakes (r2_gamma, null:
    r1_gamma for rpgan, else off); wgan-gp has its gradient penalty alone.
    The denoising methods: the same MLP (without z) trained for `iters` steps with the images'
    defaults (DDPM's T = 1000 linear betas, EDM's sigma distribution), sampled with `steps`
    as their --steps counts it (DDPM's K calls, EDM's N noise levels) and their samplers.
    mixed_precision trains the networks as train.mixed_precision does the images'
    (ddgan/precision.py); the samples come from their float32 weights.
    """
    unknown = set(overrides) - set(TOY_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown toy option(s) {sorted(unknown)}; valid: {sorted(TOY_DEFAULTS)}")
    method_cls = get_method(method, "toy method")
    hp = {**TOY_DEFAULTS, **method_cls.toy_recipe, **overrides}
    if iters is not None:
        hp["iters"] = iters
    check_count("iters", hp["iters"])
    if check_precision(hp["mixed_precision"], "mixed_precision") == "auto":
        raise ValueError(f"mixed_precision 'auto' times an image run's networks; the 2-D benchmark "
                         f"takes {', '.join(TOY_PRECISIONS)}")
    if out is not None:
        out = Path(out)
        if (out / "metrics.json").exists() and not overwrite:
            raise FileExistsError(f"{out} already holds a result (metrics.json); pass "
                                  f"--overwrite to replace it or choose another --out")
        check_writable(out, "--out")
    torch.manual_seed(seed)
    centres = mode_centres(data)
    model = method_cls.toy_model(hp, steps, divergence, sampler,
                                 settings=load_config(overrides=[f"method={method_cls.name}"]))

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    started = time.perf_counter()
    try:
        label = f"toy {data} {method} {model.divergence or model.sampler} steps={steps}"
        for _ in tqdm(range(model.num_updates), desc=label, unit="update"):
            model.train_step(lambda: sample_mixture(centres, hp["batch_size"]) * hp["data_scale"])
            for scheduler in model.schedulers:
                scheduler.step()
    finally:
        torch.set_num_threads(threads)
    train_seconds = time.perf_counter() - started

    rng = torch.Generator().manual_seed(seed + 1)
    samples = model.sample(NUM_EVAL_SAMPLES, rng) / hp["data_scale"]
    metrics = {"data": data, "method": method, "divergence": model.divergence,
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


def scatter_plot(samples, centres, metrics, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(samples[:, 0], samples[:, 1], s=1, alpha=0.3, label=f"{metrics['method']} samples")
    ax.scatter(centres[:, 0], centres[:, 1], s=20, c="red", marker="x", label="modes")
    how = metrics["divergence"] or metrics["sampler"]
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
