"""Images from a checkpoint's EMA network, for `ddgan sample`, `ddgan eval` and Python use."""
import torch
from tqdm import tqdm

from . import checkpoint
from .device import resolve_device
from .methods import get_method
from .methods.common import ema_weights


def ema_network(state, device="cpu"):
    """(network with the EMA weights, method class) of a loaded checkpoint."""
    settings = state["config"]
    method = get_method(settings.method)
    network = method.build_network(settings, state["image_shape"])
    network.load_state_dict(ema_weights(state["method"]["ema"]))
    return network.to(device).eval().requires_grad_(False), method


def load_ema_network(path, device="cpu"):
    """(network with the EMA weights, method class, checkpoint state)."""
    state = checkpoint.load(path)
    return *ema_network(state, device), state


class CallCounter:
    """The network, counting its calls on a progress bar: every sampler shows progress
    without knowing about it."""

    def __init__(self, network, progress):
        self.network, self.progress = network, progress

    def __call__(self, *args):
        self.progress.update()
        return self.network(*args)


@torch.no_grad()
def sample_images(network, sampler, image_shape, num, rng, batch_size=256, progress=None):
    """`num` images in [-1, 1], shape [num, C, H, W], on the CPU, drawn in batches by `sampler`
    (a method's Sampler) from noise drawn with `rng`.

    progress: a description, to show a progress bar over the network calls.
    """
    batches = range(0, num, batch_size)
    bar = tqdm(total=len(batches) * sampler.network_calls, unit="call",
               desc=progress, leave=False, disable=progress is None)
    images = []
    with bar:
        for start in batches:
            images.append(sampler.draw(CallCounter(network, bar), min(batch_size, num - start),
                                       image_shape, rng).float().cpu())
    return torch.cat(images)


def generate(path, num, seed=0, batch_size=256, device=None, steps=None, sampler=None):
    """`num` images from the checkpoint at `path`.

    steps / sampler: as the run's method counts and names them (its steps_symbol and
    samplers: DDPM's K and 'ancestral' | 'ddim', EDM's N and 'heun' | 'euler'); a DDGAN
    samples with its trained T.
    """
    device = resolve_device(device)
    network, method, state = load_ema_network(path, device)
    rng = torch.Generator(device).manual_seed(seed)
    return sample_images(network, method.sampler(state["config"], steps, sampler, device),
                         state["image_shape"], num, rng, batch_size, progress=f"sampling {num}")
