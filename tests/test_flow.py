"""Rectified flow: its samplers on Gaussian data, whose exact velocity field is known in closed
form, its loss, and the method end to end (2-D benchmark, training, sampling, evaluation)."""
import pytest
import torch

from ddgan.config import load_config
from ddgan.methods.flow import (Flow, euler_sampler, flow_loss, heun_sampler, sample_times,
                                sampling_times)

from .conftest import REPO

MEAN, STD = torch.tensor([1.5, -0.5]), 0.3


def exact_velocity(mean, std):
    """E[eps - x_0 | x_t = x] for x_0 ~ N(mean, std^2 I), x_t = (1 - t) x_0 + t eps: x_t is
    Gaussian with mean (1 - t) mean and variance (1 - t)^2 std^2 + t^2, and its covariance with
    eps - x_0 is t - (1 - t) std^2, so the regression is linear in x."""
    def velocity(x, t):
        t = t[:, None]
        gain = (t - (1 - t) * std**2) / ((1 - t) ** 2 * std**2 + t**2)
        return -mean + gain * (x - (1 - t) * mean)
    return velocity


def draw(sampler, steps, num=20_000, mean=MEAN, std=STD):
    noise = torch.randn(num, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    times = sampling_times(steps).double()
    return sampler(exact_velocity(mean.double(), std), noise, times)


def test_one_euler_step_from_noise_lands_on_the_mean():
    """At t = 1 the velocity is x - E[x_0]: one step of length 1 gives E[x_0] for every noise."""
    samples = draw(euler_sampler, 1, num=100)
    assert torch.allclose(samples, MEAN.double().expand_as(samples), atol=1e-12)


@pytest.mark.parametrize("sampler", [euler_sampler, heun_sampler])
def test_the_exact_field_transports_noise_to_the_data(sampler):
    """The flow of the exact field maps N(0, I) onto N(mean, std^2 I); 64 steps come close."""
    samples = draw(sampler, 64)
    assert torch.allclose(samples.mean(0), MEAN.double(), atol=0.01)
    assert torch.allclose(samples.std(0), torch.full((2,), STD, dtype=torch.float64), atol=0.01)


def test_heun_is_more_accurate_than_euler_at_the_same_steps():
    """Against a 2,048-step solution from the same noise, Heun's error at N = 8 is under half
    of Euler's (its last step is an Euler step, where the field bends most)."""
    fine = draw(heun_sampler, 2048, num=2000)
    euler = (draw(euler_sampler, 8, num=2000) - fine).abs().max()
    heun = (draw(heun_sampler, 8, num=2000) - fine).abs().max()
    assert heun < euler / 2


@pytest.mark.parametrize("sampler, steps, calls", [("euler", 1, 1), ("euler", 4, 4),
                                                    ("heun", 1, 1), ("heun", 4, 7)])
def test_network_calls_are_counted_as_stated(sampler, steps, calls):
    cfg = load_config(REPO / "configs/fmnist/flow.yaml")
    made = []

    def network(x, z, label):
        made.append(label)
        return torch.zeros_like(x)
    flow_sampler = Flow.sampler(cfg, steps, sampler)
    flow_sampler.sample(network, torch.randn(2, 1, 4, 4), torch.Generator().manual_seed(0))
    assert len(made) == calls == flow_sampler.network_calls
    assert float(made[0][0]) == cfg.flow.time_scale  # t = 1 first, as its label


def test_the_loss_vanishes_at_the_exact_velocity_of_a_point_mass():
    """x_0 = m always: eps - x_0 = (x_t - m) / t exactly, so that field has zero loss."""
    x0 = MEAN.expand(512, 2)
    times = torch.rand(512) * 0.9 + 0.1
    exact = lambda x, t: (x - MEAN) / t[:, None]  # noqa: E731
    assert flow_loss(exact, x0, times) < 1e-10
    assert flow_loss(lambda x, t: torch.zeros_like(x), x0, times) > 0.5


def test_time_distributions():
    uniform = sample_times(100_000, "cpu")
    assert 0 <= uniform.min() and uniform.max() < 1 and abs(uniform.mean() - 0.5) < 0.01
    logit = sample_times(100_000, "cpu", "logit_normal", 1.0, 0.5)
    assert torch.logit(logit).mean() == pytest.approx(1.0, abs=0.01)
    assert torch.logit(logit).std() == pytest.approx(0.5, abs=0.01)


def test_bad_settings_name_their_key():
    for override, key in (("flow.time_distribution=lognormal", "flow.time_distribution"),
                          ("flow.logit_std=0", "flow.logit_std"), ("flow.sampling_steps=0", "flow.sampling_steps")):
        cfg = load_config(REPO / "configs/fmnist/flow.yaml", [override])
        with pytest.raises(ValueError, match=key):
            Flow.check_config(cfg)


def test_the_2d_benchmark_learns_the_modes():
    """A short 2-D run: 8/8 modes and most samples on them, where an untrained one has none."""
    from ddgan.toy import run_toy

    trained = run_toy(data="8gaussians", method="flow", steps=8, iters=1000)
    untrained = run_toy(data="8gaussians", method="flow", steps=8, iters=20)
    assert trained["modes_covered"] == 8 and trained["high_quality_fraction"] > 0.6
    assert untrained["high_quality_fraction"] < 0.1 and trained["nfe"] == 8


def test_train_sample_toy_and_eval_commands(fake_fmnist, tmp_path, capsys):
    """The documented commands on a flow run: train, sample --steps 4, toy, eval."""
    import json

    from ddgan.cli import main
    from ddgan.featnet import train_featnet

    run = tmp_path / "run"
    main(["train", "--config", str(REPO / "configs/fmnist/flow.yaml"), f"data.root={fake_fmnist}",
          f"train.out_dir={run}", "train.max_steps=3", "train.batch_size=8",
          "backbone.base_channels=8", "backbone.channel_mult=[1, 2]",
          "backbone.num_res_blocks=1", "backbone.attn_resolutions=[]", "train.num_grid=4"])
    main(["sample", "--ckpt", str(run / "checkpoints/last.pt"), "--steps", "4", "--num", "4",
          "--sampler", "heun", "--out", str(tmp_path / "grid.png")])
    assert (tmp_path / "grid.png").stat().st_size > 0
    main(["toy", "--method", "flow", "--steps", "4", "--iters", "10", "--out", str(tmp_path / "toy")])
    assert json.loads((tmp_path / "toy/metrics.json").read_text())["nfe"] == 4
    featnet = tmp_path / "featnet.pt"
    train_featnet(featnet, "fmnist", str(fake_fmnist),
                  epochs=1, batch_size=32, device="cpu")
    main(["eval", str(run), "--extractor", f"featnet:{featnet}", "--steps", "1", "4",
          "--samplers", "euler,heun", "--num-samples", "20", "--metrics", "fid",
          "--out", str(tmp_path / "results.json")])
    rows = json.loads((tmp_path / "results.json").read_text())
    assert [(r["sampler"], r["steps"], r["nfe"]) for r in rows] == [
        ("euler", 1, 1), ("euler", 4, 4), ("heun", 1, 1), ("heun", 4, 7)]
    assert all(r["method"] == "flow" and r["fd"] >= 0 for r in rows)
