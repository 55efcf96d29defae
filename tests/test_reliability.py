"""Runs that survive their users (docs/GUIDE.md, "Reliability"): one training per folder, a save on
SIGINT and SIGTERM that resumes exactly, checks before the first step, resume by any path,
kept checkpoints that cannot go missing, and one clear line for each bad input."""
import gzip
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from ddgan import checkpoint
from ddgan.checkpoint import CheckpointError
from ddgan.cli import main
from ddgan.data import DataError, DataNotFoundError, load_images
from ddgan.diffusion import ForwardProcess
from ddgan.csvfiles import append_csv, read_csv_rows
from ddgan.files import OutputError, partial_name
from ddgan.interrupt import StopRequests, TrainingInterrupted
from ddgan.methods.ddgan import DDGAN
from ddgan.runlock import RunLockedError
from ddgan.toy import run_toy
from ddgan.train import NonFiniteLossError, train
from divergences.js import JensenShannon

from .conftest import write_fake_fmnist
from .test_train import FAST, TINY, assert_same_state, fast_config


def assert_same_run(a, b):
    a, b = checkpoint.load(a / "checkpoints/last.pt"), checkpoint.load(b / "checkpoints/last.pt")
    assert a["step"] == b["step"]
    assert_same_state(a["method"], b["method"])
    assert_same_state(a["data"], b["data"])


def dead_pid():
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True).stdout)


# --- one training per folder; SIGTERM saves --------------------------------------------------

def test_a_second_training_is_refused_and_sigterm_leaves_a_checkpoint_that_resumes_exactly(
        fake_fmnist, tmp_path):
    run = tmp_path / "run"
    args = [sys.executable, "-m", "ddgan", "train", "--config", str(TINY), *FAST,
            f"data.root={fake_fmnist}", f"train.out_dir={run}", "train.max_steps=100000"]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}  # same float rounding
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        # printed at start, not at exit (after auto's note where it times the precisions)
        assert any("training ddgan in" in first.stdout.readline() for _ in range(2))
        assert (run / ".lock").read_text().split()[0] == str(first.pid)
        for again in (fast_config(fake_fmnist, run), fast_config(fake_fmnist, run, "divergence.name=tv")):
            with pytest.raises(RunLockedError, match=f"in use by another training \\(process {first.pid} on host "):
                train(again)
        with pytest.raises(FileNotFoundError, match="no checkpoint at .* yet: if its training still runs"):
            train(fast_config(fake_fmnist, run), resume=True)
        time.sleep(1)  # a few steps
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=120)
    finally:
        first.kill()
    assert first.returncode == 143, err
    assert "Traceback" not in err
    [line] = [line for line in err.splitlines() if line.startswith("ddgan train:")]
    assert "interrupted by SIGTERM at step" in line and f"saved to {run / 'checkpoints/last.pt'}" in line
    assert line.endswith(f"train.out_dir={run} train.max_steps=100000 --resume")
    assert not (run / ".lock").exists() and not list((run / "checkpoints").glob(".*"))

    stopped_at = checkpoint.load(run / "checkpoints/last.pt")["step"]
    assert stopped_at >= 1
    end = f"train.max_steps={stopped_at + 3}"
    train(fast_config(fake_fmnist, run, end), resume=True)
    straight = train(fast_config(fake_fmnist, tmp_path / "straight", end))
    assert_same_run(run, straight)


