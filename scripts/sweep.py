"""The study's sweep: DDGAN's divergences x T against the baselines, one cell per training run.

    python scripts/sweep.py --out runs/study --config-dir configs/fmnist/cpu \\
        --featnet featnets/fmnist.pt --train-images 160000 --jobs 2

A cell is one run, trained and then evaluated on its own, as its method's class lays out the
cells (Method.sweep_cells): ddgan_<divergence>_T<T> at each --steps T, from CONFIG_DIR/ddgan.yaml
with the divergence as an override (or CONFIG_DIR/ddgan_<divergence>.yaml where a divergence has
a recipe of its own, as wgan-gp), and <baseline> from CONFIG_DIR/<baseline>.yaml sampled with
each of its samplers at each --baseline-steps count;
--seeds gives each cell one run per training seed (a seed other than 0 is named ..._seed<s>).
The cell real_data is the floor (--no-floor: none): the data's held-out test split, scored as
the samples are at each sample count the sweep's rows use.

The budget axis: `--budgets 192000 384000` continues every cell's run, by exact resume, from
--train-images to each later budget in turn, and writes that budget's rows, grids, curves,
merged CSV and figures to RESULTS/budgets/<images>/ (DDGAN at its T, a baseline as
--budget-evals says), then the figures and ranked table across budgets to
RESULTS/budgets/figures/ (ddgan/budget_axis.py). A cell whose earlier budget has rows but whose
run folder is gone is refused, as is a budget below what its run has trained: --retrain trains
such a cell again from scratch (its rows already written stay).

Each finished cell writes its rows at once to RESULTS/cells/<cell>.json, with its grids in
RESULTS/grids/ and its periodic evaluation (the training curve) in RESULTS/curves/<cell>.csv,
and the merged RESULTS/sweep.csv, the figures and the Markdown table (RESULTS/figures/) are
rewritten from every finished cell there, this command's or an earlier one's (say the seed
cells). `--baseline-samples 16=2000` evaluates a baseline's costly step counts on fewer samples. RESULTS (--results, default OUT/results) holds no
checkpoint and needs no run folder: keep it under version control and a lost machine loses
none of it. A cell with rows is not run again (delete its JSON to redo it); an interrupted one
resumes from its checkpoint in OUT. So a sweep stopped anywhere costs at most the cells in
flight: run the same command again. Stopping a local sweep (Ctrl-C, or kill of its process)
stops its cells with it, each saved after its training step, so no worker goes on writing
after the sweep's lock on RESULTS is gone.

Executors (submitit): `local` (default) runs --jobs cells at once as processes of this machine,
each on cores / jobs threads; `debug` runs them one by one in the driver's own process (a method
or divergence registered by the caller is seen, a failure opens pdb); `slurm` submits each cell
as a SLURM job, at most --jobs queued at once, for example

    python scripts/sweep.py --out /scratch/study --config-dir configs/fmnist \\
        --featnet featnets/fmnist.pt --train-images 2000000 --executor slurm --jobs 24 \\
        --slurm-partition gpu --gpus-per-job 1 --cpus-per-job 8 --timeout-min 240

(this command then waits for the cells and merges their rows as they finish; an interrupted
driver loses nothing: run it again).

Faults. A cell killed anywhere (kill -9 of its worker, of the whole sweep, a lost machine)
resumes from its run's last checkpoint when the same command runs again, and its rows equal an
undisturbed run's (tests/test_faults.py; scripts/fault_injection.py kills a real sweep at
random points). Every file in RESULTS is written atomically. A damaged cell file is named, with
its line, and the cell evaluated again from its run. Time limits and pre-emption: SLURM sends
SIGUSR2 --signal-delay-s seconds before a job's --timeout-min, and at a pre-emption where the
cluster sets SlurmctldParameters=preempt_send_user_signal. The training then finishes its step
and saves, and the job requeues itself (submitit's checkpointing) to go on from there, up to
--max-timeouts times at the time limit; pre-emptions do not count. Make --signal-delay-s longer
than a training step plus a checkpoint save. `--set key=value` overrides go to every run whose method
reads the key (e.g. a tiny backbone for a smoke test; see tests/test_sweep.py).
"""
import argparse
import contextlib
import json
import math
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import submitit
from submitit.helpers import Checkpointable

