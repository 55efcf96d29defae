"""`ddgan eval` and `ddgan plot` end to end: a tiny sweep, periodic evaluation, bad input."""
import csv
import json

import pytest

from ddgan.cli import main
from ddgan.csvfiles import append_csv
from ddgan.evaluate import evaluate_real_data
from ddgan.featnet import train_featnet
from ddgan.config import load_config, load_shared_config
from ddgan.train import train

from .conftest import REPO

TINY = ["backbone.base_channels=8", "backbone.channel_mult=[1, 2]", "backbone.num_res_blocks=1",
        "backbone.attn_resolutions=[]", "discriminator.base_channels=8",
        "discriminator.channel_mult=[1, 2]", "train.batch_size=8", "train.log_every=1",
        "train.sample_every=1000", "train.ckpt_every=1000", "train.num_grid=4", "ddpm.train_timesteps=50"]
FIGURES = ("fd_vs_nfe", "divergence_comparison", "training_curves", "sample_grids")


@pytest.fixture(scope="module")
def fake_data(tmp_path_factory):
    from .conftest import write_fake_fmnist

    root = write_fake_fmnist(tmp_path_factory.mktemp("data"))
    featnet = root.parent / "featnet.pt"
    train_featnet(featnet, "fmnist", str(root), epochs=1,
                  batch_size=32, device="cpu")
    return root, featnet


@pytest.fixture(scope="module")
def tiny_run(fake_data, tmp_path_factory):
    root, _ = fake_data
    out = tmp_path_factory.mktemp("runs") / "js_T2"
    cfg = load_shared_config(REPO / "configs/fmnist/ddgan.yaml",
                             TINY + ["train.max_steps=2", "ddgan.denoising_steps=2", f"data.root={root}",
                                     f"train.out_dir={out}"])
    return train(cfg)


