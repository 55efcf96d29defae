"""The registries: a method and a divergence defined here, in the test file, and registered, go
through every command (train, sample, eval, plot, bench, the sweep and the 2-D benchmark)
without any other module knowing their names."""
import json

import pytest
import torch
import torch.nn.functional as F
import yaml

from ddgan.bench import run_bench
from ddgan.config import load_config
from ddgan.diffusion import per_sample
from ddgan.evaluate import evaluate_runs, write_results
from ddgan.featnet import train_featnet
from ddgan.generate import generate
from ddgan.methods import METHODS, get_method, method_class, overrides_for
from ddgan.methods.base import Sampler
from ddgan.methods.denoising import DenoisingMethod
from ddgan.plot import plot_results
from ddgan.toy import run_toy
from ddgan.train import train
from divergences import DIVERGENCES, FDivergence

from .conftest import REPO, load_script, write_fake_fmnist


class Restart(DenoisingMethod):
    """x_s = (1 - s) x_0 + s eps at s = i / L; the network predicts x_0, and the sampler
    re-noises each prediction to the next level with fresh noise (its `restart` sampler) or
    with the noise the prediction implies (`implied`). One call per level either way."""
    name = "restart"
    sections = {"restart": {"levels": 8}}
    samplers = ("restart", "implied")
    steps_symbol = "L"

    @classmethod
    def objective(cls, settings):
        levels = settings.restart.levels

        def loss(network, x0):
            s = torch.randint(1, levels + 1, (x0.shape[0],), device=x0.device) / levels
            noise = torch.randn_like(x0)
            x_s = (1 - per_sample(s, x0)) * x0 + per_sample(s, x0) * noise
            return F.mse_loss(network(x_s, None, 1000 * s).float(), x0)
        return loss

    @classmethod
    def default_steps(cls, settings):
        return settings.restart.levels

    @staticmethod
    def preview_steps(settings):
        return settings.eval.steps or settings.restart.levels

    @classmethod
    def sampler(cls, settings, steps=None, name=None, device="cpu"):
        name, steps = cls.sampler_name(name), steps or settings.restart.levels

        def sample(network, x, rng):
            for i in range(steps, 0, -1):
                s, s_next = i / steps, (i - 1) / steps
                x0 = network(x, None, torch.full((x.shape[0],), 1000 * s, device=x.device)).float()
                if name == "implied":
                    noise = (x - (1 - s) * x0) / s
                else:
                    noise = torch.randn(x.shape, device=x.device, generator=rng)
                x = (1 - s_next) * x0 + s_next * noise
            return x
        return Sampler(name, steps, steps, sample)


class Pearson(FDivergence):
    """Pearson chi^2: f(u) = (u - 1)^2, so g_f(v) = v and f*(t) = t^2 / 4 + t."""
    name = "pearson"

    def activation(self, v):
        return v

    def conjugate_of_activation(self, v):
        return v * v / 4 + v

SMALL = ["backbone.base_channels=8", "backbone.channel_mult=[1, 2]", "backbone.num_res_blocks=1",
         "backbone.attn_resolutions=[]", "backbone.nz=0", "backbone.tanh_output=false",
         "train.batch_size=8", "train.log_every=1", "train.sample_every=1000",
         "train.ckpt_every=1000", "train.num_grid=4", "optim.betas=[0.9, 0.999]"]


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(METHODS, Restart.name, Restart)
    return Restart


def test_a_method_defined_here_runs_every_command(registered, tmp_path):
    root = write_fake_fmnist(tmp_path / "data")
    featnet = tmp_path / "featnet.pt"
    train_featnet(featnet, "fmnist", str(root), epochs=1,
                  batch_size=32, device="cpu")
    config = tmp_path / "restart.yaml"
    config.write_text(yaml.safe_dump({"method": "restart", "data": {"name": "fmnist"},
                                      "restart": {"levels": 4}}))
    overrides = SMALL + [f"data.root={root}", f"train.out_dir={tmp_path / 'run'}",
                         "train.max_steps=30", "eval.every_images=120", "eval.num_samples=16",
                         f"eval.extractor=featnet:{featnet}"]
    assert load_config(config, overrides).restart.levels == 4  # its section is a config section
    run = train(load_config(config, overrides))

    images = generate(run / "checkpoints" / "last.pt", 6, steps=2, sampler="implied")
    assert images.shape == (6, 1, 28, 28) and torch.isfinite(images).all()

    rows = evaluate_runs([run], f"featnet:{featnet}", steps=[1, 4], num_samples=40,
                         metrics=("fid",), grid_dir=tmp_path / "grids")
    assert [(r["sampler"], r["steps"], r["nfe"]) for r in rows] == [("restart", 1, 1), ("restart", 4, 4)]
    assert all(r["method"] == "restart" and r["divergence"] == "" and r["fd"] >= 0 for r in rows)
    rows += evaluate_runs([run], f"featnet:{featnet}", steps=[2], samplers=["implied"],
                          num_samples=40, metrics=("fid",))
    csv_path = write_results(rows, tmp_path / "results" / "restart.json")

    paths = plot_results([csv_path], tmp_path / "figures")
    assert "| restart | implied | 2 | 2 |" in paths["results_md"].read_text()
    assert paths["fd_vs_nfe"].stat().st_size > 10_000
    assert (tmp_path / "run" / "eval.csv").read_text().count("\n") == 1 + 2  # every 120 of 240 images

    bench = run_bench([config], SMALL, steps=(1, 3), sample_batches=(2,), warmup=0, repeats=1,
                      cpu=True)["rows"]
    assert [(r["what"], r["steps"], r["nfe"]) for r in bench] == [
        ("train", None, None), ("sample (restart)", 1, 1), ("sample (restart)", 3, 3)]

    toy = run_toy(method="restart", steps=3, iters=20, sampler="implied")
    assert toy["method"] == "restart" and toy["sampler"] == "implied" and toy["nfe"] == 3


