"""`ddgan eval`: run directories -> quality against network calls, as CSV rows; and the floor,
real held-out images scored the same way (evaluate_real_data).

One row per (run, sampler, step count), as the run's method plans it: DDGAN at
its trained T (a sweep over T is a set of runs), DDPM at each K and sampler asked
for, EDM at each N (NFE = 2N - 1 with Heun). Each row records the metric values, the feature
network and its hash, the sample count, the seed, the NFE and the sampling
throughput measured while generating. The same functions serve the periodic
evaluation during training (train.py), which appends to the run's eval.csv.
"""
import hashlib
import json
import os
import time
from pathlib import Path

import torch
from torchvision.utils import save_image

from . import checkpoint
from .data import data_label, load_dataset, load_images
from .device import resolve_device
from .csvfiles import LABEL_COLUMNS, METRIC_COLUMNS, RESULT_COLUMNS, append_csv, read_csv_rows
from .files import atomic_write, check_writable
from .generate import ema_network, sample_images
from .methods import METHODS, get_method
from .metrics import (check_metrics, check_sample_count, compute_metrics, equal_size_subset, quantise,
                      resolve_extractor)
from .schema import DEFAULTS
from .settings import updated
from .speed import plain_mode, sampling_network

GRID_SIZE = 64


def result_labels(method, settings):
    """The label columns of a result row: the method's labels(), every key it returns, and ''
    for the label columns it does not use."""
    labels = method.labels(settings)
    unknown = sorted(set(labels) - set(LABEL_COLUMNS))
    if unknown:
        raise ValueError(f"method {method.name!r} labels its rows with {', '.join(unknown)}, which "
                         f"the results have no column for: a label is one of {', '.join(LABEL_COLUMNS)}")
    return {**dict.fromkeys(LABEL_COLUMNS, ""), **labels}


def plan(settings, run, steps=None, samplers=None):
    """[(sampler, steps)] to evaluate for a run's settings; bad requests fail here, before any work.

    samplers: names asked for; a run keeps those its method has (all of them where it has
    only one) and refuses a request of none. steps: the counts asked for (default the
    method's default_steps), which the method checks.
    """
    method = get_method(settings.method)
    if samplers:
        chosen = [s for s in samplers if s in method.samplers]
        if not chosen and len(method.samplers) == 1:  # nothing to choose
            chosen = list(method.samplers)
        if not chosen:
            raise ValueError(f"{run} is a {method.name.upper()} run: its samplers are "
                             f"{', '.join(method.samplers)}; --samplers gave {', '.join(samplers)}")
    else:
        chosen = list(method.eval_samplers or [method.default_sampler()])
    counts = list(steps or [method.default_steps(settings)])
    if method.steps_trained and steps:  # a mixed evaluation asks other runs for other counts
        counts = [k for k in counts if k == method.default_steps(settings)] or counts
    try:
        method.check_steps(settings, counts)
    except ValueError as error:
        raise ValueError(f"{run}: {error}; give --steps the run can sample with"
                         + (", or drop --steps" if method.steps_trained else "")) from None
    return [(sampler, k) for sampler in chosen for k in counts]


def reference_name(images):
    """The reference set's name in the feature cache: its size and a hash of its pixels, so a
    cache entry is never reused for other data under the same name."""
    digest = hashlib.sha256(images.cpu().contiguous().numpy().tobytes()).hexdigest()[:12]
    return f"ddgan-ref-{len(images)}-{digest}"


def check_extractor_data(extractor, data, run):
    """The featnet was trained on the run's data (its `data` settings)."""
    label = data_label(data.name, data.root)
    if extractor.data is not None and extractor.data != label:
        raise ValueError(f"the featnet {extractor.weights_path} was trained on {extractor.data}, "
                         f"but {run} trained on {label}: train a featnet on the same data "
                         f"(`ddgan featnet`)")


