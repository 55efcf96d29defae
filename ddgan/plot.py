"""Figures and a table from `ddgan eval` results: which divergence, and how many steps, per network call.

Reads one or more results CSVs (one row per run, sampler and step count; a later row for
the same (run, sampler, steps) replaces an earlier one; a damaged row is an error naming its
line) and each run's periodic `<run>/eval.csv`, and writes to `out_dir`:
  fd_vs_nfe.png               the metric against network calls, one line per method and divergence/sampler
  divergence_comparison.png   the metric against T per DDGAN divergence, the baselines (DDPM, EDM,
                              flow) as dashed references at their NFE
  training_curves.png         the periodic metric against images seen and against training hours,
                              a panel per DDGAN divergence and one for the baselines
  sample_grids.png            the sample grids: a row per DDGAN divergence, a column per T, then
                              a row per baseline at 4 and 32 network calls (grid_nfes)
  results.md, results.json    the merged rows, as a Markdown table and as parsed numbers; results.md
                              also gives each result's spread over training seeds and the
                              differences beside it (spread_lines)

Results that differ only in their training seed are one point in the figures: the mean, with
the standard deviation over seeds as an error bar. The floor's rows (`ddgan eval --real-data`,
the held-out data scored as samples are) head the table and are a dotted black line in every
figure of the metric, one per sample count, drawn where that figure has results on as many
samples.

Numbers from different feature networks or data sets are refused rather than drawn on
one axis. A curve is a method and its divergence or sampler; where two runs would put a
point at the same place on one curve (say two seeds of one sweep), each run gets its own
curve, labelled with its sweep's folder (DDGAN, whose sweep over T is a set of runs) or
with the run itself.
"""
import json
import statistics
from pathlib import Path

from .csvfiles import read_csv
from .evaluate import REAL_DATA
from .files import check_writable
from .methods import METHODS

REQUIRED = {"run", "method", "sampler", "steps", "nfe", "metric_name", "fd"}
DECIMALS = {"fd": 2, "kid": 4, "kid_std": 4, "precision": 3, "recall": 3, "img_per_s": 1}
NO_EVAL_CSV = "no periodic evaluation found (set eval.every_images in the config)"


def read_results(csv_paths):
    """The rows of every results CSV, the last one winning for each (run, sampler, steps)."""
    merged = {}
    for csv_path in csv_paths:
        if not Path(csv_path).is_file():
            raise FileNotFoundError(f"{csv_path}: no such results file (`ddgan eval --out X.json` "
                                    f"writes X.csv)")
        columns, rows = read_csv(csv_path)
        missing = REQUIRED - set(columns)
        if missing:
            raise ValueError(f"{csv_path} lacks the column(s) {', '.join(sorted(missing))}")
        for row in rows:
            for column in ("grid", "eval_csv"):  # relative paths are beside the CSV that names them
                if row[column]:
                    row[column] = str(Path(csv_path).parent / row[column])
            merged[(row["run"], row["sampler"], row["steps"])] = row
    if not merged:
        raise ValueError(f"no results in {', '.join(map(str, csv_paths))}")
    return sorted(merged.values(), key=sort_key)


def the_one(rows, what, describe):
    """The value every row shares, or a ValueError naming the values that differ."""
    values = sorted({describe(row) for row in rows})
    if len(values) > 1:
        raise ValueError(f"the results mix {what} {' and '.join(map(repr, values))}: numbers from "
                         f"different feature networks or data must not share an axis or a table")
    return values[0]


def features(row):
    return f"{row['extractor']}:{row['extractor_hash']}"


def sample_counts(rows):
    return "/".join(str(n) for n in sorted({row["n_samples"] for row in rows if row["n_samples"]}))


def variant(row):
    """What distinguishes results of one method: DDGAN's divergence, or a baseline's sampler."""
    return row["divergence"] or row["sampler"]


def steps_trained(row):
    """Whether the row's steps were fixed at training (DDGAN's T), so a sweep over them is a
    set of runs; rows of a method not registered here count as sampled at any steps."""
    method = METHODS.get(row["method"])
    return method is not None and method.steps_trained


def steps_symbol(row):
    method = METHODS.get(row["method"])
    return "steps" if method is None else method.steps_symbol


def _collide(rows, run_key):
    """Whether two rows with the same run_key share a point (sampler and steps)."""
    points = [(run_key(row), row["sampler"], row["steps"]) for row in rows]
    return len(set(points)) < len(points)


