"""The 2-D multimodality benchmark: its metrics, and DDGAN reaching its measured target."""
import json

import pytest
import torch

from ddgan.cli import main
from ddgan.toy import MODE_STD, mode_centres, mode_metrics, run_toy, sample_mixture

# Measured with the defaults on a 2-core CPU (docs/GUIDE.md, the 2-D benchmark): js at T = 4 covers 25, 24, 22 and 24 of
# the 25 modes with high-quality fractions 0.90, 0.90, 0.89 and 0.89 for seeds 0-3. GAN
# training is chaotic under rounding differences between machines, so the bound sits below
# the worst seed, at the target; a broken or untrained model scores 0-2 modes and
# about 0.06, the previous recipe (Adam at 5e-4 for 4,000 steps) 11-18 modes and 0.29-0.48.
JS_T4_MIN_MODES, JS_T4_MIN_HQ = 20, 0.8


def test_metrics_of_the_data_itself_and_of_failures():
    centres = mode_centres("25gaussians")
    exact = sample_mixture(centres, 10_000, torch.Generator().manual_seed(0))
    m = mode_metrics(exact, centres)
    assert m["num_modes"] == 25 and m["modes_covered"] == 25
    assert m["high_quality_fraction"] == pytest.approx(0.989, abs=0.005)  # 1 - exp(-9/2)

    collapsed = centres[7] + MODE_STD * torch.randn(10_000, 2)
    assert mode_metrics(collapsed, centres)["modes_covered"] == 1

    uniform = torch.rand(10_000, 2) * 5 - 2.5  # mass everywhere, sharp nowhere
    m = mode_metrics(uniform, centres)
    assert m["high_quality_fraction"] == pytest.approx(25 * 3.1416 * 0.15**2 / 25, abs=0.01)


def test_ring_of_8():
    centres = mode_centres("8gaussians")
    assert centres.shape == (8, 2)
    assert torch.allclose(centres.norm(dim=1), torch.full((8,), 2.0))
    with pytest.raises(ValueError, match="25gaussians, 8gaussians"):
        mode_centres("spiral")


@pytest.mark.slow
def test_js_at_T4_covers_the_modes_with_the_defaults(tmp_path):
    metrics = run_toy("25gaussians", "js", 4, out=tmp_path, seed=0)
    assert metrics["modes_covered"] >= JS_T4_MIN_MODES, metrics
    assert metrics["high_quality_fraction"] >= JS_T4_MIN_HQ, metrics
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["modes_covered"] == metrics["modes_covered"]
    assert (tmp_path / "samples.png").stat().st_size > 0


def test_toy_command_writes_metrics(tmp_path, capsys):
    main(["toy", "--divergence", "wgan-gp", "--steps", "2", "--iters", "20", "--out", str(tmp_path)])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(printed) >= {"num_modes", "modes_covered", "high_quality_fraction"}
    assert json.loads((tmp_path / "metrics.json").read_text())["divergence"] == "wgan-gp"
    with pytest.raises(ValueError, match="unknown toy option"):
        run_toy(widht=3)
    with pytest.raises(ValueError, match="r1_every must be an integer >= 1"):
        run_toy(r1_every=0, iters=1)


def test_ddpm_needs_many_gaussian_steps_where_edm_heun_needs_few():
    """The multimodality argument, measured: the same trained DDPM denoiser covers the 25 modes
    with 1000 Gaussian steps and blurs them with 4 (docs/GUIDE.md: 25/25 at HQ 0.89 against 4/25 at 0.11)."""
    many = run_toy("25gaussians", method="ddpm", steps=1000, seed=0)
    few = run_toy("25gaussians", method="ddpm", steps=4, seed=0)
    assert many["modes_covered"] >= 22 and many["high_quality_fraction"] >= 0.8, many
    assert few["high_quality_fraction"] <= 0.3, few
    assert (many["nfe"], few["nfe"]) == (1000, 4)
    edm = run_toy("25gaussians", method="edm", steps=18, seed=0)
    assert edm["nfe"] == 35 and edm["modes_covered"] >= 22, edm


def test_toy_baseline_commands_and_bad_input(tmp_path, capsys):
    main(["toy", "--method", "edm", "--steps", "3", "--sampler", "euler", "--iters", "20",
          "--out", str(tmp_path)])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (printed["method"], printed["sampler"], printed["nfe"]) == ("edm", "euler", 3)
    with pytest.raises(ValueError, match="ddpm samplers: ancestral, ddim"):
        run_toy(method="ddpm", sampler="heun", iters=1)
    with pytest.raises(ValueError, match=r"must lie in 1\.\.1000"):
        run_toy(method="ddpm", steps=2000, iters=1)
    with pytest.raises(ValueError, match="unknown toy method"):
        run_toy(method="gan")
