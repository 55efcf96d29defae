"""Where a training step's time goes: torch.profiler's top operators by self time.

    python scripts/profile_step.py configs/fmnist/ddgan.yaml --set train.batch_size=64 --cpu

builds the config's method as `ddgan bench` does (random images on the device), runs
--warmup steps, then profiles --steps steps and prints the operators that take the most
self time (a Markdown table; --out also writes it as JSON).
"""
import argparse
import json
from itertools import count
from pathlib import Path

import torch
from accelerate import Accelerator
from torch.profiler import ProfilerActivity, profile

from ddgan.bench import RandomBatches, choose_precision, image_shape
from ddgan.config import load_config
from ddgan.methods import method_class
from ddgan.precision import DESCRIPTIONS
from ddgan.settings import updated
from ddgan.speed import set_backend_flags


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--set", nargs="*", default=[], dest="overrides", metavar="KEY=VALUE")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rows", type=int, default=15)
    parser.add_argument("--cpu", action="store_true")
    parser.add_argument("--by-shape", action="store_true",
                        help="one row per operator and input shapes (which convolution, say)")
    parser.add_argument("--out", default=None, help="JSON file for the table")
    args = parser.parse_args()

    settings = load_config(args.config, args.overrides)
    device = "cpu" if args.cpu or not torch.cuda.is_available() else "cuda"
    accelerator = Accelerator(cpu=device == "cpu")
    shape = image_shape(settings.data)
    precision, _ = choose_precision(settings, shape, accelerator)
    method = method_class(settings)(updated(settings, {"train": {"mixed_precision": precision}}),
                                    shape, accelerator)
    set_backend_flags(method.speed)
    batches, step = RandomBatches(settings.train.batch_size, shape, accelerator.device), count()
    for _ in range(args.warmup):
        method.train_step(batches, next(step))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities, record_shapes=args.by_shape) as prof:
        for _ in range(args.steps):
            method.train_step(batches, next(step))
        if device == "cuda":
            torch.cuda.synchronize()
    events = sorted(prof.key_averages(group_by_input_shape=args.by_shape),
                    key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    rows = [{"operator": e.key + (f" {e.input_shapes}" if args.by_shape else ""), "calls": e.count, "self_ms_per_step": e.self_cpu_time_total / 1e3 / args.steps,
             "share": e.self_cpu_time_total / total} for e in events[:args.rows]]
    print(f"{args.config} {' '.join(args.overrides)}: {total / 1e3 / args.steps:.1f} ms of operator "
          f"self time per step, {torch.get_num_threads()} threads, {DESCRIPTIONS[precision]}")
    print("| operator | calls | self ms / step | share |\n|---|---|---|---|")
    for r in rows:
        print(f"| `{r['operator']}` | {r['calls']} | {r['self_ms_per_step']:.1f} | {100 * r['share']:.1f}% |")
    if args.out:
        Path(args.out).write_text(json.dumps({"config": args.config, "overrides": args.overrides,
                                              "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
