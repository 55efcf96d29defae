"""The README's quick start, pasted in order from a fresh clone: the same commands on the
stand-in data, shortened (fewer steps, samples and iterations) so they take seconds."""
import csv
import json
import re
import shlex

from ddgan.cli import main

from .conftest import REPO

# What each command gives up to run in seconds; everything else is as printed.
SHORTER = {
    "train": ["train.max_steps=6", "train.batch_size=8", "train.log_every=3",
              "train.sample_every=3", "train.ckpt_every=3"],
    "toy": ["--iters", "60"],
}
FEWER_SAMPLES = {"1000": "64"}


def quick_start():
    """The command lines of the README's quick-start block, comments stripped."""
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- quick-start -->\n```bash\n(.*?)```", readme, re.S).group(1)
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


def shortened(argv):
    assert argv[0] == "ddgan", f"the quick start runs ddgan commands only, not {argv[0]}"
    argv = [FEWER_SAMPLES.get(a, a) if i and argv[i - 1] == "--num-samples" else a
            for i, a in enumerate(argv)]
    return argv[1:] + SHORTER.get(argv[1], [])


def test_quick_start_runs_in_order(fake_fmnist, tmp_path, monkeypatch):
    commands = quick_start()
    assert [argv[1] for argv in commands] == ["train", "sample", "eval", "plot", "toy"]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DDGAN_DATA", str(fake_fmnist))
    for name in ("configs", "docs"):  # what the commands read from the clone
        (tmp_path / name).symlink_to(REPO / name)
    for argv in commands:
        main(shortened(argv))

    assert (tmp_path / "runs/tiny/checkpoints/last.pt").is_file()
    assert (tmp_path / "grid.png").is_file()
    rows = list(csv.DictReader(open(tmp_path / "results/tiny.csv")))
    assert len(rows) == 1 and rows[0]["steps"] == "2" and float(rows[0]["fd"]) > 0
    assert "ddgan" in (tmp_path / "figures/results.md").read_text()
    assert list((tmp_path / "figures").glob("*.png"))
    toy = json.loads(next((tmp_path / "runs/toy").rglob("metrics.json")).read_text())
    assert 0 <= toy["modes_covered"] <= 25
