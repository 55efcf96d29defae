"""Sample-quality metrics: FID / FD-cls, KID and precision/recall, all through torch-fidelity.

Protocol (docs/THEORY.md §8, docs/EVALUATION.md): generated images are quantised
to uint8, grey images are replicated to 3 channels, the reference is the
training set (for precision/recall, an equal-size subset of it), and its
features are cached. The feature network is either torch-fidelity's Inception
(FID, the comparable number) or a classifier trained on the data (FD-cls,
ddgan.featnet), registered with torch-fidelity as `ddgan-featnet` so that
every metric comes from the same torch-fidelity code with either network.
"""
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch_fidelity
from scipy import linalg
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from .data import to_unit_range
from .featnet import load_featnet

INCEPTION_ENV_VAR = "DDGAN_INCEPTION_WEIGHTS"
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
CACHE_ENV_VAR = "DDGAN_FIDELITY_CACHE"  # where reference features are cached
CACHE_ROOT = Path(os.environ.get(CACHE_ENV_VAR, Path.home() / ".cache" / "ddgan" / "fidelity"))


def frechet_distance(features_a, features_b):
    """Fréchet distance between Gaussians fitted to two feature sets [N, d] (docs/THEORY.md §8).

    ||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)), in float64.
    """
    a = torch.as_tensor(features_a, dtype=torch.float64).cpu().numpy()
    b = torch.as_tensor(features_b, dtype=torch.float64).cpu().numpy()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(cov_a @ cov_b)
    covmean = covmean.real  # sqrtm leaves tiny imaginary parts from rounding
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean))


