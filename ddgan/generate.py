"""Images from a checkpoint's EMA network, for `ddgan sample`, `ddgan eval` and Python use."""
import torch

from . import checkpoint
from .methods import METHODS
from .methods.common import ema_weights


def ema_network(state, device="cpu"):
    """(network with the EMA weights, method class) of a loaded checkpoint."""
    cfg = state["config"]
    method = METHODS[cfg["method"]]
    network = method.build_network(cfg, state["image_shape"])
    network.load_state_dict(ema_weights(state["method"]["ema"]))
    return network.to(device).eval().requires_grad_(False), method


def load_ema_network(path, device="cpu"):
    """(network with the EMA weights, method class, checkpoint state)."""
    state = checkpoint.load(path)
    return *ema_network(state, device), state


@torch.no_grad()
def sample_images(network, method, cfg, image_shape, num, rng, batch_size=256, steps=None,
                  sampler=None):
    """`num` images in [-1, 1], shape [num, C, H, W], on the CPU, drawn in batches."""
    images = []
    for start in range(0, num, batch_size):
        count = min(batch_size, num - start)
        images.append(method.sample_with(network, cfg, image_shape, count, rng, steps=steps,
                                         sampler=sampler).float().cpu())
    return torch.cat(images)


def generate(path, num, seed=0, batch_size=256, device=None, steps=None, sampler=None):
    """`num` images from the checkpoint at `path`.

    steps / sampler: DDPM's K and 'ancestral' | 'ddim'; EDM's N and 'heun' | 'euler';
    a DDGAN samples with its trained T.
    """
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    network, method, state = load_ema_network(path, device)
    rng = torch.Generator(device).manual_seed(seed)
    return sample_images(network, method, state["config"], state["image_shape"], num, rng,
                         batch_size, steps, sampler)