def test_a_stale_lock_is_taken_over_and_others_are_refused(fake_fmnist, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    pid = dead_pid()
    (run / ".lock").write_text(f"{pid} {socket.gethostname()}\n")
    train(fast_config(fake_fmnist, run, "train.max_steps=2"))
    assert f"took over the stale lock {run / '.lock'} of process {pid}" in capsys.readouterr().err
    assert not (run / ".lock").exists()  # released

    (run / ".lock").write_text("4242 another-host\n")
    with pytest.raises(RunLockedError, match=r"process 4242 on host another-host.*delete .*\.lock"):
        train(fast_config(fake_fmnist, run, "train.max_steps=4"), resume=True)
    (run / ".lock").write_text("not a lock")
    with pytest.raises(RunLockedError, match="not a lock this program wrote"):
        train(fast_config(fake_fmnist, run, "train.max_steps=4"), resume=True)
    (run / ".lock").unlink()
    with pytest.raises(ValueError, match="optim.lr"):  # a refusal under the lock releases it
        train(fast_config(fake_fmnist, run, "train.max_steps=4", "optim.lr=1e-3"), resume=True)
    assert not (run / ".lock").exists()


def test_temporary_files_are_unique_to_the_process_and_swept_at_start(fake_fmnist, tmp_path, capsys):
    assert str(os.getpid()) in partial_name(tmp_path / "last.pt").name
    run = tmp_path / "run"
    train(fast_config(fake_fmnist, run, "train.max_steps=2"))
    left = [run / "checkpoints" / f".last.pt.{dead_pid()}.tmp", run / ".config.yaml.1.tmp"]
    for path in left:
        path.write_bytes(b"half a checkpoint")
    train(fast_config(fake_fmnist, run, "train.max_steps=3"), resume=True)
    assert "removed 2 partial file(s)" in capsys.readouterr().out
    assert not any(path.exists() for path in left)


# --- signals -----------------------------------------------------------------------------------

def test_stop_requests_set_a_flag_and_a_second_ctrl_c_leaves_at_once():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with StopRequests() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)  # the save it waits for is under way: ignored
        assert stop.signum == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_ctrl_c_saves_at_the_end_of_the_step_and_the_run_resumes_exactly(fake_fmnist, tmp_path,
                                                                         monkeypatch):
    step = DDGAN.train_step

    def interrupted_at_4(self, batches, index, **kwargs):
        if index == 3:  # during the 4th step
            os.kill(os.getpid(), signal.SIGINT)
        return step(self, batches, index, **kwargs)

    extra = ["train.max_steps=7", "train.ckpt_every=5", "optim.cosine_decay=true"]
    monkeypatch.setattr(DDGAN, "train_step", interrupted_at_4)
    run = tmp_path / "run"
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(TrainingInterrupted) as stopped:
        train(fast_config(fake_fmnist, run, *extra))
    assert (stopped.value.signum, stopped.value.step) == (signal.SIGINT, 4)
    assert checkpoint.load(run / "checkpoints/last.pt")["step"] == 4
    assert signal.getsignal(signal.SIGINT) is handler  # given back
    assert not (run / ".lock").exists()
    monkeypatch.setattr(DDGAN, "train_step", step)
    train(fast_config(fake_fmnist, run, *extra), resume=True)
    assert_same_run(run, train(fast_config(fake_fmnist, tmp_path / "straight", *extra)))


# --- checkpoints ---------------------------------------------------------------------------------

def test_a_kept_snapshot_is_written_before_last_pt(tmp_path, monkeypatch):
    last, keep = tmp_path / "last.pt", tmp_path / "step_0000010.pt"
    checkpoint.save_run_checkpoint({"step": 5}, last)

    def killed(*args):
        raise KeyboardInterrupt  # as if the process died between the two files

    monkeypatch.setattr(checkpoint, "atomic_copy", killed)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_run_checkpoint({"step": 10}, last, keep)
    assert torch.load(keep)["step"] == 10 and torch.load(last)["step"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "step_0000010.pt"]  # no .tmp


def test_a_damaged_last_pt_names_the_newest_intact_snapshot(fake_fmnist, tmp_path):
    run = tmp_path / "run"
    extra = ["train.max_steps=4", "train.ckpt_every=2", "train.keep_every=2"]
    train(fast_config(fake_fmnist, run, *extra))
    last, step_2, step_4 = (run / "checkpoints" / name for name in
                            ("last.pt", "step_0000002.pt", "step_0000004.pt"))
    longer = fast_config(fake_fmnist, run, "train.max_steps=6", "train.ckpt_every=2", "train.keep_every=2")
    last.write_bytes(last.read_bytes()[:1000])  # cut short
    with pytest.raises(CheckpointError, match=f"{last} is not an intact checkpoint.*"
                                              f"newest intact checkpoint is {step_4} \\(step 4\\)"):
        train(longer, resume=True)
    step_4.write_bytes(b"")
    with pytest.raises(CheckpointError, match=f"--resume-from {step_2}"):
        train(longer, resume=True)
    train(longer, resume_from=step_2)  # steps 3..6 again, from the kept snapshot
    assert_same_run(run, train(fast_config(fake_fmnist, tmp_path / "straight", "train.max_steps=6")))

    other = tmp_path / "other"
    train(fast_config(fake_fmnist, other, "train.max_steps=2", "divergence.name=tv"))
    with pytest.raises(ValueError, match=f"differs from {other / 'checkpoints/last.pt'} at "
                                         f"divergence.name \\('tv' there, 'js' here\\)"):
        train(longer, resume_from=other / "checkpoints/last.pt")


# --- resume by any path ----------------------------------------------------------------------------

