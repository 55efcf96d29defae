"""A sweep under faults, through submitit's local executor on one tiny cell: a worker killed
mid-training, the whole sweep killed mid-evaluation, a damaged cell file, and a pre-emption
signal each leave rows equal to an undisturbed sweep's (scripts/fault_injection.py does the
same at random points, by hand)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from ddgan import checkpoint

from .conftest import REPO, load_script
from .test_evaluate import TINY, fake_data  # noqa: F401 (fake_data is a fixture)

pytestmark = pytest.mark.slow  # minutes of real sweeps: `pytest -m slow`

MAX_STEPS = 40


faults = load_script("fault_injection")


def command(out, featnet, root):
    return [sys.executable, str(REPO / "scripts" / "sweep.py"), "--out", str(out), "--featnet", str(featnet),
            "--config-dir", str(REPO / "configs" / "fmnist"), "--divergences", "js", "--steps", "1",
            "--baselines", "--no-floor", "--max-steps", str(MAX_STEPS), "--num-samples", "400",
            "--metrics", "fid", "--jobs", "1", "--threads", "1",
            "--set", *TINY, "train.ckpt_every=2", f"data.root={root}"]


def start(out, featnet, root):
    return subprocess.Popen(command(out, featnet, root), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True, cwd=out.parent)


def saved_step(run):
    try:
        return checkpoint.load(run / "checkpoints" / "last.pt")["step"]
    except (FileNotFoundError, EOFError, RuntimeError):  # not yet there, or being replaced
        return None


def wait_for(condition, sweep, what, timeout=300):
    began = time.monotonic()
    while not condition():
        assert sweep.poll() is None, f"the sweep ended before {what}: {sweep.stdout.read()}"
        assert time.monotonic() - began < timeout, f"no {what} after {timeout} s"
        time.sleep(0.05)


def test_killed_damaged_and_preempted_cells_end_with_the_rows_of_an_undisturbed_sweep(fake_data, tmp_path):
    import psutil

    root, featnet = fake_data
    reference = tmp_path / "reference"
    subprocess.run(command(reference, featnet, root), check=True, capture_output=True, cwd=tmp_path)
    expected = faults.comparable(reference / "results" / "sweep.csv")
    out, run = tmp_path / "disturbed", tmp_path / "disturbed" / "ddgan_js_T1"
    cell = out / "results" / "cells" / "ddgan_js_T1.json"

    # kill -9 of the worker mid-training: the sweep says the cell failed, the next run resumes it
    sweep = start(out, featnet, root)
    wait_for(lambda: (saved_step(run) or 0) >= 4, sweep, "a checkpoint at step 4")
    worker, = faults.workers(psutil.Process(sweep.pid))
    worker.send_signal(signal.SIGKILL)
    assert sweep.wait() != 0 and "FAILED ddgan_js_T1" in sweep.stdout.read()
    assert saved_step(run) < MAX_STEPS and not cell.exists()

    # kill -9 of the whole sweep (driver, controller, worker) mid-evaluation
    sweep = start(out, featnet, root)
    wait_for(lambda: saved_step(run) == MAX_STEPS, sweep, "the end of training")
    os.killpg(sweep.pid, signal.SIGKILL)
    sweep.wait()
    assert not cell.exists()

    finished = subprocess.run(command(out, featnet, root), capture_output=True, text=True, cwd=tmp_path)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    logs = "".join(p.read_text() for p in (out / "submitit").glob("*_log.*"))
    assert "resuming ddgan" in logs
    assert faults.comparable(out / "results" / "sweep.csv") == expected

    # a damaged cell file is named and the cell evaluated again from its run, not retrained
    cell.write_text(cell.read_text()[:-40])
    again = subprocess.run(command(out, featnet, root), capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{cell}: damaged (line " in again.stdout and "evaluated again from its run" in again.stdout
    assert json.loads(cell.read_text()) and saved_step(run) == MAX_STEPS
    assert faults.comparable(out / "results" / "sweep.csv") == expected

    # pre-emption: SIGUSR2 to the worker, as SLURM sends it before a time limit or pre-emption;
    # the training saves, the job requeues itself, and the one command finishes the cell
    preempted, run = tmp_path / "preempted", tmp_path / "preempted" / "ddgan_js_T1"
    sweep = start(preempted, featnet, root)
    wait_for(lambda: (saved_step(run) or 0) >= 4, sweep, "a checkpoint at step 4")
    worker, = faults.workers(psutil.Process(sweep.pid))
    worker.send_signal(signal.SIGUSR2)
    output = sweep.communicate(timeout=600)[0]
    assert sweep.returncode == 0 and "finished ddgan_js_T1" in output, output
    logs = "".join(p.read_text() for p in (preempted / "submitit").glob("*_log.*"))
    assert "interrupted by SIGUSR2" in logs and "Requeued job" in logs and "resuming ddgan" in logs
    assert faults.comparable(preempted / "results" / "sweep.csv") == expected


def test_a_stopped_driver_stops_its_cells_saved_and_leaves_no_worker(fake_data, tmp_path):
    """kill of the driver alone: its local workers must not go on writing without its lock."""
    import psutil

    root, featnet = fake_data
    out, run = tmp_path / "stopped", tmp_path / "stopped" / "ddgan_js_T1"
    sweep = start(out, featnet, root)
    wait_for(lambda: (saved_step(run) or 0) >= 4, sweep, "a checkpoint at step 4")
    workers = faults.workers(psutil.Process(sweep.pid))
    sweep.send_signal(signal.SIGTERM)
    output = sweep.communicate(timeout=300)[0]
    assert sweep.returncode != 0 and "stopped: ddgan_js_T1" in output, output
    assert "the sweep was stopped" in output
    assert workers and not psutil.wait_procs(workers, timeout=10)[1]
    logs = "".join(p.read_text() for p in (out / "submitit").glob("*_log.*"))
    assert "interrupted by SIGTERM" in logs and saved_step(run) < MAX_STEPS
    assert not (out / "results" / ".lock").exists()
