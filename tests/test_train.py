"""The training loop: exact resume, non-finite losses, run-directory safety, a real short run."""
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from ddgan import checkpoint
from ddgan.config import load_config
from ddgan.generate import generate
from ddgan.methods.common import ema_decay_after, make_ema, optimizer_step
from ddgan.methods.ddgan import build_generator, build_process
from divergences.regularizers import lazy_r1_weight
from ddgan.metrics import frechet_distance
from ddgan.samplers import ddgan_sampler
from ddgan.train import NonFiniteLossError, train, training_device
from divergences.js import JensenShannon

from .conftest import REPO

TINY = REPO / "configs" / "tiny.yaml"
FAST = ["backbone.base_channels=8", "backbone.channel_mult=[1, 2]", "discriminator.base_channels=8",
        "train.batch_size=8", "train.log_every=5", "train.sample_every=1000", "train.num_grid=4"]


def fast_config(root, out_dir, *extra):
    return load_config(TINY, FAST + [f"data.root={root}", f"train.out_dir={out_dir}", *extra])


def fast_ddpm_config(root, out_dir, *extra):
    """A DDPM as small as fast_config's DDGAN (without the discriminator it does not have)."""
    small = [o for o in FAST if not o.startswith("discriminator.")]
    return load_config(REPO / "configs/fmnist/ddpm.yaml",
                       small + ["backbone.num_res_blocks=1", "backbone.attn_resolutions=[]",
                                "ddpm.train_timesteps=20", "eval.steps=2", f"data.root={root}",
                                f"train.out_dir={out_dir}", *extra])


def assert_same_state(a, b, where=""):
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


@pytest.mark.parametrize("divergence", ["js", "wgan-gp", "rpgan"])
def test_resume_equals_an_uninterrupted_run(fake_fmnist, tmp_path, divergence):
    extra = ["train.max_steps=20", "train.ckpt_every=10", f"divergence.name={divergence}",
             "optim.cosine_decay=true", "divergence.r1_every=3"]
    if divergence == "wgan-gp":
        extra.append("divergence.options={n_critic: 2}")
    straight = fast_config(fake_fmnist, tmp_path / "straight", *extra)
    train(straight)
    interrupted = fast_config(fake_fmnist, tmp_path / "interrupted", *extra)
    train(interrupted, stop_at=10)
    assert checkpoint.load(tmp_path / "interrupted/checkpoints/last.pt")["step"] == 10
    train(interrupted, resume=True)

    a = checkpoint.load(tmp_path / "straight/checkpoints/last.pt")
    b = checkpoint.load(tmp_path / "interrupted/checkpoints/last.pt")
    assert a["step"] == b["step"] == 20
    assert_same_state(a["method"], b["method"])
    assert_same_state(a["data"], b["data"])
    assert b["train_device"] == a["train_device"]  # resumed on the same device: named once


def test_a_run_continued_to_a_larger_budget_equals_one_trained_straight_to_it(fake_fmnist, tmp_path):
    straight = fast_config(fake_fmnist, tmp_path / "straight", "train.max_steps=12", "train.ckpt_every=4")
    train(straight)
    train(fast_config(fake_fmnist, tmp_path / "grown", "train.max_steps=6", "train.ckpt_every=4"))
    train(fast_config(fake_fmnist, tmp_path / "grown", "train.max_steps=12", "train.ckpt_every=4"),
          resume=True)  # the sweep's next budget: the finished run continued
    a = checkpoint.load(tmp_path / "straight/checkpoints/last.pt")
    b = checkpoint.load(tmp_path / "grown/checkpoints/last.pt")
    assert a["step"] == b["step"] == 12
    assert_same_state(a["method"], b["method"])
    assert_same_state(a["data"], b["data"])


def test_the_training_device_lists_each_device_a_resumed_run_trained_on():
    cpu = SimpleNamespace(device=torch.device("cpu"), num_processes=1)
    here = training_device(cpu, "float32")
    assert here.startswith("cpu ") and here.endswith(", float32")
    assert f"({torch.backends.cpu.get_cpu_capability()}" in here  # the instructions set the speed
    assert training_device(cpu, "float32", here) == here
    gpus = "NVIDIA H200, 8 processes, bf16 autocast"
    assert training_device(cpu, "float32", gpus) == f"{gpus}; then {here}"
    assert training_device(cpu, "float32", f"{here}; then {gpus}") == f"{here}; then {gpus}; then {here}"
    assert training_device(cpu, "float32", "unrecorded") == f"unrecorded; then {here}"  # saved before the field
    ddp = SimpleNamespace(device=torch.device("cpu"), num_processes=2)
    assert training_device(ddp, "bf16 networks").endswith(", 2 processes, bf16 networks")


