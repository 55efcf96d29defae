"""Images from a checkpoint's EMA generator, for `ddgan sample` and for Python use."""
import torch

from . import checkpoint
from .methods.ddgan import build_generator, build_process
from .samplers import ddgan_sampler


def load_ema_generator(path, device="cpu"):
    """(generator, process, state) with the EMA weights of the checkpoint at `path`."""
    state = checkpoint.load(path)
    cfg = state["config"]
    if cfg["method"] != "ddgan":
        raise ValueError(f"{path} is a {cfg['method']} run, not ddgan")
    generator = build_generator(cfg, state["image_shape"])
    ema = {k.removeprefix("module."): v for k, v in state["method"]["ema"].items()
           if k.startswith("module.")}
    generator.load_state_dict(ema)
    return generator.to(device).eval().requires_grad_(False), build_process(cfg), state


@torch.no_grad()
def generate(path, num, seed=0, batch_size=256, device=None):
    """`num` images in [-1, 1], shape [num, C, H, W], on the CPU."""
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    generator, process, state = load_ema_generator(path, device)
    rng = torch.Generator(device).manual_seed(seed)
    nz = state["config"]["generator"]["nz"]
    images = []
    for start in range(0, num, batch_size):
        count = min(batch_size, num - start)
        x_T = torch.randn(count, *state["image_shape"], device=device, generator=rng)
        images.append(ddgan_sampler(generator, process, x_T, nz, rng).cpu())
    return torch.cat(images)
