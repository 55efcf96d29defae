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
CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["batches.meta"]
DATASETS = ("fmnist", "cifar10", "imagefolder")


class DataNotFoundError(FileNotFoundError):
    pass


class DataError(ValueError):
    """The data is there but damaged, or not what the run expects."""


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


FMNIST_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _damaged(path, what):
    return DataError(f"{path} {what}: the file is damaged or cut short; replace it with an "
                     f"intact copy (torchvision's FashionMNIST download writes one)")


def _parse_idx(path, data):
    """The values of an idx file of uint8 (magic 0 0 8 ndim, then ndim big-endian sizes)."""
    ndim = data[3] if len(data) >= 4 else 0
    header = 4 + 4 * ndim
    if data[:3] != b"\x00\x00\x08" or ndim not in (1, 3) or len(data) < header:
        raise _damaged(path, "is not an idx file of uint8 images or labels")
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    if len(data) - header != np.prod(shape):
        raise _damaged(path, f"holds {len(data) - header:,} values where its header announces "
                             f"{' x '.join(map(str, shape))}")
    values = np.frombuffer(data, dtype=np.uint8, offset=header)
    if ndim == 3:
        shape.insert(1, 1)  # a grey channel
    return torch.from_numpy(values.reshape(shape).copy())


def _read_idx(raw_dir, stem):
    """An idx file (images [N, 1, H, W] or labels [N]) as a uint8 tensor, or None if absent."""
    for name, opener in ((stem + ".gz", gzip.open), (stem, open)):
        path = raw_dir / name
        if path.exists():
            try:
                with opener(path, "rb") as f:
                    data = f.read()
            except (OSError, EOFError) as err:  # not gzip: BadGzipFile (an OSError); cut: EOFError
                raise _damaged(path, f"cannot be read ({err})") from None
            return _parse_idx(path, data)
    return None


def _read_fmnist(raw_dir, split):
    images_stem, labels_stem = FMNIST_FILES[split]
    images = _read_idx(raw_dir, images_stem)
    if images is None:
        return None
    labels = _read_idx(raw_dir, labels_stem)
    if labels is not None and len(labels) != len(images):
        raise DataError(f"{raw_dir}: {labels_stem} has {len(labels):,} labels for the "
                        f"{len(images):,} images of {images_stem}; replace them with a matching pair")
    return images, None if labels is None else labels.long()


def load_fmnist(root, split="train"):
    """(images uint8 [N, 1, 28, 28], labels [N] or None if the label file is absent)."""
    configured, source = _configured_root(root)
    expected = (f"{(configured or DOWNLOAD_ROOT) / 'FashionMNIST' / 'raw' / FMNIST_FILES[split][0]}.gz "
                f"(torchvision's layout)")
    if configured is not None:
        found = _read_fmnist(configured / "FashionMNIST" / "raw", split)
        if found is None:
            raise DataNotFoundError(f"Fashion-MNIST not found under {configured} "
                                    f"(from {source}). " + _how_to_provide(expected))
        return found
    return _download("FashionMNIST", expected,
                     lambda: _read_fmnist(DOWNLOAD_ROOT / "FashionMNIST" / "raw", split))


def load_cifar10(root, split="train"):
    """(images uint8 [N, 3, 32, 32], labels [N]) from torchvision's python pickles."""
    from torchvision.datasets import CIFAR10

    configured, source = _configured_root(root)
    expected = f"{(configured or DOWNLOAD_ROOT) / 'cifar-10-batches-py'}/ with " + ", ".join(CIFAR10_FILES)

    def read(folder):
        dataset = CIFAR10(str(folder), train=split == "train", download=False)
        images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()  # from NHWC
        return images, torch.tensor(dataset.targets)

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


def _imagefolder_path(root):
    path = Path(root).expanduser() if root else None
    if path is not None and not path.is_dir() and os.environ.get(ENV_VAR):
        path = Path(os.environ[ENV_VAR]) / root  # data.root may be relative to $DDGAN_DATA
    if path is None or not path.is_dir():
        raise DataNotFoundError(
            f"imagefolder needs data.root set to a folder of class folders "
            f"(root/<class>/<image>.jpg|png), absolute or relative to ${ENV_VAR}; got {root!r}")
    return path


class _ImageFiles(torch.utils.data.Dataset):
    """An image folder's files as (uint8 tensor, label, path, None), or (None, label, path,
    what is wrong) for a file that is not a readable image: an exception raised in a loader
    worker would reach the user as the worker's traceback."""

    def __init__(self, samples, transform):
        self.samples, self.transform = samples, transform

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        from PIL import Image

        path, label = self.samples[index]
        try:
            with Image.open(path) as image:
                return self.transform(image.convert("RGB")), label, path, None
        except (OSError, ValueError) as err:  # PIL's UnidentifiedImageError is an OSError
            return None, label, path, str(err)


