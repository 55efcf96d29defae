"""The training loop shared by every method: data, logging, sample grids, checkpoints, resume.

Run directory (train.out_dir):
    config.yaml               the resolved configuration
    checkpoints/last.pt       rewritten every ckpt_every steps (atomically)
    checkpoints/step_N.pt     kept every keep_every steps
    samples/step_N.png        EMA sample grids, the same latents every time
    tb/                       TensorBoard events
    eval.csv                  periodic evaluation (eval.every_images): the training curves
    .lock                     while a training runs in it (ddgan.runlock)

Everything that can be checked is checked before the first step: the settings, the
checkpoint to resume from, the data's shape and count, that the folder is free (its lock)
and writable and has room for a checkpoint. SIGINT and SIGTERM end the current step, save,
and raise TrainingInterrupted (ddgan.interrupt).
"""
import time
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object, set_seed
from torch.utils.tensorboard import SummaryWriter
from torchvision.utils import make_grid, save_image
from tqdm import tqdm

from . import checkpoint
from .config import dump_config, load_saved_config
from .data import DataError, ImageBatches, load_images, uses_flip
from .device import describe
from .csvfiles import PERIODIC_COLUMNS, append_csv, read_csv_rows
from .evaluate import check_extractor_data, periodic_fd, preview_sampler, reference_name
from .files import check_free_space, check_writable, remove_partial
from .generate import sample_images
from .interrupt import StopRequests, TrainingInterrupted
from .methods import method_class, unused_sections
from .metrics import resolve_extractor
from .runlock import RunLock
from .settings import config_differences, to_dict, updated
from .bench import choose_precision
from .precision import check_precision, describe as describe_precision
from .speed import SWITCHES, set_backend_flags

# Keys that may change between a run and its resumption (the speed switches and the precision change
# results by float rounding only; methods re-lay the optimiser state for them; train.out_dir names
# where the run is now, which changes when it is moved).
RESUMABLE_CHANGES = {"train.out_dir", "train.max_steps", "train.log_every", "train.sample_every",
                     "train.ckpt_every", "train.keep_every", "train.num_grid", "data.root",
                     "eval.every_images", "eval.num_samples", "eval.extractor", "eval.batch_size", "eval.steps",
                     *(f"speed.{name}" for name in SWITCHES), "speed.compile_backend",
                     "train.mixed_precision"}
# Losses whose non-finite value stops a run.
WATCHED = ("d_total", "g_loss", "loss")


# Errors of bad input (ValueError covers ConfigError, DataError, CheckpointError and OutputError).
USER_ERRORS = (ValueError, FileExistsError, FileNotFoundError)
DIAGNOSTIC_IMAGES = 128  # the fixed real batch of the logged diagnostics (a method's diagnostics())


class NonFiniteLossError(RuntimeError):
    pass


class RunNotStarted(RuntimeError):
    """Another process of a multi-process launch refused to start (its error says why)."""


def _tensors(state):
    """The tensors of a (nested) state dict."""
    if isinstance(state, dict):
        state = list(state.values())
    if isinstance(state, (list, tuple)):
        for value in state:
            yield from _tensors(value)
    elif isinstance(state, torch.Tensor):
        yield state


def _all_finite(state):
    """True when every floating-point tensor in a (nested) state dict is finite."""
    return all(bool(torch.isfinite(t).all()) for t in _tensors(state) if t.is_floating_point())


class Run:
    """Paths of a run directory."""

    def __init__(self, out_dir):
        self.dir = Path(out_dir)
        self.config = self.dir / "config.yaml"
        self.checkpoints = self.dir / "checkpoints"
        self.last = self.checkpoints / "last.pt"
        self.samples = self.dir / "samples"
        self.tensorboard = self.dir / "tb"

    def holds_a_run(self):
        return self.config.exists() or self.last.exists()


