"""scripts/sweep.py on tiny runs through submitit's local executor: cells in parallel, each
cell's rows written as it finishes, finished cells skipped, interrupted ones resumed, a failed
cell costing only itself."""
import csv
import json
import os
import shutil
import socket
import subprocess
import sys
from types import SimpleNamespace

import pytest
import submitit

from ddgan import checkpoint
from ddgan.evaluate import REAL_DATA
from ddgan.config import load_shared_config
from ddgan.methods import METHODS
from ddgan.train import train

from .conftest import REPO, load_script
from .test_evaluate import FIGURES, TINY, fake_data  # noqa: F401 (fake_data is a fixture)

SWEEP = REPO / "scripts" / "sweep.py"


def sweep(out, featnet, root, *args, check=True):
    command = [sys.executable, str(SWEEP), "--out", str(out), "--featnet", str(featnet),
               "--num-samples", "40", *args, "--set", *TINY, f"data.root={root}"]
    return subprocess.run(command, check=check, capture_output=True, text=True, cwd=out.parent)


def test_sweep_runs_cells_in_parallel_then_merges_eval_and_plot(fake_data, tmp_path):
    root, featnet = fake_data
    out, kept = tmp_path / "sweep", tmp_path / "kept"  # the runs; the results, to keep (--results)
    sweep(out, featnet, root, "--results", str(kept), "--config-dir", str(REPO / "configs/fmnist"),
          "--divergences", "js", "tv",
          "--steps", "1", "2", "--baseline-steps", "1", "2", "--max-steps", "3", "--jobs", "2",
          "--baseline-samples", "2=24", "--extra-steps", "ddpm=5", "--extra-samples", "20",
          "--set", "eval.every_images=8", "eval.num_samples=16", "eval.steps=2")

    with open(kept / "sweep.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    # The floor: the held-out split at every sample count of the rows (final and periodic)
    floor = [r for r in rows if r["method"] == REAL_DATA]
    assert sorted(int(r["n_samples"]) for r in floor) == [16, 20, 24, 40]
    assert all(float(r["fd"]) >= 0 and r["nfe"] == "0" and (kept / r["grid"]).is_file() for r in floor)
    rows = [r for r in rows if r["method"] != REAL_DATA]
    # DDPM's reference point: its default sampler only, at its own sample count
    [extra] = [r for r in rows if r["n_samples"] == "20"]
    assert (extra["method"], extra["sampler"], extra["steps"], extra["nfe"]) == ("ddpm", "ancestral", "5", "5")
    rows.remove(extra)
    # 2 divergences x 2 T, then each baseline with each of its samplers x 2 steps
    baselines = [m for m in METHODS.values() if not m.steps_trained]
    assert len(rows) == 4 + 2 * sum(len(m.samplers) for m in baselines)
    edm = sorted((r["sampler"], int(r["steps"]), int(r["nfe"])) for r in rows if r["method"] == "edm")
    assert edm == [("euler", 1, 1), ("euler", 2, 2), ("heun", 1, 1), ("heun", 2, 3)]
    for row in rows:  # --baseline-samples: a baseline's 2 steps on 24 samples
        n = "24" if row["method"] != "ddgan" and row["steps"] == "2" else "40"
        assert row["metric_name"] == "FD-cls" and row["n_samples"] == n
        assert row["extractor"] == "featnet" and row["data"] == "Fashion-MNIST"
        assert float(row["img_per_s"]) > 0 and float(row["fd"]) >= 0 and row["kid"] and row["recall"]
        assert int(row["ckpt_step"]) == 3 and (kept / row["grid"]).is_file()
        assert float(row["train_cpu_seconds"]) > 0 and row["train_device"].startswith("cpu ")
        # its training curve, copied beside the results: the figures need no run folder
        run = out / row["run"].rsplit("/", 1)[-1]
        assert (kept / row["eval_csv"]).read_bytes() == (run / "eval.csv").read_bytes()
    figures = kept / "figures"
    for name in FIGURES:
        assert (figures / f"{name}.png").stat().st_size > 10_000, name
    table = (figures / "results.md").read_text()
    for row in rows:  # the table's numbers are the CSV's
        assert f"| {float(row['fd']):.2f} |" in table
    periodic = list(csv.DictReader(open(out / "ddgan_js_T1" / "eval.csv")))
    assert [int(p["images_seen"]) for p in periodic] == [8, 16, 24]  # every 8 images, batch 8
    assert all(float(p["train_seconds"]) > 0 for p in periodic)
    # eval.steps: DDPM's K = 2, EDM's N = 2 (Heun: 3 calls); a DDGAN keeps its T.
    for run, calls in [("ddgan_js_T1", 1), ("ddpm", 2), ("edm", 3)]:
        assert {int(p["nfe"]) for p in csv.DictReader(open(out / run / "eval.csv"))} == {calls}, run

    # Two at once: some job was handed to the executor before another had ended. submitit writes
    # <id>_submitted.pkl as it starts a job's process and the worker <id>_0_result.pkl as it ends;
    # a cell's own files are no clock (its config.yaml comes late in a tiny cell's life).
    jobs = out / "submitit"
    spans = sorted((p.stat().st_mtime, jobs.joinpath(p.name.replace("_submitted", "_0_result")).stat().st_mtime)
                   for p in jobs.glob("*_submitted.pkl"))
    assert len(spans) == 1 + len({r["run"] for r in rows})  # the floor's job and each cell's
    assert any(later_start < end for (_, end), (later_start, _) in zip(spans, spans[1:]))


def test_sweep_skips_finished_cells_resumes_interrupted_ones_and_survives_a_failure(fake_data, tmp_path):
    root, featnet = fake_data
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "ddgan.yaml").write_text((REPO / "configs/fmnist/ddgan.yaml").read_text())
    (configs / "ddpm.yaml").write_text("method: ddpm\ndata:\n  name: fmnist\nddpm:\n  no_such_key: 1\n")
    out = tmp_path / "sweep"
    common = ["--config-dir", str(configs), "--divergences", "js", "--max-steps", "4", "--jobs", "2",
              "--no-floor"]

    first = sweep(out, featnet, root, *common, "--steps", "1", "--baselines")
    finished = out / "results" / "cells" / "ddgan_js_T1.json"
    finished_bytes, finished_mtime = finished.read_bytes(), finished.stat().st_mtime_ns
    assert "1 cell(s): 0 finished, 1 to run" in first.stdout

    # A cell interrupted at step 2 of 4, as a lost machine would leave it.
    interrupted = load_shared_config(configs / "ddgan.yaml", TINY + [
        f"data.root={root}", "ddgan.denoising_steps=2", "train.max_steps=4", "train.seed=0",
        f"train.out_dir={out / 'ddgan_js_T2'}", f"eval.extractor=featnet:{featnet}"])
    train(interrupted, stop_at=2)
    listing = sweep(out, featnet, root, *common, "--steps", "1", "2", "--baselines", "ddpm", "--list")
    assert [line.split()[:2] for line in listing.stdout.split("\n")[:3]] == [
        ["finished", "ddgan_js_T1"], ["started", "ddgan_js_T2"], ["new", "ddpm"]]
    assert "run at step 2" in listing.stdout.split("\n")[1]

    second = sweep(out, featnet, root, *common, "--steps", "1", "2", "--baselines", "ddpm", check=False)
    assert second.returncode != 0
    assert "1 cell(s) failed: ddpm" in second.stderr and "FAILED ddpm" in second.stdout
    assert "3 cell(s): 1 finished, 2 to run" in second.stdout
    # --list: each cell's state, what its rows record, its last error (the log keeps the rest)
    listing = sweep(out, featnet, root, *common, "--steps", "1", "2", "--baselines", "ddpm", "--list")
    lines = {line.split()[1]: line for line in listing.stdout.splitlines()}
    assert "rows at 32 images" in lines["ddgan_js_T1"] and "CPU s, cpu " in lines["ddgan_js_T1"]
    assert lines["ddpm"].startswith("new") and "failed: " in lines["ddpm"] and "no_such_key" in lines["ddpm"]
    assert not (out / "submitit" / "%j").exists()  # the jobs' logs sit in OUT/submitit/
    assert finished.stat().st_mtime_ns == finished_mtime and finished.read_bytes() == finished_bytes
    logs = "".join(p.read_text() for p in (out / "submitit").rglob("*_log.out"))
    assert "resuming ddgan" in logs and "at step 2 of 4" in logs
    assert checkpoint.load(out / "ddgan_js_T2" / "checkpoints" / "last.pt")["step"] == 4
    rows = json.loads((out / "results" / "cells" / "ddgan_js_T2.json").read_text())
    assert [(r["steps"], r["ckpt_step"]) for r in rows] == [(2, 4)]
    with open(out / "results" / "sweep.csv", newline="") as f:  # merged: both finished cells
        assert sorted(r["run"].rsplit("/", 1)[-1] for r in csv.DictReader(f)) == ["ddgan_js_T1", "ddgan_js_T2"]
    # A command for one cell (say the seed cells) keeps the other cells' rows in the merge.
    sweep(out, featnet, root, *common, "--steps", "2", "--baselines")
    with open(out / "results" / "sweep.csv", newline="") as f:
        assert sorted(r["run"].rsplit("/", 1)[-1] for r in csv.DictReader(f)) == ["ddgan_js_T1", "ddgan_js_T2"]

    # A cell killed before its first checkpoint leaves its config.yaml, logs and grids but
    # nothing to resume: the sweep starts it again, to the rows it gave the first time.
    shutil.rmtree(out / "ddgan_js_T1" / "checkpoints")
    finished.unlink()
    again = sweep(out, featnet, root, *common, "--steps", "1", "--baselines")
    assert "stopped before its first checkpoint; starting it again" in "".join(
        p.read_text() for p in (out / "submitit").rglob("*_log.out"))
    assert "1 cell(s): 0 finished, 1 to run" in again.stdout
    timings = {"img_per_s", "train_seconds", "train_cpu_seconds", "wall_seconds"}
    assert ([{k: v for k, v in row.items() if k not in timings} for row in json.loads(finished.read_text())]
            == [{k: v for k, v in row.items() if k not in timings} for row in json.loads(finished_bytes)])


