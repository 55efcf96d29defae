"""`ddgan plot`: the figures exist, and results.md and results.json say exactly what the CSVs say."""
import csv
import json
from pathlib import Path

import pytest
from PIL import Image

from ddgan.csvfiles import RESULT_COLUMNS as COLUMNS
from ddgan.plot import (format_value, grid_panels, label_curves, nfe_labels, periodic_histories, plot_results,
                        read_results, seed_means, training_lines)

OUTPUTS = {"fd_vs_nfe": b"\x89PNG", "divergence_comparison": b"\x89PNG", "training_curves": b"\x89PNG",
           "sample_grids": b"\x89PNG", "results_md": b"", "results_json": b""}


def result(run, method, divergence, sampler, steps, nfe, fd, kid="", grid=""):
    return {"run": run, "method": method, "divergence": divergence, "sampler": sampler, "steps": steps,
            "nfe": nfe, "metric_name": "FD-cls", "fd": fd, "kid": kid, "kid_std": "0.0002" if kid else "",
            "precision": 0.61234, "recall": 0.45678, "n_samples": 2000, "extractor": "featnet",
            "extractor_hash": "ab12cd", "data": "Fashion-MNIST", "seed": 0, "train_seed": 0, "img_per_s": 1234.56,
            "ckpt_step": 100, "images_seen": 6400, "train_seconds": 7200.0, "train_cpu_seconds": 7190.4,
            "train_device": "cpu AMD EPYC (AVX2), 1 thread, float32", "wall_seconds": 3.5, "grid": grid, "eval_csv": ""}


def write_csv(path, rows, columns=COLUMNS):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_grid(path, shade):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (shade, shade, shade)).save(path)


@pytest.fixture
def results(tmp_path, monkeypatch):
    """Two CSVs: js/tv at T = 1, 2, DDPM ddim at K = 1, 2, 4, EDM heun at N = 2; the second
    re-evaluates js at T = 2. Returns (csv paths, the rows as plot_results should keep them)."""
    monkeypatch.chdir(tmp_path)  # runs are named relative to the working directory
    write_grid(tmp_path / "evals" / "grids" / "js_T1.png", 40)  # relative to the CSV's folder
    write_grid(tmp_path / "abs" / "tv_T2.png", 200)  # absolute
    write_grid(tmp_path / "evals" / "grids" / "ddim_K4.png", 120)
    first = [
        result("runs/js_T1", "ddgan", "js", "ddgan", 1, 1, 41.23456, kid="0.01234", grid="grids/js_T1.png"),
        result("runs/js_T2", "ddgan", "js", "ddgan", 2, 2, 30.0, kid="0.00987"),  # replaced below
        result("runs/tv_T1", "ddgan", "tv", "ddgan", 1, 1, 55.555),
        result("runs/tv_T2", "ddgan", "tv", "ddgan", 2, 2, 38.004, grid=str(tmp_path / "abs" / "tv_T2.png")),
        result("runs/ddpm", "ddpm", "", "ddim", 1, 1, 250.1),
        result("runs/ddpm", "ddpm", "", "ddim", 2, 2, 180.987),
        result("runs/ddpm", "ddpm", "", "ddim", 4, 4, 99.999, grid="grids/ddim_K4.png"),
        result("runs/edm", "edm", "", "heun", 2, 3, 120.5),
    ]
    second = [result("runs/js_T2", "ddgan", "js", "ddgan", 2, 2, 27.31415, kid="0.00512")]
    write_csv(tmp_path / "runs" / "js_T2" / "eval.csv", [
        {"step": s, "images_seen": 64 * s, "train_seconds": 36.0 * s, "metric_name": "FD-cls", "fd": 90.0 / s,
         "n_samples": 500, "extractor": "featnet", "extractor_hash": "ab12cd"} for s in (100, 200, 300)],
        columns=["step", "images_seen", "train_seconds", "metric_name", "fd", "n_samples", "extractor",
                 "extractor_hash"])
    paths = [write_csv(tmp_path / "evals" / "a.csv", first), write_csv(tmp_path / "other" / "b.csv", second)]
    return paths, first[:1] + second + first[2:]