def evaluate_runs(run_dirs, extractor_spec, steps=None, samplers=None, num_samples=10_000,
                  metrics=("fid",), seed=0, batch_size=256, device=None, checkpoint_name="last.pt",
                  grid_dir=None, data_root=None, inception_weights=None, plain=False):
    """Evaluate each run's checkpoint at each planned step count; returns the result rows.

    plain: sample without the fast mode (ddgan/speed.py), which is the default on a GPU.
    """
    device = resolve_device(device)
    check_metrics(metrics)
    check_sample_count(metrics, num_samples)
    if grid_dir is not None:
        check_writable(grid_dir, "the grids' folder beside --out")
    known = {name for method in METHODS.values() for name in method.samplers}
    if samplers and set(samplers) - known:
        raise ValueError(f"unknown sampler(s) {sorted(set(samplers) - known)}; valid: "
                         f"{', '.join(sorted(known))}")
    extractor = resolve_extractor(extractor_spec, inception_weights)
    jobs = []
    for run in map(Path, run_dirs):
        path = run / "checkpoints" / checkpoint_name
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint at {path}: is {run} a run directory "
                                    f"(train.out_dir) that has saved a checkpoint?")
        state = checkpoint.load(path)
        settings = state["config"]
        if data_root is not None:
            settings = updated(settings, {"data": {"root": str(data_root)}})
        check_extractor_data(extractor, settings.data, run)
        jobs.append((run, state, settings, plan(settings, run, steps, samplers)))

    fast = DEFAULTS["speed"]  # the fast mode's defaults, whatever the runs trained with
    speed_cfg = plain_mode(fast) if plain else fast
    rows, references = [], {}
    for run, state, settings, todo in jobs:
        network, method = ema_network(state, device)
        network = sampling_network(network, device, speed_cfg)
        data = settings.data
        key = (data.name, data.root, data.image_size)
        if key not in references:  # load and hash each training set once
            images = load_images(data.name, data.root, data.image_size)
            references[key] = images, reference_name(images)
        reference, name = references[key]
        for sampler_name, count in todo:
            sampler = method.sampler(settings, count, sampler_name, device)
            draw = lambda num, rng, progress=None: sample_images(  # noqa: E731
                network, sampler, state["image_shape"], num, rng, batch_size, progress)
            # Warm-up, at each batch size the draw uses: a compiled network compiles here.
            for size in {min(batch_size, num_samples), num_samples % batch_size} - {0}:
                draw(size, torch.Generator(device).manual_seed(seed))
            started = time.perf_counter()
            images = draw(num_samples, torch.Generator(device).manual_seed(seed),
                          f"{run.name} {sampler_name} steps={count}")
            img_per_s = num_samples / (time.perf_counter() - started)  # sample_images ends synchronised
            values = compute_metrics(quantise(images), reference, extractor, metrics,
                                     reference_name=name, batch_size=batch_size, seed=seed,
                                     cuda=device.type == "cuda", progress=True)
            grid = None
            if grid_dir is not None:
                grid = Path(grid_dir) / f"{run.name}_{sampler_name}_{count}.png"
                grid.parent.mkdir(parents=True, exist_ok=True)
                save_image(images[:GRID_SIZE], grid, nrow=8, normalize=True, value_range=(-1, 1))
            rows.append({
                "run": str(run), "method": settings.method, **result_labels(method, settings),
                "sampler": sampler_name, "steps": count, "nfe": sampler.network_calls,
                "metric_name": extractor.metric_name, **dict.fromkeys(METRIC_COLUMNS), **values,
                "n_samples": num_samples,
                "extractor": extractor.label, "extractor_hash": extractor.hash,
                "data": data_label(data.name, data.root), "seed": seed,
                "train_seed": settings.train.seed, "img_per_s": round(img_per_s, 1),
                "ckpt_step": state["step"], "images_seen": state.get("images_seen"),
                "train_seconds": state.get("train_seconds"),
                "train_cpu_seconds": state.get("train_cpu_seconds"),
                "train_device": state.get("train_device", ""),
                "wall_seconds": round(time.perf_counter() - started, 1),
                "grid": "" if grid is None else str(grid),
                "eval_csv": str(run / "eval.csv") if (run / "eval.csv").is_file() else ""})
    return rows


REAL_DATA = "real data"  # the method column of the floor's rows: no model, no network call


