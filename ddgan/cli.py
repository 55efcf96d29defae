"""The `ddgan` command: train, sample, toy."""
import argparse
import json
import sys

from divergences import DIVERGENCES


def cmd_train(args):
    from .config import load_config
    from .train import train

    cfg = load_config(args.config, args.overrides)
    run_dir = train(cfg, resume=args.resume, stop_at=args.stop_at)
    print(f"run directory: {run_dir}")


def cmd_sample(args):
    from torchvision.utils import save_image

    from .generate import generate

    images = generate(args.ckpt, args.num, seed=args.seed, batch_size=args.batch_size,
                      device=args.device, steps=args.steps, sampler=args.sampler)
    save_image(images, args.out, nrow=args.nrow or max(1, round(args.num ** 0.5)),
               normalize=True, value_range=(-1, 1))
    print(f"wrote {args.num} samples to {args.out}")


def cmd_toy(args):
    from .toy import run_toy

    metrics = run_toy(args.data, args.divergence, args.steps, out=args.out, iters=args.iters,
                      seed=args.seed, method=args.method, sampler=args.sampler)
    print(json.dumps({k: v for k, v in metrics.items() if k != "hyperparameters"}))


def build_parser():
    parser = argparse.ArgumentParser(
        prog="ddgan", description="Denoising diffusion GANs with pluggable divergences.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model from a YAML config",
                       description="Train from a YAML config, with dotted overrides, e.g. "
                       "`ddgan train --config configs/fmnist/ddgan_js.yaml train.max_steps=200 "
                       "diffusion.num_steps=2 divergence.name=tv`. Multi-GPU: "
                       "`accelerate launch -m ddgan train ...`.")
    p.add_argument("--config", required=True, help="YAML file (keys: see ddgan/config.py)")
    p.add_argument("overrides", nargs="*", metavar="section.key=value",
                   help="override a config value (parsed as YAML)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in train.out_dir from checkpoints/last.pt")
    p.add_argument("--stop-at", type=int, default=None, metavar="STEP",
                   help="save a checkpoint and exit after STEP steps (for time-limited jobs)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("sample", help="sample images from a checkpoint's EMA network",
                       description="Write a grid of samples from a run's EMA network "
                       "(DDGAN generator, DDPM or EDM denoiser).")
    p.add_argument("--ckpt", required=True, help="e.g. RUN/checkpoints/last.pt")
    p.add_argument("--num", type=int, default=64, help="number of images (default 64)")
    p.add_argument("--out", required=True, help="PNG file for the grid")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--nrow", type=int, default=None, help="images per row (default sqrt(num))")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    p.add_argument("--steps", type=int, default=None,
                   help="DDPM: network calls K (default T); EDM: noise levels N (NFE 2N-1); "
                   "DDGAN: its trained T only")
    p.add_argument("--sampler", default=None,
                   help="DDPM: ancestral (default) | ddim; EDM: heun (default) | euler")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("toy", help="2-D multimodality benchmark on a CPU",
                       description="Train a DDGAN (or a DDPM / EDM baseline) with MLPs on a 2-D "
                       "mixture of Gaussians and write DIR/metrics.json (modes covered, "
                       "high-quality fraction) and DIR/samples.png.")
    p.add_argument("--data", default="25gaussians", choices=["25gaussians", "8gaussians"])
    p.add_argument("--method", default="ddgan", choices=["ddgan", "ddpm", "edm"])
    p.add_argument("--divergence", default="js", choices=list(DIVERGENCES), help="DDGAN only")
    p.add_argument("--steps", type=int, default=4,
                   help="DDGAN: T; DDPM: network calls K (trained at T = 1000); EDM: noise levels N")
    p.add_argument("--sampler", default=None,
                   help="DDPM: ancestral (default) | ddim; EDM: heun (default) | euler")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--iters", type=int, default=None,
                   help="training steps (default 4000); DDGAN: discriminator steps, G takes iters / n_critic")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_toy)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    from .config import ConfigError
    from .data import DataNotFoundError
    from .train import NonFiniteLossError

    try:
        args.func(args)
    except (ConfigError, DataNotFoundError, NonFiniteLossError, FileExistsError,
            FileNotFoundError, ValueError) as err:
        print(f"ddgan {args.command}: error: {err}", file=sys.stderr)
        sys.exit(1)