def _check_train_settings(settings):
    if settings.optim.grad_clip < 0:
        raise ValueError(f"optim.grad_clip must be >= 0 (0 = no clipping), got {settings.optim.grad_clip}")
    for key in ("batch_size", "max_steps", "log_every", "sample_every", "ckpt_every", "num_grid"):
        value = getattr(settings.train, key)
        if value < 1:
            raise ValueError(f"train.{key} must be >= 1, got {value}")
    if settings.train.keep_every < 0:
        raise ValueError(f"train.keep_every must be >= 0 (0 = keep none), got {settings.train.keep_every}")
    steps = settings.eval.steps
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"eval.steps must be a positive integer (DDPM's K, EDM's N) or null, got {steps!r}")
    check_precision(settings.train.mixed_precision)


def _periodic_extractor(settings):
    """The feature network of the periodic evaluation, or None when it is off."""
    e = settings.eval
    if e.every_images < 0 or e.num_samples < 2:
        raise ValueError("eval.every_images must be >= 0 (0 = off) and eval.num_samples >= 2")
    if not e.every_images:
        return None
    if not e.extractor:
        raise ValueError("eval.every_images needs eval.extractor: featnet:PATH (offline; train "
                         "one with `ddgan featnet`) or inception")
    extractor = resolve_extractor(e.extractor)
    check_extractor_data(extractor, settings.data, settings.train.out_dir)
    return extractor


def _fallback(run):
    """What to do when the run's last.pt cannot be resumed from: its newest intact kept
    checkpoint, if any."""
    path, state = checkpoint.newest_intact(run.checkpoints)
    if path is None:
        return (f"{run.checkpoints} holds no intact step_N.pt to continue from; start again "
                f"with a new train.out_dir")
    return (f"The newest intact checkpoint is {path} (step {state['step']}); continue from it "
            f"with --resume-from {path}")


def _check_source(run, source, resume_from):
    """Before anything is loaded or created: the checkpoint to resume from exists."""
    if resume_from is not None:
        if not source.is_file():
            raise FileNotFoundError(f"--resume-from {source}: no such checkpoint file")
    elif not source.exists():
        if checkpoint.kept_checkpoints(run.checkpoints):
            why = f"(deleted?). {_fallback(run)}"
        elif run.config.exists():
            why = ("yet: if its training still runs, wait for its first checkpoint; if it stopped "
                   "before one, delete the folder and start again")
        else:
            why = "(is train.out_dir the run's folder?)"
        raise FileNotFoundError(f"--resume: no checkpoint at {source} {why}")


def _load_source(run, source, resume_from):
    try:
        return checkpoint.load(source)
    except checkpoint.CheckpointError as err:
        flag = "--resume-from" if resume_from is not None else "--resume"
        raise checkpoint.CheckpointError(f"{flag}: {err}. {_fallback(run)}") from None


def _differences(saved, settings, ignored_sections=()):
    """The keys that differ and matter: sections the method does not use (another method's)
    may differ, so a baseline saved before a DDGAN key was added still resumes."""
    return [f"{key} ({_value(saved, key)!r} there, {_value(settings, key)!r} here)"
            for key in config_differences(saved, settings)
            if key not in RESUMABLE_CHANGES and key.split(".")[0] not in ignored_sections]


def _value(settings, dotted):
    for key in dotted.split("."):
        settings = getattr(settings, key, None)
    return settings


def _check_resume(settings, run, state, source, resume_from, ignored_sections):
    """The config agrees with the run's config.yaml and, when that is absent or the checkpoint
    comes from --resume-from, with the config the checkpoint was saved with."""
    records = [(run.config, load_saved_config(run.config))] if run.config.exists() else []
    if resume_from is not None or not records:
        records.append((source, state["config"]))
    for where, saved in records:
        changed = _differences(saved, settings, ignored_sections)
        if changed:
            raise ValueError(f"--resume: the config differs from {where} at {', '.join(changed)}; "
                             f"resume with the run's settings or start a new train.out_dir")
        if settings.optim.cosine_decay and saved.train.max_steps != settings.train.max_steps:
            raise ValueError("--resume: train.max_steps cannot change when optim.cosine_decay "
                             "is on (the schedule depends on it)")
    return records[0][1]


