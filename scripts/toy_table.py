"""The 2-D benchmark over divergences x T: prints a Markdown table and writes JSON.

    python scripts/toy_table.py --out runs/toy_table [--data 25gaussians] [--steps 1 2 4]

Each cell is one `ddgan toy` run with its defaults (DIR/<divergence>_T<steps>/
holds its metrics.json and scatter plot). A benchmark, not a test: about a
minute per cell on 2 CPU cores.
"""
import argparse
import json
from pathlib import Path

from ddgan.toy import run_toy
from divergences import DIVERGENCES


def markdown_table(rows, steps):
    header = "| divergence | " + " | ".join(f"T = {t}: modes, HQ, s" for t in steps) + " |"
    lines = [header, "|---" * (len(steps) + 1) + "|"]
    for divergence in dict.fromkeys(r["divergence"] for r in rows):
        cells = []
        for t in steps:
            r = next(r for r in rows if r["divergence"] == divergence and r["steps"] == t)
            cells.append(f"{r['modes_covered']}/{r['num_modes']}, {r['high_quality_fraction']:.2f}, "
                         f"{r['train_seconds']:.0f}")
        lines.append(f"| `{divergence}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--data", default="25gaussians")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--divergences", nargs="+", default=list(DIVERGENCES))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    out = Path(args.out)
    rows = []
    for divergence in args.divergences:
        for steps in args.steps:
            metrics = run_toy(args.data, divergence, steps, out=out / f"{divergence}_T{steps}",
                              seed=args.seed)
            rows.append({k: v for k, v in metrics.items() if k != "hyperparameters"})
            print(json.dumps(rows[-1]), flush=True)
    table = markdown_table(rows, args.steps)
    (out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out / "table.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