def _sweep(row):
    """The runs that make one curve: a DDGAN's sweep folder (one run per T), a baseline's run."""
    return str(Path(row["run"]).parent) if steps_trained(row) else row["run"]


def label_curves(rows):
    """Set each row's "curve": 'METHOD variant', plus, where two runs would put a point at the
    same steps of that curve, the run's sweep folder (_sweep), or the run itself if runs of one
    sweep folder still collide."""
    by_label = {}
    for row in rows:
        by_label.setdefault(f"{row['method'].upper()} {variant(row)}", []).append(row)
    for label, group in by_label.items():
        suffix = None
        if _collide(group, lambda row: None):
            suffix = _sweep if not _collide(group, _sweep) else (lambda row: row["run"])
        for row in group:
            row["curve"] = label if suffix is None else f"{label} ({suffix(row)})"


def sort_key(row):
    return row["method"], variant(row), row["nfe"], row["steps"], row["run"]


def curves(rows):
    """Rows grouped by curve label, each curve in order of NFE."""
    grouped = {}
    for row in sorted(rows, key=sort_key):
        grouped.setdefault(row["curve"], []).append(row)
    return grouped


def format_value(value, column):
    """How a number appears in results.md: fixed decimals per column, "—" where not computed."""
    if value is None:
        return "—"
    if column in DECIMALS:
        return f"{value:.{DECIMALS[column]}f}"
    return str(value)


def seed_groups(rows):
    """Results that differ only in the training seed (the same method, variant, steps, images
    seen, samples and features), where there are at least two seeds: {key: [rows, by seed]}."""
    groups = {}
    for row in rows:
        if row.get("train_seed") is not None and row["fd"] is not None:
            key = (row["method"], variant(row), row["steps"], row["nfe"], row["images_seen"], row["n_samples"])
            groups.setdefault(key, []).append(row)
    return {key: sorted(group, key=lambda r: r["train_seed"]) for key, group in groups.items()
            if len({r["train_seed"] for r in group}) > 1}


def seed_means(rows):
    """The results as the figures draw them: each seed group as one point (its lowest seed's row
    with the mean fd, and fd_std the standard deviation over seeds, n - 1), the rest as they are
    (fd_std None); "rows" lists the results behind each point."""
    groups, points = seed_groups(rows), {}
    group_of = {id(row): key for key, group in groups.items() for row in group}
    for row in rows:
        key = group_of.get(id(row), id(row))
        if key in points:
            continue
        if key in groups:
            fds = [r["fd"] for r in groups[key]]
            points[key] = {**groups[key][0], "fd": statistics.mean(fds), "fd_std": statistics.stdev(fds),
                           "rows": groups[key]}
        else:
            points[key] = {**row, "fd_std": None, "rows": [row]}
    return list(points.values())


def point_name(point):
    name = f"{point['method']} {variant(point)} {steps_symbol(point)}={point['steps']}"
    return name if point["fd_std"] is None else f"{name} ({format_value(point['fd'], 'fd')} ± " \
                                                 f"{format_value(point['fd_std'], 'fd')})"


def spread_lines(points, metric):
    """results.md's comparison against the seed spread: each seed-averaged point (seed_means)
    against every other that spends at most its network calls, on as many samples; a difference
    counts as beyond the spread where it exceeds twice the larger of the two standard deviations
    over seeds."""
    points = [point for point in points if point["fd"] is not None]
    lines = []
    for averaged in (point for point in points if point["fd_std"] is not None):
        for other in sorted(points, key=lambda point: point["fd"]):
            if other is averaged or other["nfe"] > averaged["nfe"] \
                    or other["n_samples"] != averaged["n_samples"]:
                continue
            difference = other["fd"] - averaged["fd"]
            spread = max(averaged["fd_std"], other["fd_std"] or 0.0)
            lines.append(f"| {point_name(averaged)} | {point_name(other)} | {other['nfe']} "
                         f"| {format_value(other['fd'], 'fd')} | {difference:+.2f} "
                         f"| {'yes' if abs(difference) > 2 * spread else 'no'} |")
    if not lines:
        return []
    return ["", f"Against the seed spread: each seed-averaged result (mean ± std) against every "
            f"result with at most its NFE on as many samples, lowest {metric} first; the "
            f"difference (the other minus the mean) is beyond the spread where it exceeds twice "
            f"the larger standard deviation over seeds of the two.", "",
            f"| seed-averaged | against | its NFE | its {metric} | difference | beyond 2 std |",
            "|---|---|---|---|---|---|", *lines]