def run_cli(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 1
    return capsys.readouterr().err


def test_eval_command_and_its_errors(fake_data, tiny_run, tmp_path, capsys):
    _, featnet = fake_data
    out = tmp_path / "results" / "one.json"
    main(["eval", str(tiny_run), "--extractor", f"featnet:{featnet}", "--num-samples", "20",
          "--metrics", "fid", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert len(saved) == 1 and saved[0]["steps"] == 2 and saved[0]["kid"] is None
    assert "appended 1 row" in capsys.readouterr().out

    base = ["--extractor", f"featnet:{featnet}", "--num-samples", "8", "--out", str(out)]
    err = run_cli(["eval", str(tmp_path / "nowhere"), *base], capsys)
    assert "no checkpoint at" in err
    err = run_cli(["eval", str(tiny_run), "--steps", "4", *base], capsys)
    assert "trained with T = 2" in err and "a sweep over T is a set of runs" in err
    err = run_cli(["eval", str(tiny_run), "--extractor", f"featnet:{tmp_path / 'x.pt'}",
                   "--num-samples", "8", "--out", str(out)], capsys)
    assert "do not exist" in err and "ddgan featnet" in err
    err = run_cli(["eval", str(tiny_run), *base, "--metrics", "fid,is"], capsys)
    assert "unknown metric" in err
    assert len(list(csv.DictReader(open(out.with_suffix(".csv"))))) == 1  # failures append nothing


def test_the_real_data_floor_is_the_held_out_split_scored_as_samples_are(fake_data, tmp_path, capsys):
    """`ddgan eval --real-data`: the test split against the training set, a row per count; a
    subset is a subset of the larger one, and the training set itself would score 0."""
    root, featnet = fake_data
    out = tmp_path / "floor.json"
    main(["eval", "--real-data", "fmnist", "--data-root", str(root), "--extractor", f"featnet:{featnet}",
          "--num-samples", "64", "32", "--metrics", "fid,kid", "--out", str(out)])
    rows = json.loads(out.read_text())
    assert [(r["method"], r["n_samples"], r["nfe"]) for r in rows] == [("real data", 64, 0), ("real data", 32, 0)]
    assert all(r["fd"] > 0 and r["data"] == "Fashion-MNIST" and (tmp_path / r["grid"]).is_file() for r in rows)
    assert "real_data_n64 test split" in capsys.readouterr().out
    from types import SimpleNamespace

    from ddgan.data import load_images
    from ddgan.metrics import compute_metrics, resolve_extractor
    train_images = load_images("fmnist", str(root))
    assert compute_metrics(train_images, train_images, resolve_extractor(f"featnet:{featnet}"))["fd"] == \
        pytest.approx(0, abs=1e-3)
    assert rows[0]["fd"] == pytest.approx(evaluate_real_data(
        SimpleNamespace(name="fmnist", root=str(root), image_size=None), f"featnet:{featnet}", (64,))[0]["fd"])
    err = run_cli(["eval", "--extractor", f"featnet:{featnet}", "--out", str(out)], capsys)
    assert "either run folders or --real-data" in err


def test_periodic_evaluation_needs_an_extractor(fake_data, tmp_path):
    root, featnet = fake_data
    cfg = load_config(REPO / "configs/tiny.yaml", [f"data.root={root}", "eval.every_images=100",
                                                   f"train.out_dir={tmp_path / 'run'}"])
    with pytest.raises(ValueError, match="eval.every_images needs eval.extractor"):
        train(cfg)
    ddpm = [f"data.root={root}", "ddpm.train_timesteps=100", "eval.every_images=100",
            f"eval.extractor=featnet:{featnet}", f"train.out_dir={tmp_path / 'run'}"]
    for steps, error in [(0, "must be a positive integer"), ("true", "must be a positive integer"),
                         (101, "must lie in 1..100")]:
        cfg = load_config(REPO / "configs/fmnist/ddpm.yaml", ddpm + [f"eval.steps={steps}", "ddpm.spacing=quadratic"])
        with pytest.raises(ValueError, match=error):
            train(cfg)
    with pytest.raises(ValueError, match="spacing must be one of"):
        train(load_config(REPO / "configs/fmnist/ddpm.yaml", ddpm + ["ddpm.spacing=linear"]))
    assert not (tmp_path / "run").exists()


def test_periodic_evaluation_leaves_the_training_unchanged(fake_data, tmp_path):
    import torch

    root, featnet = fake_data
    weights = {}
    for every in (0, 8):
        cfg = load_shared_config(REPO / "configs/fmnist/ddgan.yaml", TINY + [
            "train.max_steps=3", "ddgan.denoising_steps=2", f"data.root={root}",
            f"train.out_dir={tmp_path / str(every)}", "data.on_device=false",
            f"eval.every_images={every}", f"eval.extractor=featnet:{featnet}", "eval.num_samples=8"])
        state = torch.load(train(cfg) / "checkpoints" / "last.pt", weights_only=False)
        weights[every] = state["method"]["generator"]
    assert (tmp_path / "8" / "eval.csv").is_file() and not (tmp_path / "0" / "eval.csv").exists()
    for name, value in weights[0].items():
        assert torch.equal(value, weights[8][name]), name


def test_eval_without_fid_and_bad_extractor_files(fake_data, tiny_run, tmp_path, capsys):
    _, featnet = fake_data
    out = tmp_path / "kid.json"
    main(["eval", str(tiny_run), "--extractor", f"featnet:{featnet}", "--num-samples", "20",
          "--metrics", "kid,pr", "--out", str(out)])
    row = json.loads(out.read_text())[0]
    assert row["fd"] is None and row["kid"] is not None and row["precision"] is not None
    main(["plot", str(out.with_suffix(".csv")), "--out", str(tmp_path / "figures")])
    assert (tmp_path / "figures" / "fd_vs_nfe.png").is_file()

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    err = run_cli(["eval", str(tiny_run), "--extractor", f"featnet:{junk}", "--out", str(out)], capsys)
    assert "is not a ddgan featnet file" in err
    err = run_cli(["eval", str(tiny_run), "--extractor", f"featnet:{featnet}", "--samplers", "dddim",
                   "--out", str(out)], capsys)
    assert "unknown sampler" in err


def test_append_csv_rewrites_an_older_header(tmp_path):
    path = tmp_path / "eval.csv"
    append_csv(path, ["step", "fd"], [{"step": 1, "fd": 2.5}])
    append_csv(path, ["step", "fd", "nfe"], [{"step": 2, "fd": 1.5, "nfe": 4}])
    rows = list(csv.DictReader(open(path)))
    assert rows == [{"step": "1", "fd": "2.5", "nfe": ""}, {"step": "2", "fd": "1.5", "nfe": "4"}]