def _check_same_data(state, images, data):
    shape, count = tuple(state["image_shape"]), state.get("num_images")  # older runs: no count
    if tuple(images.shape[1:]) != shape or count not in (None, len(images)):
        trained = f"{count:,} images" if count else "images"
        raise DataError(f"--resume: the run trained on {trained} of shape {shape}, but the data "
                        f"({data.name}, data.root={data.root}) has {len(images):,} of "
                        f"shape {tuple(images.shape[1:])}; resume with the run's data")


def _checkpoint_bytes(method, source):
    """A checkpoint's size: the one resumed from, else a bound from the state before the first
    step (weights and EMA), which Adam's two moments per trained weight at most triple."""
    if source is not None:
        return source.stat().st_size
    return 3 * sum(t.numel() * t.element_size() for t in _tensors(method.state_dict()))


def _on_every_process(accelerator, check):
    """check() here, then stop every process if it failed on any: one process stopping alone
    would leave the others waiting for it at their next collective call."""
    try:
        result, error = check(), None
    except USER_ERRORS as err:
        result, error = None, err
    failed = accelerator.reduce(torch.tensor(float(error is not None), device=accelerator.device),
                                reduction="sum").item()
    if error is not None:
        raise error
    if failed:
        raise RunNotStarted("another process of this launch could not start the run; its error "
                            "is printed above")
    return result


def _stop_signal(accelerator, stop):
    """The signal that stopped any process (0 if none), agreed by all of them at the end of a step."""
    if accelerator.num_processes == 1:
        return stop.signum or 0
    signum = torch.tensor(float(stop.signum or 0), device=accelerator.device)
    return int(accelerator.reduce(signum, reduction="max").item())


def training_device(accelerator, precision, earlier=None):
    """What a run's training time was measured on: the device, the process count and the
    precision (its description, ddgan/precision.py), e.g. 'cpu AMD EPYC (AVX512, native bf16),
    1 thread, float32'. A run resumed elsewhere lists each device in turn ('A; then B'), since
    its seconds add up across them; `earlier` is 'unrecorded' for a checkpoint saved before
    this was recorded."""
    processes = f", {accelerator.num_processes} processes" if accelerator.num_processes > 1 else ""
    device = f"{describe(accelerator.device)}{processes}, {precision}"
    if earlier is None or earlier.split("; then ")[-1] == device:
        return earlier or device
    return f"{earlier}; then {device}"


def train(settings, resume=False, stop_at=None, resume_from=None):
    """Train the method of `settings`; returns the run directory.

    stop_at: leave after this many steps with a checkpoint, as a time-limited job
    would (continue later with resume=True).
    resume_from: a checkpoint file to resume the run in train.out_dir from, in place of its
    checkpoints/last.pt (implies resume).
    """
    _check_train_settings(settings)
    if stop_at is not None and stop_at < 1:
        raise ValueError(f"--stop-at must be a step >= 1, got {stop_at}")
    method_cls = method_class(settings)
    extractor = _periodic_extractor(settings)
    run = Run(settings.train.out_dir)
    resume = resume or resume_from is not None
    source = Path(resume_from) if resume_from is not None else run.last
    if resume:
        _check_source(run, source, resume_from)
    data = settings.data
    images = load_images(data.name, data.root, data.image_size)  # before the run folder is touched: bad data leaves nothing

    accelerator = Accelerator()
    set_seed(settings.train.seed, device_specific=True)
    precision, timings = choose_precision(settings, images.shape[1:], accelerator,
                                          announce=accelerator.print)
    if data.on_device:
        images = images.to(accelerator.device)
    batches = ImageBatches(images, settings.train.batch_size, settings.train.seed,
                           rank=accelerator.process_index, random_flip=uses_flip(data.name, data.random_flip))
    method = method_cls(updated(settings, {"train": {"mixed_precision": precision}}), images.shape[1:],
                        accelerator)
    set_backend_flags(method.speed)  # process-wide; before the first step
    training = Training(settings, run, method, batches, images, accelerator, extractor,
                        (precision, describe_precision(precision, timings)))
    with ExitStack() as cleanup:
        stop = cleanup.enter_context(StopRequests())
        lock = RunLock(run.dir)
        cleanup.callback(lock.release)
        state, record = _on_every_process(
            accelerator, partial(training.open_run, lock, resume, source, resume_from, stop_at))
        cleanup.callback(training.close)
        training.start(state, record)
        max_steps = settings.train.max_steps if stop_at is None else min(stop_at, settings.train.max_steps)
        training.loop(max_steps, stop)
    return run.dir