from ddgan import checkpoint
from ddgan.csvfiles import RESULT_COLUMNS, write_csv
from ddgan.files import atomic_copy, atomic_write
from ddgan.interrupt import TrainingInterrupted
from ddgan.config import load_shared_config
from ddgan.methods import METHODS, method_class
from ddgan.runlock import LOCK_NAME, RunLock, RunLockedError
from ddgan.train import Run, train
from divergences import DIVERGENCES


@dataclass
class Stage:
    """One training budget of a cell: its run trained to max_steps, then evaluated, with the
    rows written to the results folder of that budget."""
    results: str
    max_steps: int = None  # None: the floor's, which trains nothing
    images: int = None     # the budget in training images (None: given as --max-steps)
    # (steps, samplers, samples) per evaluation; () steps: the method's default (a DDGAN's
    # trained T), () samplers: the method's eval samplers
    evaluations: tuple = (((), (), None),)


@dataclass
class Cell:
    """One training run of the sweep and its budgets, in order; plain values, so it pickles."""
    name: str
    config: str
    overrides: tuple
    run_dir: str
    stages: tuple
    options: dict = field(default_factory=dict)  # the sweep's evaluation settings
    images_per_step: int = None
    floor_samples: tuple = ()  # the floor's cell: no run, the held-out data at these counts


class BudgetError(RuntimeError):
    """A run that has trained past the budget asked of it: a run only trains forward."""


def trained_steps(run_dir):
    last = Run(run_dir).last if run_dir else None
    return checkpoint.load(last)["step"] if last is not None and last.exists() else None


def train_once(settings):
    """Train the settings' run to train.max_steps: start it, resume or continue it (a larger
    budget), or leave it where it is already there."""
    run = Run(settings.train.out_dir)
    steps = trained_steps(run.dir)
    if steps is None:
        if run.holds_a_run() and not any(run.checkpoints.glob("*.pt")):
            clear_unsaved(run)
        return train(settings)
    if steps > settings.train.max_steps:
        raise BudgetError(f"{run.dir} has trained {steps} steps, past the {settings.train.max_steps} "
                          f"asked of it")
    return run.dir if steps == settings.train.max_steps else train(settings, resume=True)


def clear_unsaved(run):
    """Empty a cell's run folder that a training stopped before its first checkpoint (killed,
    pre-empted): its config.yaml, logs, grids and curve describe steps nothing can resume, and
    a training refuses a folder holding them. Under the folder's lock, so not while another
    training runs in it."""
    lock = RunLock(run.dir, writer="sweep")
    lock.acquire()
    try:
        for path in run.dir.iterdir():
            if path.is_dir():
                shutil.rmtree(path)
            elif path.name != LOCK_NAME:
                path.unlink()
    finally:
        lock.release()
    print(f"{run.dir}: stopped before its first checkpoint; starting it again", flush=True)


class CellJob(Checkpointable):
    """run_cell as a job that requeues itself: on the time-limit or pre-emption signal,
    submitit resubmits the same cell, which goes on from its run's last checkpoint."""

    def __call__(self, cell):
        return run_cell(cell)


def hand_on(stop):
    """A training stopped by SIGUSR2 has saved its checkpoint: raise the signal again, now for
    submitit's handler (back in place once the training has left), which requeues the job.
    Outside a submitit job (no handler) the interruption stays an error."""
    if stop.signum == signal.SIGUSR2 and callable(signal.getsignal(signal.SIGUSR2)):
        print(stop, flush=True)
        signal.raise_signal(stop.signum)


