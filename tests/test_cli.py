"""The `ddgan` command line: help, errors without tracebacks, train -> sample."""
import subprocess
import sys

import pytest

from ddgan.cli import main

from .conftest import REPO


@pytest.mark.parametrize("command", [[], ["train"], ["sample"], ["toy"]])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(command + ["--help"])
    assert exit_.value.code == 0
    assert "usage: ddgan" in capsys.readouterr().out


def test_console_script_and_module_entry_points():
    out = subprocess.run([sys.executable, "-m", "ddgan", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "train" in out.stdout and "toy" in out.stdout


def test_bad_input_is_a_clear_error_not_a_traceback(capsys, tmp_path):
    cases = [
        (["train", "--config", str(REPO / "configs/tiny.yaml"), "train.batchsize=3"], "train.batchsize"),
        (["train", "--config", str(REPO / "configs/tiny.yaml"), "divergence.name=kl"], "valid names: js"),
        (["train", "--config", str(REPO / "configs/tiny.yaml"), "ddgan.denoising_steps=0"], "denoising_steps"),
        (["sample", "--ckpt", str(tmp_path / "none.pt"), "--out", str(tmp_path / "x.png")], "no checkpoint"),
    ]
    for argv, expected in cases:
        with pytest.raises(SystemExit) as exit_:
            main(argv + [f"train.out_dir={tmp_path / 'run'}"] if argv[0] == "train" else argv)
        assert exit_.value.code == 1
        assert expected in capsys.readouterr().err


def test_train_then_sample(fake_fmnist, tmp_path, capsys):
    run = tmp_path / "run"
    main(["train", "--config", str(REPO / "configs/tiny.yaml"), f"data.root={fake_fmnist}",
          f"train.out_dir={run}", "train.max_steps=4", "train.batch_size=8",
          "backbone.base_channels=8", "discriminator.base_channels=8"])
    grid = tmp_path / "grid.png"
    main(["sample", "--ckpt", str(run / "checkpoints/last.pt"), "--num", "9", "--out", str(grid),
          "--seed", "3"])
    from PIL import Image
    assert Image.open(grid).size == (3 * 28 + 4 * 2, 3 * 28 + 4 * 2)  # 3x3 grid, 2-pixel padding
