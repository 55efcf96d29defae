"""Training precision (ddgan/precision.py): auto's choice, the bf16 networks against float32,
checkpoints that stay float32 and resume within and across precisions, and the 2-D benchmark's
MLPs in bf16."""
import json
from itertools import cycle

import pytest
import torch
from accelerate import Accelerator

from ddgan import checkpoint
from ddgan import bench, precision
from ddgan.config import load_config, load_shared_config
from ddgan.methods import get_method, method_class
from ddgan.methods.ddgan import build_discriminator
from ddgan.networks import MLPDiscriminator, MLPGenerator
from ddgan.networks.fir import fir_downsample, fir_kernel_2d
from ddgan.precision import Bf16Network, master, resolve_precision
from ddgan.toy import TOY_DEFAULTS, run_toy
from ddgan.train import train

from .conftest import REPO
from .test_speed import TINY_NETS, _batches
from .test_train import assert_same_state, fast_config

# bf16 keeps 8 significant bits: one rounding is 2^-9 relative; a loss after a few dozen
# layers agrees with float32 to about a percent.
BF16_LOSS_TOLERANCE = 3e-2


@pytest.mark.parametrize("device, native, expected", [
    ("cpu", False, "no"), ("cuda", True, "bf16-autocast"), ("cuda", False, "no")])
def test_auto_decides_without_timing_except_on_a_cpu_with_native_bf16(monkeypatch, device, native, expected):
    """Emulated bf16 ran a train step 24x slower than float32 on an AVX2 CPU: no probe there."""
    monkeypatch.setattr(precision, "native_bf16", lambda device: native)

    def no_timing():
        raise AssertionError("auto timed where it must not")
    assert resolve_precision("auto", device, no_timing) == (expected, None)
    for value in ("no", "bf16", "bf16-autocast"):
        assert resolve_precision(value, device, no_timing) == (value, None)
    with pytest.raises(ValueError, match="train.mixed_precision must be one of auto, no, bf16"):
        resolve_precision("fp16", device, no_timing)


def test_auto_on_a_native_bf16_cpu_takes_the_faster_and_caches_it(monkeypatch, tmp_path):
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    for timings, faster in [({"no": 0.9, "bf16": 0.7}, "bf16"), ({"no": 0.6, "bf16": 0.7}, "no")]:
        assert resolve_precision("auto", "cpu", lambda: timings) == (faster, timings)
    monkeypatch.setenv(precision.CACHE_ENV, str(tmp_path / "cache.json"))
    calls = []
    measure = lambda: calls.append(1) or {"no": 0.9, "bf16": 0.7}  # noqa: E731
    assert precision.cached_measure("k", measure) == precision.cached_measure("k", measure)
    assert len(calls) == 1 and json.loads((tmp_path / "cache.json").read_text()) == {"k": {"no": 0.9, "bf16": 0.7}}
    small = load_shared_config(REPO / "configs/tiny.yaml", [])
    wider = load_shared_config(REPO / "configs/tiny.yaml", ["backbone.base_channels=64"])
    longer = load_shared_config(REPO / "configs/tiny.yaml", ["train.max_steps=7"])
    assert precision.cache_key(small, "cpu") != precision.cache_key(wider, "cpu")
    assert precision.cache_key(small, "cpu") == precision.cache_key(longer, "cpu")


def test_bf16_network_computes_in_bf16_from_float32_weights():
    cfg = load_shared_config(REPO / "configs/fmnist/ddgan.yaml", TINY_NETS)
    torch.manual_seed(0)
    discriminator = build_discriminator(cfg, (1, 28, 28))
    wrapped = Bf16Network(discriminator)
    seen = []
    discriminator.conv_in.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    x = torch.randn(8, 1, 28, 28, requires_grad=True)
    t = torch.randint(1, 5, (8,))
    out = wrapped(x, x.detach(), t)
    assert seen == [torch.bfloat16] and out.dtype == torch.float32
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)  # R1's input gradient
    assert grad.dtype == torch.float32
    grad.square().sum().backward()
    assert master(wrapped) is discriminator and list(wrapped.parameters()) == list(discriminator.parameters())
    grads = [p.grad for p in discriminator.parameters() if p.grad is not None]  # biases last get none from R1
    assert all(p.dtype == torch.float32 for p in discriminator.parameters())
    assert len(grads) > 10 and all(g.dtype == torch.float32 for g in grads)
    reference = discriminator(x, x, t)
    assert torch.allclose(out, reference, rtol=BF16_LOSS_TOLERANCE, atol=BF16_LOSS_TOLERANCE * reference.abs().max().item())


def test_bf16_fir_downsampling_gives_the_strided_filter():
    x = torch.randn(2, 3, 14, 14)
    kernel = fir_kernel_2d([1, 3, 3, 1])
    exact = fir_downsample(x, kernel)
    assert torch.allclose(fir_downsample(x.bfloat16(), kernel).float(), exact, atol=2e-2)


def _first_losses(config, mixed_precision):
    cfg = load_shared_config(REPO / config, TINY_NETS + [f"train.mixed_precision={mixed_precision}"])
    torch.manual_seed(0)
    method = method_class(cfg)(cfg, (1, 28, 28), Accelerator(cpu=True))
    stats = method.train_step(cycle(_batches()), 0)
    return {k: v.item() for k, v in stats.items()}, method