def quantise(images):
    """Images in [-1, 1] -> uint8 [N, C, H, W], rounded as a PNG writer would."""
    return ((images.float() + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)


class UInt8Images(torch.utils.data.Dataset):
    """uint8 images [N, C, H, W] as torch-fidelity reads them: 3 channels (grey replicated)."""

    def __init__(self, images):
        if images.dtype != torch.uint8:
            raise TypeError(f"expected uint8 images, got {images.dtype}; see ddgan.metrics.quantise")
        self.images = images.cpu()

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        image = self.images[index]
        return image.expand(3, -1, -1) if image.shape[0] == 1 else image


class FeatNetExtractor(FeatureExtractorBase):
    """ddgan.featnet's penultimate features (and logits) for torch-fidelity."""

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise ValueError("the featnet extractor needs feature_extractor_weights_path")
        self.network, self.info = load_featnet(feature_extractor_weights_path)
        self.in_channels = self.network.arch["in_channels"]

    @staticmethod
    def get_provided_features_list():
        return ("penultimate", "logits")

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return {"isc": "logits"}.get(metric, "penultimate")

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return None

    def forward(self, x):
        x = to_unit_range(x[:, :self.in_channels])  # torch-fidelity gives 3-channel uint8
        features = self.network.features(x)
        by_name = {"penultimate": features, "logits": self.network.head(features)}
        return tuple(by_name[name] for name in self.features_list)


if "ddgan-featnet" not in FEATURE_EXTRACTORS_REGISTRY:
    torch_fidelity.register_feature_extractor("ddgan-featnet", FeatNetExtractor)


@dataclass(frozen=True)
class Extractor:
    """A feature network as results record it."""
    name: str          # torch-fidelity's registered name
    weights_path: str
    label: str         # 'inception' | 'featnet'
    hash: str          # of the weights: results from different networks never mix
    metric_name: str   # 'FID' | 'FD-cls'
    data: str = None   # the data a featnet was trained on


def file_hash(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def inception_weights(path=None):
    """The Inception weights file: `path`, then $DDGAN_INCEPTION_WEIGHTS, then torch-fidelity's
    download (cached in torch hub's checkpoints folder)."""
    for given, source in ((path, "--inception-weights"), (os.environ.get(INCEPTION_ENV_VAR), f"${INCEPTION_ENV_VAR}")):
        if given:
            if not Path(given).is_file():
                raise FileNotFoundError(f"{source} points to {given}, which does not exist")
            return str(given)
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    cached = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    if not cached.is_file():
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(URL_INCEPTION_V3, str(cached), progress=True)
        except Exception as err:  # offline, proxy, disk: the user needs the same advice
            raise FileNotFoundError(
                f"Inception weights not found: no --inception-weights PATH, no ${INCEPTION_ENV_VAR}, "
                f"and torch-fidelity's download from {URL_INCEPTION_V3} failed ({type(err).__name__}: "
                f"{err}). Download {INCEPTION_FILE} on a machine with internet and pass its path, "
                f"or use the offline --extractor featnet:PATH (see docs/EVALUATION.md).") from None
    return str(cached)


def resolve_extractor(spec, inception_path=None):
    """'inception' or 'featnet:PATH' -> Extractor (checking that the weights exist)."""
    if spec == "inception":
        path = inception_weights(inception_path)
        return Extractor("inception-v3-compat", path, "inception", file_hash(path), "FID")
    if spec.startswith("featnet:"):
        path = spec.split(":", 1)[1]
        if not Path(path).is_file():
            raise FileNotFoundError(f"featnet weights {path} do not exist; train them with "
                                    f"`ddgan featnet --data fmnist --out {path}`")
        _, info = load_featnet(path)
        return Extractor("ddgan-featnet", path, "featnet", info["hash"], "FD-cls", info["data"])
    raise ValueError(f"unknown extractor {spec!r}; valid: inception, featnet:PATH")


def compute_metrics(generated, reference, extractor, metrics=("fid",), reference_name=None,
                    batch_size=256, cache_root=CACHE_ROOT, seed=0, cuda=None, progress=False):
    """{'fd', 'kid', 'kid_std', 'precision', 'recall'} (those asked for) of uint8 image sets,
    through torch-fidelity.

    FID and KID use the whole reference. Precision and recall compare sets of equal size, as
    Kynkaanniemi et al. (2019) define them: a k-NN radius shrinks as its set grows, so they
    use a fixed random subset of the reference, len(generated) images (against all 60,000
    Fashion-MNIST images they would also cost a 60,000^2 distance matrix every time). That is a
    second torch-fidelity call, with the same extractor.
    reference_name names the reference set in torch-fidelity's feature cache (the
    extractor's hash is added, so that different networks never share an entry).
    cuda: run the feature network on the GPU (default: when one is available).
    progress: let torch-fidelity show its progress bars and steps.
    """
    check_metrics(metrics)
    cache_name = f"{reference_name}-{extractor.label}-{extractor.hash}" if reference_name else None
    options = dict(feature_extractor=extractor.name, feature_extractor_weights_path=extractor.weights_path,
                   cuda=torch.cuda.is_available() if cuda is None else cuda, batch_size=batch_size,
                   verbose=progress, save_cpu_ram=True, cache_root=str(cache_root), rng_seed=seed)
    out = {}
    if "fid" in metrics or "kid" in metrics:
        out.update(torch_fidelity.calculate_metrics(
            input1=UInt8Images(generated), input2=UInt8Images(reference), input2_cache_name=cache_name,
            fid="fid" in metrics, kid="kid" in metrics,
            kid_subset_size=min(1000, len(generated), len(reference)), **options))
    if "pr" in metrics:
        subset = equal_size_subset(reference, len(generated))
        out.update(torch_fidelity.calculate_metrics(
            input1=UInt8Images(generated), input2=UInt8Images(subset), prc=True,
            input2_cache_name=cache_name and f"{cache_name}-subset{len(subset)}", **options))
    names = {"fd": "frechet_inception_distance", "kid": "kernel_inception_distance_mean",
             "kid_std": "kernel_inception_distance_std", "precision": "precision", "recall": "recall"}
    return {ours: out[theirs] for ours, theirs in names.items() if theirs in out}


def equal_size_subset(reference, size):
    """The first `size` images of a fixed permutation of the reference (all of it when smaller),
    the same for every model and seed, so its cached features serve every evaluation."""
    if size >= len(reference):
        return reference
    order = torch.randperm(len(reference), generator=torch.Generator().manual_seed(0))
    return reference[order[:size].sort().values]


def check_metrics(metrics):
    unknown = set(metrics) - {"fid", "kid", "pr"}
    if unknown or not metrics:
        raise ValueError(f"unknown metric(s) {sorted(unknown)}; valid: fid, kid, pr (comma-separated)")


# The fewest samples each metric is defined for: a covariance (FID, KID's kernel average)
# needs 2; precision and recall take each sample's 3rd nearest neighbour besides itself.
MIN_SAMPLES = {"fid": 2, "kid": 2, "pr": 4}


def check_sample_count(metrics, num_samples):
    need = max(MIN_SAMPLES[name] for name in metrics)
    if num_samples < need:
        raise ValueError(f"--num-samples must be >= {need} for --metrics {','.join(metrics)}, "
                         f"got {num_samples}")