def _size_problem(file, shape, first_file, first_shape):
    return (f"{file} is {shape[2]}x{shape[1]} but {first_file} is {first_shape[2]}x"
            f"{first_shape[1]}: the images must share one size; set data.image_size=N to "
            f"resize and centre-crop every image to NxN")


def _collate(items):
    """(images [B, C, H, W], labels, the batch's first file, None), one tensor sent back from
    the loader worker; or (None, None, file, what is wrong) for the batch's first unreadable
    image or image of another size."""
    first, first_file = items[0][0], items[0][2]
    for image, _, file, error in items:
        if error is not None:
            return None, None, file, f"{file} is not a readable image ({error}); remove or replace it"
        if image.shape != first.shape:
            return None, None, file, _size_problem(file, image.shape, first_file, first.shape)
    return (torch.stack([image for image, *_ in items]), torch.tensor([item[1] for item in items]),
            first_file, None)


def load_imagefolder(root, image_size=None):
    """(every image under root/<class>/* as RGB uint8, optionally resized; class indices)."""
    from torchvision import datasets, transforms

    path = _imagefolder_path(root)
    try:
        samples = datasets.ImageFolder(str(path)).samples
    except FileNotFoundError as err:  # torchvision: no class folder, or no image in them
        raise DataNotFoundError(f"no images found under {path} ({err}); an imagefolder is "
                                f"root/<class>/<image>.jpg|png") from None
    steps = [transforms.Resize(image_size), transforms.CenterCrop(image_size)] if image_size else []
    dataset = _ImageFiles(samples, transforms.Compose(steps + [transforms.PILToTensor()]))
    loader = torch.utils.data.DataLoader(dataset, batch_size=500, num_workers=min(4, os.cpu_count()),
                                         collate_fn=_collate)
    batches, first_file = [], None
    for images, labels, file, problem in tqdm(loader, desc=f"loading {path}", unit="batch"):
        if problem is not None:
            raise DataError(problem)
        if batches and images.shape[1:] != batches[0][0].shape[1:]:
            raise DataError(_size_problem(file, images.shape[1:], first_file, batches[0][0].shape[1:]))
        first_file = first_file or file
        batches.append((images, labels))
    return torch.cat([images for images, _ in batches]), torch.cat([labels for _, labels in batches])


def load_dataset(name, root=None, image_size=None, split="train"):
    """(images uint8 [N, C, H, W], labels [N] or None) of the data settings' dataset: `name`
    (data.name) in folder `root` (data.root), an imagefolder resized to `image_size`.

    split 'test': Fashion-MNIST's t10k files, CIFAR-10's test batch, or for an
    imagefolder whose root is .../train the sibling folder .../test.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if name == "fmnist":
        return load_fmnist(root, split)
    if name == "cifar10":
        return load_cifar10(root, split)
    if name == "imagefolder":
        if split == "test":
            train = _imagefolder_path(root)
            if train.name != "train":
                raise DataNotFoundError(f"the test split of an imagefolder is the sibling "
                                        f"'test' folder of a root named 'train'; got {train}")
            root = train.parent / "test"
        return load_imagefolder(root, image_size)
    raise ValueError(f"unknown data.name {name!r}; valid: {', '.join(DATASETS)}")


def load_images(name, root=None, image_size=None):
    """The training set as a uint8 tensor [N, C, H, W]."""
    return load_dataset(name, root, image_size)[0]


def data_label(name, root=None):
    """How results name the data: 'Fashion-MNIST', 'CIFAR-10', or 'imagefolder PARENT/FOLDER'
    (e.g. 'imagefolder cifar10-jpeg/train' for the JPEG copy of CIFAR-10)."""
    if name == "imagefolder":
        path = _imagefolder_path(root).resolve()
        return f"imagefolder {path.parent.name}/{path.name}"
    return {"fmnist": "Fashion-MNIST", "cifar10": "CIFAR-10"}[name]


def uses_flip(name, random_flip=None):
    """data.random_flip, where null is on for every dataset but Fashion-MNIST."""
    return name != "fmnist" if random_flip is None else random_flip


def to_unit_range(images_uint8):
    """uint8 images in [0, 255] as floats in [-1, 1], the range every network sees."""
    return images_uint8.float() / 127.5 - 1


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
        x = to_unit_range(self.images[index])
        if self.random_flip:
            flip = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < 0.5
            x = torch.where(flip, x.flip(3), x)
        return x

    def __iter__(self):
        return self

    def fixed(self, num):
        """The first `num` images (unflipped), scaled as the batches are: the same every call."""
        return to_unit_range(self.images[:num])

    def state_dict(self):
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state):
        self.epoch, self.position, self._order = state["epoch"], state["position"], None