def run_cell(cell):
    """Each budget of the cell not yet done, in order: train its run to it (start, resume or
    continue the run), evaluate it and write its rows; returns the rows written.
    This runs in the executor's worker: a process of this machine or a cluster job."""
    import torch

    from ddgan.evaluate import evaluate_real_data, evaluate_runs

    o = cell.options
    torch.set_num_threads(o["threads"])
    written = []
    for stage in cell.stages:
        results = Path(stage.results)
        if cell_rows(results, cell.name) is not None:
            continue
        budget = [f"train.max_steps={stage.max_steps}"] if stage.max_steps else []
        settings = load_shared_config(Path(cell.config), [*cell.overrides, *budget])
        if cell.floor_samples:
            rows = evaluate_real_data(settings.data, o["extractor"], cell.floor_samples, o["metrics"],
                                      seed=o["eval_seed"], grid_dir=results / "grids")
            run_dir = None
        else:
            try:
                run_dir = train_once(settings)
            except TrainingInterrupted as stop:
                hand_on(stop)
                raise
            rows = []
            for steps, samplers, num_samples in stage.evaluations:
                rows += evaluate_runs([run_dir], o["extractor"], steps=list(steps) or None,
                                      samplers=list(samplers) or None,
                                      num_samples=num_samples or o["num_samples"], metrics=o["metrics"],
                                      seed=o["eval_seed"], grid_dir=results / "grids")
        written += write_rows(cell.name, results, run_dir, rows)
    return written


def write_rows(name, results, run_dir, rows):
    """The cell's rows at one budget, in RESULTS/cells/<name>.json, with its training curve so
    far (the run's eval.csv) in RESULTS/curves/<name>.csv."""
    curve = results / "curves" / f"{name}.csv"
    if run_dir is not None and (run_dir / "eval.csv").is_file():
        curve.parent.mkdir(parents=True, exist_ok=True)
        atomic_copy(run_dir / "eval.csv", curve)
    for row in rows:  # paths relative to RESULTS, where sweep.csv names them too
        row["grid"] = os.path.relpath(row["grid"], results)
        row["eval_csv"] = os.path.relpath(curve, results) if row["eval_csv"] else ""
    text = json.dumps(rows, indent=2) + "\n"
    atomic_write(cell_file(results, name), lambda f: f.write(text.encode()))
    return rows


def cell_file(results, name):
    return Path(results) / "cells" / f"{name}.json"


def read_cell(path):
    """(rows, None) from the cell file at path; (None, what is wrong with it, naming its line)
    where it is damaged; (None, None) where there is none."""
    if not Path(path).is_file():
        return None, None
    try:
        rows = json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        return None, f"line {error.lineno}, column {error.colno}: {error.msg}"
    except UnicodeDecodeError as error:
        return None, f"not text ({error.reason})"
    if not (isinstance(rows, list) and rows and all(isinstance(row, dict) and "fd" in row for row in rows)):
        return None, "line 1: not a list of result rows"
    return rows, None


def cell_rows(results, name):
    """The cell's rows at RESULTS; None where it has none yet, or where its file is damaged
    (then the cell is evaluated again from its run, and the file replaced)."""
    return read_cell(cell_file(results, name))[0]


