"""scripts/step_quality.py: the chains from real x_s, and the script on a tiny run."""
import json
import subprocess
import sys

import torch

from ddgan.diffusion import ForwardProcess
from ddgan.config import load_shared_config
from ddgan.train import train

from .conftest import REPO, load_script
from .test_evaluate import TINY, fake_data  # noqa: F401 (fake_data is a fixture)

SCRIPT = REPO / "scripts" / "step_quality.py"
step_quality = load_script("step_quality")


def test_an_oracle_generator_brings_every_chain_back_to_its_image():
    """G = the true x_0: each posterior step is exact and the last one is the point x_0."""
    process = ForwardProcess(4)
    x0 = torch.rand(6, 1, 8, 8) * 2 - 1
    oracle = lambda x, z, t: x0  # noqa: E731
    for start in range(1, 5):
        out = step_quality.chain_from(oracle, process, x0, start, nz=2, rng=torch.Generator().manual_seed(0))
        torch.testing.assert_close(out, x0)


def test_a_generator_that_ignores_its_input_loses_from_the_first_step():
    """G = 0 everywhere: the chain from x_1 returns zeros, not the image."""
    process = ForwardProcess(2)
    x0 = torch.ones(3, 1, 8, 8)
    zeros = lambda x, z, t: torch.zeros_like(x)  # noqa: E731
    out = step_quality.chain_from(zeros, process, x0, 1, nz=2, rng=torch.Generator().manual_seed(0))
    assert out.abs().max() == 0


def test_script_scores_each_start_of_a_tiny_run(fake_data, tmp_path):
    root, featnet = fake_data
    run = train(load_shared_config(REPO / "configs/fmnist/ddgan.yaml", TINY + [
        "train.max_steps=2", "ddgan.denoising_steps=3", f"data.root={root}", f"train.out_dir={tmp_path / 'run'}"]))
    out = tmp_path / "sq.json"
    result = subprocess.run([sys.executable, str(SCRIPT), str(run), "--extractor", f"featnet:{featnet}",
                             "--num-samples", "40", "--out", str(out)],
                            check=True, capture_output=True, text=True)
    rows = json.loads(out.read_text())
    assert [r["start"] for r in rows] == [1, 2, 3] and all(r["fd"] >= 0 for r in rows)
    assert {r["n_samples"] for r in rows} == {40} and rows[0]["network"] == "ema"
    assert "| s = 3 |" in result.stdout and out.with_suffix(".png").stat().st_size > 1000
