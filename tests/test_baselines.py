"""DDPM and EDM on the shared backbone, data, loop and checkpoints."""
import pytest
import torch

from ddgan.generate import generate
from ddgan.config import load_config, load_shared_config
from ddgan.networks.precond import edm_coefficients
from ddgan.settings import updated
from ddgan.train import train

from .conftest import REPO

TINY_BASELINE = ["backbone.base_channels=8", "backbone.channel_mult=[1, 2]",
                 "backbone.num_res_blocks=1", "backbone.attn_resolutions=[]", "backbone.nz=0",
                 "backbone.tanh_output=false", "train.batch_size=8", "train.max_steps=4",
                 "train.log_every=2", "train.ckpt_every=4", "train.num_grid=4",
                 "ddpm.train_timesteps=50", "optim.warmup_steps=2"]


@pytest.mark.parametrize("sigma", [0.01, 0.2, 1.0, 10.0, 80.0])
def test_preconditioning_gives_unit_variance_inputs_and_targets(sigma):
    """Data with std sigma_data: c_in (x + n) and the effective target (x - c_skip (x + n)) / c_out."""
    torch.manual_seed(0)
    sd = 0.5
    x = sd * torch.randn(400_000, dtype=torch.float64)
    noisy = x + sigma * torch.randn_like(x)
    c_skip, c_out, c_in, c_noise = edm_coefficients(torch.tensor(sigma, dtype=torch.float64), sd)
    assert (c_in * noisy).var().item() == pytest.approx(1.0, rel=0.01)
    assert ((x - c_skip * noisy) / c_out).var().item() == pytest.approx(1.0, rel=0.01)
    assert c_noise.item() == pytest.approx(torch.tensor(sigma).log().item() / 4)


@pytest.mark.parametrize("method,sampling", [
    ("ddpm", [dict(steps=None, sampler=None), dict(steps=5, sampler="ddim"),
              dict(steps=5, sampler="ancestral")]),
    ("edm", [dict(steps=3, sampler=None), dict(steps=3, sampler="euler")]),
])
def test_baseline_trains_and_samples(fake_fmnist, tmp_path, method, sampling):
    cfg = load_shared_config(REPO / f"configs/fmnist/{method}.yaml",
                             TINY_BASELINE + [f"data.root={fake_fmnist}", f"train.out_dir={tmp_path / 'run'}"])
    run = train(cfg)
    state = torch.load(run / "checkpoints/last.pt", weights_only=False)
    assert state["step"] == 4 and state["config"]["method"] == method
    assert (run / "samples/step_0000004.png").is_file()
    for options in sampling:
        images = generate(run / "checkpoints/last.pt", 3, seed=0, **options)
        assert images.shape == (3, 1, 28, 28) and torch.isfinite(images).all()
    with pytest.raises(ValueError, match="samplers"):
        generate(run / "checkpoints/last.pt", 2, sampler="dpm-solver")


def test_ddgan_refuses_another_step_count(fake_fmnist, tmp_path):
    cfg = load_config(REPO / "configs/tiny.yaml",
                      ["backbone.base_channels=8", "discriminator.base_channels=8",
                       "train.batch_size=8", "train.max_steps=2", "train.ckpt_every=2",
                       f"data.root={fake_fmnist}", f"train.out_dir={tmp_path / 'run'}"])
    run = train(cfg)
    with pytest.raises(ValueError, match="trained T = 2"):
        generate(run / "checkpoints/last.pt", 2, steps=4)


def test_baselines_refuse_a_latent(tmp_path):
    cfg = load_config(REPO / "configs/fmnist/ddpm.yaml",
                      ["backbone.nz=100", f"train.out_dir={tmp_path / 'run'}"])
    with pytest.raises(ValueError, match="backbone.nz=0"):
        train(cfg)


def test_grids_sample_with_the_cheap_stated_steps(fake_fmnist, tmp_path, monkeypatch):
    """A DDPM trained at T = 1000 draws its grids with K = 20 calls (eval.steps overrides it),
    not 1,000: a 64-image grid at 1,000 calls takes minutes on a CPU."""
    import ddgan.methods.ddpm as ddpm

    grids = []
    sampler = ddpm.ancestral_sampler
    monkeypatch.setattr(ddpm, "ancestral_sampler", lambda *a, **k: grids.append(len(a[2])) or sampler(*a, **k))
    common = TINY_BASELINE[:-2] + [f"data.root={fake_fmnist}", "train.max_steps=2", "train.ckpt_every=2"]
    train(load_config(REPO / "configs/fmnist/ddpm.yaml", common + [f"train.out_dir={tmp_path / 'a'}"]))
    train(load_config(REPO / "configs/fmnist/ddpm.yaml", common + [f"train.out_dir={tmp_path / 'b'}", "eval.steps=7"]))
    assert grids == [20, 7]


def test_ddpm_clips_x0_as_configured_and_the_progress_bar_counts_every_call(monkeypatch):
    import ddgan.generate as generate_module
    from ddgan.generate import sample_images
    from ddgan.methods.ddpm import DDPM

    calls = []

    def far_out(x, z, t):  # an eps whose x_0 prediction lies far outside [-1, 1]
        calls.append(len(x))
        return -10 * x

    cfg = load_config(REPO / "configs/fmnist/ddpm.yaml", ["ddpm.train_timesteps=20"])
    bars = []
    real_tqdm = generate_module.tqdm
    monkeypatch.setattr(generate_module, "tqdm", lambda **kw: bars.append(kw["total"]) or real_tqdm(**kw))
    for clip in (True, False):
        sampler = DDPM.sampler(updated(cfg, {"ddpm": {"clip_x0": clip}}), 3)
        images = sample_images(far_out, sampler, (1, 4, 4), 5, torch.Generator().manual_seed(0),
                               batch_size=2, progress="test")
        assert (images.abs().max() <= 1) == clip
    assert calls == [2, 2, 2, 2, 2, 2, 1, 1, 1] * 2 and bars == [9, 9]  # 3 batches x 3 calls
