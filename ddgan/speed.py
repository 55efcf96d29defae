"""The fast mode: TF32, cuDNN autotuning, channels_last, fused Adam, torch.compile (the
precision, bf16 or float32, is ddgan/precision.py's).

Each switch in the config's `speed` section is true, false or null; null means on
when the accelerator is a CUDA GPU and off elsewhere, so the fast mode is the
default on a GPU and the plain mode is `--plain` (every switch off: strict
float32, torch's eager kernels). None of them changes the mathematics: on a CPU
the losses agree with the plain mode to float rounding (tests/test_speed.py); on
a GPU, TF32 and the choice of kernels make them agree to TF32 precision.
Measured gains are in docs/PERFORMANCE.md.
"""
import warnings

import torch
from torch import nn

SWITCHES = ("tf32", "cudnn_benchmark", "channels_last", "fused_adam", "compile")
PLAIN_OVERRIDES = [f"speed.{name}=false" for name in SWITCHES] + ['train.mixed_precision="no"']
ADAM_MOMENTS = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")


def resolve(speed_cfg, device):
    """The speed settings ({key: value}) with each null switch decided for `device`."""
    for name in SWITCHES:
        if speed_cfg[name] not in (None, True, False):
            raise ValueError(f"speed.{name} must be true, false or null (on with a GPU), "
                             f"got {speed_cfg[name]!r}")
    on_gpu = torch.device(device).type == "cuda"
    settings = {name: on_gpu if speed_cfg[name] is None else speed_cfg[name] for name in SWITCHES}
    backend = settings["compile_backend"] = speed_cfg["compile_backend"]
    if settings["compile"]:
        backends = torch.compiler.list_backends(exclude_tags=())
        if backend not in backends:
            raise ValueError(f"unknown speed.compile_backend {backend!r}; torch has: "
                             f"{', '.join(backends)}")
    return settings


def set_backend_flags(settings):
    """Process-wide flags: TF32 matmuls and convolutions, cuDNN's algorithm search.

    tf32=false is strict float32, stricter than torch's default, which lets cuDNN
    convolutions use TF32.
    """
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


def match_optimizer(optimizer, settings):
    """After optimizer.load_state_dict: this run's Adam variant and memory layout.

    A run may resume with other switches (or on another device, where null switches
    resolve otherwise), but load_state_dict restores the saved run's `fused` flag and
    its moments' layout; fused Adam wants moments laid out as the weights and its step
    count on their device, the other variants want the count on the host.
    """
    for group in optimizer.param_groups:
        group["fused"], group["foreach"] = (True if settings["fused_adam"] else None), None
        for param in group["params"]:
            state = optimizer.state.get(param, {})
            for key in ADAM_MOMENTS:
                if key in state:
                    state[key] = torch.empty_like(param).copy_(state[key])
            if "step" in state:
                device = param.device if settings["fused_adam"] else "cpu"
                state["step"] = state["step"].to(device=device, dtype=torch.float32)


def plain_mode(speed_cfg):
    """The speed settings with every switch off."""
    return {**speed_cfg, **dict.fromkeys(SWITCHES, False)}


def sampling_network(network, device, speed_cfg):
    """network as the speed settings ({key: value}) sample with it on `device`."""
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
    Shapes are static: each batch size gets its own graph, as sampling's last batch does.
    """

    def __init__(self, module, backend="inductor"):
        super().__init__()
        self.module = module
        try:
            self.compiled = torch.compile(module, backend=backend, dynamic=False)
        except RuntimeError as error:  # e.g. a Python version dynamo does not support
            self._fall_back(error)

    def _fall_back(self, error):
        warnings.warn(f"torch.compile failed, running {type(self.module).__name__} uncompiled "
                      f"(--plain or speed.compile=false silences this): {error}", stacklevel=3)
        self.compiled = None

    def forward(self, *args, **kwargs):
        if self.compiled is not None:
            try:
                return self.compiled(*args, **kwargs)
            except torch._dynamo.exc.TorchDynamoException as error:
                # Compiling failed. An error in the call itself (a wrong shape) comes wrapped
                # in one too: running the module uncompiled raises it as it is.
                out = self.module(*args, **kwargs)
                self._fall_back(error)
                return out
        return self.module(*args, **kwargs)
