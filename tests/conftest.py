import gzip
import os

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: it reads this once
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def write_fake_fmnist(root, count=256, seed=0):
    """A stand-in for Fashion-MNIST in torchvision's raw layout: idx header + random pixels."""
    raw = Path(root) / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    # Smooth blobs rather than white noise, so a generator has something to learn.
    yy, xx = np.mgrid[:28, :28]
    centres = rng.uniform(8, 20, size=(count, 2))
    images = 255 * np.exp(-((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2) / 30)
    header = (2051).to_bytes(4, "big") + count.to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    with gzip.open(raw / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(header + images.astype(np.uint8).tobytes())
    return Path(root)


@pytest.fixture
def fake_fmnist(tmp_path):
    return write_fake_fmnist(tmp_path / "data")


@pytest.fixture
def real_data_root():
    """The real data folder ($DDGAN_DATA, else ../shared/data beside the repo), or skip."""
    root = Path(os.environ.get("DDGAN_DATA", REPO.parent / "shared" / "data"))
    if not (root / "FashionMNIST" / "raw").is_dir():
        pytest.skip(f"real Fashion-MNIST not found under {root}: set DDGAN_DATA")
    return root


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
