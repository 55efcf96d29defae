#!/usr/bin/env bash
# The GPU check: one command, one GPU, about 8 minutes. Writes OUT/gpu_check.json and
# OUT/gpu_check.md (the tables to put in docs/PERFORMANCE.md beside the H100 reference).
#
#   scripts/gpu_check.sh OUT [DATA_ROOT]
#
# DATA_ROOT holds FashionMNIST/raw/ (default $DDGAN_DATA); without it the Fashion-MNIST run
# and its FD-cls are skipped. It measures, in this order:
#   1. the CIFAR-10 paper config's DDGAN train step and sampling at T = 1, 2, 4 with batch
#      100 and 1,000: fast (bf16 autocast, TF32, channels_last, fused Adam, torch.compile),
#      fast in float32, and plain;
#   2. the DDPM and EDM paper configs' train steps and sampling (fast);
#   3. the fast-against-plain loss match on CUDA (tests/test_speed.py, its CUDA case);
#   4. a 3-minute Fashion-MNIST DDGAN run (js, T = 4) with its periodic FD-cls.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:?usage: scripts/gpu_check.sh OUT [DATA_ROOT]}
DATA=${2:-${DDGAN_DATA:-}}
mkdir -p "$OUT"
DDGAN=${DDGAN:-.venv/bin/ddgan}
PY=${PY:-.venv/bin/python}
BENCH=(--steps 1 2 4 --warmup 3 --repeats 10)

"$DDGAN" bench configs/cifar10/ddgan.yaml "${BENCH[@]}" --sample-batch 100 1000 --out "$OUT/ddgan_fast.json"
"$DDGAN" bench configs/cifar10/ddgan.yaml "${BENCH[@]}" --sample-batch 100 --mixed-precision no --out "$OUT/ddgan_fast_fp32.json"
"$DDGAN" bench configs/cifar10/ddgan.yaml "${BENCH[@]}" --sample-batch 100 --plain --out "$OUT/ddgan_plain.json"
"$DDGAN" bench configs/cifar10/ddpm.yaml configs/cifar10/edm.yaml --steps 4 18 --warmup 3 --repeats 5 --sample-batch 100 --out "$OUT/baselines_fast.json"
"$PY" -m pytest -q tests/test_speed.py -k cuda 2>&1 | tee "$OUT/loss_match.txt"

if [ -n "$DATA" ] && [ -d "$DATA/FashionMNIST/raw" ]; then
    "$DDGAN" featnet --data fmnist --data-root "$DATA" --epochs 1 --out "$OUT/featnet_fmnist.pt"
    timeout 200 "$DDGAN" train --config configs/fmnist/ddgan.yaml data.root="$DATA" \
        train.out_dir="$OUT/fmnist_js_T4" train.max_steps=100000 train.ckpt_every=500 \
        eval.every_images=64000 eval.num_samples=2000 eval.extractor="featnet:$OUT/featnet_fmnist.pt" || true
fi

"$PY" - "$OUT" <<'EOF'
"""Collect the JSONs into gpu_check.json and gpu_check.md."""
import csv, json, sys
from pathlib import Path

from ddgan.bench import markdown

out = Path(sys.argv[1])
result, lines = {}, []
for name in ("ddgan_fast", "ddgan_fast_fp32", "ddgan_plain", "baselines_fast"):
    path = out / f"{name}.json"
    if path.exists():
        result[name] = json.loads(path.read_text())
        env = result[name]["environment"]
        lines += [f"## {name}", "", f"{env['device']}, torch {env['torch']}, compile {env['compile']} "
                  "(each row names its precision)", "", markdown(result[name]["rows"]), ""]
curve = out / "fmnist_js_T4" / "eval.csv"
if curve.exists():
    result["fmnist_curve"] = list(csv.DictReader(curve.open()))
    lines += ["## Fashion-MNIST js T = 4 (periodic FD-cls, n = 2,000)", "",
              "| images seen | train seconds | FD-cls |", "|---|---|---|"]
    lines += [f"| {r['images_seen']} | {r['train_seconds']} | {float(r['fd']):.2f} |" for r in result["fmnist_curve"]]
if (out / "loss_match.txt").exists():
    result["loss_match"] = (out / "loss_match.txt").read_text().strip().splitlines()[-1]
    lines += ["", f"Loss match on CUDA: {result['loss_match']}"]
(out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")
(out / "gpu_check.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