def plan_cells(args):
    """Every cell of the sweep, in the order the table lists them."""
    config_dir, out = Path(args.config_dir), Path(args.out)
    options = {"extractor": f"featnet:{args.featnet}", "threads": args.threads,
               "num_samples": args.num_samples, "metrics": args.metrics.split(","),
               "eval_seed": args.eval_seed}
    extra = {}
    for item in args.extra_steps:
        method, _, counts = item.partition("=")
        if method not in METHODS or not counts:
            raise SystemExit(f"--extra-steps {item!r}: give METHOD=STEPS[,STEPS...] with a method "
                             f"of {', '.join(METHODS)}")
        extra[method] = tuple(int(k) for k in counts.split(","))
    later = budget_evaluations(args.budget_evals)
    by_samples = {}  # the baselines' step counts, grouped by their sample count
    for steps in args.baseline_steps:
        by_samples.setdefault(args.baseline_samples.get(steps), []).append(steps)
    cells = []

    def add(name, config, overrides, seed, evaluations=Stage.evaluations, later_evaluations=Stage.evaluations):
        if seed:
            name = f"{name}_seed{seed}"
        overrides = [*overrides, f"train.seed={seed}", f"train.out_dir={out / name}",
                     f"eval.extractor=featnet:{args.featnet}", *args.overrides]
        per_step = None  # a config read only where needed: a bad one fails in its own cell
        if args.train_images:
            settings = load_shared_config(config, overrides)
            per_step = settings.train.batch_size * method_class(settings).batches_per_step(settings)
            stages = [Stage(str(budget_results(args.results, images, first=i == 0)),
                            math.ceil(images / per_step), images,
                            evaluations if i == 0 else later_evaluations)
                      for i, images in enumerate([args.train_images, *args.budgets])]
        else:
            stages = [Stage(str(args.results), args.max_steps, None, evaluations)]
        cells.append(Cell(name, str(config), tuple(overrides), str(out / name), tuple(stages), options,
                          images_per_step=per_step))

    for seed in args.seeds:
        for method in METHODS.values():
            if method.steps_trained:
                for name, config, overrides in method.sweep_cells(config_dir, args.steps, args.divergences):
                    add(name, config, list(overrides), seed)
        for baseline in args.baselines:
            method = METHODS[baseline]
            evaluations = [(tuple(steps), method.samplers, n) for n, steps in by_samples.items()]
            if baseline in extra:  # its default sampler only
                evaluations.append((extra[baseline], (method.default_sampler(),), args.extra_samples))
            (name, config, overrides), = method.sweep_cells(config_dir, args.baseline_steps, args.divergences)
            add(name, config, list(overrides), seed, tuple(evaluations),
                later.get(baseline, (((4, 8, 16), (method.default_sampler(),), None),)))
    if args.floor and cells:
        add_floor(cells, args, options)
    return cells


def budget_evaluations(items):
    """--budget-evals METHOD=SAMPLER:STEPS,... as {method: evaluations at the later budgets}."""
    later = {}
    for item in items:
        method, _, rest = item.partition("=")
        sampler, _, counts = rest.partition(":")
        try:
            steps = tuple(int(k) for k in counts.split(","))
        except ValueError:
            steps = ()
        if method not in METHODS or sampler not in METHODS[method].samplers or not steps:
            raise SystemExit(f"--budget-evals {item!r}: give METHOD=SAMPLER:STEPS[,STEPS...], e.g. "
                             f"flow=heun:2,4,8, with a method of {', '.join(METHODS)} and one of "
                             f"its samplers")
        later[method] = (*later.get(method, ()), (steps, (sampler,), None))
    return later


def budget_results(results, images, first=False):
    """The results folder of a budget: RESULTS for the first, RESULTS/budgets/<images> after it."""
    return Path(results) if first else Path(results) / "budgets" / str(images)


FLOOR_CELL = "real_data"


def add_floor(cells, args, options):
    """The floor's cell, first: the held-out data of the sweep's data set at every sample count
    its rows use (the final evaluations' and the periodic one's), so each table and figure
    holds the value a perfect model would reach on as many samples."""
    first = cells[0]
    settings = load_shared_config(Path(first.config), list(first.overrides))
    stages = tuple(Stage(stage.results, None, stage.images, ()) for stage in first.stages)
    counts = {args.num_samples, *args.baseline_samples.values()}
    if args.extra_steps:
        counts.add(args.extra_samples or args.num_samples)
    if settings.eval.every_images:
        counts.add(settings.eval.num_samples)
    cells.insert(0, Cell(FLOOR_CELL, first.config, first.overrides, "", stages, options,
                         floor_samples=tuple(sorted(counts, reverse=True))))


def merge(results):
    """sweep.csv from the rows of every finished cell in one results folder, this command's or
    an earlier one's (say the seed cells), in the order of the cells' names; returns the rows."""
    paths = sorted((Path(results) / "cells").glob("*.json"))
    rows = [row for path in paths for row in read_cell(path)[0] or []]
    if rows:
        write_csv(Path(results) / "sweep.csv", RESULT_COLUMNS, rows)
    return rows