def test_budgets_continue_each_run_and_refuse_what_cannot_continue(fake_data, tmp_path):
    root, featnet = fake_data
    out = tmp_path / "sweep"
    results, later = out / "results", out / "results" / "budgets"
    common = ["--config-dir", str(REPO / "configs/fmnist"), "--divergences", "js", "--steps", "1",
              "--baselines", "flow", "--baseline-steps", "1", "--train-images", "16",
              "--budget-evals", "flow=euler:2", "--set", "eval.every_images=16", "eval.num_samples=16"]
    sweep(out, featnet, root, *common, "--budgets", "48", "32", "--jobs", "2")

    # Batch 8: 16, 32 and 48 images are 2, 4 and 6 steps of one run, evaluated at each.
    for folder, step in [(results, 2), (later / "32", 4), (later / "48", 6)]:
        ddgan = json.loads((folder / "cells" / "ddgan_js_T1.json").read_text())
        assert [(r["ckpt_step"], r["images_seen"]) for r in ddgan] == [(step, 8 * step)]
        flow = json.loads((folder / "cells" / "flow.json").read_text())
        expected = [("euler", 1), ("heun", 1)] if folder == results else [("euler", 2)]
        assert [(r["sampler"], r["steps"]) for r in flow] == expected  # --budget-evals
        assert {r["ckpt_step"] for r in flow} == {step}
        floor = json.loads((folder / "cells" / "real_data.json").read_text())
        assert {r["n_samples"] for r in floor} == {16, 40}
        assert (folder / "figures" / "fd_vs_nfe.png").is_file()
        curve = list(csv.DictReader(open(folder / "curves" / "ddgan_js_T1.csv")))
        assert [int(p["images_seen"]) for p in curve] == list(range(16, 8 * step + 1, 16))
    axis = later / "figures"
    assert (axis / "fd_vs_images.png").stat().st_size > 10_000
    assert (axis / "fd_vs_cpu_seconds.png").stat().st_size > 10_000
    table = (axis / "budgets.md").read_text()
    for images in ("16", "32", "48"):
        assert f"### {images} images" in table
    assert table.count("| ddgan_js_T1 |") == 3 and table.count("flow euler (2 calls)") == 2
    redrawn = subprocess.run([sys.executable, "-m", "ddgan", "budgets", str(results)], check=True,
                             capture_output=True, text=True)  # by hand, from the results alone
    assert str(axis / "budgets.md") in redrawn.stdout and (axis / "budgets.md").read_text() == table

    # The run is gone: continuing it to 64 images is refused, and nothing runs, until --retrain.
    kept = {path: path.read_bytes() for path in results.rglob("cells/*.json")}
    shutil.rmtree(out / "ddgan_js_T1")
    one = [*common, "--budgets", "32", "48", "64", "--cells", "ddgan_js_T1"]
    refused = sweep(out, featnet, root, *one, check=False)
    assert refused.returncode != 0 and "ddgan_js_T1: its rows at 48 images" in refused.stderr
    assert "is gone" in refused.stderr and "--retrain" in refused.stderr
    assert not (later / "64").exists()
    sweep(out, featnet, root, *one, "--retrain")
    assert [r["ckpt_step"] for r in json.loads((later / "64/cells/ddgan_js_T1.json").read_text())] == [8]
    assert all(path.read_bytes() == data for path, data in kept.items())  # earlier rows stay

    # A budget below what the run has trained cannot be evaluated from it: refused.
    (later / "32/cells/ddgan_js_T1.json").unlink()
    past = sweep(out, featnet, root, *one, check=False)
    assert past.returncode != 0 and "has trained 8 steps, past the 4 (32 images)" in past.stderr
    # One sweep per results folder: a second one is refused, naming the first's process and host.
    (results / ".lock").write_text(f"{os.getpid()} {socket.gethostname()}\n")
    locked = sweep(out, featnet, root, *one, "--retrain", check=False)
    assert locked.returncode != 0
    assert f"in use by another sweep (process {os.getpid()} on host {socket.gethostname()})" in locked.stderr
    (results / ".lock").unlink()
    low = sweep(out, featnet, root, *common, "--budgets", "16", check=False)
    assert low.returncode != 0 and "each budget must exceed --train-images 16" in low.stderr