def floor_lines(floor, metric):
    """results.md's floor: the held-out data's values at each sample count."""
    if not floor:
        return []
    lines = ["", f"The floor: real held-out images (the test split) scored as the samples are, "
             f"against the same training set; {metric} and KID a model drawing from the data "
             f"itself would reach on as many samples.", "",
             f"| n | {metric} | KID | precision | recall |", "|---|---|---|---|---|"]
    for row in sorted(floor, key=lambda r: -r["n_samples"]):
        lines.append(f"| {row['n_samples']} | {format_value(row['fd'], 'fd')} "
                     f"| {format_value(row['kid'], 'kid')} | {format_value(row['precision'], 'precision')} "
                     f"| {format_value(row['recall'], 'recall')} |")
    return lines + [""]


def write_table(rows, points, metric, path, floor=()):
    """results.md: the floor, every row, then the seed-averaged points (seed_means) and
    spread_lines."""
    lines = [f"{rows[0]['data']}: {metric} ({features(rows[0])} features, lower is better) from "
             f"n = {sample_counts(rows)} generated samples per result; KID ± its standard deviation; "
             f"images, CPU seconds and device of training.",
             *floor_lines(floor, metric),
             "",
             f"| run | method | divergence / sampler | steps | NFE | {metric} | KID | precision "
             f"| recall | n | img/s | images | train CPU s | trained on | extractor | data |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        kid = format_value(row["kid"], "kid")
        if row["kid"] is not None and row["kid_std"] is not None:
            kid += f" ± {format_value(row['kid_std'], 'kid_std')}"
        cpu = row.get("train_cpu_seconds")
        cells = [row["run"], row["method"], variant(row), format_value(row["steps"], "steps"),
                 format_value(row["nfe"], "nfe"), format_value(row["fd"], "fd"), kid,
                 format_value(row["precision"], "precision"), format_value(row["recall"], "recall"),
                 format_value(row["n_samples"], "n_samples"), format_value(row["img_per_s"], "img_per_s"),
                 format_value(row["images_seen"], "images_seen"),
                 format_value(None if cpu is None else round(cpu), "train_cpu_seconds"),
                 row.get("train_device") or "—", features(row), row["data"]]
        lines.append("| " + " | ".join(cells) + " |")
    averaged = [point for point in points if point["fd_std"] is not None]
    if averaged:
        lines += ["", f"Over training seeds: {metric} mean ± standard deviation (n − 1), the "
                  f"seeds, and each seed's value.", "",
                  f"| method | divergence / sampler | steps | NFE | {metric} | seeds | values |",
                  "|---|---|---|---|---|---|---|"]
        for point in averaged:
            seeds = " ".join(str(r["train_seed"]) for r in point["rows"])
            values = ", ".join(format_value(r["fd"], "fd") for r in point["rows"])
            lines.append(f"| {point['method']} | {variant(point)} | {point['steps']} | {point['nfe']} "
                         f"| {format_value(point['fd'], 'fd')} ± {format_value(point['fd_std'], 'fd')} "
                         f"| {seeds} | {values} |")
    lines += spread_lines(points, metric)
    Path(path).write_text("\n".join(lines) + "\n")


def pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only: no display on a training machine
    import matplotlib.pyplot as plt
    return plt


def save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    pyplot().close(fig)


def message_figure(text, path):
    """A figure that says why it is empty, so a missing input is visible rather than a missing file."""
    fig, ax = pyplot().subplots(figsize=(6, 3))
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, transform=ax.transAxes)
    ax.axis("off")
    save(fig, path)


def nfe_labels(nfes, min_ratio=1.3):
    """Tick labels for sorted NFEs on a log axis, blank where one would overlap the last
    shown (EDM's 2N - 1 sits beside DDPM's powers of two: 7 and 8, 15 and 16)."""
    labels, last = [], None
    for nfe in nfes:
        show = last is None or nfe / last >= min_ratio
        labels.append(str(nfe) if show else "")
        last = nfe if show else last
    return labels


def error_bars(curve):
    """The standard deviation over training seeds at each point of a curve (0 where one seed)."""
    return [point["fd_std"] or 0.0 for point in curve]


def curve_format(curve):
    """DDGAN solid with circles, baselines dashed with squares: a study has more curves than the
    10 colours, and the style keeps two curves of one colour apart."""
    return "o-" if steps_trained(curve[0]) else "s--"