def read_table(path):
    """results.md's table as a list of {header: cell}."""
    text = path.read_text()
    first_table = text[text.index("|"):].split("\n\n")[0]
    lines = [line for line in first_table.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert set(lines[1]) <= set("|-")
    return [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[2:]]


def test_format_value():
    assert format_value(41.23456, "fd") == "41.23"
    assert format_value(0.012345, "kid") == "0.0123"
    assert format_value(0.61234, "precision") == "0.612"
    assert format_value(1234.56, "img_per_s") == "1234.6"
    assert format_value(4, "nfe") == "4"
    assert format_value(None, "kid") == "—"


def test_writes_every_output(results, tmp_path):
    paths = plot_results(results[0], tmp_path / "figures")
    assert set(paths) == set(OUTPUTS)
    for name, magic in OUTPUTS.items():
        data = paths[name].read_bytes()
        assert paths[name].parent == tmp_path / "figures" and len(data) > 100 and data.startswith(magic)
    json.loads(paths["results_json"].read_text())


def test_table_equals_the_csvs_with_the_last_duplicate_winning(results, tmp_path):
    csv_paths, expected = results
    paths = plot_results(csv_paths, tmp_path / "figures")
    text = paths["results_md"].read_text()
    table = read_table(paths["results_md"])

    assert "Fashion-MNIST" in text.splitlines()[0] and "FD-cls" in text.splitlines()[0]
    assert "2000" in text.splitlines()[0]
    assert list(table[0]) == ["run", "method", "divergence / sampler", "steps", "NFE", "FD-cls", "KID",
                              "precision", "recall", "n", "img/s", "images", "train CPU s", "trained on",
                              "extractor", "data"]
    assert {r["trained on"] for r in table} == {"cpu AMD EPYC (AVX2), 1 thread, float32"}
    assert [r["run"] for r in table] == [row["run"] for row in expected]
    # Sorted by method, divergence/sampler, NFE; one row per (run, sampler, steps).
    assert [(r["method"], r["divergence / sampler"], r["steps"], r["NFE"]) for r in table] == [
        ("ddgan", "js", "1", "1"), ("ddgan", "js", "2", "2"), ("ddgan", "tv", "1", "1"), ("ddgan", "tv", "2", "2"),
        ("ddpm", "ddim", "1", "1"), ("ddpm", "ddim", "2", "2"), ("ddpm", "ddim", "4", "4"), ("edm", "heun", "2", "3")]
    assert [r["FD-cls"] for r in table] == ["41.23", "27.31", "55.55", "38.00", "250.10", "180.99", "100.00", "120.50"]
    assert "30.00" not in text  # the replaced evaluation of js, T = 2

    for cells, row in zip(table, expected):
        assert cells["FD-cls"] == format_value(row["fd"], "fd")
        assert float(cells["FD-cls"]) == round(row["fd"], 2)  # the CSV's number, to 2 decimals
        assert cells["precision"] == "0.612" and cells["recall"] == "0.457"
        assert cells["n"] == "2000" and cells["img/s"] == "1234.6"
        assert cells["extractor"] == "featnet:ab12cd" and cells["data"] == "Fashion-MNIST"
        if row["kid"]:
            assert cells["KID"] == f"{format_value(float(row['kid']), 'kid')} ± 0.0002"
        else:
            assert cells["KID"] == "—"
    assert [c["KID"] for c in table[:3]] == ["0.0123 ± 0.0002", "0.0051 ± 0.0002", "—"]


def test_json_holds_the_merged_rows_as_numbers(results, tmp_path):
    csv_paths, expected = results
    rows = json.loads(plot_results(csv_paths, tmp_path / "figures")["results_json"].read_text())
    assert [(r["run"], r["fd"]) for r in rows] == [(r["run"], r["fd"]) for r in expected]
    js_t2 = rows[1]
    assert js_t2["kid"] == 0.00512 and js_t2["steps"] == 2 and js_t2["img_per_s"] == 1234.56
    assert rows[2]["kid"] is None and rows[2]["precision"] == 0.61234
    assert rows[0]["grid"] == str(tmp_path / "evals" / "grids" / "js_T1.png")


def test_mixed_metric_names_are_refused(results, tmp_path):
    inception = result("runs/js_T4", "ddgan", "js", "ddgan", 4, 4, 12.0) | {"metric_name": "FID"}
    extra = write_csv(tmp_path / "fid.csv", [inception])
    with pytest.raises(ValueError, match=r"'FD-cls' and 'FID'"):
        plot_results([*results[0], extra], tmp_path / "figures")


def test_missing_optional_columns_and_inputs(tmp_path):
    """No kid/precision/device columns at all (an older CSV), no grids, no eval.csv: still every
    output, with "—"."""
    row = result(str(tmp_path / "runs" / "x"), "edm", "", "euler", 4, 4, 77.777)
    columns = [c for c in COLUMNS if c not in ("kid", "kid_std", "precision", "recall", "train_device", "grid",
                                                "eval_csv")]
    path = write_csv(tmp_path / "r.csv", [{c: row[c] for c in columns}], columns=columns)
    paths = plot_results([path], tmp_path / "figures")
    [cells] = read_table(paths["results_md"])
    assert (cells["FD-cls"], cells["KID"], cells["precision"], cells["recall"], cells["trained on"]) == (
        "77.78", "—", "—", "—", "—")
    assert all(paths[name].read_bytes().startswith(b"\x89PNG") for name in ("training_curves", "sample_grids"))

    write_csv(tmp_path / "bad.csv", [{"run": "x"}], columns=["run"])
    with pytest.raises(ValueError, match="fd"):
        plot_results([tmp_path / "bad.csv"], tmp_path / "figures")


def test_periodic_evaluations_are_found_and_checked_too(results, tmp_path):
    """A second run's eval.csv (its run named relative to the working directory) with another metric."""
    eval_csv = tmp_path / "runs" / "tv_T1" / "eval.csv"
    write_csv(eval_csv, [{"step": 100, "images_seen": 6400, "train_seconds": 60.0, "metric_name": "FID",
                          "fd": 80.0, "n_samples": 500, "extractor": "inception", "extractor_hash": "ff00"}],
              columns=["step", "images_seen", "train_seconds", "metric_name", "fd", "n_samples", "extractor",
                       "extractor_hash"])
    with pytest.raises(ValueError, match=r"periodic metrics 'FD-cls' and 'FID'"):
        plot_results(results[0], tmp_path / "figures")


def test_a_results_folder_without_its_runs_keeps_grids_curves_and_the_grid_layout(tmp_path):
    """A sweep's results folder, its runs gone: the grids and curves beside its CSV are found;
    the grid figure holds DDGAN's divergences against T (the lowest training seed) and each
    baseline's samplers at the most network calls within 4 and within 32."""
    folder = tmp_path / "results"
    rows = [result("gone/js_T1", "ddgan", "js", "ddgan", 1, 1, 50.0),
            result("gone/js_T2", "ddgan", "js", "ddgan", 2, 2, 40.0),
            result("gone/js_T2_seed1", "ddgan", "js", "ddgan", 2, 2, 41.0) | {"train_seed": 1},
            result("gone/tv_T2", "ddgan", "tv", "ddgan", 2, 2, 45.0)]
    rows += [result("gone/edm", "edm", "", "heun", n, 2 * n - 1, 90.0 - n) for n in (1, 2, 3, 16, 17)]
    rows += [result("gone/edm", "edm", "", "euler", n, n, 95.0 - n) for n in (4, 8, 32)]
    for i, row in enumerate(rows):
        row["grid"] = f"grids/{i}.png"
        write_grid(folder / row["grid"], 10 * i)
    rows[0]["eval_csv"] = "curves/js_T1.csv"
    write_csv(folder / "curves" / "js_T1.csv", [
        {"step": s, "images_seen": 64 * s, "train_seconds": 3.0 * s, "metric_name": "FD-cls", "fd": 90.0 / s,
         "n_samples": 500, "extractor": "featnet", "extractor_hash": "ab12cd"} for s in (10, 20)],
        columns=["step", "images_seen", "train_seconds", "metric_name", "fd", "n_samples", "extractor",
                 "extractor_hash"])
    merged = read_results([write_csv(folder / "sweep.csv", rows)])

    [(run, (row, history))] = periodic_histories(merged).items()
    assert run == "gone/js_T1" and [p["fd"] for p in history] == [9.0, 4.5]
    panels = {title: [(column, Path(row["grid"]).name) for column, row in figure_row]
              for title, figure_row in grid_panels(merged).items()}
    assert panels == {"DDGAN js": [(1, "0.png"), (2, "1.png")], "DDGAN tv": [(2, "3.png")],
                      "EDM": [(("euler", 4), "9.png"), (("euler", 32), "11.png"),
                              (("heun", 3), "5.png"), (("heun", 31), "7.png")]}
    assert plot_results([folder / "sweep.csv"], tmp_path / "figures")["sample_grids"].stat().st_size > 1000


def test_nfe_labels_skip_neighbours_that_would_overlap():
    nfes = [1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 63]
    assert nfe_labels(nfes) == ["1", "2", "3", "4", "7", "", "15", "", "31", "", "63"]
    assert nfe_labels([1, 2, 4, 8]) == ["1", "2", "4", "8"]


def test_runs_that_would_share_a_point_get_their_own_curves(tmp_path):
    """Two sweeps (seeds) of js over T and two DDPM runs: no line may join points of two runs."""
    rows = [result(f"sweeps/seed{seed}/js_T{t}", "ddgan", "js", "ddgan", t, t, 10.0 * t + seed)
            for seed in (0, 1) for t in (1, 2)]
    rows += [result(f"runs/ddpm_{name}", "ddpm", "", "ddim", k, k, 50.0 + k) for name in "ab" for k in (1, 2)]
    rows.append(result("runs/edm", "edm", "", "heun", 2, 3, 70.0))  # alone on its curve: no suffix
    paths = plot_results([write_csv(tmp_path / "r.csv", rows)], tmp_path / "figures")
    curves = {(r["run"], r["curve"]) for r in json.loads(paths["results_json"].read_text())}
    assert curves == {
        ("sweeps/seed0/js_T1", "DDGAN js (sweeps/seed0)"), ("sweeps/seed0/js_T2", "DDGAN js (sweeps/seed0)"),
        ("sweeps/seed1/js_T1", "DDGAN js (sweeps/seed1)"), ("sweeps/seed1/js_T2", "DDGAN js (sweeps/seed1)"),
        ("runs/ddpm_a", "DDPM ddim (runs/ddpm_a)"), ("runs/ddpm_b", "DDPM ddim (runs/ddpm_b)"),
        ("runs/edm", "EDM heun")}
    # Two runs of one folder at the same T: each its own curve, named by the run.
    same_folder = [result("runs/js_T2", "ddgan", "js", "ddgan", 2, 2, 20.0),
                   result("runs/js_T2_again", "ddgan", "js", "ddgan", 2, 2, 21.0)]
    paths = plot_results([write_csv(tmp_path / "s.csv", same_folder)], tmp_path / "figures2")
    assert [r["curve"] for r in json.loads(paths["results_json"].read_text())] == [
        "DDGAN js (runs/js_T2)", "DDGAN js (runs/js_T2_again)"]
    assert [r["run"] for r in read_table(paths["results_md"])] == ["runs/js_T2", "runs/js_T2_again"]


def test_a_damaged_row_is_refused_with_its_line_number(tmp_path):
    """A row cut by an interrupted write must not replace the good row (KID 1.7059 read as 1.705)."""
    good = result("runs/js_T2", "ddgan", "js", "ddgan", 2, 2, 20.0, kid="1.7059")
    path = write_csv(tmp_path / "r.csv", [good, good])
    lines = path.read_text().splitlines()
    cut = lines[2][:lines[2].index("1.7059") + 5]  # ends inside the KID cell
    path.write_text("\n".join(lines[:2] + [cut]) + "\n")
    with pytest.raises(ValueError, match=r"r\.csv line 3: 9 cells where the header has 27"):
        plot_results([path], tmp_path / "figures")
    path.write_text("\n".join(lines[:2] + [lines[2].replace("1.7059", "1.70x9")]) + "\n")
    with pytest.raises(ValueError, match=r"line 3: kid holds '1.70x9', not a number"):
        plot_results([path], tmp_path / "figures")
    with pytest.raises(FileNotFoundError, match="no such results file"):
        plot_results([tmp_path / "none.csv"], tmp_path / "figures")


def test_table_gives_the_spread_over_training_seeds(tmp_path):
    """Runs that differ only in train_seed get one line of mean ± std (n - 1) and their values."""
    rows = [{**result(f"study/ddgan_js_T4{'_seed%d' % s if s else ''}", "ddgan", "js", "ddgan", 4, 4, fd),
             "train_seed": s} for s, fd in [(0, 10.0), (1, 12.0), (2, 17.0)]]
    rows.append({**result("study/ddgan_js_T2", "ddgan", "js", "ddgan", 2, 2, 30.0), "train_seed": 0})
    paths = plot_results([write_csv(tmp_path / "r.csv", rows)], tmp_path / "figures")
    text = paths["results_md"].read_text()
    assert [r["train CPU s"] for r in read_table(paths["results_md"])] == ["7190"] * 4
    spread = [line for line in text.splitlines() if line.startswith("| ddgan | js |")]
    std = (((10 - 13) ** 2 + (12 - 13) ** 2 + (17 - 13) ** 2) / 2) ** 0.5
    assert spread == [f"| ddgan | js | 4 | 4 | 13.00 ± {std:.2f} | 0 1 2 | 10.00, 12.00, 17.00 |"]


def test_seeds_are_one_point_and_each_difference_is_weighed_against_their_spread(tmp_path):
    """The figures draw a seed group as its mean (one curve with the single-seed T = 2); results.md
    compares it with every result at no more NFE on as many samples, beyond 2 std or not."""
    rows = [{**result(f"study/ddgan_js_T4{'_seed%d' % s if s else ''}", "ddgan", "js", "ddgan", 4, 4, fd),
             "train_seed": s} for s, fd in [(0, 10.0), (1, 12.0), (2, 17.0)]]
    rows += [result("study/ddgan_js_T2", "ddgan", "js", "ddgan", 2, 2, 30.0),
             result("study/ddgan_tv_T4", "ddgan", "tv", "ddgan", 4, 4, 25.0),
             result("study/ddpm", "ddpm", "", "ddim", 4, 4, 15.0),
             result("study/ddpm", "ddpm", "", "ddim", 8, 8, 1.0),  # more calls
             {**result("study/ddpm", "ddpm", "", "ancestral", 4, 4, 2.0), "n_samples": 500}]
    std = (((10 - 13) ** 2 + (12 - 13) ** 2 + (17 - 13) ** 2) / 2) ** 0.5
    points = seed_means(read_results([write_csv(tmp_path / "r.csv", rows)]))
    label_curves(points)
    js = sorted((p for p in points if p["curve"] == "DDGAN js"), key=lambda p: p["steps"])
    assert [(p["steps"], p["fd"], p["fd_std"]) for p in js] == [(2, 30.0, None), (4, 13.0, pytest.approx(std))]
    assert len(points) == len(rows) - 2
    paths = plot_results([tmp_path / "r.csv"], tmp_path / "figures")
    lines = paths["results_md"].read_text().split("| beyond 2 std |")[1].splitlines()[2:]
    group = f"ddgan js T=4 (13.00 ± {std:.2f})"
    assert lines == [f"| {group} | ddpm ddim K=4 | 4 | 15.00 | +2.00 | no |",
                     f"| {group} | ddgan tv T=4 | 4 | 25.00 | +12.00 | yes |",
                     f"| {group} | ddgan js T=2 | 2 | 30.00 | +17.00 | yes |"]


def test_training_curves_have_a_panel_per_divergence_a_colour_per_t_and_a_line_style_per_seed(tmp_path):
    """The study's 27 runs would repeat the 10 colours in one panel: DDGAN's divergences get a
    panel each, T the same colour in all of them, and the seeds of one result share its colour."""
    history = [{"step": 1, "images_seen": 64, "train_seconds": 1.0, "fd": 9.0, "nfe": 8}]
    runs = [result(f"study/ddgan_js_T4{'_seed%d' % s if s else ''}", "ddgan", "js", "ddgan", 4, 4, 1.0)
            | {"train_seed": s} for s in (0, 1)]
    runs += [result("study/ddgan_js_T1", "ddgan", "js", "ddgan", 1, 1, 1.0),
             result("study/ddgan_tv_T4", "ddgan", "tv", "ddgan", 4, 4, 1.0),
             result("study/flow", "flow", "", "euler", 4, 4, 1.0),
             result("study/ddpm", "ddpm", "", "ddim", 4, 4, 1.0),
             result("other/ddpm", "ddpm", "", "ddim", 4, 4, 1.0)]  # same seed as study/ddpm
    histories = {row["run"]: (row, history) for row in read_results([write_csv(tmp_path / "r.csv", runs)])}
    panels = {title: [line[:3] for line in lines] for title, lines in training_lines(histories).items()}
    assert panels == {
        "DDGAN js": [("T=1", "C0", "-"), ("T=4, seed 0", "C1", "-"), ("T=4, seed 1", "C1", "--")],
        "DDGAN tv": [("T=4", "C1", "-")],
        "baselines": [("ddpm, 8 NFE (other/ddpm)", "C0", "-"), ("ddpm, 8 NFE (study/ddpm)", "C0", "--"),
                      ("flow, 8 NFE", "C1", "-")]}


def test_the_real_data_floor_heads_the_table_and_is_a_line_in_every_fd_figure(tmp_path, monkeypatch):
    """Floor rows (`ddgan eval --real-data`) are no curve: a table of their own, and a dotted
    line at each sample count a figure's results use (the periodic curves' too)."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot

    from ddgan import plot
    from ddgan.evaluate import REAL_DATA

    monkeypatch.chdir(tmp_path)
    floor = [{**result(f"real_data_n{n}", REAL_DATA, "", "test split", 0, 0, fd), "n_samples": n,
              "train_seed": "", "images_seen": ""} for n, fd in ((2000, 0.404), (500, 0.904))]
    write_csv(tmp_path / "runs" / "js_T2" / "eval.csv", [
        {"step": s, "images_seen": 64 * s, "train_seconds": 36.0 * s, "metric_name": "FD-cls", "fd": 90.0 / s,
         "n_samples": 500, "extractor": "featnet", "extractor_hash": "ab12cd"} for s in (100, 200)],
        columns=["step", "images_seen", "train_seconds", "metric_name", "fd", "n_samples", "extractor",
                 "extractor_hash"])
    models = [result("runs/js_T2", "ddgan", "js", "ddgan", 2, 2, 27.3),
              result("runs/ddpm", "ddpm", "", "ddim", 4, 4, 99.9)]
    models[0]["eval_csv"] = str(tmp_path / "runs" / "js_T2" / "eval.csv")
    csv_path = write_csv(tmp_path / "evals" / "all.csv", floor + models)

    drawn = {}
    original = plot.save

    def keep_lines(fig, path):
        drawn[Path(path).stem] = [line.get_label() for ax in fig.axes for line in ax.get_lines()
                                  if line.get_label().startswith("real data")]
        original(fig, path)

    monkeypatch.setattr(plot, "save", keep_lines)
    plot_results([csv_path], tmp_path / "figures")
    assert drawn["fd_vs_nfe"] == drawn["divergence_comparison"] == ["real data, n=2000 (0.40)"]
    assert drawn["training_curves"] == ["real data, n=500 (0.90)"] * 2  # by images and by hours
    table = (tmp_path / "figures" / "results.md").read_text()
    assert "| 2000 | 0.40 |" in table and "| 500 | 0.90 |" in table
    assert REAL_DATA not in table.split("| run |")[1]  # not among the models' rows
    with pytest.raises(ValueError, match="only the real-data floor"):
        plot_results([write_csv(tmp_path / "floor.csv", floor)], tmp_path / "f2")
    pyplot.close("all")
