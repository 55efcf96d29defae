"""FD-cls: a classifier trained on the data itself, whose penultimate features stand in for Inception's.

The usual practice for MNIST-like data, where Inception's ImageNet features say
little, and the offline choice everywhere here. `ddgan featnet --data fmnist
--out featnet.pt` trains it with a fixed seed and data order, reports its test
accuracy, and saves it with a hash of its weights: every result computed with
it records that hash, so numbers from different classifiers are never mixed.
"""
import hashlib
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .data import data_label, load_dataset, to_unit_range
from .device import resolve_device
from .files import atomic_write, check_writable

FEATURE_DIM = 256


def conv_block(in_channels, out_channels):
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class FeatNet(nn.Module):
    """A small VGG-style CNN: three stages of two conv blocks, pooled to a 256-d feature."""

    def __init__(self, in_channels, num_classes=10, width=32, feature_dim=FEATURE_DIM):
        super().__init__()
        self.arch = {"in_channels": in_channels, "num_classes": num_classes, "width": width,
                     "feature_dim": feature_dim}
        stages, channels = [], in_channels
        for mult in (1, 2, 4):
            stages += [conv_block(channels, width * mult), conv_block(width * mult, width * mult),
                       nn.MaxPool2d(2)]
            channels = width * mult
        self.body = nn.Sequential(*stages, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(channels, feature_dim), nn.ReLU(inplace=True))
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, x):
        """The penultimate features [B, feature_dim] of images x in [-1, 1]."""
        return self.body(x)

    def forward(self, x):
        return self.head(self.features(x))


def weights_hash(state_dict):
    """12 hex digits of SHA-256 over the weights (names and bytes), independent of the file format."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        digest.update(name.encode())
        digest.update(state_dict[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:12]


@torch.no_grad()
def accuracy(network, images, labels, batch_size=1000):
    network.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        x = to_unit_range(images[start:start + batch_size])
        correct += (network(x).argmax(1) == labels[start:start + batch_size].to(x.device)).sum().item()
    return correct / len(images)


def train_featnet(out, data, root=None, image_size=None, epochs=3, batch_size=128, lr=2e-3,
                  width=32, seed=0, device=None, max_train_images=None):
    """Train on the training split of `data` (data.name) in `root`, test on its test split,
    save to `out`; returns the info dict.

    Deterministic on a CPU for a given machine and torch version: seeded weights, a seeded
    data order and augmentation (random horizontal flips), Adam with a one-cycle schedule.
    On a GPU, cuDNN's backward passes may differ between runs: the hash says which was used.
    """
    device = resolve_device(device)
    out = Path(out)
    check_writable(out.parent, "--out")  # before an epoch of training, not after
    images, labels = load_dataset(data, root, image_size, "train")
    test_images, test_labels = load_dataset(data, root, image_size, "test")
    if labels is None or test_labels is None:
        raise FileNotFoundError("featnet needs class labels for the train and test splits "
                                "(for Fashion-MNIST: the *-labels-idx1-ubyte.gz files)")
    if max_train_images:
        images, labels = images[:max_train_images], labels[:max_train_images]
    images, labels = images.to(device), labels.to(device)
    test_images, test_labels = test_images.to(device), test_labels.to(device)

    torch.manual_seed(seed)
    network = FeatNet(images.shape[1], int(labels.max()) + 1, width).to(device)
    steps_per_epoch = len(images) // batch_size
    optimizer = torch.optim.Adam(network.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=epochs * steps_per_epoch)
    order_rng = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    for epoch in range(epochs):
        network.train()
        order = torch.randperm(len(images), generator=order_rng).to(device)
        for i in tqdm(range(steps_per_epoch), desc=f"featnet epoch {epoch + 1}/{epochs}", unit="batch"):
            index = order[i * batch_size:(i + 1) * batch_size]
            x = to_unit_range(images[index])
            flip = torch.rand(len(x), 1, 1, 1, generator=order_rng).to(device) < 0.5
            x = torch.where(flip, x.flip(3), x)
            loss = F.cross_entropy(network(x), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    network = network.cpu()
    state_dict = network.state_dict()
    info = {"data": data_label(data, root), "image_shape": list(images.shape[1:]),
            "test_accuracy": accuracy(network, test_images.cpu(), test_labels.cpu()),
            "num_train_images": len(images), "num_test_images": len(test_images),
            "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
            "train_seconds": round(time.perf_counter() - started, 1),
            "device": str(device), "torch": str(torch.__version__), "hash": weights_hash(state_dict)}
    atomic_write(out, lambda f: torch.save({"arch": network.arch, "state_dict": state_dict,
                                            "info": info}, f))
    return info


def load_featnet(path):
    """(FeatNet in eval mode, its info dict); the weights must match their recorded hash."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        network = FeatNet(**saved["arch"])
        network.load_state_dict(saved["state_dict"])
    except Exception as err:  # not a torch file, or not a featnet's: same advice
        raise ValueError(f"{path} is not a ddgan featnet file ({type(err).__name__}: {err}); "
                         f"train one with `ddgan featnet`") from None
    found = weights_hash(saved["state_dict"])
    if found != saved["info"]["hash"]:
        raise ValueError(f"{path}: its weights hash to {found}, not the recorded "
                         f"{saved['info']['hash']}; the file was modified. Retrain it with "
                         f"`ddgan featnet`.")
    return network.eval().requires_grad_(False), saved["info"]