@pytest.mark.parametrize("config", ["configs/fmnist/ddgan.yaml", "configs/fmnist/flow.yaml"])
@pytest.mark.parametrize("mixed_precision", ["bf16", "bf16-autocast"])
def test_one_step_in_bf16_matches_float32_within_the_bf16_tolerance(config, mixed_precision):
    """The same initial weights and draws: the losses of the first step, with R1 (every step)."""
    exact, _ = _first_losses(config, '"no"')
    rounded, method = _first_losses(config, mixed_precision)
    assert exact.keys() == rounded.keys()
    for name, value in exact.items():
        assert rounded[name] == pytest.approx(value, rel=BF16_LOSS_TOLERANCE, abs=1e-3), name
    state = method.state_dict()
    for name in ("generator", "discriminator", "network", "ema"):
        if name in state:
            assert all(v.dtype in (torch.float32, torch.int64) for v in state[name].values()), name


def test_resume_in_bf16_is_exact_and_a_run_resumes_in_another_precision(fake_fmnist, tmp_path):
    extra = ["train.max_steps=8", "train.ckpt_every=4", "divergence.r1_every=2",
             "train.mixed_precision=bf16"]
    train(fast_config(fake_fmnist, tmp_path / "straight", *extra))
    interrupted = fast_config(fake_fmnist, tmp_path / "interrupted", *extra)
    train(interrupted, stop_at=4)
    train(interrupted, resume=True)
    a = checkpoint.load(tmp_path / "straight/checkpoints/last.pt")
    b = checkpoint.load(tmp_path / "interrupted/checkpoints/last.pt")
    assert_same_state(a["method"], b["method"])
    assert a["train_device"].endswith(", bf16 networks") and a["speed"]["mixed_precision"] == "bf16"

    switched = fast_config(fake_fmnist, tmp_path / "interrupted", "train.max_steps=12", "train.ckpt_every=4",
                           "divergence.r1_every=2", 'train.mixed_precision="no"')
    train(switched, resume=True)
    c = checkpoint.load(tmp_path / "interrupted/checkpoints/last.pt")
    assert c["step"] == 12 and c["train_device"] == f"{b['train_device']}; then " \
        f"{b['train_device'].removesuffix('bf16 networks')}float32"
    assert all(torch.isfinite(v).all() for v in c["method"]["generator"].values())


def test_auto_records_its_timed_choice(fake_fmnist, tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    monkeypatch.setenv(precision.CACHE_ENV, str(tmp_path / "cache.json"))
    monkeypatch.setattr(bench, "precision_timings",
                        lambda settings, shape, accelerator: {"no": 0.25, "bf16": 0.125})
    train(fast_config(fake_fmnist, tmp_path / "run", "train.max_steps=2", "train.mixed_precision=auto"))
    state = checkpoint.load(tmp_path / "run/checkpoints/last.pt")
    assert state["speed"]["mixed_precision"] == "bf16"
    assert state["train_device"].endswith("bf16 networks (auto: per step float32 250 ms, bf16 networks 125 ms)")


def test_precision_timings_times_both_and_leaves_the_random_state_alone():
    cfg = load_shared_config(REPO / "configs/fmnist/ddgan.yaml", TINY_NETS)
    before = torch.random.get_rng_state()
    accelerator = Accelerator(cpu=True)
    timings = bench.precision_timings(cfg, (1, 28, 28), accelerator, cycles=1)
    assert set(timings) == {"no", "bf16"} and min(timings.values()) > 0
    assert torch.equal(torch.random.get_rng_state(), before)
    assert not accelerator._models  # the timed networks are not kept


@pytest.mark.parametrize("mixed_precision", ["bf16", "bf16-autocast"])
def test_the_2d_mlps_compute_in_bf16_with_float32_fourier_phases(mixed_precision):
    """At angles of tens of radians bf16 is off by a tenth of a radian: the phases stay float32,
    bit for bit, while the layers run in bf16, and R1's input gradient comes back float32."""
    torch.manual_seed(0)
    discriminator = MLPDiscriminator(hidden=32, depth=2, fourier_features=16, fourier_scale=4.0)
    wrapped = precision.in_precision(discriminator, mixed_precision)
    features, layers = [], []
    discriminator.features.register_forward_hook(lambda module, args, out: features.append(out))
    discriminator.net[0].register_forward_hook(lambda module, args, out: layers.append(out.dtype))
    x = (4 * torch.randn(256, 2)).requires_grad_()
    t = torch.randint(1, 5, (256,))
    out = wrapped(x, x.detach(), t)
    assert layers == [torch.bfloat16] and out.dtype == torch.float32
    assert torch.equal(features[0], discriminator.features(x))
    (grad,) = torch.autograd.grad(out.sum(), x)
    assert grad.dtype == torch.float32
    reference = discriminator(x, x.detach(), t)
    assert torch.allclose(out, reference, rtol=BF16_LOSS_TOLERANCE,
                          atol=BF16_LOSS_TOLERANCE * reference.abs().max().item())


@pytest.mark.parametrize("method, steps", [("ddgan", 2), ("flow", 4)])
def test_the_2d_benchmark_trains_in_bf16_and_samples_from_the_float32_weights(method, steps):
    hp = {**TOY_DEFAULTS, "mixed_precision": "bf16", "batch_size": 64}
    model = get_method(method).toy_model(hp, steps, "js", None, load_config(overrides=[f"method={method}"]))
    mlp = master(getattr(model, "generator", None) or model.network)
    assert isinstance(mlp, MLPGenerator)
    seen = []
    mlp.net[0].register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    model.train_step(lambda: torch.randn(64, 2))
    assert set(seen) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 and p.grad is not None for p in mlp.parameters())
    seen.clear()
    assert model.sample(16, torch.Generator().manual_seed(0)).dtype == torch.float32
    assert set(seen) == {torch.float32}
    assert run_toy(method=method, steps=steps, iters=10, mixed_precision="bf16")["hyperparameters"][
        "mixed_precision"] == "bf16"
    with pytest.raises(ValueError, match="mixed_precision 'auto' times an image run"):
        run_toy(iters=10, mixed_precision="auto")
