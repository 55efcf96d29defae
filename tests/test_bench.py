"""The benchmark runs (at small sizes, on a CPU) and reports what it measured."""
import json
import re

import pytest

from ddgan.cli import main

from .conftest import REPO, reset_accelerate

SMALL = ["backbone.base_channels=8", "backbone.channel_mult=[1, 2]", "backbone.num_res_blocks=1",
         "backbone.attn_resolutions=[]", "discriminator.base_channels=8",
         "discriminator.channel_mult=[1, 2]", "train.batch_size=4", "ddpm.train_timesteps=20"]


def test_bench_times_training_and_sampling_of_each_method(tmp_path, capsys):
    out = tmp_path / "bench.json"
    main(["bench", *(str(REPO / f"configs/fmnist/{m}.yaml") for m in ("ddgan", "ddpm", "edm")),
          "--set", *SMALL, "--steps", "1", "2", "--sample-batch", "3", "--warmup", "1",
          "--repeats", "2", "--cpu", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["environment"]["device"].startswith("cpu") and result["environment"]["torch"]
    rows = result["rows"]
    assert [r["method"] for r in rows if r["what"] == "train"] == ["ddgan js", "ddpm", "edm"]
    assert sorted(r["nfe"] for r in rows if r["method"] == "edm" and r["nfe"]) == [1, 3]
    for r in rows:
        assert r["seconds"] > 0 and abs(r["img_per_s"] * r["seconds"] - (
            r["batch"] if r["what"] != "train" else r["batch"])) < 1e-6 * r["batch"] + 1e-9
    printed = capsys.readouterr().out
    assert re.search(r"\| ddgan js \| (float32|bf16 networks) \(auto\) \| train \| 4 \|", printed) and "img/s" in printed


def test_bench_records_the_fast_mode_and_the_plain_flag(tmp_path):
    fast_on_cpu = ["speed.channels_last=true", "speed.fused_adam=true", "speed.compile=true",
                   "speed.compile_backend=aot_eager"]
    common = [str(REPO / "configs/fmnist/ddgan.yaml"), "--steps", "1", "--sample-batch", "3",
              "--warmup", "1", "--repeats", "1", "--cpu"]
    main(["bench", *common, "--set", *SMALL, *fast_on_cpu, "--out", str(tmp_path / "fast.json")])
    reset_accelerate()  # --plain benchmarks in float32, which a new process would start with
    main(["bench", *common, "--set", *SMALL, *fast_on_cpu, "--plain",
          "--out", str(tmp_path / "plain.json")])
    fast = json.loads((tmp_path / "fast.json").read_text())["environment"]
    plain = json.loads((tmp_path / "plain.json").read_text())["environment"]
    assert fast["compile"] and fast["channels_last"] and fast["fused_adam"] and not fast["tf32"]
    assert not any(plain[k] for k in ("tf32", "cudnn_benchmark", "channels_last", "fused_adam",
                                      "compile"))


def test_flop_count_against_a_hand_count():
    import torch

    from ddgan.bench import counted_flops

    linear, x = torch.nn.Linear(4, 3), torch.randn(2, 4, requires_grad=True)
    assert counted_flops(lambda: linear(x)) == 2 * 2 * 4 * 3  # 2 per multiply-add
    # Backward: the input's and the weight's gradients, one matmul each of the same size.
    assert counted_flops(lambda: linear(x).sum().backward()) == 3 * 2 * 2 * 4 * 3
    conv, image = torch.nn.Conv2d(2, 3, 3, padding=1), torch.randn(1, 2, 5, 5)
    assert counted_flops(lambda: conv(image)) == 2 * 3 * 5 * 5 * 2 * 3 * 3
    # R1's double backward runs under the counter and is counted (more than one backward).
    def r1():
        out = linear(x).pow(2).sum()
        (grad,) = torch.autograd.grad(out, x, create_graph=True)
        grad.pow(2).sum().backward()
    assert counted_flops(r1) > 3 * 2 * 2 * 4 * 3


def test_bench_reports_flops_peak_utilisation_and_spread(tmp_path):
    out = tmp_path / "bench.json"
    main(["bench", str(REPO / "configs/fmnist/ddgan.yaml"), "--set", *SMALL, "--steps", "1",
          "--sample-batch", "3", "--warmup", "1", "--repeats", "3", "--cpu", "--out", str(out)])
    result = json.loads(out.read_text())
    peaks = result["environment"]["peak_tflop_per_s"]
    dtypes = {"no": "float32", "bf16": "bfloat16"}
    # the config's mixed_precision is auto: float32, or on a CPU with native bf16 the faster
    assert {r["precision"] for r in result["rows"]} <= set(dtypes)
    assert {r["requested"] for r in result["rows"]} == {"auto"}
    assert set(peaks) == {dtypes[r["precision"]] for r in result["rows"]} and min(peaks.values()) > 0
    for r in result["rows"]:
        assert r["min_seconds"] <= r["seconds"] <= r["max_seconds"]
        assert r["gflop"] > 0 and r["tflop_per_s"] == pytest.approx(r["gflop"] / 1e3 / r["seconds"])
        assert r["utilisation"] == pytest.approx(r["tflop_per_s"] / r["peak_tflop_per_s"])
    train, sample = result["rows"]
    assert train["gflop"] > 3 * sample["gflop"]  # D on two pairs, G forward and backward, R1
