"""The training loop shared by every method: data, logging, sample grids, checkpoints, resume.

Run directory (train.out_dir):
    config.yaml               the resolved configuration
    checkpoints/last.pt       rewritten every ckpt_every steps (atomically)
    checkpoints/step_N.pt     kept every keep_every steps
    samples/step_N.png        EMA sample grids, the same latents every time
    tb/                       TensorBoard events
    eval.csv                  periodic evaluation (eval.every_images): the training curves
"""
import time
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object, set_seed
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid, save_image
from tqdm import tqdm

from . import checkpoint
from .config import config_differences, dump_config, load_saved_config
from .data import ImageBatches, load_images, uses_flip
from .evaluate import (PERIODIC_COLUMNS, append_csv, check_extractor_data, periodic_fd, periodic_nfe,
                       reference_name)
from .generate import sample_images
from .methods import method_class
from .metrics import resolve_extractor
from .speed import SWITCHES, set_backend_flags

# Keys that may change between a run and its resumption (the speed switches change results
# by float rounding only; methods re-lay the optimiser state for them).
RESUMABLE_CHANGES = {"train.max_steps", "train.log_every", "train.sample_every",
                     "train.ckpt_every", "train.keep_every", "train.num_grid", "data.root",
                     "eval.every_images", "eval.num_samples", "eval.extractor", "eval.batch_size", "eval.steps",
                     *(f"speed.{name}" for name in SWITCHES), "speed.compile_backend"}
# Losses whose non-finite value stops a run.
WATCHED = ("d_total", "g_loss", "loss")


class NonFiniteLossError(RuntimeError):
    pass


def _all_finite(state):
    """True when every floating-point tensor in a (nested) state dict is finite."""
    if isinstance(state, dict):
        return all(_all_finite(v) for v in state.values())
    if isinstance(state, (list, tuple)):
        return all(_all_finite(v) for v in state)
    if isinstance(state, torch.Tensor) and state.is_floating_point():
        return bool(torch.isfinite(state).all())
    return True


class Run:
    """Paths of a run directory."""

    def __init__(self, out_dir):
        self.dir = Path(out_dir)
        self.config = self.dir / "config.yaml"
        self.checkpoints = self.dir / "checkpoints"
        self.last = self.checkpoints / "last.pt"
        self.samples = self.dir / "samples"
        self.tensorboard = self.dir / "tb"


def _check_train_settings(cfg):
    t_cfg = cfg["train"]
    if cfg["optim"]["grad_clip"] < 0:
        raise ValueError(f"optim.grad_clip must be >= 0 (0 = no clipping), got {cfg['optim']['grad_clip']}")
    for key in ("batch_size", "max_steps", "log_every", "sample_every", "ckpt_every", "num_grid"):
        if t_cfg[key] < 1:
            raise ValueError(f"train.{key} must be >= 1, got {t_cfg[key]}")
    if t_cfg["keep_every"] < 0:
        raise ValueError(f"train.keep_every must be >= 0 (0 = keep none), got {t_cfg['keep_every']}")
    steps = cfg["eval"]["steps"]
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"eval.steps must be a positive integer (DDPM's K, EDM's N) or null, got {steps!r}")
    if t_cfg["mixed_precision"] not in ("no", "bf16"):
        raise ValueError(f"train.mixed_precision must be no or bf16 (fp16 would need loss "
                         f"scaling inside the gradient penalties), got {t_cfg['mixed_precision']!r}")


def _periodic_extractor(cfg):
    """The feature network of the periodic evaluation, or None when it is off."""
    e = cfg["eval"]
    if e["every_images"] < 0 or e["num_samples"] < 2:
        raise ValueError("eval.every_images must be >= 0 (0 = off) and eval.num_samples >= 2")
    if not e["every_images"]:
        return None
    if not e["extractor"]:
        raise ValueError("eval.every_images needs eval.extractor: featnet:PATH (offline; train "
                         "one with `ddgan featnet`) or inception")
    extractor = resolve_extractor(e["extractor"])
    check_extractor_data(extractor, cfg["data"], cfg["train"]["out_dir"])
    return extractor


