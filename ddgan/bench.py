"""`ddgan bench`: training and sampling throughput per method, as a table and JSON.

A benchmark, not a test. Each timing is taken over `repeats` synchronised calls after
`warmup` calls and reported as the median with its minimum and maximum. Training runs
the method's real train_step (D and G steps with lazy R1, EMA, schedules) on random
images held on the device, so data loading is not measured; one timed call is a whole
cycle of the method's steps (its cycle(): DDGAN's lazy-R1 pattern), so that its R1 passes
are timed as often as they run. Sampling
runs the method's sampler on EMA-shaped networks with random weights (speed does not
depend on the weights).

Each row also has the FLOPs of one step (torch.utils.flop_counter on the real step,
R1's double backward included), the achieved TFLOP/s, the device's peak at the step's
dtype measured by a matmul probe in the same run, and the utilisation: nanoGPT's MFU,
with a measured rather than a quoted peak.
"""
import json
import statistics
import time
from itertools import count
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import broadcast_object_list
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from .device import describe
from .config import load_shared_config
from .methods import method_class
from .precision import (DESCRIPTIONS, cache_key, cached_measure, check_precision,
                        in_precision, resolve_precision)
from .settings import updated
from .speed import PLAIN_OVERRIDES, compiled, resolve, set_backend_flags

IMAGE_SHAPES = {"fmnist": (1, 28, 28), "cifar10": (3, 32, 32)}


def image_shape(data):
    """The image shape of the `data` settings, without loading the data."""
    if data.name in IMAGE_SHAPES:
        return IMAGE_SHAPES[data.name]
    if data.image_size:
        return (3, data.image_size, data.image_size)
    raise ValueError("an imagefolder config needs data.image_size for the benchmark")


def timed(fn, device, warmup, repeats):
    """{'seconds' (median), 'min_seconds', 'max_seconds'} of fn() over `repeats` calls after
    `warmup` calls, and 'first_seconds', the first call's (with torch.compile, mostly its
    compile time). Each call is bracketed by device synchronisation."""
    synchronise = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    for _ in range(warmup + repeats):
        synchronise()
        started = time.perf_counter()
        fn()
        synchronise()
        times.append(time.perf_counter() - started)
    measured = times[warmup:]
    return {"seconds": statistics.median(measured), "min_seconds": min(measured),
            "max_seconds": max(measured), "first_seconds": times[0]}


class FlopCount(TorchDispatchMode):
    """Counts floating-point operations with torch.utils.flop_counter's formulas (matmuls and
    convolutions, forward and backward, 2 per multiply-add). FlopCounterMode itself tracks
    modules with backward hooks, which autograd.grad (R1, the gradient penalty) refuses."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def counted_flops(fn):
    """The floating-point operations of one fn() call."""
    with FlopCount() as counter:
        fn()
    return counter.total


def matmul_peak(device, dtype, size=None, repeats=5):
    """The best FLOP/s of a square matmul in `dtype` on `device`: a measured peak."""
    size = size or (8192 if device.type == "cuda" else 2048)
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    best = timed(lambda: a @ b, device, warmup=2, repeats=repeats)["min_seconds"]
    return 2 * size**3 / best


class RandomBatches:
    """Endless batches of uniform random images in [-1, 1] on the device."""

    def __init__(self, batch_size, shape, device):
        self.batch = torch.rand(batch_size, *shape, device=device) * 2 - 1

    def __next__(self):
        return self.batch


def measured_row(fn, per_call, device, warmup, repeats, peak, **row):
    """A row: fn's timing and FLOPs, each divided by `per_call` (the steps one fn() holds)."""
    timing = {k: v / per_call for k, v in timed(fn, device, warmup, repeats).items()}
    flops = counted_flops(fn) / per_call
    achieved = flops / timing["seconds"]
    return {**row, **timing, "img_per_s": row["batch"] / timing["seconds"], "gflop": flops / 1e9,
            "tflop_per_s": achieved / 1e12, "peak_tflop_per_s": peak / 1e12,
            "utilisation": achieved / peak}


def precision_timings(settings, image_shape, accelerator, cycles=2):
    """Seconds per training step of the run's method, networks and batch in float32 and with
    the networks in bf16: {'no': s, 'bf16': s}. On random images, after one step of each,
    `cycles` cycles of the method's steps (cycle()) alternate between the two; each keeps its
    fastest. The global random state is left as it was, and so are the accelerator's
    references (the timed networks are freed)."""
    method_cls = method_class(settings)
    with torch.random.fork_rng(devices=[]):
        methods = {p: method_cls(updated(settings, {"train": {"mixed_precision": p}}), image_shape,
                                 accelerator) for p in ("no", "bf16")}
        batches, step = RandomBatches(settings.train.batch_size, image_shape, accelerator.device), count()
        for method in methods.values():
            method.train_step(batches, next(step))
        best = dict.fromkeys(methods, float("inf"))
        for _ in range(cycles):
            for precision, method in methods.items():
                cycle = method.cycle()
                seconds = timed(lambda: [method.train_step(batches, next(step)) for _ in range(cycle)],
                                accelerator.device, warmup=0, repeats=1)["seconds"]
                best[precision] = min(best[precision], seconds / cycle)
    del methods
    accelerator.free_memory()
    return best


