"""Kill a real 2-cell sweep at random points and check that it loses nothing: run by hand.

    python scripts/fault_injection.py --out runs/faults --kills 10

First an undisturbed sweep of two tiny cells (DDGAN js at T = 2 and flow, on Fashion-MNIST
from $DDGAN_DATA, scored in the features of docs/results/featnet_fmnist.pt) gives the
reference. Then the same sweep into another folder is killed --kills times with SIGKILL at a
random moment of each attempt: either the whole sweep (its driver, the local executor's
controllers and their workers, as a lost machine) or one worker (a crashed cell, while the
driver goes on). After each kill the same command runs again; after the last, it runs to the
end. The result: the final sweep.csv must equal the reference's in every column but the
timings (img/s, training and wall seconds) and the runs' folder. Prints a table of the kills
(when, whom, what each cell was doing) and the verdict, writes OUT/fault_injection.json, and
exits 1 where the two differ.
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from ddgan.csvfiles import read_csv_rows

REPO = Path(__file__).resolve().parents[1]
TIMING_COLUMNS = {"img_per_s", "train_seconds", "train_cpu_seconds", "wall_seconds"}
CELLS = ("ddgan_js_T2", "flow")
TINY = ["backbone.base_channels=8", "backbone.channel_mult=[1, 2]", "backbone.num_res_blocks=1",
        "backbone.attn_resolutions=[]", "discriminator.base_channels=8", "discriminator.channel_mult=[1, 2]",
        "train.batch_size=16", "train.log_every=10", "train.sample_every=100000", "train.num_grid=4",
        "train.keep_every=0"]


def sweep_command(out, args):
    """The sweep under test: the two cells, one thread each, a checkpoint every few steps."""
    return [sys.executable, str(REPO / "scripts" / "sweep.py"), "--out", str(out),
            "--config-dir", str(REPO / "configs" / "fmnist" / "cpu"), "--featnet", str(args.featnet),
            "--divergences", "js", "--steps", "2", "--baselines", "flow", "--baseline-steps", "2",
            "--no-floor", "--max-steps", str(args.max_steps), "--num-samples", str(args.num_samples),
            "--metrics", "fid", "--jobs", "2", "--threads", "1",
            "--set", *TINY, f"train.ckpt_every={args.ckpt_every}"]


def start(out, args):
    log = open(out.parent / f"{out.name}.log", "a")
    return subprocess.Popen(sweep_command(out, args), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=REPO)


def cell_phase(out, name, max_steps):
    """What the cell was doing, read from its folders: training at step N, evaluating, done."""
    from ddgan import checkpoint

    if (out / "results" / "cells" / f"{name}.json").is_file():
        return "done"
    last = out / name / "checkpoints" / "last.pt"
    if not last.is_file():
        return "starting"
    try:
        step = checkpoint.load(last)["step"]
    except Exception:  # being replaced: the phase is what it was a moment ago
        return "saving"
    return "evaluating" if step >= max_steps else f"training (saved {step})"


def workers(process):
    """The sweep's cell workers (submitit's task processes), not their controllers."""
    try:
        return [p for p in process.children(recursive=True)
                if "submitit.core._submit" in " ".join(p.cmdline())]
    except psutil.NoSuchProcess:
        return []


def comparable(path):
    """sweep.csv's rows with the timings dropped and each run named by its folder's name."""
    rows = [{key: value for key, value in row.items() if key not in TIMING_COLUMNS}
            for _, row in read_csv_rows(path)[1]]
    for row in rows:
        row["run"] = Path(row["run"]).name
    return sorted(rows, key=lambda row: (row["run"], row["sampler"], row["steps"]))


def disturb(out, args, duration, rng):
    """Kill the sweep into `out` args.kills times, then let it finish; returns the kills."""
    kills = []
    for number in range(1, args.kills + 1):
        sweep = start(out, args)
        process = psutil.Process(sweep.pid)
        at = rng.uniform(1.0, max(2.0, 2 * duration / args.kills))
        try:
            sweep.wait(timeout=at)
            kills.append({"kill": number, "at_s": round(at, 1), "victim": "none: the sweep had finished"})
            break
        except subprocess.TimeoutExpired:
            pass
        phases = {name: cell_phase(out, name, args.max_steps) for name in CELLS}
        targets = workers(process)
        if targets and rng.random() < 0.5:
            victim = rng.choice(targets)
            victim.send_signal(signal.SIGKILL)
            sweep.wait()  # the driver notes the failed cell, finishes the other, and exits
            whom = f"one worker (pid {victim.pid})"
        else:
            os.killpg(sweep.pid, signal.SIGKILL)
            sweep.wait()
            whom = "the whole sweep"
        kills.append({"kill": number, "at_s": round(at, 1), "victim": whom, **phases})
        print(f"kill {number}: after {at:.1f} s, {whom}; " +
              ", ".join(f"{name} {phase}" for name, phase in phases.items()), flush=True)
    for _ in range(3):  # to the end: a worker kill leaves one failed cell for the next run
        if start(out, args).wait() == 0:
            break
    return kills


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("runs/faults"))
    parser.add_argument("--featnet", type=Path, default=REPO / "docs" / "results" / "featnet_fmnist.pt")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--max-steps", type=int, default=400)
    parser.add_argument("--ckpt-every", type=int, default=20)
    parser.add_argument("--num-samples", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0, help="of the kill times and victims")
    args = parser.parse_args()
    if not os.environ.get("DDGAN_DATA"):
        raise SystemExit("set DDGAN_DATA to the folder holding FashionMNIST/ (torchvision's layout)")
    args.out = args.out.resolve()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    reference, disturbed = args.out / "reference", args.out / "disturbed"

    began = time.perf_counter()
    if start(reference, args).wait() != 0:
        raise SystemExit(f"the undisturbed sweep failed: see {reference}.log")
    duration = time.perf_counter() - began
    print(f"undisturbed sweep: {duration:.0f} s", flush=True)
    kills = disturb(disturbed, args, duration, random.Random(args.seed))

    expected, got = reference / "results" / "sweep.csv", disturbed / "results" / "sweep.csv"
    equal = got.is_file() and comparable(got) == comparable(expected)
    landed = sum(1 for kill in kills if not kill["victim"].startswith("none"))
    report = {"kills_asked": args.kills, "kills_landed": landed, "undisturbed_s": round(duration, 1),
              "rows": len(comparable(expected)), "equal": equal, "kills": kills,
              "command": " ".join(sys.argv)}
    (args.out / "fault_injection.json").write_text(json.dumps(report, indent=2) + "\n")
    print("\n| kill | after (s) | killed | " + " | ".join(CELLS) + " |")
    print("|---|---|---|" + "---|" * len(CELLS))
    for kill in kills:
        print(f"| {kill['kill']} | {kill['at_s']} | {kill['victim']} | "
              + " | ".join(kill.get(name, "") for name in CELLS) + " |")
    verdict = "equal to" if equal else "DIFFERENT from"
    print(f"\n{landed} kills; the final sweep.csv ({report['rows']} rows) is {verdict} the "
          f"undisturbed sweep's (timings and run folders aside): {args.out / 'fault_injection.json'}")
    sys.exit(0 if equal else 1)


if __name__ == "__main__":
    main()