def report(results):
    """Merge and draw RESULTS and each budget's folder under it, then the budget axis; returns
    the merged CSV of RESULTS, or None where it has no rows."""
    from ddgan.budget_axis import plot_budget_axis
    from ddgan.evaluate import REAL_DATA
    from ddgan.plot import plot_results

    later = sorted(path for path in (Path(results) / "budgets").glob("*") if (path / "cells").is_dir())
    for folder in [Path(results), *later]:
        if any(row["method"] != REAL_DATA for row in merge(folder)):
            plot_results([folder / "sweep.csv"], folder / "figures")
    plot_budget_axis(results)
    path = Path(results) / "sweep.csv"
    return path if path.is_file() else None


def make_executor(args):
    folder = Path(args.out) / "submitit"  # every job's log: <job id>_0_log.out and .err
    if args.executor == "local":
        executor = submitit.LocalExecutor(folder, max_num_timeout=args.max_timeouts)
        executor.update_parameters(timeout_min=args.timeout_min, signal_delay_s=args.signal_delay_s)
    elif args.executor == "debug":  # in this process: what it registers counts, pdb on a failure
        executor = submitit.DebugExecutor(folder)
    else:
        executor = submitit.AutoExecutor(folder, cluster="slurm", slurm_max_num_timeout=args.max_timeouts)
        executor.update_parameters(timeout_min=args.timeout_min, slurm_signal_delay_s=args.signal_delay_s,
                                   slurm_partition=args.slurm_partition,
                                   gpus_per_node=args.gpus_per_job, cpus_per_task=args.cpus_per_job,
                                   nodes=1, tasks_per_node=1, name="ddgan-sweep")
    return executor


def failure_file(out, name):
    return Path(out) / "failed" / f"{name}.txt"


def last_error_line(error):
    """The line naming the exception that ended a job: submitit's error quotes the worker's
    traceback, whose last unindented `name: message` line is it, then its log paths."""
    lines = [line.rstrip() for line in str(error).splitlines() if line.strip()]
    raised = [line for line in lines if re.match(r"[A-Za-z_][\w.]*(: |$)", line)]
    return (raised or lines or [type(error).__name__])[-1].strip()


def run_cells(executor, cells, jobs, results, out, poll_s=2.0):
    """Keep `jobs` cells running until every one has finished or failed; after each that
    finishes, re-merge the results. A failed cell's last error line and log are kept in
    OUT/failed/<cell>.txt (for --list) until it finishes. Returns the failed cells' names."""
    pending, running, failed = list(cells), {}, []
    try:
        while pending or running:
            while pending and len(running) < jobs:
                cell = pending.pop(0)
                running[executor.submit(CellJob(), cell)] = cell
                print(f"started {cell.name}", flush=True)
            time.sleep(poll_s)
            finish_done(running, failed, results, out)
    except KeyboardInterrupt:  # SIGINT or SIGTERM to the driver
        if isinstance(executor, submitit.LocalExecutor):
            stop_local_jobs(running)
        report(results)  # a cell that wrote its rows since the last poll is merged too
        raise
    return failed


def stop_local_jobs(running, grace_s=120):
    """The local workers of a stopped driver stop with it, saved, rather than going on
    unlocked: SIGTERM to each job's controller (its job id is its pid), which passes it to the
    training, which saves after its step; a worker still there after grace_s is cancelled."""
    for job in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(job.job_id), signal.SIGTERM)
    began = time.monotonic()
    while any(not job.done() for job in running) and time.monotonic() - began < grace_s:
        time.sleep(0.5)
    for job in running:
        if not job.done():
            job.cancel()
    names = ", ".join(cell.name for cell in running.values())
    print(f"stopped: {names or 'no cell was running'}; run the same command again to go on", flush=True)


