"""The divergence x T sweep against the baselines at one training budget, then eval and plot.

    python scripts/sweep.py --out runs/sweep --max-steps 20000 --featnet featnets/fmnist.pt

trains, from CONFIG_DIR (default configs/fmnist), ddgan_<divergence>.yaml at each T and
<name>.yaml for each baseline method (ddpm.yaml, edm.yaml, ...), each for --max-steps
steps into OUT/<name>/; evaluates every run with the featnet (trained first when the file does not exist) into OUT/results/sweep.csv;
and plots into OUT/figures/. A finished run is not trained again, an interrupted one
resumes, so the command can be re-run after a time limit. `--set key=value` overrides
go to every run whose method reads the key (e.g. a tiny backbone for a CPU smoke test;
see tests/test_evaluate.py).
"""
import argparse
from pathlib import Path

from ddgan import checkpoint
from ddgan.evaluate import evaluate_runs, write_results
from ddgan.featnet import train_featnet
from ddgan.methods import METHODS, load_shared_config
from ddgan.plot import plot_results
from ddgan.train import Run, train
from divergences import DIVERGENCES


def train_once(settings):
    """Train the settings' run to train.max_steps: start it, resume it, or leave it if finished."""
    run = Run(settings.train.out_dir)
    if run.last.exists():
        if checkpoint.load(run.last)["step"] >= settings.train.max_steps:
            return run.dir
        return train(settings, resume=True)
    return train(settings)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the runs, results and figures")
    parser.add_argument("--config-dir", default="configs/fmnist")
    parser.add_argument("--divergences", nargs="+", default=list(DIVERGENCES))
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4], help="DDGAN's T values")
    parser.add_argument("--baselines", nargs="*",
                        default=[name for name, method in METHODS.items() if not method.steps_trained],
                        help="methods sampled at any step count, each from CONFIG_DIR/<name>.yaml "
                        "(default: every registered one)")
    parser.add_argument("--baseline-steps", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64],
                        help="the baselines' --steps values (DDPM's K, EDM's N with NFE 2N - 1)")
    parser.add_argument("--max-steps", type=int, required=True, help="training steps of every run")
    parser.add_argument("--featnet", required=True, help="featnet file (trained if missing)")
    parser.add_argument("--featnet-epochs", type=int, default=3)
    parser.add_argument("--num-samples", type=int, default=10_000)
    parser.add_argument("--metrics", default="fid,kid,pr")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", dest="overrides",
                        help="config overrides for every run")
    args = parser.parse_args()

    out, config_dir = Path(args.out), Path(args.config_dir)
    common = [f"train.max_steps={args.max_steps}", *args.overrides]
    runs = []
    for divergence in args.divergences:
        for t in args.steps:
            name = f"ddgan_{divergence}_T{t}"
            settings = load_shared_config(config_dir / f"ddgan_{divergence.replace('-', '_')}.yaml",
                                          [f"ddgan.denoising_steps={t}", *common, f"train.out_dir={out / name}"])
            runs.append(train_once(settings))
    for baseline in args.baselines:
        settings = load_shared_config(config_dir / f"{baseline}.yaml", [*common, f"train.out_dir={out / baseline}"])
        runs.append(train_once(settings))

    featnet = Path(args.featnet)
    if not featnet.exists():
        info = train_featnet(featnet, settings.data.name, settings.data.root, settings.data.image_size, epochs=args.featnet_epochs)
        print(f"featnet {info['hash']}: test accuracy {info['test_accuracy']:.4f}")
    rows = evaluate_runs(runs, f"featnet:{featnet}", steps=sorted(set(args.steps) | set(args.baseline_steps)),
                         num_samples=args.num_samples, metrics=args.metrics.split(","),
                         grid_dir=out / "results" / "sweep_grids")
    csv_path = write_results(rows, out / "results" / "sweep.json")
    for path in plot_results([csv_path], out / "figures").values():
        print(path)


if __name__ == "__main__":
    main()