def _check_resume(cfg, run):
    if not run.last.exists():
        raise FileNotFoundError(f"--resume: no checkpoint at {run.last}")
    saved = load_saved_config(run.config)  # keys the run predates take their earlier values
    changed = [k for k in config_differences(saved, cfg) if k not in RESUMABLE_CHANGES]
    if changed:
        raise ValueError(f"--resume: the config differs from the run's {run.config} at "
                         f"{', '.join(changed)}; resume with the same settings or start a "
                         f"new train.out_dir")
    if cfg["optim"]["cosine_decay"] and saved["train"]["max_steps"] != cfg["train"]["max_steps"]:
        raise ValueError("--resume: train.max_steps cannot change when optim.cosine_decay "
                         "is on (the schedule depends on it)")


def train(cfg, resume=False, stop_at=None):
    """Train the method of `cfg`; returns the run directory.

    stop_at: leave after this many steps with a checkpoint, as a time-limited job
    would (continue later with resume=True).
    """
    t_cfg = cfg["train"]
    _check_train_settings(cfg)
    method_cls = method_class(cfg)
    extractor = _periodic_extractor(cfg)
    run = Run(t_cfg["out_dir"])
    if resume:
        _check_resume(cfg, run)
    elif run.last.exists():
        raise FileExistsError(f"{run.dir} already holds a run; pass --resume to continue it "
                              f"or set train.out_dir to a new folder")

    accelerator = Accelerator(mixed_precision=t_cfg["mixed_precision"])
    main = accelerator.is_main_process
    set_seed(t_cfg["seed"], device_specific=True)

    images = load_images(cfg["data"])
    if cfg["data"]["on_device"]:
        images = images.to(accelerator.device)
    batches = ImageBatches(images, t_cfg["batch_size"], t_cfg["seed"],
                           rank=accelerator.process_index, random_flip=uses_flip(cfg["data"]))
    method = method_cls(cfg, images.shape[1:], accelerator)
    set_backend_flags(method.speed)  # process-wide; before the first step

    start, train_seconds = 0, 0.0
    if resume:
        state = checkpoint.load(run.last)
        if len(state["rng"]) != accelerator.num_processes:
            raise ValueError(f"--resume: the run was saved by {len(state['rng'])} process(es), "
                             f"this launch has {accelerator.num_processes}; an exact resume "
                             f"needs the same number")
        method.load_state_dict(state["method"])
        batches.load_state_dict(state["data"])
        checkpoint.set_rng_state(state["rng"][accelerator.process_index])
        start, train_seconds = state["step"], state.get("train_seconds", 0.0)
    elif main:
        run.dir.mkdir(parents=True, exist_ok=True)
        dump_config(cfg, run.config)

    def save(step):
        method_state = method.state_dict()
        if not _all_finite(method_state):
            raise NonFiniteLossError(f"non-finite weights at step {step}; training stopped and "
                                     f"{run.last} (step {last_good}) was kept")
        state = {"step": step, "config": cfg, "image_shape": tuple(images.shape[1:]),
                 "images_seen": step * images_per_step, "train_seconds": train_seconds,
                 "speed": method.speed,  # as resolved on this device
                 "method": method_state, "data": batches.state_dict(),
                 "rng": gather_object([checkpoint.rng_state()])}
        if main:
            checkpoint.atomic_save(state, run.last)
            if t_cfg["keep_every"] and step % t_cfg["keep_every"] == 0:
                checkpoint.atomic_copy(run.last, run.checkpoints / f"step_{step:07d}.pt")

    writer = SummaryWriter(run.tensorboard) if main else None
    max_steps = t_cfg["max_steps"] if stop_at is None else min(stop_at, t_cfg["max_steps"])
    images_per_step = t_cfg["batch_size"] * method.batches_per_step * accelerator.num_processes
    nonfinite = torch.zeros((), dtype=torch.bool, device=accelerator.device)
    last_good = start
    clock, clock_step = time.perf_counter(), start

    def check_finite(step, stats):
        # Every process must agree, or one would stop while the others wait for it.
        if accelerator.reduce(nonfinite.float(), reduction="sum").item() > 0:
            values = ", ".join(f"{k}={v.item():.4g}" for k, v in stats.items())
            kept = f"{run.last} (step {last_good})" if run.last.exists() else "none was written"
            raise NonFiniteLossError(
                f"non-finite loss by step {step} ({values}); training stopped. The last good "
                f"checkpoint is {kept}. Try lower learning rates, a larger "
                f"divergence.r1_gamma, or train.mixed_precision=no.")

    progress = tqdm(range(start, max_steps), initial=start, total=t_cfg["max_steps"],
                    disable=not main, desc=f"{cfg['method']} {run.dir.name}", unit="step")
    e_cfg = cfg["eval"]
    grid_nfe = periodic_nfe(method_cls, cfg)  # the grids' and the periodic evaluation's
    reference = images.cpu() if extractor and main else None
    reference_cache_name = reference_name(reference) if reference is not None else None

    def evaluate_now(done):  # each time the images seen cross a multiple of eval.every_images
        every = e_cfg["every_images"]
        return done * images_per_step // every > (done - 1) * images_per_step // every

    for step in progress:
        tick = time.perf_counter()
        done = step + 1
        log_now = done % t_cfg["log_every"] == 0
        stats = method.train_step(batches, step, with_grad_norms=log_now)
        for name in WATCHED:
            if name in stats:
                nonfinite |= ~torch.isfinite(stats[name])

        if log_now:
            check_finite(done, stats)
            now = time.perf_counter()
            throughput = (done - clock_step) * images_per_step / (now - clock)
            clock, clock_step = now, done
            if main:
                for name, value in stats.items():
                    writer.add_scalar(f"train/{name}", value.item(), done)
                writer.add_scalar("train/img_per_s", throughput, done)
                writer.add_scalar("train/images_seen", done * images_per_step, done)
                progress.set_postfix({k: f"{v.item():.3g}" for k, v in stats.items()
                                      if not k.startswith("grad")})
        train_seconds += time.perf_counter() - tick  # training only: not grids, evaluation, saving
        if main and (done % t_cfg["sample_every"] == 0 or done == max_steps):
            grid = sample_images(method.ema.module.eval(), method_cls, cfg, images.shape[1:],
                                 t_cfg["num_grid"],
                                 torch.Generator(accelerator.device).manual_seed(t_cfg["seed"]),
                                 steps=method_cls.preview_steps(cfg),
                                 progress=f"grid, {grid_nfe} calls per image")
            grid = make_grid(grid, nrow=int(t_cfg["num_grid"] ** 0.5),
                             normalize=True, value_range=(-1, 1))
            run.samples.mkdir(parents=True, exist_ok=True)
            save_image(grid, run.samples / f"step_{done:07d}.png")
            writer.add_image("samples", grid, done)
        if main and extractor and evaluate_now(done):
            fd = periodic_fd(method.ema.module.eval(), method_cls, cfg, images.shape[1:],
                             reference, extractor, e_cfg["num_samples"], t_cfg["seed"],
                             e_cfg["batch_size"], reference_cache_name)
            append_csv(run.dir / "eval.csv", PERIODIC_COLUMNS, [{
                "step": done, "images_seen": done * images_per_step,
                "train_seconds": round(train_seconds, 2), "metric_name": extractor.metric_name,
                "fd": fd, "n_samples": e_cfg["num_samples"], "nfe": grid_nfe,
                "extractor": extractor.label,
                "extractor_hash": extractor.hash}])
            writer.add_scalar(f"eval/{extractor.metric_name}", fd, done)
        if done % t_cfg["ckpt_every"] == 0 or done == max_steps:
            check_finite(done, stats)
            save(done)
            last_good = done
    accelerator.wait_for_everyone()
    if writer is not None:
        writer.close()
    return run.dir
