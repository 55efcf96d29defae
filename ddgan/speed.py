"""The fast mode: TF32, cuDNN autotuning, channels_last, fused Adam and torch.compile.

Each switch in the config's `speed` section is true, false or null; null means on
when the accelerator is a CUDA GPU and off elsewhere, so the fast mode is the
default on a GPU and the plain mode is `--plain` (every switch off). None of them
changes the mathematics: losses agree with the plain mode to float rounding
(tests/test_speed.py). Measured gains are in docs/PERFORMANCE.md.
"""
import warnings

import torch
from torch import nn

from .config import DEFAULTS

SWITCHES = ("tf32", "cudnn_benchmark", "channels_last", "fused_adam", "compile")
PLAIN_OVERRIDES = [f"speed.{name}=false" for name in SWITCHES]


def resolve(speed_cfg, device):
    """The config's speed section with each null switch decided for `device`."""
    on_gpu = torch.device(device).type == "cuda"
    settings = {name: on_gpu if speed_cfg[name] is None else bool(speed_cfg[name])
                for name in SWITCHES}
    backend = speed_cfg["compile_backend"]
    backends = torch.compiler.list_backends(exclude_tags=())
    if backend not in backends:
        raise ValueError(f"unknown speed.compile_backend {backend!r}; torch has: "
                         f"{', '.join(backends)}")
    settings["compile_backend"] = backend
    return settings


def set_backend_flags(settings):
    """Process-wide flags: TF32 matmuls and convolutions, cuDNN's algorithm search."""
    torch.backends.cuda.matmul.allow_tf32 = settings["tf32"]
    torch.backends.cudnn.allow_tf32 = settings["tf32"]
    torch.backends.cudnn.benchmark = settings["cudnn_benchmark"]


def prepare_module(module, settings):
    """The module in the memory format of `settings` (NHWC convolutions with channels_last)."""
    if settings["channels_last"]:
        return module.to(memory_format=torch.channels_last)
    return module


def adam(params, lr, betas, settings):
    """Adam; fused into one kernel per step with fused_adam, else torch's default (foreach)."""
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas),
                            fused=True if settings["fused_adam"] else None)


def sampling_network(network, device, plain=False):
    """network as the fast mode (default) or the plain mode samples with it on `device`."""
    speed_cfg = {**DEFAULTS["speed"], **(dict.fromkeys(SWITCHES, False) if plain else {})}
    settings = resolve(speed_cfg, device)
    set_backend_flags(settings)
    return compiled(prepare_module(network, settings), settings)


def compiled(module, settings):
    """module through torch.compile when settings say so, else the module itself."""
    if not settings["compile"]:
        return module
    return CompiledOrEager(module, settings["compile_backend"])


class CompiledOrEager(nn.Module):
    """Calls torch.compile(module); if compiling fails (no C++ compiler or Triton, an
    unsupported platform), warns once and runs the module as it is from then on.

    It shares the module's parameters. Passes that are differentiated twice (R1, the
    gradient penalty) must use the module itself: compiled graphs have no double backward.
    """

    def __init__(self, module, backend="inductor"):
        super().__init__()
        self.module = module
        try:
            self.compiled = torch.compile(module, backend=backend)
        except RuntimeError as error:  # e.g. a Python version dynamo does not support
            self._fall_back(error)

    def _fall_back(self, error):
        warnings.warn(f"torch.compile failed, running {type(self.module).__name__} uncompiled "
                      f"(set speed.compile=false to silence this): {error}", stacklevel=3)
        self.compiled = None

    def forward(self, *args, **kwargs):
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as error:  # dynamo and the backends raise many types
                # An error in the call itself (a wrong shape) is raised again here, uncompiled.
                out = self.module(*args, **kwargs)
                self._fall_back(error)
                return out
        return self.module(*args, **kwargs)