def test_a_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(fake_fmnist, tmp_path,
                                                                   monkeypatch):
    calls = {"n": 0}
    d_loss = JensenShannon.d_loss

    def poisoned(self, real_out, fake_out):
        calls["n"] += 1
        loss = d_loss(self, real_out, fake_out)
        return loss * float("nan") if calls["n"] >= 13 else loss

    monkeypatch.setattr(JensenShannon, "d_loss", poisoned)
    cfg = fast_config(fake_fmnist, tmp_path / "run", "train.max_steps=30", "train.ckpt_every=5")
    with pytest.raises(NonFiniteLossError) as err:
        train(cfg)
    assert "step 15" in str(err.value) and "last.pt (step 10)" in str(err.value)
    state = checkpoint.load(tmp_path / "run/checkpoints/last.pt")
    assert state["step"] == 10
    assert all(torch.isfinite(v).all() for v in state["method"]["generator"].values())


def test_existing_run_is_not_overwritten_and_resume_checks_the_config(fake_fmnist, tmp_path):
    cfg = fast_config(fake_fmnist, tmp_path / "run", "train.max_steps=2", "train.ckpt_every=2")
    train(cfg)
    with pytest.raises(FileExistsError, match="--resume"):
        train(cfg)
    changed = fast_config(fake_fmnist, tmp_path / "run", "train.max_steps=4", "optim.lr=1e-3")
    with pytest.raises(ValueError, match="optim.lr"):
        train(changed, resume=True)
    longer = fast_config(fake_fmnist, tmp_path / "run", "train.max_steps=4", "train.ckpt_every=2")
    train(longer, resume=True)  # extending max_steps is allowed
    assert checkpoint.load(tmp_path / "run/checkpoints/last.pt")["step"] == 4
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(fast_config(fake_fmnist, tmp_path / "other"), resume=True)

    # A run saved before optim.ema_warmup existed had a constant EMA: resuming keeps it so.
    config_file = tmp_path / "run/config.yaml"
    config_file.write_text(config_file.read_text().replace("  ema_warmup: true\n", ""))
    longer = fast_config(fake_fmnist, tmp_path / "run", "train.max_steps=6", "train.ckpt_every=2")
    with pytest.raises(ValueError, match="optim.ema_warmup"):
        train(longer, resume=True)
    train(fast_config(fake_fmnist, tmp_path / "run", "train.max_steps=6", "train.ckpt_every=2",
                      "optim.ema_warmup=false"), resume=True)


def test_a_run_saved_before_the_new_discriminator_layout_keeps_its_own(fake_fmnist, tmp_path):
    """Its config lacks the layout keys: resuming and sampling build the layout it trained."""
    earlier = ["discriminator.stem_kernel=3", "discriminator.downsample_first=true",
               "discriminator.downsample=avgpool", "discriminator.head_activation=true",
               "discriminator.near_zero_init=false"]
    run = tmp_path / "run"
    train(fast_config(fake_fmnist, run, "train.max_steps=2", "train.ckpt_every=2", *earlier))
    keys = [item.split("=")[0].split(".")[1] for item in earlier]
    state = torch.load(run / "checkpoints/last.pt", weights_only=False)
    for key in keys:  # as a run saved before the keys existed
        del state["config"]["discriminator"][key]
    del state["train_device"]  # and before the device was recorded
    torch.save(state, run / "checkpoints/last.pt")
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text("".join(line for line in text.splitlines(True)
                                             if line.strip().split(":")[0] not in keys))
    assert checkpoint.load(run / "checkpoints/last.pt")["config"].discriminator.downsample == "avgpool"
    with pytest.raises(ValueError, match="discriminator.downsample"):
        train(fast_config(fake_fmnist, run, "train.max_steps=4"), resume=True)
    train(fast_config(fake_fmnist, run, "train.max_steps=4", "train.ckpt_every=2", *earlier), resume=True)
    assert generate(run / "checkpoints/last.pt", 2).shape == (2, 1, 28, 28)
    assert checkpoint.load(run / "checkpoints/last.pt")["train_device"].startswith("unrecorded; then cpu ")