FLOOR_STYLES = (":", (0, (1, 4)), (0, (3, 2, 1, 2)), "-.")  # one per floor sample count


def draw_floor(ax, floor, sample_counts_drawn):
    """The floor at each sample count the axes' results use, as a horizontal line."""
    for i, row in enumerate(sorted((r for r in floor if r["n_samples"] in sample_counts_drawn
                                    and r["fd"] is not None), key=lambda r: -r["n_samples"])):
        ax.axhline(row["fd"], color="k", lw=1, ls=FLOOR_STYLES[i % len(FLOOR_STYLES)],
                   label=f"real data, n={row['n_samples']} ({format_value(row['fd'], 'fd')})")


def plot_fd_vs_nfe(rows, metric, colours, path, floor=()):
    fig, ax = pyplot().subplots(figsize=(6.5, 4.5))
    for label, curve in curves(rows).items():
        ax.errorbar([row["nfe"] for row in curve], [row["fd"] for row in curve], yerr=error_bars(curve),
                    fmt=curve_format(curve), capsize=3, color=colours[label], label=label)
    draw_floor(ax, floor, {row["n_samples"] for row in rows})
    ax.set_xscale("log")
    nfes = sorted({row["nfe"] for row in rows})
    ax.set_xticks(nfes, nfe_labels(nfes))  # the NFEs evaluated, not powers of ten
    ax.minorticks_off()
    ax.set_xlabel("NFE (network calls per sample)")
    ax.set_ylabel(f"{metric} (n={sample_counts(rows)}, {rows[0]['data']})")
    ax.set_title(f"{metric} against network calls (lower is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, path)


def plot_divergence_comparison(rows, metric, colours, path, floor=()):
    compared = [row for row in rows if steps_trained(row)]
    if not compared:
        return message_figure("no results with steps fixed at training (DDGAN's T) to compare", path)
    fig, ax = pyplot().subplots(figsize=(6.5, 4.5))
    for label, curve in curves(compared).items():
        ax.errorbar([row["steps"] for row in curve], [row["fd"] for row in curve], yerr=error_bars(curve),
                    fmt=curve_format(curve), capsize=3, color=colours[label], label=label)
    # A DDGAN step is one network call, so baselines sit at their NFE on the same axis.
    t_values = sorted({row["steps"] for row in compared})
    for label, curve in curves([row for row in rows if not steps_trained(row)]).items():
        inside = [row for row in curve if t_values[0] <= row["nfe"] <= t_values[-1]]
        if inside:
            ax.errorbar([row["nfe"] for row in inside], [row["fd"] for row in inside],
                        yerr=error_bars(inside), fmt=curve_format(inside), capsize=3, color=colours[label],
                        label=f"{label} (at its NFE)")
        else:
            best = min(curve, key=lambda row: row["fd"])
            ax.axhline(best["fd"], ls="--", color=colours[label],
                       label=f"{label}, best ({best['nfe']} NFE, outside T range)")
    draw_floor(ax, floor, {row["n_samples"] for row in rows})
    ax.set_xticks(t_values)
    methods, symbol = "/".join(sorted({row["method"].upper() for row in compared})), steps_symbol(compared[0])
    ax.set_xlabel(f"{symbol} ({methods} denoising steps = NFE)")
    ax.set_ylabel(f"{metric} (n={sample_counts(rows)}, {rows[0]['data']})")
    ax.set_title(f"{methods} divergences against {symbol}, baselines dashed ({metric}, lower is better)",
                 fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, path)


SEED_LINES = ("-", "--", ":", "-.")  # the runs of one result (its training seeds), in order


def training_panel(row):
    """The panel of training_curves.png that draws a run: one per DDGAN divergence, one for the baselines."""
    return f"{row['method'].upper()} {row['divergence']}" if steps_trained(row) else "baselines"


def training_lines(histories):
    """training_curves.png's lines: {panel: [(label, colour, line style, history)]}. A DDGAN's
    colour is its T, the same in every panel; a baseline's is its method. Runs that share a
    panel and a colour (training seeds) differ by line style, labelled by seed, or by run
    where their seeds are the same too."""
    def colour_key(row):
        return row["steps"] if steps_trained(row) else row["method"]

    groups = {}
    for row, history in histories.values():
        groups.setdefault((training_panel(row), colour_key(row)), []).append((row, history))
    t_values = sorted({key for _, key in groups if not isinstance(key, str)})
    methods = sorted({key for _, key in groups if isinstance(key, str)})
    colour_index = {key: i for i, key in enumerate(t_values)} | {key: i for i, key in enumerate(methods)}

    def panel_order(group_key):  # DDGAN's divergences first, then the baselines; by colour within
        panel, key = group_key
        return panel == "baselines", panel, colour_index[key]

    panels = {}
    for panel, key in sorted(groups, key=panel_order):
        group = groups[panel, key]
        colour = f"C{colour_index[key] % 10}"
        group.sort(key=lambda pair: (pair[0]["train_seed"] or 0, pair[0]["run"]))
        seeds_differ = len({row["train_seed"] for row, _ in group}) == len(group)
        for i, (row, history) in enumerate(group):
            label = f"{steps_symbol(row)}={row['steps']}" if steps_trained(row) else row["method"]
            label += periodic_nfe_label(row, history)
            if len(group) > 1:
                label += f", seed {row['train_seed']}" if seeds_differ else f" ({row['run']})"
            panels.setdefault(panel, []).append((label, colour, SEED_LINES[i % len(SEED_LINES)], history))
    return panels


def periodic_nfe_label(row, history):
    """', K NFE' for a baseline's curve (it samples with eval.steps); a DDGAN's T is in its label."""
    nfes = sorted({point["nfe"] for point in history if point.get("nfe") not in (None, "")})
    return "" if steps_trained(row) or not nfes else f", {'/'.join(map(str, nfes))} NFE"


def periodic_histories(rows):
    """{run: (its first row, its periodic-evaluation rows)} for each run whose eval_csv exists.
    A row without eval_csv (an older CSV) names its run, relative to the working directory."""
    histories = {}
    for row in rows:
        eval_csv = Path(row["eval_csv"] or Path(row["run"]) / "eval.csv")
        if row["run"] not in histories and eval_csv.is_file():
            # A step evaluated again after a resume: its latest row counts.
            histories[row["run"]] = row, list({p["step"]: p for p in read_csv(eval_csv)[1]}.values())
    return histories


def plot_training_curves(rows, path, floor=()):
    """A column per panel (training_lines): the periodic metric against images seen above,
    against training hours below, on one y scale throughout."""
    histories = periodic_histories(rows)
    points = [point for _, history in histories.values() for point in history]
    if not points:
        return message_figure(NO_EVAL_CSV, path)
    metric = the_one(points, "periodic metrics", lambda point: point["metric_name"])
    the_one(points, "periodic feature networks", features)
    panels = training_lines(histories)
    fig, axes = pyplot().subplots(2, len(panels), figsize=(1 + 3.6 * len(panels), 7), sharey=True,
                                  squeeze=False)
    for (title, lines), by_images, by_hours in zip(panels.items(), axes[0], axes[1]):
        for label, colour, style, history in lines:
            fds = [p["fd"] for p in history]
            by_images.plot([p["images_seen"] for p in history], fds, marker="o", ms=3, ls=style, color=colour,
                           label=label)
            by_hours.plot([p["train_seconds"] / 3600 for p in history], fds, marker="o", ms=3, ls=style,
                          color=colour)
        for ax in (by_images, by_hours):
            draw_floor(ax, floor, {p["n_samples"] for p in points})
        by_images.set_title(title)
        by_images.set_xlabel("training images seen")
        by_hours.set_xlabel("training wall-clock (hours)")
        by_images.legend(fontsize=7)
        for ax in (by_images, by_hours):
            ax.grid(alpha=0.3)
    y_label = f"{metric} (n={sample_counts(points)}, periodic)"
    axes[0][0].set_ylabel(f"{y_label}\nper image seen")
    axes[1][0].set_ylabel(f"{y_label}\nper hour of training")
    fig.suptitle(f"{metric} during training (lower is better)")
    save(fig, path)


GRID_NFES = (4, 32)  # the baselines' budgets in sample_grids.png


def grid_panels(rows, baseline_nfes=GRID_NFES):
    """{figure row title: [(column, result row)]}: a DDGAN row per divergence with a column per
    T; a row per baseline holding, for each of its samplers and each budget in baseline_nfes, its
    row with the most network calls within that budget (Heun's 2N - 1 calls rarely hit it). Of
    several training seeds, the lowest."""
    with_grid = sorted((row for row in rows if row["grid"] and Path(row["grid"]).is_file()),
                       key=lambda row: (row["train_seed"] or 0, *sort_key(row)))
    panels = {}
    for row in with_grid:
        if steps_trained(row):
            title, column = f"{row['method'].upper()} {variant(row)}", row["steps"]
        else:
            title, column = row["method"].upper(), (row["sampler"], row["nfe"])
        panels.setdefault(title, {}).setdefault(column, row)
    figure_rows = {}
    for title, by_column in panels.items():
        if steps_trained(next(iter(by_column.values()))):
            figure_rows[title] = sorted(by_column.items())
            continue
        chosen = {}
        for sampler in dict.fromkeys(sampler for sampler, _ in by_column):
            for budget in baseline_nfes:
                within = [nfe for s, nfe in by_column if s == sampler and nfe <= budget]
                if within:
                    chosen[(sampler, max(within))] = by_column[(sampler, max(within))]
        if chosen:
            figure_rows[title] = list(chosen.items())
    return figure_rows


def plot_sample_grids(rows, path, baseline_nfes=GRID_NFES):
    """The sample grids of grid_panels: DDGAN's divergences against T, then the baselines."""
    from matplotlib.image import imread

    figure_rows = grid_panels(rows, baseline_nfes)
    if not figure_rows:
        return message_figure("no sample grids in the results (the grid column is empty)", path)
    ddgan_columns = sorted({column for panels in figure_rows.values() for column, row in panels
                            if steps_trained(row)})
    width = max([len(ddgan_columns)] + [len(panels) for panels in figure_rows.values()])
    fig, axes = pyplot().subplots(len(figure_rows), width, squeeze=False,
                                  figsize=(2.2 * width, 2.4 * len(figure_rows)))
    for ax_row, (title, panels) in zip(axes, figure_rows.items()):
        for ax in ax_row:
            ax.axis("off")
        for i, (column, row) in enumerate(panels):
            ax = ax_row[ddgan_columns.index(column) if steps_trained(row) else i]
            image = imread(row["grid"])
            ax.imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="nearest")
            where = f"{steps_symbol(row)}={row['steps']}" if steps_trained(row) else \
                f"{row['sampler']}, {row['nfe']} NFE"
            ax.set_title(f"{title}, {where}", fontsize=9)
    save(fig, path)