def evaluate_real_data(data, extractor_spec, num_samples=(10_000,), metrics=("fid",), seed=0,
                       batch_size=256, device=None, grid_dir=None, inception_weights=None):
    """The floor: the metrics of real held-out images (the test split) scored exactly as a
    model's samples are, against the training set, at each sample count; what a model that
    draws from the data itself would reach. `data`: the data settings (name, root, image_size).
    A count below the split's size takes a fixed subset (metrics.equal_size_subset). Returns
    one row per count (method REAL_DATA, NFE 0)."""
    device = resolve_device(device)
    check_metrics(metrics)
    for count in num_samples:
        check_sample_count(metrics, count)
    if grid_dir is not None:
        check_writable(grid_dir, "the grids' folder beside --out")
    extractor = resolve_extractor(extractor_spec, inception_weights)
    check_extractor_data(extractor, data, "the real-data floor")
    reference = load_images(data.name, data.root, data.image_size)
    held_out = load_dataset(data.name, data.root, data.image_size, "test")[0]
    label = data_label(data.name, data.root)
    rows = []
    for count in num_samples:
        started = time.perf_counter()
        images = equal_size_subset(held_out, count)
        values = compute_metrics(images, reference, extractor, metrics,
                                 reference_name=reference_name(reference), batch_size=batch_size,
                                 seed=seed, cuda=device.type == "cuda", progress=True)
        grid = None
        if grid_dir is not None:
            grid = Path(grid_dir) / f"real_data_n{len(images)}.png"
            grid.parent.mkdir(parents=True, exist_ok=True)
            save_image(images[:GRID_SIZE].float() / 255, grid, nrow=8)
        rows.append({**dict.fromkeys(RESULT_COLUMNS, ""),
                     "run": f"real_data_n{len(images)}", "method": REAL_DATA, "sampler": "test split",
                     "steps": 0, "nfe": 0, "metric_name": extractor.metric_name,
                     **dict.fromkeys(METRIC_COLUMNS), **values, "n_samples": len(images),
                     "extractor": extractor.label, "extractor_hash": extractor.hash, "data": label,
                     "seed": seed, "train_seed": None, "img_per_s": None, "ckpt_step": None,
                     "images_seen": None, "train_seconds": None, "train_cpu_seconds": None,
                     "wall_seconds": round(time.perf_counter() - started, 1),
                     "grid": "" if grid is None else str(grid)})
    return rows


def check_results_target(out_json):
    """Before an evaluation: its JSON's folder is writable, and the CSV it appends to is intact."""
    out_json = Path(out_json)
    if out_json.suffix != ".json":
        raise ValueError(f"--out {out_json}: give a .json file (the rows are also appended to "
                         f"the .csv beside it)")
    check_writable(out_json.parent, "--out")
    if out_json.with_suffix(".csv").is_file():
        read_csv_rows(out_json.with_suffix(".csv"))


def write_results(rows, out_json):
    """out_json gets this evaluation's rows; the CSV beside it (same stem) accumulates all."""
    out_json = Path(out_json)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    for row in rows:  # grids are named relative to the results' folder, so it can move
        if row["grid"]:
            row["grid"] = os.path.relpath(row["grid"], out_json.parent)
    text = json.dumps(rows, indent=2) + "\n"
    atomic_write(out_json, lambda f: f.write(text.encode()))
    csv_path = out_json.with_suffix(".csv")
    append_csv(csv_path, RESULT_COLUMNS, rows)
    return csv_path


def preview_sampler(method, settings, device):
    """The sampler of the grids and the periodic evaluation: the method's default one at its
    preview steps (DDGAN's T; DDPM's and EDM's eval.steps, see their preview_steps)."""
    return method.sampler(settings, method.preview_steps(settings), device=device)


@torch.no_grad()
def periodic_fd(network, sampler, image_shape, reference, extractor, num_samples, seed,
                batch_size, reference_cache_name):
    """The run's metric on num_samples EMA samples (fixed seed) drawn by `sampler`, for the
    training curves."""
    device = next(network.parameters()).device
    # torch-fidelity builds networks and loaders from the global generators: fork them, so
    # that evaluating (or not) leaves the training's random draws unchanged.
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        rng = torch.Generator(device).manual_seed(seed)
        images = sample_images(network, sampler, image_shape, num_samples, rng, batch_size,
                               "periodic evaluation")
        return compute_metrics(quantise(images), reference, extractor, ("fid",),
                               reference_name=reference_cache_name, batch_size=batch_size,
                               seed=seed, cuda=device.type == "cuda", progress=True)["fd"]