def choose_precision(settings, image_shape, accelerator, announce=print):
    """The precision this run trains in, and auto's timings (None where nothing was timed):
    train.mixed_precision, with 'auto' decided by precision_timings on a CPU with native bf16
    (cached: ddgan/precision.py)."""
    def first_time():
        announce("train.mixed_precision=auto: timing float32 against bf16 networks on this CPU "
                 "(a few steps of each, once per CPU and configuration)")
        return precision_timings(settings, image_shape, accelerator)

    precision, timings = resolve_precision(
        settings.train.mixed_precision, accelerator.device,
        lambda: cached_measure(cache_key(settings, accelerator.device), first_time))
    if accelerator.num_processes > 1:  # every process timed; they train as the main one chose
        precision, timings = broadcast_object_list([(precision, timings)])[0]
    return precision, timings


def bench_config(settings, accelerator, steps, sample_batches, warmup, repeats, peak):
    """Rows for one config: its training step, then sampling at each step count and batch, in
    the config's precision (auto decided as training decides it).
    peak(dtype name): the device's matmul FLOP/s in that dtype."""
    method_cls = method_class(settings)
    shape = image_shape(settings.data)
    device = accelerator.device
    precision, _ = choose_precision(settings, shape, accelerator)
    method = method_cls(updated(settings, {"train": {"mixed_precision": precision}}), shape, accelerator)
    batch = settings.train.batch_size
    batches, step = RandomBatches(batch, shape, device), count()
    cycle = method.cycle()

    def train_cycle():
        for _ in range(cycle):
            method.train_step(batches, next(step))

    name = " ".join([settings.method, *method_cls.labels(settings).values()])
    network = method.ema.module.eval()  # the sampled network: G, or the denoiser
    params = sum(p.numel() for p in network.parameters())
    common = {"method": name, "params_m": params / 1e6, "precision": precision,
              "requested": settings.train.mixed_precision}
    dtype = "float32" if precision == "no" else "bfloat16"
    rows = [measured_row(train_cycle, cycle, device, warmup, repeats, peak(dtype), **common,
                         what="train", batch=batch * method_cls.batches_per_step(settings), steps=None, nfe=None)]
    # The EMA samples in the training's precision.
    network = compiled(in_precision(network, precision), method.speed)  # the EMA is channels_last already

    for k in steps:
        # the default sampler of a run that samples with k steps
        sampler = method_cls.sampler(method_cls.settings_for_steps(settings, k), k, device=device)
        for sample_batch in sample_batches:
            rng = torch.Generator(device).manual_seed(0)

            @torch.no_grad()
            def draw():
                sampler.draw(network, sample_batch, shape, rng)
            rows.append(measured_row(draw, 1, device, warmup, repeats, peak(dtype), **common,
                                     what=f"sample ({sampler.name})", batch=sample_batch, steps=k,
                                     nfe=sampler.network_calls))
    return rows


def environment(accelerator, speed):
    return {"device": describe(accelerator.device), "torch": torch.__version__, **speed}


def markdown(rows):
    lines = ["| method | precision | what | batch | steps | NFE | ms / call (min–max) | img/s "
             "| GFLOP / call | TFLOP/s | peak TFLOP/s | utilisation |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        chosen = " (auto)" if r.get("requested") == "auto" else ""
        lines.append(f"| {r['method']} | {DESCRIPTIONS[r['precision']]}{chosen} | {r['what']} | {r['batch']} | {r['steps'] or '—'} | "
                     f"{r['nfe'] or '—'} | {1000 * r['seconds']:.1f} ({1000 * r['min_seconds']:.1f}–"
                     f"{1000 * r['max_seconds']:.1f}) | {r['img_per_s']:.1f} | {r['gflop']:.1f} | "
                     f"{r['tflop_per_s']:.3f} | {r['peak_tflop_per_s']:.3f} | {100 * r['utilisation']:.0f}% |")
    return "\n".join(lines)


def run_bench(config_paths, overrides=(), steps=(1, 2, 4), sample_batches=(100,), warmup=2,
              repeats=5, mixed_precisions=None, cpu=False, out=None, plain=False):
    """Benchmark each config; returns {'environment', 'rows'} (and writes it to `out` as JSON).

    mixed_precisions: train.mixed_precision values to benchmark each config in, one after
    the other in this run (None: each config's own). The fast mode (ddgan/speed.py) is on
    where the configs leave it on; plain turns it off.
    """
    overrides = list(overrides) + (PLAIN_OVERRIDES if plain else [])
    loaded = [(path, load_shared_config(path, overrides)) for path in config_paths]
    configs = loaded if mixed_precisions is None else [
        (path, updated(settings, {"train": {"mixed_precision": check_precision(precision)}}))
        for path, settings in loaded for precision in mixed_precisions]
    accelerator = Accelerator(cpu=cpu)
    speeds = [resolve(vars(settings.speed), accelerator.device) for _, settings in configs]
    if any(speed != speeds[0] for speed in speeds):
        raise ValueError("these configs set different speed switches; benchmark them "
                         "separately, as one table records one set")
    speed = speeds[0]
    set_backend_flags(speed)
    torch.manual_seed(0)
    device = accelerator.device
    peaks = {}

    def peak(dtype):  # measured once per dtype, when a row first needs it
        if dtype not in peaks:
            peaks[dtype] = matmul_peak(device, getattr(torch, dtype))
        return peaks[dtype]

    rows = []
    for path, settings in configs:
        for row in bench_config(settings, accelerator, steps, sample_batches, warmup, repeats, peak):
            rows.append({"config": str(path), **row})
    result = {"environment": {**environment(accelerator, speed),
                              "peak_tflop_per_s": {k: v / 1e12 for k, v in peaks.items()}},
              "warmup": warmup, "repeats": repeats, "overrides": list(overrides), "rows": rows}
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2) + "\n")
    return result
