"""Metrics: the Fréchet distance in closed form, and the torch-fidelity path with each extractor."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch_fidelity
from scipy import linalg
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from ddgan.data import load_dataset
from ddgan.featnet import load_featnet, train_featnet, weights_hash
from ddgan.metrics import (INCEPTION_ENV_VAR, Extractor, UInt8Images, compute_metrics, equal_size_subset,
                           frechet_distance, inception_weights, quantise, resolve_extractor)


class StandInExtractor(FeatureExtractorBase):
    """Inception's interface (uint8 3-channel in, a feature tuple out) at a tiny cost."""

    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)
        torch.manual_seed(123)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 5, stride=2), nn.Tanh(), nn.AdaptiveAvgPool2d(3),
                                 nn.Flatten())  # 72 features

    @staticmethod
    def get_provided_features_list():
        return ("features",)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return "features"

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return None

    def forward(self, x):
        return (self.net(x.float() / 127.5 - 1),)


if "ddgan-test-standin" not in FEATURE_EXTRACTORS_REGISTRY:
    torch_fidelity.register_feature_extractor("ddgan-test-standin", StandInExtractor)
STANDIN = Extractor("ddgan-test-standin", None, "standin", "test", "FD-standin")


def blobs(count, seed):
    """Grey 28x28 uint8 images of Gaussian blobs at random places."""
    g = torch.Generator().manual_seed(seed)
    centres = 8 + 12 * torch.rand(count, 2, 1, 1, generator=g)
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    images = 255 * torch.exp(-((yy - centres[:, 0]) ** 2 + (xx - centres[:, 1]) ** 2) / 30)
    return images.unsqueeze(1).round().to(torch.uint8)


def corrupt(images, std, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (images.float() + std * torch.randn(images.shape, generator=g)).round().clamp(0, 255).to(torch.uint8)


def test_frechet_distance_matches_the_gaussian_closed_form_and_a_direct_computation():
    rng = np.random.default_rng(0)
    d, n = 4, 200_000
    mu_b, var_a, var_b = np.array([1.0, 0, -2, 0.5]), np.array([1.0, 2, 0.5, 1]), np.array([4.0, 1, 0.5, 3])
    a = rng.normal(size=(n, d)) * np.sqrt(var_a)
    b = mu_b + rng.normal(size=(n, d)) * np.sqrt(var_b)
    closed_form = (mu_b**2).sum() + ((np.sqrt(var_a) - np.sqrt(var_b)) ** 2).sum()  # diagonal covariances
    assert frechet_distance(a, b) == pytest.approx(closed_form, rel=0.01)

    # Direct: tr(S_a + S_b - 2 (S_a^1/2 S_b S_a^1/2)^1/2), a different route to the same trace.
    x, y = rng.normal(size=(500, 6)), rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6)) + 1
    cov_x, cov_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root_x = linalg.sqrtm(cov_x).real
    eigenvalues = np.linalg.eigvalsh(root_x @ cov_y @ root_x)
    direct = (((x.mean(0) - y.mean(0)) ** 2).sum() + np.trace(cov_x) + np.trace(cov_y)
              - 2 * np.sqrt(np.clip(eigenvalues, 0, None)).sum())
    assert frechet_distance(x, y) == pytest.approx(direct, rel=1e-6)


def test_torch_fidelity_path_with_a_stand_in_extractor(tmp_path):
    real, other = blobs(600, seed=0), blobs(300, seed=1)
    values = compute_metrics(other, real, STANDIN, ("fid", "kid", "pr"), reference_name="blobs",
                             cache_root=tmp_path)
    assert set(values) == {"fd", "kid", "kid_std", "precision", "recall"}
    with torch.no_grad():
        extractor = StandInExtractor("x", ["features"])
        direct = frechet_distance(extractor(other.expand(-1, 3, -1, -1))[0],
                                  extractor(real.expand(-1, 3, -1, -1))[0])
    assert values["fd"] == pytest.approx(direct, rel=1e-4)
    assert 0.5 < values["precision"] <= 1 and 0.5 < values["recall"] <= 1  # the same distribution
    subset = equal_size_subset(real, len(other))  # precision/recall: equal-size sets
    assert len(subset) == 300 and torch.equal(subset, equal_size_subset(real, 300))
    with torch.no_grad():
        precision, recall = knn_precision_recall(extractor(other.expand(-1, 3, -1, -1))[0],
                                                 extractor(subset.expand(-1, 3, -1, -1))[0])
    assert (values["precision"], values["recall"]) == pytest.approx((precision, recall), abs=1e-6)
    assert any(tmp_path.iterdir()), "the reference features were not cached"
    assert compute_metrics(other, real, STANDIN, ("fid",), reference_name="blobs",
                           cache_root=tmp_path)["fd"] == pytest.approx(values["fd"], rel=1e-9)


def knn_precision_recall(generated, real, k=3):
    """Kynkaanniemi et al.: precision = the share of generated points inside some real point's
    k-NN ball, recall = the share of real points inside some generated point's."""
    def radii(points):
        return np.sort(np.linalg.norm(points[:, None] - points[None], axis=-1), axis=1)[:, k]

    generated, real = generated.double().numpy(), real.double().numpy()
    cross = np.linalg.norm(generated[:, None] - real[None], axis=-1)  # [n_generated, n_real]
    precision = (cross <= radii(real)[None]).any(axis=1).mean()
    recall = (cross.T <= radii(generated)[None]).any(axis=1).mean()
    return precision, recall


