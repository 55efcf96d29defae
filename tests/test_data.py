"""Data: where it is looked for, the errors when it is missing, and the batch stream."""
import gzip
import pickle

import numpy as np
import pytest
import torch

from ddgan import data
from ddgan.data import DataNotFoundError, ImageBatches, load_images

from .conftest import write_fake_fmnist


def cfg(name, root=None, image_size=None):
    return {"name": name, "root": str(root) if root else None, "image_size": image_size}


def test_fmnist_from_data_root(fake_fmnist, monkeypatch):
    monkeypatch.delenv("DDGAN_DATA", raising=False)
    images = load_images(**cfg("fmnist", fake_fmnist))
    assert images.shape == (256, 1, 28, 28) and images.dtype == torch.uint8


def test_fmnist_from_env_var_and_uncompressed_files(tmp_path, monkeypatch):
    root = write_fake_fmnist(tmp_path, count=10)
    gz = root / "FashionMNIST/raw/train-images-idx3-ubyte.gz"
    (gz.parent / "train-images-idx3-ubyte").write_bytes(gzip.decompress(gz.read_bytes()))
    gz.unlink()
    monkeypatch.setenv("DDGAN_DATA", str(root))
    assert load_images(**cfg("fmnist")).shape == (10, 1, 28, 28)


def test_real_fmnist(real_data_root):
    images = load_images(**cfg("fmnist", real_data_root))
    assert images.shape == (60000, 1, 28, 28)
    assert 60 < images.float().mean() < 80  # Fashion-MNIST's mean pixel is about 72.9


def test_missing_fmnist_names_the_files(tmp_path, monkeypatch):
    monkeypatch.delenv("DDGAN_DATA", raising=False)
    with pytest.raises(DataNotFoundError) as err:
        load_images(**cfg("fmnist", tmp_path))
    message = str(err.value)
    assert "FashionMNIST/raw/train-images-idx3-ubyte.gz" in message
    assert "DDGAN_DATA" in message and "data.root" in message


def test_failed_download_says_how_to_provide_the_data(tmp_path, monkeypatch):
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.delenv("DDGAN_DATA", raising=False)
    monkeypatch.setattr(data, "DOWNLOAD_ROOT", tmp_path)
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    for name, expected in (("fmnist", "train-images-idx3-ubyte"), ("cifar10", "data_batch_1")):
        with pytest.raises(DataNotFoundError) as err:
            load_images(**cfg(name))
        assert "download failed" in str(err.value) and expected in str(err.value)


def write_fake_cifar10(root, per_batch=4):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        batch = {"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                 "labels": list(range(per_batch))}
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(i) for i in range(10)]}))
    return folder


def test_cifar10_through_torchvision_with_a_stand_in(tmp_path, monkeypatch):
    """torchvision's CIFAR10 reader on stand-in pickles (its MD5 check is what we bypass)."""
    import torchvision.datasets.cifar

    write_fake_cifar10(tmp_path)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args: True)
    images = load_images(**cfg("cifar10", tmp_path))
    assert images.shape == (20, 3, 32, 32) and images.dtype == torch.uint8


def test_missing_cifar10_names_the_files(tmp_path, monkeypatch):
    monkeypatch.delenv("DDGAN_DATA", raising=False)
    with pytest.raises(DataNotFoundError, match="cifar-10-batches-py/ with data_batch_1"):
        load_images(**cfg("cifar10", tmp_path))


def test_imagefolder_relative_to_env_var(tmp_path, monkeypatch):
    from PIL import Image

    for label in ("cat", "dog"):
        (tmp_path / "jpegs" / "train" / label).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((32, 32, 3), 40 * i, np.uint8)).save(
                tmp_path / "jpegs" / "train" / label / f"{i}.jpg")
    monkeypatch.setenv("DDGAN_DATA", str(tmp_path))
    images = load_images(**cfg("imagefolder", "jpegs/train"))
    assert images.shape == (6, 3, 32, 32)
    assert load_images(**cfg("imagefolder", "jpegs/train", image_size=16)).shape == (6, 3, 16, 16)
    with pytest.raises(DataNotFoundError, match="class folders"):
        load_images(**cfg("imagefolder", "nowhere"))


def test_unknown_dataset():
    with pytest.raises(ValueError, match="fmnist, cifar10, imagefolder"):
        load_images(**cfg("mnist"))


def test_batches_cover_each_epoch_and_resume_exactly():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2).contiguous()
    stream = ImageBatches(images, batch_size=3, seed=5)
    first_epoch = torch.cat([next(stream) for _ in range(3)])  # 9 of 10, remainder dropped
    assert first_epoch.min() >= -1 and first_epoch.max() <= 1
    values = ((first_epoch[:, 0, 0, 0] + 1) * 127.5).round().long()
    assert len(set(values.tolist())) == 9

    state = stream.state_dict()
    ahead = [next(stream) for _ in range(5)]
    resumed = ImageBatches(images, batch_size=3, seed=5)
    resumed.load_state_dict(state)
    for a, b in zip(ahead, (next(resumed) for _ in range(5))):
        assert torch.equal(a, b)


def test_random_flip_flips_about_half():
    images = torch.zeros(1000, 1, 1, 2, dtype=torch.uint8)
    images[..., 1] = 255  # left pixel dark, right bright
    batch = next(ImageBatches(images, batch_size=1000, seed=0, random_flip=True))
    flipped = (batch[:, 0, 0, 0] > 0).float().mean().item()
    assert 0.4 < flipped < 0.6