def test_resume_finds_the_same_folder_however_written_and_a_moved_run(fake_fmnist, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train(fast_config(fake_fmnist, "runs/a", "train.max_steps=2"))
    train(fast_config(fake_fmnist, f"{tmp_path}/runs/a/", "train.max_steps=3"), resume=True)
    train(fast_config(fake_fmnist, "runs/./a", "train.max_steps=4"), resume=True)
    assert checkpoint.load("runs/a/checkpoints/last.pt")["step"] == 4

    shutil.move("runs/a", "moved")
    train(fast_config(fake_fmnist, "moved", "train.max_steps=5"), resume=True)
    shutil.copytree("moved", "copy")
    train(fast_config(fake_fmnist, "copy", "train.max_steps=6"), resume=True)
    assert checkpoint.load("copy/checkpoints/last.pt")["step"] == 6
    assert checkpoint.load("moved/checkpoints/last.pt")["step"] == 5
    from ddgan.config import load_saved_config
    assert load_saved_config("copy/config.yaml").train.out_dir == "copy"  # where it is now


# --- checks before the first step -------------------------------------------------------------------

def test_what_can_be_checked_is_checked_before_the_first_step(fake_fmnist, tmp_path, monkeypatch):
    steps = []
    step = DDGAN.train_step
    monkeypatch.setattr(DDGAN, "train_step", lambda self, *a, **k: steps.append(1) or step(self, *a, **k))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(OutputError, match=f"cannot write to {blocker / 'run'} \\(train.out_dir\\)"):
        train(fast_config(fake_fmnist, blocker / "run"))

    import ddgan.files
    monkeypatch.setattr(ddgan.files.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1, 1, 1000))
    with pytest.raises(OutputError, match=r"full has 1.0 kB free, but a save of this run \(last.pt, written beside the "
                                              r"previous one\) needs 1\.\d MB"):
        train(fast_config(fake_fmnist, tmp_path / "full"))
    assert not (tmp_path / "full").exists()  # a refused start leaves nothing behind
    monkeypatch.undo()
    monkeypatch.setattr(DDGAN, "train_step", lambda self, *a, **k: steps.append(1) or step(self, *a, **k))

    for override, message in [("divergence.r1_gamma=-0.1", "divergence.r1_gamma must be >= 0"),
                              ("ddgan.denoising_steps=0", r"ddgan.denoising_steps \(T\) must be an integer >= 1, got 0")]:
        with pytest.raises(ValueError, match=message):
            train(fast_config(fake_fmnist, tmp_path / "bad", override))
    assert not (tmp_path / "bad").exists()
    with pytest.raises(ValueError, match="--stop-at must be a step >= 1"):
        train(fast_config(fake_fmnist, tmp_path / "bad"), stop_at=0)

    run = tmp_path / "run"
    train(fast_config(fake_fmnist, run, "train.max_steps=2"))
    steps.clear()
    with pytest.raises(ValueError, match="already at step 2"):
        train(fast_config(fake_fmnist, run, "train.max_steps=4"), resume=True, stop_at=2)
    other_data = write_fake_fmnist(tmp_path / "other_data", count=100)
    with pytest.raises(DataError, match="trained on 256 images .* has 100"):
        train(fast_config(other_data, run, "train.max_steps=4"), resume=True)
    with pytest.raises(FileNotFoundError, match="--resume-from .*: no such checkpoint file"):
        train(fast_config(fake_fmnist, run), resume_from=tmp_path / "none.pt")
    assert not steps  # none of these spent a step
    assert ForwardProcess(11).num_steps == 11  # any T >= 1 is accepted, as the message says


def test_a_non_finite_loss_before_any_checkpoint_says_so(fake_fmnist, tmp_path, monkeypatch):
    d_loss = JensenShannon.d_loss
    monkeypatch.setattr(JensenShannon, "d_loss", lambda self, r, f: d_loss(self, r, f) * float("nan"))
    with pytest.raises(NonFiniteLossError, match="No checkpoint was written before it. Try"):
        train(fast_config(fake_fmnist, tmp_path / "run", "train.max_steps=10"))


# --- one clear line for each bad input ---------------------------------------------------------------

@pytest.fixture
def tiny_checkpoint(fake_fmnist, tmp_path):
    return train(fast_config(fake_fmnist, tmp_path / "good", "train.max_steps=1")) / "checkpoints/last.pt"