def test_a_failed_cell_is_named_by_the_exception_that_ended_its_job():
    module = load_script("sweep")
    raised = "ddgan.interrupt.TrainingInterrupted: interrupted by SIGTERM at step 40; run again to resume"
    failed = submitit.core.utils.FailedJobError(  # as submitit words a worker's failure
        "Job (task=0) failed during processing with trace:\n----------------------\n"
        'Traceback (most recent call last):\n  File "ddgan/train.py", line 9, in loop\n'
        f"    raise TrainingInterrupted(message)\n{raised}\n\n----------------------\n"
        "You can check full logs with 'job.stderr(0)' and 'job.stdout(0)'or at paths:\n"
        "  - runs/submitit/7_0_log.err\n  - runs/submitit/7_0_log.out")
    assert module.last_error_line(failed) == raised
    assert module.last_error_line(ValueError("no checkpoint at runs/x")) == "no checkpoint at runs/x"


def test_a_stopped_driver_merges_the_rows_written_since_its_last_poll(tmp_path, monkeypatch):
    module = load_script("sweep")
    merged = []
    monkeypatch.setattr(module, "report", merged.append)

    def stopped(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(module.time, "sleep", stopped)

    class Executor:  # a cluster's: nothing local to stop
        def submit(self, job, cell):
            return object()

    with pytest.raises(KeyboardInterrupt):
        module.run_cells(Executor(), [SimpleNamespace(name="flow")], 1, tmp_path / "results", tmp_path / "out")
    assert merged == [tmp_path / "results"]