class Training:
    """One training of a method in a run folder: what it carries from step to step (the step,
    the training seconds, the last good checkpoint) and what it does around the steps (open
    the run, log, draw a grid, evaluate, save). train() builds it; loop() runs it."""

    def __init__(self, settings, run, method, batches, images, accelerator, extractor, precision):
        """precision: (the resolved train.mixed_precision, its description for train_device)."""
        self.settings, self.run, self.method, self.batches = settings, run, method, batches
        self.precision, self.precision_text = precision
        self.images, self.accelerator, self.extractor = images, accelerator, extractor
        self.main = accelerator.is_main_process
        self.images_per_step = (settings.train.batch_size * type(method).batches_per_step(settings)
                                * accelerator.num_processes)
        self.step, self.train_seconds, self.cpu_seconds = 0, 0.0, 0.0
        self.nonfinite = torch.zeros((), dtype=torch.bool, device=accelerator.device)
        self.writer = None

    def open_run(self, lock, resume, source, resume_from, stop_at):
        """Under the run's lock (taken by the main process): the checks of the folder and of
        the checkpoint; returns (the state to resume from or None, the config to record)."""
        run, settings = self.run, self.settings
        if self.main:
            lock.acquire()
            removed = [name for folder in (run.dir, run.checkpoints) if folder.is_dir()
                       for name in remove_partial(folder)]
            if removed:
                print(f"removed {len(removed)} partial file(s) of an interrupted save in {run.dir}")
        state, record = None, settings
        if resume:
            state = _load_source(run, source, resume_from)
            record = _check_resume(settings, run, state, source, resume_from,
                                   unused_sections(type(self.method)))
            _check_same_data(state, self.images, settings.data)
            if stop_at is not None and stop_at <= state["step"]:
                raise ValueError(f"--stop-at {stop_at}: the run is already at step {state['step']}; "
                                 f"give a later step")
            if len(state["rng"]) != self.accelerator.num_processes:
                raise ValueError(f"--resume: the run was saved by {len(state['rng'])} process(es), "
                                 f"this launch has {self.accelerator.num_processes}; an exact resume "
                                 f"needs the same number")
        elif run.holds_a_run():
            raise FileExistsError(f"{run.dir} already holds a run; pass --resume to continue it "
                                  f"or set train.out_dir to a new folder")
        if self.main:
            # A save writes last.pt beside the previous one (and, when keeping, step_N.pt too).
            keeping = settings.train.keep_every > 0
            check_free_space(run.dir, (1 + keeping) * _checkpoint_bytes(self.method, source if resume else None),
                             "a save of this run (last.pt, written beside the previous one"
                             + (", and a kept step_N.pt)" if keeping else ")"))
            for folder in (run.checkpoints, run.samples):
                check_writable(folder, "train.out_dir")
            if self.extractor and (run.dir / "eval.csv").is_file():
                read_csv_rows(run.dir / "eval.csv")  # a damaged row would stop the first evaluation
        return state, record

    def start(self, state, record):
        """Restore the resumed state (None for a new run), record the config, open the logs and
        fix what every grid and evaluation reuses."""
        settings, run, accelerator = self.settings, self.run, self.accelerator
        resume = state is not None
        if resume:
            self.method.load_state_dict(state["method"])
            self.batches.load_state_dict(state["data"])
            checkpoint.set_rng_state(state["rng"][accelerator.process_index])
            self.step, self.train_seconds = state["step"], state.get("train_seconds", 0.0)
            self.cpu_seconds = state.get("train_cpu_seconds", 0.0)
        self.last_good = self.step
        self.trained_on = training_device(accelerator, self.precision_text,
                                          state.get("train_device", "unrecorded") if resume else None)
        if self.main and (not resume or not run.config.exists()
                          or Path(record.train.out_dir).resolve() != run.dir.resolve()):
            # A new run, or one moved or copied since: config.yaml names where it is now.
            dump_config(updated(record, {"train": {"out_dir": settings.train.out_dir}}), run.config)
        if self.main:
            print(f"{'resuming' if resume else 'training'} {settings.method} in {run.dir} at step "
                  f"{self.step} of {settings.train.max_steps}, {self.precision_text}", flush=True)
            self.writer = SummaryWriter(run.tensorboard)
        self.preview = preview_sampler(type(self.method), settings, accelerator.device)  # grids' and evaluation's
        self.reference = self.images.cpu() if self.extractor and self.main else None
        self.diagnostic_batch = self.batches.fixed(min(DIAGNOSTIC_IMAGES, len(self.images))).to(accelerator.device)
        self.reference_cache_name = reference_name(self.reference) if self.reference is not None else None

    def close(self):
        if self.writer is not None:
            self.writer.close()

    def loop(self, max_steps, stop):
        """Train from the current step to max_steps; a stop request saves and raises
        TrainingInterrupted."""
        train = self.settings.train
        progress = tqdm(range(self.step, max_steps), initial=self.step, total=train.max_steps,
                        disable=not self.main, desc=f"{self.settings.method} {self.run.dir.name}", unit="step")
        self.clock, self.clock_step = time.perf_counter(), self.step
        for step in progress:
            tick, cpu_tick = time.perf_counter(), time.process_time()
            done = self.step = step + 1
            log_now = done % train.log_every == 0
            stats = self.method.train_step(self.batches, step, with_grad_norms=log_now)
            for name in WATCHED:
                if name in stats:
                    self.nonfinite |= ~torch.isfinite(stats[name])
            if log_now:
                self.log(done, stats, progress)
            self.train_seconds += time.perf_counter() - tick  # training only: not grids, evaluation, saving
            self.cpu_seconds += time.process_time() - cpu_tick  # this process's threads, over the same span
            if self.main and log_now:
                for name, value in self.method.diagnostics(self.diagnostic_batch).items():
                    self.writer.add_scalar(f"diagnostics/{name}", value, done)
            if self.main and (done % train.sample_every == 0 or done == max_steps):
                self.write_grid(done)
            if self.main and self.extractor and self.evaluation_due(done):
                self.evaluate(done)
            stop_signal = _stop_signal(self.accelerator, stop)
            if done % train.ckpt_every == 0 or done == max_steps or stop_signal:
                self.check_finite(done, stats)
                self.save(done)
                self.last_good = done
            if stop_signal and done < max_steps:
                raise TrainingInterrupted(stop_signal, done, self.run.last)
        self.accelerator.wait_for_everyone()

    def check_finite(self, step, stats):
        """Stop with the last good checkpoint named once any process has seen a non-finite
        loss; every process must agree, or one would stop while the others wait for it."""
        if self.accelerator.reduce(self.nonfinite.float(), reduction="sum").item() > 0:
            values = ", ".join(f"{k}={v.item():.4g}" for k, v in stats.items())
            kept = (f"The last good checkpoint is {self.run.last} (step {self.last_good})"
                    if self.run.last.exists() else "No checkpoint was written before it")
            raise NonFiniteLossError(
                f"non-finite loss by step {step} ({values}); training stopped. {kept}. Try lower "
                f"learning rates, a larger divergence.r1_gamma, or train.mixed_precision='\"no\"'.")

    def log(self, done, stats, progress):
        """The step's losses and the throughput since the last log, to TensorBoard and the bar."""
        self.check_finite(done, stats)
        now = time.perf_counter()
        throughput = (done - self.clock_step) * self.images_per_step / (now - self.clock)
        self.clock, self.clock_step = now, done
        if self.main:
            for name, value in stats.items():
                self.writer.add_scalar(f"train/{name}", value.item(), done)
            self.writer.add_scalar("train/img_per_s", throughput, done)
            self.writer.add_scalar("train/images_seen", done * self.images_per_step, done)
            progress.set_postfix({k: f"{v.item():.3g}" for k, v in stats.items() if not k.startswith("grad")})

    def write_grid(self, done):
        """samples/step_N.png from the EMA network, on the same latents every time."""
        num_grid, device = self.settings.train.num_grid, self.accelerator.device
        grid = sample_images(self.method.ema.module.eval(), self.preview, self.images.shape[1:], num_grid,
                             torch.Generator(device).manual_seed(self.settings.train.seed),
                             progress=f"grid, {self.preview.network_calls} calls per image")
        grid = make_grid(grid, nrow=int(num_grid ** 0.5), normalize=True, value_range=(-1, 1))
        self.run.samples.mkdir(parents=True, exist_ok=True)
        save_image(grid, self.run.samples / f"step_{done:07d}.png")
        self.writer.add_image("samples", grid, done)

    def evaluation_due(self, done):
        """Whether the images seen crossed a multiple of eval.every_images in this step."""
        every = self.settings.eval.every_images
        return done * self.images_per_step // every > (done - 1) * self.images_per_step // every

    def evaluate(self, done):
        """The periodic metric of the EMA network, as a row of eval.csv (the training curve)."""
        e, extractor = self.settings.eval, self.extractor
        fd = periodic_fd(self.method.ema.module.eval(), self.preview, self.images.shape[1:],
                         self.reference, extractor, e.num_samples, self.settings.train.seed,
                         e.batch_size, self.reference_cache_name)
        append_csv(self.run.dir / "eval.csv", PERIODIC_COLUMNS, [{
            "step": done, "images_seen": done * self.images_per_step,
            "train_seconds": round(self.train_seconds, 2), "train_cpu_seconds": round(self.cpu_seconds, 2),
            "metric_name": extractor.metric_name, "fd": fd, "n_samples": e.num_samples,
            "nfe": self.preview.network_calls, "extractor": extractor.label,
            "extractor_hash": extractor.hash}])
        self.writer.add_scalar(f"eval/{extractor.metric_name}", fd, done)

    def save(self, step):
        """checkpoints/last.pt (and step_N.pt every keep_every steps): everything an exact
        resume needs, refused where a weight is not finite."""
        method_state = self.method.state_dict()
        if not _all_finite(method_state):
            raise NonFiniteLossError(f"non-finite weights at step {step}; training stopped and "
                                     f"{self.run.last} (step {self.last_good}) was kept")
        state = {"step": step, "config": to_dict(self.settings), "image_shape": tuple(self.images.shape[1:]),
                 "num_images": len(self.images), "images_seen": step * self.images_per_step,
                 "train_seconds": self.train_seconds, "train_cpu_seconds": self.cpu_seconds,
                 "train_device": self.trained_on,
                 "speed": {**self.method.speed, "mixed_precision": self.precision},  # as resolved here
                 "method": method_state, "data": self.batches.state_dict(),
                 "rng": gather_object([checkpoint.rng_state()])}
        if self.main:
            keep = self.settings.train.keep_every and step % self.settings.train.keep_every == 0
            checkpoint.save_run_checkpoint(
                state, self.run.last, self.run.checkpoints / checkpoint.kept_name(step) if keep else None)