def untrained_featnet(path):
    from ddgan.featnet import FeatNet, weights_hash
    network = FeatNet(1)
    info = {"hash": weights_hash(network.state_dict()), "data": "Fashion-MNIST"}
    torch.save({"arch": network.arch, "state_dict": network.state_dict(), "info": info}, path)
    return path


def error_line(argv, capsys, code=1):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == code, err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1]


def test_damaged_checkpoints_and_configs_are_named(tiny_checkpoint, tmp_path, capsys):
    good = tiny_checkpoint.read_bytes()
    out = ["--out", str(tmp_path / "grid.png")]
    for name, data in [("cut.pt", good[:len(good) // 2]), ("junk.pt", b"junk"), ("empty.pt", b""),
                       ("end.pt", good[:-20])]:
        (tmp_path / name).write_bytes(data)
        line = error_line(["sample", "--ckpt", str(tmp_path / name), *out], capsys)
        assert f"{tmp_path / name} is not an intact checkpoint" in line, line
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    assert "not a ddgan training checkpoint" in error_line(
        ["sample", "--ckpt", str(tmp_path / "other.pt"), *out], capsys)

    run = tmp_path / "evalrun"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints/last.pt").write_bytes(b"junk")
    featnet = untrained_featnet(tmp_path / "featnet.pt")
    line = error_line(["eval", str(run), "--extractor", f"featnet:{featnet}", "--out",
                       str(tmp_path / "r.json")], capsys)
    assert f"{run / 'checkpoints/last.pt'} is not an intact checkpoint" in line
    line = error_line(["eval", str(tiny_checkpoint.parents[1]), "--extractor", f"featnet:{featnet}",
                       "--num-samples", "3", "--out", str(tmp_path / "r.json")], capsys)
    assert "--num-samples must be >= 4 for --metrics fid,kid,pr, got 3" in line

    (tmp_path / "bad.yaml").write_text("train:\n  batch_size: [1,\n")
    (tmp_path / "list.yaml").write_text("- train\n")
    for config, message in [("bad.yaml", "is not valid YAML (line 3"), ("list.yaml", "not a list"),
                            ("none.yaml", "does not exist")]:
        assert message in error_line(["train", "--config", str(tmp_path / config)], capsys)


def test_bad_options_and_unwritable_outputs_fail_before_any_work(tiny_checkpoint, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    ckpt = ["--ckpt", str(tiny_checkpoint)]
    cases = [
        (["sample", *ckpt, "--out", str(blocker / "grid.png")], f"cannot write to {blocker}"),
        (["sample", *ckpt, "--out", str(tmp_path / "grid")], "give an image file name"),
        (["eval", str(tiny_checkpoint.parents[1]), "--extractor", "inception", "--out",
          str(blocker / "r.json")], f"cannot write to {blocker}"),
        (["eval", str(tiny_checkpoint.parents[1]), "--extractor", "inception", "--out",
          str(tmp_path / "r.csv")], "give a .json file"),
        (["featnet", "--data-root", "/nonexistent", "--out", str(blocker / "f.pt")], f"cannot write to {blocker}"),
        (["toy", "--out", str(blocker / "toy"), "--iters", "1"], f"cannot write to {blocker}"),
        (["toy", "--method", "edm", "--steps", "0", "--out", str(tmp_path / "t")], "must be >= 1, got 0"),
        (["sample", *ckpt, "--out", str(tmp_path / "g.png"), "--num", "0"], "--num: must be >= 1, got 0"),
        (["sample", *ckpt, "--out", str(tmp_path / "g.png"), "--batch-size", "0"], "must be >= 1"),
        (["train", "--config", str(TINY), "--stop-at", "0"], "--stop-at: must be >= 1, got 0"),
    ]
    for argv, message in cases:
        code = 2 if "must be >= 1" in message else 1  # argparse's own errors exit with 2
        assert message in error_line(argv, capsys, code), argv
    if not torch.cuda.is_available():
        assert "--device cuda: no CUDA GPU is visible here" in error_line(
            ["sample", *ckpt, "--out", str(tmp_path / "g.png"), "--device", "cuda"], capsys)
        assert "--device cuda" in error_line(["featnet", "--device", "cuda", "--out", str(tmp_path / "f.pt")],
                                             capsys)
    from ddgan.metrics import check_sample_count
    with pytest.raises(ValueError, match="--num-samples must be >= 2"):
        check_sample_count(["fid"], 1)
    with pytest.raises(ValueError, match="--num-samples must be >= 4 for --metrics fid,pr"):
        check_sample_count(["fid", "pr"], 3)
    assert not (tmp_path / "t").exists() and not (tmp_path / "g.png").exists()


def test_plot_refuses_an_unwritable_folder(tmp_path, capsys):
    from .test_plot import result, write_csv
    csv_path = write_csv(tmp_path / "r.csv", [result("runs/x", "edm", "", "heun", 2, 3, 70.0)])
    (tmp_path / "a-file").write_text("")
    assert f"cannot write to {tmp_path / 'a-file' / 'figs'} (--out)" in error_line(
        ["plot", str(csv_path), "--out", str(tmp_path / "a-file" / "figs")], capsys)


def test_toy_refuses_nonsense_and_keeps_an_existing_result(tmp_path):
    first = run_toy(steps=1, iters=2, out=tmp_path)
    with pytest.raises(FileExistsError, match="already holds a result.*--overwrite"):
        run_toy(steps=1, iters=2, out=tmp_path)
    assert json.loads((tmp_path / "metrics.json").read_text()) == first
    run_toy(steps=2, iters=2, out=tmp_path, overwrite=True)
    assert json.loads((tmp_path / "metrics.json").read_text())["steps"] == 2
    for kwargs, message in [({"iters": 0}, "iters must be an integer >= 1"),
                            ({"method": "edm", "steps": 0}, "noise levels N must be an integer >= 1"),
                            ({"divergence": "wgan-gp", "iters": 3}, "iters must be >= 5"),
                            ({"r1_gamma": -1.0, "iters": 1}, "r1_gamma must be >= 0"),
                            ({"steps": 0, "iters": 1}, r"num_steps \(T\) must be an integer >= 1")]:
        with pytest.raises(ValueError, match=message):
            run_toy(**kwargs)


# --- results files ---------------------------------------------------------------------------------

def test_csv_rows_are_appended_whole_and_a_damaged_row_is_named(tmp_path):
    path = tmp_path / "eval.csv"
    append_csv(path, ["step", "fd"], [{"step": 1, "fd": 2.5}])
    with open(path, "a") as f:
        f.write("2,1.7")  # a row cut by a kill, without its newline
    append_csv(path, ["step", "fd"], [{"step": 3, "fd": 0.5}])
    assert path.read_text().splitlines() == ["step,fd", "1,2.5", "2,1.7", "3,0.5"]  # cut row kept apart
    path.write_text("step,fd\n1,2.5\n2\n3,0.5\n")
    append_csv(path, ["step", "fd"], [{"step": 4, "fd": 0.1}])  # a damaged row loses no new one
    with pytest.raises(ValueError, match=r"eval.csv line 3: 1 cells where the header has 2"):
        read_csv_rows(path)
    assert path.read_text().endswith("3,0.5\n4,0.1\n")


# --- data ---------------------------------------------------------------------------------------------

def test_damaged_or_inconsistent_data_is_named(tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.delenv("DDGAN_DATA", raising=False)
    root = write_fake_fmnist(tmp_path / "fmnist", count=10)
    images = root / "FashionMNIST/raw/train-images-idx3-ubyte.gz"
    cfg = {"name": "fmnist", "root": str(root), "image_size": None}
    whole = images.read_bytes()
    for damaged, message in [(whole[:len(whole) // 2], "cannot be read"), (b"junk", "cannot be read"),
                             (gzip.compress(gzip.decompress(whole)[:-100]), "holds 7,740 values where "
                                                                            "its header announces 10 x 28 x 28")]:
        images.write_bytes(damaged)
        with pytest.raises(DataError, match=f"{images} {message}"):
            load_images(**cfg)
    with pytest.raises(DataNotFoundError) as missing:
        load_images(**{**cfg, "root": str(tmp_path / "nowhere")})
    assert f"Expected {tmp_path / 'nowhere'}/FashionMNIST/raw/" in str(missing.value)
    assert "{root}" not in str(missing.value)

    folder = tmp_path / "images"
    for label in ("a", "b"):
        (folder / label).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / label / f"{i}.png")
    Image.fromarray(np.zeros((30, 32, 3), np.uint8)).save(folder / "b" / "odd.png")
    cfg = {"name": "imagefolder", "root": str(folder), "image_size": None}
    with pytest.raises(DataError, match="odd.png is 32x30 but .* set data.image_size=N"):
        load_images(**cfg)
    assert load_images(**{**cfg, "image_size": 16}).shape == (5, 3, 16, 16)
    (folder / "b" / "odd.png").write_bytes(b"not an image")
    with pytest.raises(DataError, match="odd.png is not a readable image"):
        load_images(**{**cfg, "image_size": 16})
