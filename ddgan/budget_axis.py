"""The budget axis: a sweep's results evaluated again as their runs train on, read from
RESULTS/sweep.csv (the first budget) and RESULTS/budgets/<images>/sweep.csv (each later one:
`scripts/sweep.py --budgets`), and written to RESULTS/budgets/figures/:
  fd_vs_images.png       the metric against training images (log x): a line per result (a run at
                         one sampler and step count) that a later budget evaluated, the floor dotted
  fd_vs_cpu_seconds.png  the same against its run's training CPU seconds
  budgets.md             at each budget, the results ranked, each gap weighed against the seed spread
  budgets.json           the rows drawn
"""
import json
import statistics
from pathlib import Path

from .evaluate import REAL_DATA
from .plot import (draw_floor, features, format_value, pyplot, read_results, save, seed_groups,
                   steps_trained, the_one)

FIGURES = "figures"


def budget_folders(results):
    """RESULTS/budgets/<images>/ that hold a sweep.csv, fewest images first."""
    folders = [path for path in (Path(results) / "budgets").glob("*")
               if path.name.isdigit() and (path / "sweep.csv").is_file()]
    return sorted(folders, key=lambda path: int(path.name))


def result_key(row):
    return row["run"], row["sampler"], row["steps"]


def result_name(row):
    """A DDGAN run is its cell (its T is fixed); a baseline's result names its sampler and calls."""
    name = Path(row["run"]).name
    return name if steps_trained(row) else f"{name} {row['sampler']} ({row['nfe']} calls)"


def budget_rows(results):
    """The floor (once per sample count); at every budget, the rows of each result that a
    budget past the first evaluated; and every row of every budget (for the seed spread)."""
    first = Path(results) / "sweep.csv"
    per_budget = [read_results([first])] if first.is_file() else []
    later = [read_results([folder / "sweep.csv"]) for folder in budget_folders(results)]
    continued = {result_key(row) for rows in later for row in rows if row["method"] != REAL_DATA}
    floor, rows, every = {}, [], []
    for row in (row for group in per_budget + later for row in group):
        if row["method"] == REAL_DATA:
            floor.setdefault(row["n_samples"], row)
        elif row["fd"] is not None and row["images_seen"]:
            every.append(row)
            if result_key(row) in continued:
                rows.append(row)
    return list(floor.values()), rows, every


def lines_of(rows, x):
    grouped = {}
    for row in sorted(rows, key=lambda row: row[x] or 0):
        grouped.setdefault(result_name(row), []).append(row)
    return grouped


def plot_against(rows, floor, metric, x, xlabel, path):
    fig, ax = pyplot().subplots(figsize=(7.5, 5))
    for i, (name, line) in enumerate(sorted(lines_of(rows, x).items())):
        ax.plot([row[x] for row in line], [row["fd"] for row in line],
                "o-" if steps_trained(line[0]) else "s--", color=f"C{i % 10}", label=name)
    draw_floor(ax, floor, {row["n_samples"] for row in rows})
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(metric)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    save(fig, path)


def seed_spread(rows):
    """The largest standard deviation over training seeds among these rows' seed groups, or None."""
    spreads = [statistics.stdev(r["fd"] for r in group) for group in seed_groups(rows).values()]
    return max(spreads) if spreads else None


def cpu_seconds(row):
    return "—" if row["train_cpu_seconds"] is None else f"{row['train_cpu_seconds']:,.0f}"


def ranking_lines(rows, floor, metric, every):
    """budgets.md: one ranked table per budget; a gap to the next result counts as beyond the
    spread where it exceeds twice the seed spread measured at that budget (else the largest
    measured among every row of every budget, `every`, said so)."""
    overall = seed_spread(every)
    lines = [f"{metric} (lower is better) of each result a later budget evaluated, ranked at each "
             f"budget of training images. The floor (real held-out data): "
             + ", ".join(f"{format_value(r['fd'], 'fd')} at n = {r['n_samples']}"
                         for r in sorted(floor, key=lambda r: -r["n_samples"])) + "."]
    for images in sorted({row["images_seen"] for row in rows}):
        at = sorted((row for row in rows if row["images_seen"] == images), key=lambda row: row["fd"])
        spread, where = seed_spread([row for row in every if row["images_seen"] == images]), "at this budget"
        if spread is None:
            spread, where = overall, "at another budget"
        said = "no seed spread measured" if spread is None else \
            f"seed spread {spread:.2f} (largest std over training seeds, {where})"
        lines += ["", f"### {images:,} images ({said})", "",
                  f"| rank | result | NFE | {metric} | n | gap to the next | beyond 2 × spread | "
                  f"train CPU s | trained on |", "|---|---|---|---|---|---|---|---|---|"]
        for rank, (row, below) in enumerate(zip(at, at[1:] + [None]), start=1):
            gap = None if below is None else below["fd"] - row["fd"]
            beyond = "—" if gap is None or spread is None else ("yes" if gap > 2 * spread else "no")
            lines.append(f"| {rank} | {result_name(row)} | {row['nfe']} | {format_value(row['fd'], 'fd')} "
                         f"| {row['n_samples']} | {'—' if gap is None else f'{gap:+.2f}'} | {beyond} "
                         f"| {cpu_seconds(row)} "
                         f"| {row['train_device'] or '—'} |")
    return lines


def plot_budget_axis(results):
    """Write the figures and table above for RESULTS; returns {name: path}, or {} where no
    budget past the first has rows."""
    floor, rows, every = budget_rows(results)
    if not rows:
        return {}
    metric = the_one(rows + floor, "metrics", lambda row: row["metric_name"])
    the_one(rows + floor, "feature networks", features)
    the_one(rows + floor, "data sets", lambda row: row["data"])
    out = Path(results) / "budgets" / FIGURES
    out.mkdir(parents=True, exist_ok=True)
    paths = {"fd_vs_images": out / "fd_vs_images.png", "fd_vs_cpu_seconds": out / "fd_vs_cpu_seconds.png",
             "budgets_md": out / "budgets.md", "budgets_json": out / "budgets.json"}
    data = f"{rows[0]['data']}, {metric} ({features(rows[0])})"
    plot_against(rows, floor, metric, "images_seen", f"training images (log); {data}", paths["fd_vs_images"])
    plot_against(rows, floor, metric, "train_cpu_seconds", f"training CPU seconds (log); {data}",
                 paths["fd_vs_cpu_seconds"])
    paths["budgets_md"].write_text(f"{data}.\n\n" + "\n".join(ranking_lines(rows, floor, metric, every)) + "\n")
    paths["budgets_json"].write_text(json.dumps(floor + rows, indent=1) + "\n")
    return paths