def test_distance_is_zero_against_itself_and_grows_with_noise(tmp_path):
    real = blobs(500, seed=0)
    same = compute_metrics(real, real, STANDIN, ("fid",), cache_root=tmp_path)["fd"]
    assert abs(same) < 1e-6
    distances = [compute_metrics(corrupt(real, std), real, STANDIN, ("fid",), reference_name="blobs",
                                 cache_root=tmp_path)["fd"] for std in (5, 20, 40, 80)]
    assert distances == sorted(distances) and distances[0] > 0, distances


def test_quantise_and_grey_replication():
    images = torch.tensor([-1.0, -0.999, 0.0, 0.999, 1.0, 2.0]).view(1, 1, 1, 6)
    assert quantise(images).flatten().tolist() == [0, 0, 128, 255, 255, 255]
    assert UInt8Images(quantise(images))[0].shape == (3, 1, 6)
    with pytest.raises(TypeError, match="uint8"):
        UInt8Images(images)


def test_featnet_trains_saves_its_hash_and_serves_torch_fidelity(fake_fmnist, tmp_path):
    path = tmp_path / "featnet.pt"
    info = train_featnet(path, "fmnist", str(fake_fmnist),
                         epochs=2, batch_size=32, device="cpu")
    assert info["data"] == "Fashion-MNIST" and 0 <= info["test_accuracy"] <= 1
    network, loaded = load_featnet(path)
    assert loaded["hash"] == info["hash"] == weights_hash(network.state_dict())
    again = train_featnet(tmp_path / "again.pt", "fmnist", str(fake_fmnist), epochs=2, batch_size=32, device="cpu")
    assert again["hash"] == info["hash"], "featnet training is not deterministic"

    extractor = resolve_extractor(f"featnet:{path}")
    assert (extractor.metric_name, extractor.hash, extractor.data) == ("FD-cls", info["hash"], "Fashion-MNIST")
    real, _ = load_dataset("fmnist", str(fake_fmnist))
    generated = corrupt(real[:100], 30)
    fd = compute_metrics(generated, real, extractor, ("fid",), cache_root=tmp_path)["fd"]
    with torch.no_grad():
        direct = frechet_distance(network.features(generated.float() / 127.5 - 1),
                                  network.features(real.float() / 127.5 - 1))
    assert fd == pytest.approx(direct, rel=1e-4)

    saved = torch.load(path, weights_only=True)
    saved["state_dict"]["head.bias"] += 1
    torch.save(saved, tmp_path / "tampered.pt")
    with pytest.raises(ValueError, match="was modified"):
        load_featnet(tmp_path / "tampered.pt")


def test_featnet_learns_real_fashion_mnist(real_data_root, tmp_path):
    """One epoch on 10,000 images already separates the classes (3 full epochs: 92.5%, docs/EVALUATION.md)."""
    info = train_featnet(tmp_path / "f.pt", "fmnist", str(real_data_root), epochs=1, device="cpu", max_train_images=10_000)
    assert info["test_accuracy"] >= 0.78, info


def test_extractor_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="ddgan featnet"):
        resolve_extractor(f"featnet:{tmp_path / 'none.pt'}")
    with pytest.raises(ValueError, match="inception, featnet:PATH"):
        resolve_extractor("clip")
    with pytest.raises(FileNotFoundError, match="--inception-weights points to"):
        inception_weights(str(tmp_path / "missing.pth"))
    monkeypatch.setenv(INCEPTION_ENV_VAR, str(tmp_path / "missing.pth"))
    with pytest.raises(FileNotFoundError, match=INCEPTION_ENV_VAR):
        inception_weights()
    # No path, no variable, and a download that fails: the message lists all three ways.
    monkeypatch.delenv(INCEPTION_ENV_VAR)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr("torch_fidelity.feature_extractor_inceptionv3.URL_INCEPTION_V3",
                        (tmp_path / "unreachable.pth").as_uri())
    with pytest.raises(FileNotFoundError) as err:
        inception_weights()
    for words in ("--inception-weights", INCEPTION_ENV_VAR, "download", "featnet:PATH"):
        assert words in str(err.value)


def find_inception_weights():
    candidates = [os.environ.get(INCEPTION_ENV_VAR),
                  Path(torch.hub.get_dir()) / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth"]
    return next((str(c) for c in candidates if c and Path(c).is_file()), None)


def test_inception_path_when_the_weights_exist(tmp_path):
    path = find_inception_weights()
    if path is None:
        pytest.skip(f"the Inception weights are not on this machine: set {INCEPTION_ENV_VAR} "
                    f"to weights-inception-2015-12-05-6726825d.pth to run this test")
    extractor = resolve_extractor("inception", path)
    real = blobs(64, seed=0)
    values = compute_metrics(corrupt(real, 40), real, extractor, ("fid",), cache_root=tmp_path)
    assert extractor.metric_name == "FID" and values["fd"] > 0
