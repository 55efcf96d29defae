"""The 2-D benchmark over models x steps: prints a Markdown table and writes JSON.

    python scripts/toy_table.py --out runs/toy_table [--data 25gaussians] [--steps 1 2 4]
        [--models ddgan:js ddgan:tv ddpm:ancestral ddpm:ddim edm:heun edm:euler]

A model is METHOD:DIVERGENCE for DDGAN and METHOD:SAMPLER for the baselines
(default: DDGAN with every registered divergence). Each cell is one `ddgan toy` run with its
defaults; DIR/<method>_<name>_<steps>/ holds its metrics.json and scatter plot.
A benchmark, not a test: its times are in docs/GUIDE.md (the 2-D benchmark).
"""
import argparse
import json
from pathlib import Path

from ddgan.methods import DEFAULT_METHOD, get_method
from ddgan.toy import run_toy
from divergences import DIVERGENCES


def run_model(model, steps, data, seed, out, overwrite):
    method, name = model.split(":")
    kind = {"sampler": name} if name in get_method(method).samplers else {"divergence": name}
    metrics = run_toy(data, method=method, steps=steps, seed=seed,
                      out=out / f"{method}_{name}_{steps}", overwrite=overwrite, **kind)
    return {"model": model, **{k: v for k, v in metrics.items() if k != "hyperparameters"}}


def markdown_table(rows, steps):
    header = "| model | " + " | ".join(f"steps = {s}: modes, HQ, NFE, s" for s in steps) + " |"
    lines = [header, "|---" * (len(steps) + 1) + "|"]
    for model in dict.fromkeys(r["model"] for r in rows):
        cells = []
        for s in steps:
            r = next(r for r in rows if r["model"] == model and r["steps"] == s)
            cells.append(f"{r['modes_covered']}/{r['num_modes']}, {r['high_quality_fraction']:.2f}, "
                         f"{r['nfe']}, {r['train_seconds']:.0f}")
        lines.append(f"| `{model}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--data", default="25gaussians")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--models", nargs="+", default=[f"{DEFAULT_METHOD}:{d}" for d in DIVERGENCES])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace the cells already in --out")
    args = parser.parse_args()

    out = Path(args.out)
    rows = []
    for model in args.models:
        for steps in args.steps:
            rows.append(run_model(model, steps, args.data, args.seed, out, args.overwrite))
            print(json.dumps(rows[-1]), flush=True)
    table = markdown_table(rows, args.steps)
    (out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / "table.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
