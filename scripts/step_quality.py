"""Which of a DDGAN's denoising steps loses the quality: FD of chains started from real x_s.

    python scripts/step_quality.py runs/tiny --extractor featnet:featnets/fmnist.pt \\
        [--checkpoint step_0002500.pt] [--num-samples 2000] [--raw] [--out step_quality.json]

For s = 1..T, real training images are noised to x_s ~ q(x_s | x_0) and G's chain
takes them from step s to x_0 (x_{k-1} ~ q(x_{k-1} | x_k, x_0 = G(x_k, z, k))).
s = 1 scores G's last step alone, s = T the whole sampler; the rise from one s
to the next is what step s costs. Prints a Markdown table and writes JSON, and
an image grid beside it: the real images, then each chain's outputs. --raw scores
the trained generator instead of its EMA. A diagnostic, not a reportable number:
the chains start from the training images themselves.
"""
import argparse
import json
from pathlib import Path

import torch
from torchvision.utils import save_image

from ddgan import checkpoint
from ddgan.data import load_images, to_unit_range
from ddgan.evaluate import reference_name
from ddgan.generate import ema_network
from ddgan.metrics import compute_metrics, quantise, resolve_extractor
from ddgan.methods import method_class
from ddgan.methods.ddgan import DDGAN, build_process
from ddgan.samplers import ddgan_sampler

GRID = 16


@torch.no_grad()
def chain_from(generator, process, x0, start, nz, rng):
    """x_0 from G's chain started at the real x_start (drawn from x0)."""
    t = torch.full((x0.shape[0],), start, dtype=torch.long, device=x0.device)
    x = process.q_sample(x0, t, noise=torch.randn(x0.shape, generator=rng))
    return ddgan_sampler(generator, x, process, rng, nz=nz, start=start)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a DDGAN run directory")
    parser.add_argument("--checkpoint", default="last.pt", help="file in RUN/checkpoints/")
    parser.add_argument("--extractor", required=True, help="featnet:PATH or inception")
    parser.add_argument("--num-samples", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--raw", action="store_true", help="the trained G, not its EMA")
    parser.add_argument("--out", default=None, help="JSON (default RUN/step_quality.json)")
    args = parser.parse_args()

    state = checkpoint.load(Path(args.run) / "checkpoints" / args.checkpoint)
    settings = state["config"]
    if method_class(settings) is not DDGAN:
        raise SystemExit(f"{args.run} is a {settings.method} run; step_quality scores a "
                         f"{DDGAN.name} run's chain")
    generator, _ = ema_network(state)
    if args.raw:
        generator.load_state_dict(state["method"]["generator"])
    process, nz = build_process(settings.ddgan), settings.backbone.nz
    data = settings.data
    images = load_images(data.name, data.root, data.image_size)
    extractor = resolve_extractor(args.extractor)
    rng = torch.Generator().manual_seed(args.seed)
    x0 = to_unit_range(images[torch.randperm(len(images), generator=rng)[:args.num_samples]])

    rows, grid = [], [x0[:GRID]]
    for start in range(1, process.num_steps + 1):
        out = torch.cat([chain_from(generator, process, batch, start, nz, rng)
                         for batch in x0.split(args.batch_size)])
        values = compute_metrics(quantise(out), images, extractor, ["fid"],
                                 reference_name=reference_name(images), seed=args.seed)
        rows.append({"start": start, "metric_name": extractor.metric_name, "fd": values["fd"],
                     "n_samples": args.num_samples, "extractor_hash": extractor.hash,
                     "network": "raw" if args.raw else "ema", "ckpt_step": state["step"],
                     "images_seen": state.get("images_seen")})
        grid.append(out[:GRID])

    out_json = Path(args.out or Path(args.run) / "step_quality.json")
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(rows, indent=2) + "\n")
    save_image(torch.cat(grid), out_json.with_suffix(".png"), nrow=GRID, normalize=True, value_range=(-1, 1))
    metric = rows[0]["metric_name"]
    print(f"{args.run} step {state['step']} ({rows[0]['network']} G), {metric} with "
          f"{extractor.label}:{extractor.hash}, n = {args.num_samples}\n")
    print(f"| chain starts at real x_s | {metric} |\n|---|---|")
    for row in rows:
        print(f"| s = {row['start']} | {row['fd']:.2f} |")
    print(f"\nwrote {out_json} and {out_json.with_suffix('.png')}")


if __name__ == "__main__":
    main()