def finish_done(running, failed, results, out):
    """Take the finished jobs out of `running`: merge their rows, or record their failure."""
    for job in [job for job in running if job.done()]:
        cell = running.pop(job)
        try:
            rows = job.result()
        except Exception as error:  # the others go on; the log keeps the traceback
            failed.append(cell.name)
            last = last_error_line(error)
            text = f"{last}\n(log: {job.paths.stderr})\n"
            atomic_write(failure_file(out, cell.name), lambda f: f.write(text.encode()))
            print(f"FAILED {cell.name} (log: {job.paths.stderr}): {last}", flush=True)
            continue
        failure_file(out, cell.name).unlink(missing_ok=True)
        report(results)
        fds = ", ".join(f"{r['sampler']} {r['steps']}: {r['fd']:.2f}" for r in rows)
        print(f"finished {cell.name}: {fds or 'nothing left to do'}", flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for the runs (checkpoints, logs)")
    parser.add_argument("--results", type=Path, default=None,
                        help="folder for each cell's rows, grids and curve, the merged CSV and the "
                        "figures (default OUT/results)")
    parser.add_argument("--config-dir", default="configs/fmnist")
    parser.add_argument("--divergences", nargs="*", default=list(DIVERGENCES))
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8],
                        help="the step counts fixed at training (DDGAN's T), one run each")
    parser.add_argument("--baselines", nargs="*",
                        default=[name for name, method in METHODS.items() if not method.steps_trained],
                        help="methods sampled at any step count, each from CONFIG_DIR/<name>.yaml "
                        "(default: every registered one)")
    parser.add_argument("--baseline-steps", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32],
                        help="the baselines' --steps, with each of their samplers")
    parser.add_argument("--baseline-samples", nargs="*", default=[], metavar="STEPS=N",
                        help="another sample count for some --baseline-steps, e.g. 16=2000 32=2000 "
                        "(default --num-samples)")
    parser.add_argument("--extra-steps", nargs="*", default=[], metavar="METHOD=STEPS",
                        help="more step counts for one baseline, with its default sampler at "
                        "--extra-samples samples, e.g. ddpm=1000 (its reference point)")
    parser.add_argument("--extra-samples", type=int, default=None,
                        help="samples of the --extra-steps rows (default --num-samples)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds")
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--train-images", type=int,
                        help="training images of every run (max_steps from its batch size and batches per step)")
    budget.add_argument("--max-steps", type=int, help="training steps of every run")
    parser.add_argument("--budgets", type=int, nargs="+", default=[], metavar="IMAGES",
                        help="later budgets in training images, each above --train-images: every "
                        "cell's run continues to each in turn, its rows in RESULTS/budgets/<IMAGES>/")
    parser.add_argument("--budget-evals", nargs="*", default=[], metavar="METHOD=SAMPLER:STEPS",
                        help="a baseline's evaluations at the later budgets, e.g. flow=heun:2,4,8 "
                        "(repeatable per method; default: its default sampler at 4,8,16 steps)")
    parser.add_argument("--retrain", action="store_true",
                        help="train again from scratch a cell whose earlier budget has rows but "
                        "whose run folder is gone (else such a cell is refused)")
    parser.add_argument("--featnet", required=True, help="featnet file (trained first if missing)")
    parser.add_argument("--featnet-epochs", type=int, default=3)
    parser.add_argument("--num-samples", type=int, default=10_000)
    parser.add_argument("--metrics", default="fid,kid,pr")
    parser.add_argument("--eval-seed", type=int, default=0, help="the sampling seed of every row")
    parser.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",
                        dest="overrides", help="config overrides for every run (may be repeated)")
    parser.add_argument("--executor", choices=["local", "slurm", "debug"], default="local",
                        help="local: processes of this machine; slurm: cluster jobs; debug: one "
                        "cell at a time in this process (a failure opens pdb)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count(),
                        help="cells at once (local: one per core by default; slurm: jobs queued)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads per cell (default: local cores / jobs; slurm --cpus-per-job)")
    parser.add_argument("--timeout-min", type=int, default=24 * 60,
                        help="time limit of one cell's job; at it the job saves and requeues itself")
    parser.add_argument("--signal-delay-s", type=int, default=120,
                        help="seconds before --timeout-min at which the job gets SIGUSR2 to save and "
                        "requeue: more than a training step plus a checkpoint save")
    parser.add_argument("--max-timeouts", type=int, default=20,
                        help="requeues at the time limit before a cell counts as failed (a "
                        "pre-emption does not count)")
    parser.add_argument("--slurm-partition", default=None)
    parser.add_argument("--gpus-per-job", type=int, default=0)
    parser.add_argument("--cpus-per-job", type=int, default=1)
    parser.add_argument("--floor", action=argparse.BooleanOptionalAction, default=True,
                        help="evaluate the real-data floor as the cell real_data (default on)")
    parser.add_argument("--cells", nargs="+", default=None, metavar="CELL",
                        help="only these cells of the plan (names as --list prints them), e.g. "
                        "real_data ddgan_js_T2 flow")
    parser.add_argument("--list", action="store_true", help="print each cell and its state, run none")
    args = parser.parse_args(argv)
    args.results = args.results or Path(args.out) / "results"
    try:
        args.baseline_samples = {int(steps): int(n) for steps, n in
                                 (item.split("=") for item in args.baseline_samples)}
    except ValueError:
        parser.error(f"--baseline-samples {' '.join(args.baseline_samples)}: give STEPS=N pairs, e.g. 16=2000")
    unplanned = set(args.baseline_samples) - set(args.baseline_steps)
    if unplanned:
        parser.error(f"--baseline-samples names steps {sorted(unplanned)} that --baseline-steps lacks")
    if args.budgets and not args.train_images:
        parser.error("--budgets continues runs trained with --train-images: give it too")
    low = [images for images in args.budgets if images <= (args.train_images or 0)]
    if low:
        parser.error(f"--budgets {' '.join(map(str, low))}: each budget must exceed --train-images "
                     f"{args.train_images}, the first budget; a run only trains forward")
    args.budgets = sorted(set(args.budgets))
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    if args.threads is None:
        args.threads = (max(1, (os.cpu_count() or 1) // args.jobs) if args.executor in ("local", "debug")
                        else args.cpus_per_job)
    unknown = set(args.baselines) - set(METHODS)
    if unknown:
        parser.error(f"--baselines {' '.join(sorted(unknown))}: not a method ({', '.join(METHODS)})")
    return args


def finished_stages(cell):
    return [stage for stage in cell.stages if cell_rows(stage.results, cell.name) is not None]


def state(cell):
    done, count = len(finished_stages(cell)), len(cell.stages)
    if done == count:
        return "finished"
    budgets = f", {done}/{count} budgets" if count > 1 else ""
    if cell.run_dir and Run(cell.run_dir).last.exists():
        return f"started{budgets}"
    return f"new{budgets}"


def details(cell, out):
    """--list's account of a cell beside its state: where its run is, what its latest rows
    record (images, CPU seconds, machine), and its last failure."""
    parts = []
    steps = trained_steps(cell.run_dir)
    if steps is not None and state(cell) != "finished":
        parts.append(f"run at {steps * cell.images_per_step:,} images" if cell.images_per_step
                     else f"run at step {steps}")
    finished = finished_stages(cell)
    if finished:
        row = cell_rows(finished[-1].results, cell.name)[0]
        if row.get("images_seen"):
            parts.append(f"rows at {row['images_seen']:,} images, {row['train_cpu_seconds']:,.0f} "
                         f"CPU s, {row.get('train_device') or 'machine unrecorded'}")
    if failure_file(out, cell.name).is_file():
        parts.append(f"failed: {failure_file(out, cell.name).read_text().splitlines()[0]}")
    return "; ".join(parts)


def images_of(stage):
    return f"{stage.images:,} images" if stage.images else f"{stage.max_steps} steps"


def refusal(cell, retrain):
    """Why the cell's unfinished budgets cannot be run, in one line; None where they can."""
    if cell.floor_samples:
        return None
    finished = finished_stages(cell)
    todo = [stage for stage in cell.stages if stage not in finished]
    steps = trained_steps(cell.run_dir) if todo else None
    damaged = [(path, problem) for path in (cell_file(stage.results, cell.name) for stage in todo)
               for problem in [read_cell(path)[1]] if problem]
    if steps is None and damaged and not retrain:
        (path, problem), *_ = damaged
        return (f"{cell.name}: {path} is damaged ({problem}) and its run "
                f"{cell.run_dir} is gone, so nothing can evaluate it again; restore the file "
                f"(say from git), or pass --retrain to train the cell again from scratch")
    if steps is None:
        if finished and todo and not retrain:
            return (f"{cell.name}: its rows at {images_of(finished[-1])} are in {finished[-1].results}, "
                    f"but its run {cell.run_dir} is gone, so nothing can continue it to "
                    f"{images_of(todo[0])}; bring the run folder back, or pass --retrain to train "
                    f"it again from scratch")
        return None
    past = [stage for stage in todo if stage.max_steps < steps]
    if past:
        return (f"{cell.name}: its run {cell.run_dir} has trained {steps} steps, past the "
                f"{past[0].max_steps} ({images_of(past[0])}) of {past[0].results}, which lacks its "
                f"rows; a run only trains forward: evaluate that budget with a copy of an earlier "
                f"checkpoint, or move the run away and pass --retrain")
    return None


def main(argv=None):
    args = parse_args(argv)
    cells = plan_cells(args)
    if args.cells is not None:
        unknown = sorted(set(args.cells) - {cell.name for cell in cells})
        if unknown:
            raise SystemExit(f"--cells {' '.join(unknown)}: not a cell of this sweep; its cells: "
                             f"{', '.join(cell.name for cell in cells)}")
        cells = [cell for cell in cells if cell.name in args.cells]
    if args.list:
        for cell in cells:
            print(f"{state(cell):20s} {cell.name:24s} {details(cell, args.out)}".rstrip())
        return
    lock = RunLock(args.results, writer="sweep", option="--results")  # one sweep per results folder
    lock.acquire()
    try:
        run_sweep(args, cells)
    finally:
        lock.release()


def run_sweep(args, cells):
    """Train the featnet if missing, refuse what cannot run, run the rest and merge."""
    featnet = Path(args.featnet)
    if not featnet.exists():
        from ddgan.featnet import train_featnet

        data = load_shared_config(Path(cells[0].config), list(cells[0].overrides)).data
        info = train_featnet(featnet, data.name, data.root, data.image_size, epochs=args.featnet_epochs)
        print(f"featnet {info['hash']}: test accuracy {info['test_accuracy']:.4f}")
    todo = [cell for cell in cells if state(cell) != "finished"]
    for cell in todo:
        for stage in cell.stages:
            path = cell_file(stage.results, cell.name)
            problem = read_cell(path)[1]
            if problem:
                print(f"{path}: damaged ({problem}); the cell is evaluated again from its run",
                      flush=True)
    refused = [line for line in (refusal(cell, args.retrain) for cell in todo) if line]
    if refused:
        raise SystemExit("\n".join(refused) + "\n(nothing was run; --cells runs the others)")
    print(f"{len(cells)} cell(s): {len(cells) - len(todo)} finished, {len(todo)} to run, "
          f"{args.jobs} at once on {args.threads} thread(s) each", flush=True)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the local workers inherit it
    failed = run_cells(make_executor(args), todo, args.jobs, args.results, args.out) if todo else []
    path = report(args.results)
    if path is not None:
        print(f"results: {path}; figures and table: {Path(args.results) / 'figures'}")
    if failed:
        raise SystemExit(f"{len(failed)} cell(s) failed: {', '.join(failed)}; the others' rows are "
                         f"written. Fix the cause and run the same command again.")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # kill PID stops as Ctrl-C does
    try:
        main()
    except RunLockedError as error:
        raise SystemExit(str(error)) from None
    except KeyboardInterrupt:
        raise SystemExit("the sweep was stopped; its finished rows are written") from None
