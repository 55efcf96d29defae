import gzip
import importlib.util
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: it reads this once
# Reference features cached by the tests stay out of the user's cache (inherited by subprocesses).
os.environ["DDGAN_FIDELITY_CACHE"] = tempfile.mkdtemp(prefix="ddgan-fidelity-")
# So is auto's choice of precision (ddgan/precision.py): timed once per test session.
os.environ["DDGAN_PRECISION_CACHE"] = str(Path(tempfile.mkdtemp(prefix="ddgan-precision-")) / "precision.json")

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def load_script(name):
    """scripts/<name>.py as a module, to call its functions in-process."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reset_accelerate():
    """Forget the process's AcceleratorState, which accelerate fixes at the first Accelerator():
    tests train and benchmark on the CPU and with several settings in one process."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    reset_accelerate()


def write_fake_fmnist(root, count=256, seed=0, test_count=64):
    """A stand-in for Fashion-MNIST in torchvision's raw layout (idx files, train and t10k).

    Smooth blobs rather than white noise, so a generator has something to learn; the
    label is the blob's column band (10 classes), so a classifier has too.
    """
    raw = Path(root) / "FashionMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:28, :28]
    for prefix, n in (("train", count), ("t10k", test_count)):
        centres = rng.uniform(8, 20, size=(n, 2))
        images = 255 * np.exp(-((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2) / 30)
        labels = np.minimum((centres[:, 1] - 8) / 1.2, 9).astype(np.uint8)
        header = (2051).to_bytes(4, "big") + n.to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
        with gzip.open(raw / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(header + images.astype(np.uint8).tobytes())
        with gzip.open(raw / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write((2049).to_bytes(4, "big") + n.to_bytes(4, "big") + labels.tobytes())
    return Path(root)


@pytest.fixture
def fake_fmnist(tmp_path):
    return write_fake_fmnist(tmp_path / "data")


@pytest.fixture
def real_data_root():
    """The real data folder, $DDGAN_DATA, or skip."""
    root = Path(os.environ.get("DDGAN_DATA", ""))
    if not os.environ.get("DDGAN_DATA") or not (root / "FashionMNIST" / "raw").is_dir():
        pytest.skip(f"real Fashion-MNIST not found under DDGAN_DATA={root}: set it to the folder "
                    f"holding FashionMNIST/raw/")
    return root


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
