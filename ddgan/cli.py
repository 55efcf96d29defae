"""The `ddgan` command: train, sample, toy, featnet, eval, plot, bench."""
import argparse
import json
import os
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace

from divergences import DEFAULT_DIVERGENCE, DIVERGENCES

from .methods import DEFAULT_METHOD, METHODS
from .plot import GRID_NFES
from .precision import PRECISIONS
from .toy import TOY_DEFAULTS, TOY_PRECISIONS

PLAIN_HELP = ("turn the fast mode off (TF32, cuDNN autotuning, channels_last, fused Adam, "
              "torch.compile; on by default with a GPU, see docs/PERFORMANCE.md)")


def per_method(describe):
    """Help text listing describe(method) for each registered method that gives one."""
    return "; ".join(f"{name}: {text}" for name, cls in METHODS.items() if (text := describe(cls)))


def steps_help(cls):
    return f"its trained {cls.steps_symbol} only" if cls.steps_trained else cls.steps_symbol


def samplers_help(cls, default=None):
    if len(cls.samplers) < 2:
        return None
    return f"{' | '.join(cls.samplers)} (default {default(cls) if default else cls.default_sampler()})"


def at_least(minimum):
    """An argparse type: an integer >= minimum."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    return parse


def cmd_train(args):
    from .config import load_config
    from .interrupt import EXIT_CODES, TrainingInterrupted
    from .speed import PLAIN_OVERRIDES
    from .train import train

    settings = load_config(args.config, args.overrides + (PLAIN_OVERRIDES if args.plain else []))
    try:
        run_dir = train(settings, resume=args.resume, stop_at=args.stop_at, resume_from=args.resume_from)
    except TrainingInterrupted as stopped:
        again = shlex.join(["ddgan", "train", "--config", args.config, *args.overrides,
                            *(["--plain"] if args.plain else []), "--resume"])
        processes = int(os.environ.get("WORLD_SIZE", "1"))  # set by torchrun / accelerate launch
        launcher = f" (launched as before, with {processes} processes)" if processes > 1 else ""
        if os.environ.get("RANK", "0") == "0":
            print(f"ddgan train: {stopped}; continue with{launcher}: {again}", file=sys.stderr)
        sys.exit(EXIT_CODES[stopped.signum])
    print(f"run directory: {run_dir}")


def cmd_sample(args):
    from PIL import Image
    from torchvision.utils import save_image

    from .files import check_writable
    from .generate import generate

    out = Path(args.out)
    if out.suffix.lower() not in Image.registered_extensions():
        raise ValueError(f"--out {out}: give an image file name, e.g. grid.png (.png, .jpg, ...)")
    check_writable(out.parent, "--out")
    images = generate(args.ckpt, args.num, seed=args.seed, batch_size=args.batch_size,
                      device=args.device, steps=args.steps, sampler=args.sampler)
    save_image(images, args.out, nrow=args.nrow or max(1, round(args.num ** 0.5)),
               normalize=True, value_range=(-1, 1))
    print(f"wrote {args.num} samples to {args.out}")


def cmd_toy(args):
    from .toy import run_toy

    metrics = run_toy(args.data, args.divergence, args.steps, out=args.out, iters=args.iters,
                      seed=args.seed, method=args.method, sampler=args.sampler,
                      overwrite=args.overwrite, mixed_precision=args.mixed_precision)
    print(json.dumps({k: v for k, v in metrics.items() if k != "hyperparameters"}))


def cmd_featnet(args):
    from pathlib import Path

    from .featnet import train_featnet

    info = train_featnet(Path(args.out), args.data, args.data_root, epochs=args.epochs,
                         seed=args.seed, device=args.device)
    print(json.dumps(info))
    print(f"featnet {info['hash']}: test accuracy {info['test_accuracy']:.4f} on "
          f"{info['num_test_images']} {info['data']} test images; saved to {args.out}")


def cmd_eval(args):
    from .evaluate import check_results_target, evaluate_real_data, evaluate_runs, write_results

    if bool(args.runs) == bool(args.real_data):
        raise ValueError("give either run folders or --real-data DATA (the floor), not both or neither")
    check_results_target(args.out)
    grid_dir = args.out.removesuffix(".json") + "_grids"
    if args.real_data:
        data = SimpleNamespace(name=args.real_data, root=args.data_root, image_size=args.image_size)
        rows = evaluate_real_data(data, args.extractor, args.num_samples, args.metrics.split(","),
                                  seed=args.seed, batch_size=args.batch_size, device=args.device,
                                  grid_dir=grid_dir, inception_weights=args.inception_weights)
    else:
        rows = [row for count in args.num_samples for row in evaluate_runs(
            args.runs, args.extractor, steps=args.steps,
            samplers=args.samplers.split(",") if args.samplers else None,
            num_samples=count, metrics=args.metrics.split(","),
            seed=args.seed, batch_size=args.batch_size, device=args.device,
            checkpoint_name=args.checkpoint, data_root=args.data_root, grid_dir=grid_dir,
            inception_weights=args.inception_weights, plain=args.plain)]
    csv_path = write_results(rows, args.out)
    for row in rows:
        values = ", ".join(f"{name} {row[key]:.4g}" for key, name in (
            ("fd", row["metric_name"]), ("kid", "KID"), ("precision", "precision"),
            ("recall", "recall")) if row[key] is not None)
        speed = "" if row["img_per_s"] is None else f", {row['img_per_s']:.1f} img/s"
        print(f"{row['run']} {row['sampler']} steps={row['steps']} NFE={row['nfe']}: {values} "
              f"(n={row['n_samples']}, {row['extractor']}:{row['extractor_hash']}){speed}")
    print(f"wrote {args.out}; appended {len(rows)} row(s) to {csv_path}")


def cmd_plot(args):
    from .plot import plot_results

    for path in plot_results(args.csvs, args.out, args.grid_nfes).values():
        print(path)


def cmd_budgets(args):
    from .budget_axis import plot_budget_axis

    paths = plot_budget_axis(args.results)
    if not paths:
        raise ValueError(f"{args.results}/budgets/ holds no results of a later budget: run "
                         f"scripts/sweep.py with --budgets first")
    for path in paths.values():
        print(path)


def cmd_bench(args):
    from .bench import markdown, run_bench

    result = run_bench(args.configs, args.overrides, args.steps, args.sample_batch, args.warmup,
                       args.repeats, args.mixed_precision, args.cpu, args.out, args.plain)
    print(json.dumps(result["environment"]))
    print(markdown(result["rows"]))
    if args.out:
        print(f"wrote {args.out}")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="ddgan", description="Denoising diffusion GANs with pluggable divergences.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model from a YAML config",
                       description="Train from a YAML config, with dotted overrides, e.g. "
                       "`ddgan train --config configs/fmnist/ddgan.yaml train.max_steps=200 "
                       "ddgan.denoising_steps=2 divergence.name=tv`. Multi-GPU: "
                       "`accelerate launch -m ddgan train ...`.")
    p.add_argument("--config", required=True, help="YAML file (keys: ddgan/schema.py and each method's sections)")
    p.add_argument("overrides", nargs="*", metavar="section.key=value",
                   help="override a config value (parsed as YAML)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in train.out_dir from checkpoints/last.pt")
    p.add_argument("--resume-from", default=None, metavar="FILE",
                   help="continue the run in train.out_dir from this checkpoint file instead "
                   "(e.g. its checkpoints/step_N.pt when last.pt is damaged)")
    p.add_argument("--stop-at", type=at_least(1), default=None, metavar="STEP",
                   help="save a checkpoint and exit after STEP steps (for time-limited jobs); "
                   "SIGINT (Ctrl-C) and SIGTERM also save and exit, after the current step")
    p.add_argument("--plain", action="store_true", help=PLAIN_HELP + "; same as speed.*=false")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="sample images from a checkpoint's EMA network",
                       description="Write a grid of samples from a run's EMA network "
                       "(a DDGAN's generator, a baseline's network).")
    p.add_argument("--ckpt", required=True, help="e.g. RUN/checkpoints/last.pt")
    p.add_argument("--num", type=at_least(1), default=64, help="number of images (default 64)")
    p.add_argument("--out", required=True, help="PNG file for the grid")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nrow", type=at_least(1), default=None, help="images per row (default sqrt(num))")
    p.add_argument("--batch-size", type=at_least(1), default=256)
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--steps", type=at_least(1), default=None,
                   help="what the run's method counts (default its config's): " + per_method(steps_help))
    p.add_argument("--sampler", default=None, help=per_method(samplers_help))
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("toy", help="2-D multimodality benchmark on a CPU",
                       description="Train a DDGAN (or a baseline, --method) with MLPs on a 2-D "
                       "mixture of Gaussians and write DIR/metrics.json (modes covered, "
                       "high-quality fraction) and DIR/samples.png.")
    p.add_argument("--data", default="25gaussians", choices=["25gaussians", "8gaussians"])
    p.add_argument("--method", default=DEFAULT_METHOD, choices=list(METHODS))
    p.add_argument("--divergence", default=DEFAULT_DIVERGENCE, choices=list(DIVERGENCES), help="DDGAN only")
    p.add_argument("--steps", type=at_least(1), default=4,
                   help=per_method(lambda cls: cls.steps_symbol) + " (DDPM trained at T = 1000)")
    p.add_argument("--sampler", default=None, help=per_method(samplers_help))
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace a result already in --out")
    p.add_argument("--iters", type=at_least(1), default=None,
                   help="training steps (default, from each method's recipe: " + per_method(
                       lambda cls: str({**TOY_DEFAULTS, **cls.toy_recipe}["iters"]))
                   + "; DDGAN's count discriminator steps, G takes iters / n_critic)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mixed-precision", default=TOY_DEFAULTS["mixed_precision"],
                   choices=TOY_PRECISIONS,
                   help="the networks' precision in training, as train.mixed_precision (sampling: float32)")
    p.set_defaults(func=cmd_toy)

    p = sub.add_parser("featnet", help="train the classifier whose features give FD-cls (offline)",
                       description="Train the feature network for FD-cls on a dataset's training "
                       "split, report its test accuracy, and save it with a hash of its weights.")
    p.add_argument("--data", default="fmnist", choices=["fmnist", "cifar10", "imagefolder"])
    p.add_argument("--data-root", default=None,
                   help="data folder (else $DDGAN_DATA, else download); imagefolder: its train/ "
                   "folder, with test/ beside it")
    p.add_argument("--out", required=True, help="file to write, e.g. featnets/fmnist.pt")
    p.add_argument("--epochs", type=at_least(1), default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.set_defaults(func=cmd_featnet)

    p = sub.add_parser("eval", help="FID / FD-cls, KID, precision/recall of runs against NFE",
                       description="Evaluate each run's EMA checkpoint: DDGAN at its trained T, "
                       "DDPM at each K and sampler, EDM at each N (NFE 2N-1); or, with "
                       "--real-data, the floor: the data's held-out test split scored the same "
                       "way against its training set. Writes OUT (JSON), appends to OUT's .csv "
                       "twin and saves sample grids in OUT_grids/.")
    p.add_argument("runs", nargs="*", metavar="RUN_DIR")
    p.add_argument("--real-data", default=None, choices=["fmnist", "cifar10", "imagefolder"],
                   help="instead of runs: the floor of this data (--data-root: its folder; an "
                   "imagefolder's train/, with test/ beside it), at each --num-samples")
    p.add_argument("--image-size", type=at_least(1), default=None,
                   help="--real-data imagefolder: resize to this, as the runs' data.image_size")
    p.add_argument("--steps", type=at_least(1), nargs="+", default=None,
                   help="the step counts, as each run's method counts them (default its "
                   "config's): " + per_method(steps_help))
    p.add_argument("--samplers", default=None,
                   help="comma list: " + per_method(lambda cls: samplers_help(
                       cls, lambda m: ",".join(m.eval_samplers or [m.default_sampler()]))))
    p.add_argument("--num-samples", type=at_least(1), nargs="+", default=[10_000],
                   help="samples per result; several counts give a row at each")
    p.add_argument("--metrics", default="fid,kid,pr", help="comma list of fid, kid, pr")
    p.add_argument("--extractor", required=True, metavar="inception|featnet:PATH")
    p.add_argument("--inception-weights", default=None, metavar="PATH",
                   help="else $DDGAN_INCEPTION_WEIGHTS, else torch-fidelity's download")
    p.add_argument("--out", required=True, help="e.g. results/fmnist.json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=at_least(1), default=256)
    p.add_argument("--device", default=None)
    p.add_argument("--checkpoint", default="last.pt", help="file in RUN/checkpoints/")
    p.add_argument("--data-root", default=None, help="where the reference (training) set is, "
                   "if not where the run's config says")
    p.add_argument("--plain", action="store_true", help=PLAIN_HELP)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("plot", help="figures and a Markdown table from eval CSVs",
                       description="Draw the metric against NFE, the divergence comparison, the "
                       "training curves and the sample grids; write results.md and results.json.")
    p.add_argument("csvs", nargs="+", metavar="CSV")
    p.add_argument("--out", required=True, help="folder for the figures and table")
    p.add_argument("--grid-nfes", type=int, nargs="+", default=list(GRID_NFES), metavar="NFE",
                   help="the baselines' panels in sample_grids.png: each sampler at the most "
                   "network calls within each of these budgets")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser("budgets", help="the budget axis: the metric as training grows, from a sweep's results",
                       description="From RESULTS/sweep.csv and RESULTS/budgets/<images>/sweep.csv "
                       "(scripts/sweep.py --budgets), draw each result against training images and "
                       "CPU seconds and rank them at each budget, into RESULTS/budgets/figures/.")
    p.add_argument("results", help="a sweep's results folder, e.g. docs/results")
    p.set_defaults(func=cmd_budgets)

    p = sub.add_parser("bench", help="training and sampling throughput (a benchmark, not a test)",
                       description="Time each config's train step and its sampler (median of "
                       "synchronised repeats after a warm-up); print a table, write JSON.")
    p.add_argument("configs", nargs="+", metavar="CONFIG",
                   help="e.g. configs/cifar10/ddgan.yaml configs/cifar10/ddpm.yaml configs/cifar10/edm.yaml")
    p.add_argument("--set", nargs="*", default=[], dest="overrides", metavar="KEY=VALUE",
                   help="config overrides, each for the configs whose method reads its key "
                   "(e.g. a small model on a CPU)")
    p.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4],
                   help="sampling with each method's default sampler: " + per_method(
                       lambda cls: cls.steps_symbol))
    p.add_argument("--sample-batch", type=int, nargs="+", default=[100])
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--mixed-precision", default=None, choices=PRECISIONS, nargs="+",
                   help="each config in each of these, back to back; default: the configs' "
                   "train.mixed_precision (auto: on a CPU with native "
                   "bf16, the faster of no and bf16 as training chooses it; bf16: the networks in "
                   "bf16; bf16-autocast: torch.autocast); --plain makes it no")
    p.add_argument("--cpu", action="store_true", help="benchmark on the CPU even if a GPU is present")
    p.add_argument("--out", default=None, help="JSON file for the results")
    p.add_argument("--plain", action="store_true", help=PLAIN_HELP)
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    from .train import USER_ERRORS, NonFiniteLossError, RunNotStarted

    try:
        args.func(args)
    except (*USER_ERRORS, NonFiniteLossError, RunNotStarted) as err:
        print(f"ddgan {args.command}: error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:  # a training's first Ctrl-C saves (ddgan.interrupt); this is the second
        print(f"\nddgan {args.command}: interrupted (Ctrl-C)", file=sys.stderr)
        sys.exit(130)
