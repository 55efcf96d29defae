"""Image datasets held in memory as one uint8 tensor, and a resumable batch stream.

Where the data comes from, in order: `data.root` in the config, the
environment variable DDGAN_DATA, then torchvision's download into
~/.cache/ddgan/data. Fashion-MNIST is read from torchvision's raw idx files
(compressed or not), so a read-only copy works as it is.
"""
import gzip
import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

ENV_VAR = "DDGAN_DATA"
DOWNLOAD_ROOT = Path.home() / ".cache" / "ddgan" / "data"
FMNIST_IMAGES = "train-images-idx3-ubyte"
CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["batches.meta"]
DATASETS = ("fmnist", "cifar10", "imagefolder")


class DataNotFoundError(FileNotFoundError):
    pass


def _configured_root(root):
    """(path, where it came from) or (None, None) when nothing is configured."""
    if root:
        return Path(root).expanduser(), "data.root"
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]).expanduser(), f"${ENV_VAR}"
    return None, None


def _how_to_provide(expected):
    return (f"Expected {expected}. Set data.root=DIR (or the environment variable "
            f"{ENV_VAR}=DIR) to a folder holding them, or leave both unset to let "
            f"torchvision download them into {DOWNLOAD_ROOT}.")


def _read_idx_images(raw_dir):
    for name, opener in ((FMNIST_IMAGES + ".gz", gzip.open), (FMNIST_IMAGES, open)):
        path = raw_dir / name
        if path.exists():
            with opener(path, "rb") as f:
                data = f.read()
            count, rows, cols = (int.from_bytes(data[i:i + 4], "big") for i in (4, 8, 12))
            images = np.frombuffer(data, dtype=np.uint8, offset=16)
            return torch.from_numpy(images.reshape(count, 1, rows, cols).copy())
    return None


def load_fmnist(root):
    configured, source = _configured_root(root)
    expected = f"{{root}}/FashionMNIST/raw/{FMNIST_IMAGES}.gz (torchvision's layout)"
    if configured is not None:
        images = _read_idx_images(configured / "FashionMNIST" / "raw")
        if images is None:
            raise DataNotFoundError(f"Fashion-MNIST not found under {configured} "
                                    f"(from {source}). " + _how_to_provide(expected))
        return images
    return _download("FashionMNIST", expected,
                     lambda: _read_idx_images(DOWNLOAD_ROOT / "FashionMNIST" / "raw"))


def load_cifar10(root):
    from torchvision.datasets import CIFAR10

    configured, source = _configured_root(root)
    expected = "{root}/cifar-10-batches-py/ with " + ", ".join(CIFAR10_FILES)

    def read(folder):
        data = CIFAR10(str(folder), train=True, download=False).data  # [N, H, W, C] uint8
        return torch.from_numpy(data).permute(0, 3, 1, 2).contiguous()

    if configured is not None:
        try:
            return read(configured)
        except RuntimeError as err:  # torchvision: "Dataset not found or corrupted"
            raise DataNotFoundError(f"CIFAR-10 not found under {configured} (from {source}): "
                                    f"{err}. " + _how_to_provide(expected)) from None
    return _download("CIFAR10", expected, lambda: read(DOWNLOAD_ROOT))


def _download(name, expected, read):
    import torchvision.datasets

    try:
        getattr(torchvision.datasets, name)(str(DOWNLOAD_ROOT), train=True, download=True)
    except Exception as err:  # no network, a proxy, a full disk: all end here
        raise DataNotFoundError(f"{name}: no data.root or ${ENV_VAR} is set and the download "
                                f"failed ({type(err).__name__}: {err}). "
                                + _how_to_provide(expected)) from None
    return read()


def load_imagefolder(root, image_size=None):
    """Every image under root/<class>/*, as RGB, optionally resized to image_size."""
    from torchvision import datasets, transforms

    path = Path(root).expanduser() if root else None
    if path is not None and not path.is_dir() and os.environ.get(ENV_VAR):
        path = Path(os.environ[ENV_VAR]) / root  # data.root may be relative to $DDGAN_DATA
    if path is None or not path.is_dir():
        raise DataNotFoundError(
            f"imagefolder needs data.root set to a folder of class folders "
            f"(root/<class>/<image>.jpg|png), absolute or relative to ${ENV_VAR}; got {root!r}")
    steps = [transforms.Resize(image_size), transforms.CenterCrop(image_size)] if image_size else []
    dataset = datasets.ImageFolder(str(path), transform=transforms.Compose(
        steps + [transforms.PILToTensor()]))
    loader = torch.utils.data.DataLoader(dataset, batch_size=500, num_workers=min(4, os.cpu_count()))
    images = [batch for batch, _ in tqdm(loader, desc=f"loading {path}", unit="batch")]
    if not images:
        raise DataNotFoundError(f"no images found under {path}")
    return torch.cat(images)


def load_images(cfg_data):
    """The training set as a uint8 tensor [N, C, H, W]."""
    name = cfg_data["name"]
    if name == "fmnist":
        return load_fmnist(cfg_data["root"])
    if name == "cifar10":
        return load_cifar10(cfg_data["root"])
    if name == "imagefolder":
        return load_imagefolder(cfg_data["root"], cfg_data["image_size"])
    raise ValueError(f"unknown data.name {name!r}; valid: {', '.join(DATASETS)}")


def uses_flip(cfg_data):
    flip = cfg_data["random_flip"]
    return cfg_data["name"] != "fmnist" if flip is None else flip


class ImageBatches:
    """Endless shuffled batches scaled to [-1, 1], with a state that resumes exactly.

    Each epoch is a permutation drawn from (seed, rank, epoch), so the state is
    just two integers. The remainder of an epoch that does not fill a batch is
    dropped.
    """

    def __init__(self, images, batch_size, seed, rank=0, random_flip=False):
        if batch_size > len(images):
            raise ValueError(f"batch size {batch_size} exceeds the dataset's {len(images)} images")
        self.images, self.batch_size = images, batch_size
        self.seed, self.rank, self.random_flip = seed, rank, random_flip
        self.epoch, self.position = 0, 0
        self._order = None

    def _permutation(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.rank * 7919 + self.epoch)
        return torch.randperm(len(self.images), generator=generator).to(self.images.device)

    def __next__(self):
        if self.position + self.batch_size > len(self.images):
            self.epoch, self.position, self._order = self.epoch + 1, 0, None
        if self._order is None:
            self._order = self._permutation()
        index = self._order[self.position:self.position + self.batch_size]
        self.position += self.batch_size
        x = self.images[index].float() / 127.5 - 1
        if self.random_flip:
            flip = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < 0.5
            x = torch.where(flip, x.flip(3), x)
        return x

    def __iter__(self):
        return self

    def state_dict(self):
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state):
        self.epoch, self.position, self._order = state["epoch"], state["position"], None