def plot_results(csv_paths, out_dir, grid_nfes=GRID_NFES):
    """Write the figures and tables above for the given results CSVs; returns {name: path written}.
    grid_nfes: the baselines' budgets (network calls) in sample_grids.png."""
    every_row = read_results(csv_paths)
    floor = [row for row in every_row if row["method"] == REAL_DATA]
    rows = [row for row in every_row if row["method"] != REAL_DATA]
    if not rows:
        raise ValueError(f"{', '.join(map(str, csv_paths))} hold only the real-data floor: no "
                         f"model's results to draw")
    points = seed_means(rows)  # the figures' points: one per result, seeds averaged
    label_curves(points)
    for point in points:  # results.json gives each row the curve it is drawn on
        for row in point["rows"]:
            row["curve"] = point["curve"]
    metric = the_one(every_row, "metrics", lambda row: row["metric_name"])
    the_one(every_row, "feature networks", features)
    the_one(every_row, "data sets", lambda row: row["data"])
    out_dir = Path(out_dir)
    check_writable(out_dir, "--out")
    paths = {"fd_vs_nfe": out_dir / "fd_vs_nfe.png",
             "divergence_comparison": out_dir / "divergence_comparison.png",
             "training_curves": out_dir / "training_curves.png",
             "sample_grids": out_dir / "sample_grids.png",
             "results_md": out_dir / "results.md",
             "results_json": out_dir / "results.json"}
    colours = {label: f"C{i % 10}" for i, label in enumerate(curves(points))}  # same colour in every figure
    scored = [point for point in points if point["fd"] is not None]  # `ddgan eval --metrics kid,pr` has no fd
    if scored:
        plot_fd_vs_nfe(scored, metric, colours, paths["fd_vs_nfe"], floor)
        plot_divergence_comparison(scored, metric, colours, paths["divergence_comparison"], floor)
    else:
        for name in ("fd_vs_nfe", "divergence_comparison"):
            message_figure(f"no {metric} in the results (evaluate with --metrics fid)", paths[name])
    plot_training_curves(rows, paths["training_curves"], floor)
    plot_sample_grids(rows, paths["sample_grids"], grid_nfes)
    write_table(rows, points, metric, paths["results_md"], floor)
    paths["results_json"].write_text(json.dumps(floor + rows, indent=1) + "\n")
    return paths
