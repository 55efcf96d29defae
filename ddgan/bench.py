"""`ddgan bench`: training and sampling throughput per method, as a table and JSON.

A benchmark, not a test. Each timing is the median of `repeats` synchronised
calls after `warmup` calls. Training runs the method's real train_step (D and G
steps with lazy R1, EMA, schedules) on random images held on the device, so
data loading is not measured; sampling runs the method's sampler on EMA-shaped
networks with random weights (speed does not depend on the weights).
"""
import json
import platform
import statistics
import time
from itertools import count
from pathlib import Path

import torch
from accelerate import Accelerator

from .config import load_config
from .methods import method_class
from .samplers import nfe
from .speed import PLAIN_OVERRIDES, compiled, resolve, set_backend_flags

IMAGE_SHAPES = {"fmnist": (1, 28, 28), "cifar10": (3, 32, 32)}


def image_shape(cfg):
    data = cfg["data"]
    if data["name"] in IMAGE_SHAPES:
        return IMAGE_SHAPES[data["name"]]
    if data["image_size"]:
        return (3, data["image_size"], data["image_size"])
    raise ValueError("an imagefolder config needs data.image_size for the benchmark")


def median_seconds(fn, device, warmup, repeats):
    """Median wall time of fn() over `repeats` calls, each bracketed by device synchronisation."""
    synchronise = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronise()
        started = time.perf_counter()
        fn()
        synchronise()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


class RandomBatches:
    """Endless batches of uniform random images in [-1, 1] on the device."""

    def __init__(self, batch_size, shape, device):
        self.batch = torch.rand(batch_size, *shape, device=device) * 2 - 1

    def __next__(self):
        return self.batch


def bench_config(cfg, accelerator, steps, sample_batches, warmup, repeats):
    """Rows for one config: its training step, then sampling at each step count and batch."""
    method_cls = method_class(cfg)
    shape = image_shape(cfg)
    device = accelerator.device
    method = method_cls(cfg, shape, accelerator)
    batch = cfg["train"]["batch_size"]
    batches, step = RandomBatches(batch, shape, device), count()
    seconds = median_seconds(lambda: method.train_step(batches, next(step)), device, warmup, repeats)
    images = batch * method.batches_per_step
    name = cfg["method"] if cfg["method"] != "ddgan" else f"ddgan {cfg['divergence']['name']}"
    network = method.ema.module.eval()  # the sampled network: G, or the denoiser
    params = sum(p.numel() for p in network.parameters())
    network = compiled(network, method.speed)  # the EMA is channels_last already
    rows = [{"method": name, "what": "train", "batch": batch, "steps": None, "nfe": None,
             "seconds": seconds, "img_per_s": images / seconds, "params_m": params / 1e6}]

    sampler = {"ddgan": None, "ddpm": "ddim", "edm": "heun"}[cfg["method"]]
    for k in steps:
        run_cfg = cfg
        if cfg["method"] == "ddgan":  # T is part of the model: sample as a run trained with T = k would
            run_cfg = {**cfg, "diffusion": {**cfg["diffusion"], "num_steps": k}}
        for sample_batch in sample_batches:
            rng = torch.Generator(device).manual_seed(0)
            draw = lambda: method_cls.sample_with(  # noqa: E731
                network, run_cfg, shape, sample_batch, rng,
                steps=None if cfg["method"] == "ddgan" else k, sampler=sampler)
            with torch.no_grad():
                seconds = median_seconds(draw, device, warmup, repeats)
            rows.append({"method": name, "what": f"sample ({sampler or 'ddgan'})",
                         "batch": sample_batch, "steps": k,
                         "nfe": nfe(cfg["method"], k, sampler or "ddgan"),
                         "seconds": seconds, "img_per_s": sample_batch / seconds,
                         "params_m": params / 1e6})
    return rows


def environment(accelerator, speed):
    device = accelerator.device
    return {"device": torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
            "torch": torch.__version__, "mixed_precision": accelerator.mixed_precision, **speed}


def markdown(rows):
    lines = ["| method | what | batch | steps | NFE | ms / call | img/s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['what']} | {r['batch']} | {r['steps'] or '—'} | "
                     f"{r['nfe'] or '—'} | {1000 * r['seconds']:.1f} | {r['img_per_s']:.1f} |")
    return "\n".join(lines)


def run_bench(config_paths, overrides=(), steps=(1, 2, 4), sample_batches=(100,), warmup=2,
              repeats=5, mixed_precision="no", cpu=False, out=None, plain=False):
    """Benchmark each config; returns {'environment', 'rows'} (and writes it to `out` as JSON).

    The fast mode (ddgan/speed.py) is on where the configs leave it on; plain turns it off.
    """
    overrides = list(overrides) + (PLAIN_OVERRIDES if plain else [])
    configs = [load_config(path, overrides) for path in config_paths]
    accelerator = Accelerator(mixed_precision=mixed_precision, cpu=cpu)
    speeds = [resolve(cfg["speed"], accelerator.device) for cfg in configs]
    if any(speed != speeds[0] for speed in speeds):
        raise ValueError("these configs set different speed switches; benchmark them "
                         "separately, as one table records one set")
    speed = speeds[0]
    set_backend_flags(speed)
    torch.manual_seed(0)
    rows = []
    for path, cfg in zip(config_paths, configs):
        for row in bench_config(cfg, accelerator, steps, sample_batches, warmup, repeats):
            rows.append({"config": str(path), **row})
    result = {"environment": environment(accelerator, speed), "warmup": warmup, "repeats": repeats,
              "overrides": list(overrides), "rows": rows}
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2) + "\n")
    return result