def test_a_baseline_saved_before_a_ddgan_key_existed_still_resumes(fake_fmnist, tmp_path):
    """Another method's sections may differ on resume (a DDPM has no discriminator), while the
    sections it uses are still checked."""
    run = tmp_path / "run"
    train(fast_ddpm_config(fake_fmnist, run, "train.max_steps=2", "train.ckpt_every=2"))
    text = (run / "config.yaml").read_text()  # as saved before the discriminator layout keys
    (run / "config.yaml").write_text("".join(line for line in text.splitlines(True)
                                             if line.strip().split(":")[0] not in
                                             ("stem_kernel", "downsample", "near_zero_init")))
    with pytest.raises(ValueError, match="ddpm.train_timesteps"):
        train(fast_ddpm_config(fake_fmnist, run, "train.max_steps=4", "train.ckpt_every=2",
                               "ddpm.train_timesteps=30"), resume=True)
    train(fast_ddpm_config(fake_fmnist, run, "train.max_steps=4", "train.ckpt_every=2"), resume=True)
    assert checkpoint.load(run / "checkpoints/last.pt")["step"] == 4


def pooled_features(images):
    """7x7 average-pooled pixels: a cheap, fixed feature space for a before/after comparison."""
    return F.adaptive_avg_pool2d(images.float(), 7).flatten(1)


@pytest.mark.slow
def test_short_fashion_mnist_training_improves_and_samples(real_data_root, tmp_path):
    """A few hundred steps of the tiny config on the real data: checkpoint, events, grids, sampling,
    and a Fréchet distance to the data (in pooled-pixel space) well below the untrained model's."""
    cfg = load_config(TINY, [f"data.root={real_data_root}", f"train.out_dir={tmp_path / 'run'}"])
    run = train(cfg)
    assert (run / "checkpoints/last.pt").is_file()
    assert (run / "config.yaml").is_file()
    assert list((run / "tb").glob("events.out.tfevents.*"))
    assert (run / "samples/step_0000300.png").is_file()

    from ddgan.data import load_fmnist
    real = load_fmnist(real_data_root)[0][:2000].float() / 127.5 - 1
    trained = generate(run / "checkpoints/last.pt", 2000, seed=1, batch_size=500)
    assert trained.shape == (2000, 1, 28, 28) and trained.abs().max() <= 1

    torch.manual_seed(1)
    untrained = build_generator(cfg, (1, 28, 28)).eval()
    x_T = torch.randn(2000, 1, 28, 28)
    before = ddgan_sampler(untrained, x_T, build_process(cfg.ddgan), nz=cfg.backbone.nz)
    fd_before = frechet_distance(pooled_features(before), pooled_features(real))
    fd_after = frechet_distance(pooled_features(trained), pooled_features(real))
    assert fd_after < 0.5 * fd_before, (fd_before, fd_after)

    # Sampling is reproducible by seed.
    again = generate(run / "checkpoints/last.pt", 16, seed=3)
    assert torch.equal(again, generate(run / "checkpoints/last.pt", 16, seed=3))
    assert not torch.equal(again, generate(run / "checkpoints/last.pt", 16, seed=4))