def test_a_method_and_a_divergence_defined_here_run_through_the_sweep_and_the_toy(
        registered, monkeypatch, tmp_path):
    monkeypatch.setitem(DIVERGENCES, Pearson.name, Pearson)
    root = write_fake_fmnist(tmp_path / "data")
    featnet = tmp_path / "featnet.pt"
    train_featnet(featnet, "fmnist", str(root), epochs=1, batch_size=32, device="cpu")
    configs = tmp_path / "configs"  # one config per method, the divergence chosen by the sweep
    configs.mkdir()
    (configs / "ddgan.yaml").write_text((REPO / "configs/tiny.yaml").read_text())
    small = dict(item.split("=", 1) for item in SMALL if item.startswith("backbone."))
    (configs / "restart.yaml").write_text(yaml.safe_dump({
        "method": "restart", "data": {"name": "fmnist"}, "restart": {"levels": 4},
        "backbone": {key.split(".")[1]: yaml.safe_load(value) for key, value in small.items()}}))
    sweep = load_script("sweep")
    out = tmp_path / "sweep"
    sweep.main(["--out", str(out), "--config-dir", str(configs), "--featnet", str(featnet),
                "--divergences", Pearson.name, "--steps", "1", "--baselines", Restart.name,
                "--baseline-steps", "2", "--max-steps", "4", "--num-samples", "40", "--metrics", "fid",
                "--no-floor", "--executor", "debug", "--jobs", "1",
                "--set", "train.batch_size=8", "train.log_every=2", f"data.root={root}"])

    cells = out / "results" / "cells"
    pearson = json.loads((cells / f"ddgan_{Pearson.name}_T1.json").read_text())
    restart = json.loads((cells / f"{Restart.name}.json").read_text())
    assert [(r["divergence"], r["steps"]) for r in pearson] == [(Pearson.name, 1)]
    assert [(r["method"], r["sampler"], r["steps"]) for r in restart] == [
        (Restart.name, "restart", 2), (Restart.name, "implied", 2)]
    assert all(r["fd"] >= 0 for r in pearson + restart)
    table = (out / "results" / "figures" / "results.md").read_text()
    assert f"| ddgan | {Pearson.name} |" in table and f"| {Restart.name} | implied |" in table

    toy = run_toy(divergence=Pearson.name, steps=1, iters=20)
    assert toy["divergence"] == Pearson.name and 0 <= toy["modes_covered"] <= 25


def test_names_outside_the_registry_are_refused(registered):
    assert get_method("restart") is Restart
    with pytest.raises(ValueError, match="unknown method 'restrat'; valid: .*restart"):
        get_method("restrat")
    with pytest.raises(ValueError, match="unknown config key 'restart.level'"):
        load_config(REPO / "configs/tiny.yaml", ["restart.level=3"])


def test_a_setting_the_method_does_not_use_is_an_error():
    """Another method's section, or a shared key the method ignores, set away from its default."""
    cfg = load_config(REPO / "configs/fmnist/ddpm.yaml", ["discriminator.base_channels=8", "optim.lr_discriminator=1e-3"])
    with pytest.raises(ValueError, match=r"method ddpm does not use discriminator.base_channels "
                                         r"\(ddgan's\), optim.lr_discriminator: remove them"):
        method_class(cfg)
    with pytest.raises(ValueError, match=r"method ddgan does not use ddpm.train_timesteps \(ddpm's\): remove it"):
        method_class(load_config(REPO / "configs/tiny.yaml", ["ddpm.train_timesteps=50"]))
    with pytest.raises(ValueError, match="method ddgan does not use eval.steps"):
        method_class(load_config(REPO / "configs/tiny.yaml", ["eval.steps=3"]))
    # Overrides shared by the runs of several methods go to those that read them.
    shared = ["discriminator.base_channels=8", "ddpm.train_timesteps=5", "train.seed=1", "optim.lr_discriminator=1.0"]
    assert overrides_for(get_method("ddpm"), shared) == ["ddpm.train_timesteps=5", "train.seed=1"]
    assert overrides_for(get_method("ddgan"), shared) == ["discriminator.base_channels=8",
                                                          "train.seed=1", "optim.lr_discriminator=1.0"]


@pytest.mark.parametrize("config", ["configs/tiny.yaml", "configs/fmnist/ddpm.yaml"])
def test_every_method_warms_up_every_learning_rate(config):
    """optim.warmup_steps is the run state's, so a DDGAN warms both G and D up (it once ignored it)."""
    from accelerate import Accelerator

    cfg = load_config(REPO / config, ["optim.warmup_steps=4", "backbone.base_channels=8",
                                      "backbone.channel_mult=[1, 2]"])
    method = method_class(cfg)(cfg, (1, 28, 28), Accelerator(cpu=True))
    rates = [group["lr"] for optimizer in method.state.optimizers.values()
             for group in optimizer.param_groups]
    o = cfg.optim
    assert rates == pytest.approx([o.lr / 4, o.lr_discriminator / 4][:len(rates)])
    assert len(rates) == (2 if cfg.method == "ddgan" else 1)
    with pytest.raises(ValueError, match="choose one learning-rate schedule"):
        method_class(load_config(REPO / config, ["optim.warmup_steps=4", "optim.cosine_decay=true"]))