@pytest.mark.parametrize("override,message", [
    ("train.batch_size=0", "train.batch_size"), ("train.mixed_precision=fp8", "mixed_precision"),
    ("ddgan.denoising_steps=0", "denoising_steps"), ("divergence.name=kl", "valid names"),
    ("divergence.options={gp_weight: 3}", "gp_weight"), ("backbone.nz=0", "latent"),
    ("optim.grad_clip=-1", "optim.grad_clip must be >= 0"),
])
def test_bad_settings_fail_before_anything_is_written(tmp_path, override, message):
    cfg = load_config(TINY, [f"train.out_dir={tmp_path / 'run'}", "data.root=/nonexistent", override])
    with pytest.raises(ValueError, match=message):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_two_processes_train_with_ddp(fake_fmnist, tmp_path):
    """Data-parallel training through accelerate, as on several GPUs (here: 2 CPU processes, gloo)."""
    import os
    import subprocess
    import sys
    run = tmp_path / "run"
    args = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "ddgan",
            "train", "--config", str(TINY), *FAST, f"data.root={fake_fmnist}", f"train.out_dir={run}",
            "train.max_steps=4", "train.ckpt_every=2", "divergence.r1_every=1"]
    result = subprocess.run(args, capture_output=True, text=True,
                            env={**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    state = checkpoint.load(run / "checkpoints/last.pt")
    assert state["step"] == 4
    assert len(state["rng"]) == 2  # one generator state per process, for exact resume
    assert ", 2 processes, " in state["train_device"]


def test_ema_warm_up_follows_its_recurrence_and_forgets_the_initial_weights():
    assert ema_decay_after(torch.tensor(0.0), 0.999) == pytest.approx(0.1)
    assert ema_decay_after(torch.tensor(1500.0), 0.999) == pytest.approx(1501 / 1510)
    assert ema_decay_after(torch.tensor(1e5), 0.999) == pytest.approx(0.999)

    def averaged_after(weights, warmup):
        model = torch.nn.Linear(1, 1, bias=False)
        ema = make_ema(model, 0.999, "cpu", warmup)
        for w in weights:
            model.weight.data.fill_(w)
            ema.update_parameters(model)
        return ema.module.weight.item()

    # The recurrence: the first update copies, the n-th after it uses the decay after n updates.
    weights = torch.linspace(-1, 1, 50).tolist()
    expected = weights[0]
    for n, w in enumerate(weights[1:], start=1):
        decay = min(0.999, (1 + n) / (10 + n))
        expected = decay * expected + (1 - decay) * w
    assert averaged_after(weights, warmup=True) == pytest.approx(expected, rel=1e-5)

    # 1,500 steps after starting at 1 and moving to 0: the share of the start left in the average.
    start_then_trained = [1.0] + [0.0] * 1499
    assert averaged_after(start_then_trained, warmup=False) == pytest.approx(0.999**1499, rel=1e-4)  # 22%
    assert averaged_after(start_then_trained, warmup=True) < 1e-6


def test_lazy_r1_applies_every_kth_step_with_the_same_average_weight():
    weights = [lazy_r1_weight(0.2, 4, step) for step in range(8)]
    assert weights == [pytest.approx(0.4), 0, 0, 0, pytest.approx(0.4), 0, 0, 0]
    assert sum(weights) / len(weights) == pytest.approx(0.2 / 2)  # gamma / 2 per step on average
    assert [lazy_r1_weight(0.2, 1, step) for step in range(3)] == [pytest.approx(0.1)] * 3


def test_paper_config_applies_the_authors_r1_strength():
    """DDGAN's code (--r1_gamma 0.02 --lazy_reg 15) adds gamma / 2 = 0.01 on every 15th D step,
    not 15 times that (StyleGAN2's rule, which the other configs use)."""
    d = load_config(REPO / "configs/cifar10/ddgan.yaml").divergence
    weights = [lazy_r1_weight(d.r1_gamma, d.r1_every, step, d.r1_lazy_rule) for step in range(45)]
    assert {step: w for step, w in enumerate(weights) if w} == {
        0: pytest.approx(0.01), 15: pytest.approx(0.01), 30: pytest.approx(0.01)}
    assert [lazy_r1_weight(0.2, 4, step, "ddgan") for step in range(4)] == [pytest.approx(0.1), 0, 0, 0]
    with pytest.raises(ValueError, match="lazy R1 rule must be one of stylegan2, ddgan"):
        lazy_r1_weight(0.2, 4, 0, "both")
    with pytest.raises(ValueError, match="divergence.r1_lazy_rule must be one of"):
        train(load_config(REPO / "configs/tiny.yaml", ["divergence.r1_lazy_rule=k"]))


def test_gradient_clipping_rescales_to_the_global_norm():
    param = torch.nn.Parameter(torch.zeros(2))
    sgd = torch.optim.SGD([param], lr=1.0)
    param.grad = torch.tensor([3.0, 4.0])  # norm 5
    optimizer_step(sgd, max_grad_norm=1.0)
    torch.testing.assert_close(param.data, torch.tensor([-0.6, -0.8]))
    param.grad = torch.tensor([0.3, 0.4])  # below the limit: unchanged
    optimizer_step(sgd, max_grad_norm=1.0)
    torch.testing.assert_close(param.data, torch.tensor([-0.9, -1.2]))
    param.grad = torch.tensor([3.0, 4.0])
    optimizer_step(sgd)  # 0: no clipping
    torch.testing.assert_close(param.data, torch.tensor([-3.9, -5.2]))


@pytest.mark.parametrize("method", ["ddgan", "ddpm"])
def test_every_method_clips_every_network_when_asked(fake_fmnist, tmp_path, monkeypatch, method):
    norms = []
    clip = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_",
                        lambda params, max_norm: norms.append(max_norm) or clip(params, max_norm))
    config = fast_ddpm_config if method == "ddpm" else fast_config
    train(config(fake_fmnist, tmp_path / "run", "train.max_steps=2", "optim.grad_clip=0.5"))
    assert norms == [0.5] * (4 if method == "ddgan" else 2)  # D and G, or the one network, per step
