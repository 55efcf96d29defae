"""Training precision, train.mixed_precision: float32, the networks in bf16, or bf16 autocast.

- "no": float32 throughout.
- "bf16": every network computes in bf16. On each call its float32 weights are cast to bf16
  and swapped in (torch.func.functional_call), so its activations, normalisations and
  elementwise ops stay in bf16, and its outputs are cast up to float32. The gradients flow
  back through the casts into the float32 weights, which Adam updates in float32, the EMA
  averages and checkpoints save: the usual mixed-precision split, with the master weights
  being the modules' own. Losses, penalties and their reductions take the float32 outputs;
  a penalty's input gradient comes back float32 through the input's cast.
- "bf16-autocast": each network's call runs under torch.autocast, where each operator casts
  its inputs (convolutions and matmuls in bf16, most others in float32), its outputs cast up.
- "auto": float32 where bf16 is not native (no probe); bf16 autocast on a CUDA GPU; on a CPU
  with native bf16, whichever of "no" and "bf16" trains the run's own networks and batch
  faster, timed at start-up (ddgan/bench.py, precision_timings) and cached per CPU, thread
  count, torch version and network configuration, so that a resumed run keeps the choice.

Measured speeds are in docs/PERFORMANCE.md.
"""
import hashlib
import json
import os
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call
from torch.utils._pytree import tree_map

from .device import cpu_identity, native_bf16
from .settings import to_dict

PRECISIONS = ("auto", "no", "bf16", "bf16-autocast")
DESCRIPTIONS = {"no": "float32", "bf16": "bf16 networks", "bf16-autocast": "bf16 autocast"}
CACHE_ENV = "DDGAN_PRECISION_CACHE"


def check_precision(value, key="train.mixed_precision"):
    if value not in PRECISIONS:
        raise ValueError(f"{key} must be one of {', '.join(PRECISIONS)} (fp16 would need loss "
                         f"scaling inside the gradient penalties), got {value!r}")
    return value


def resolve_precision(value, device, measure):
    """The precision a run trains in, `value` with 'auto' decided for `device`, and the
    timings that decided it (None where nothing was timed).

    measure() -> {precision: seconds per step} times 'no' and 'bf16' on the run's own
    networks; it is called only on a CPU with native bf16, where 'auto' is the faster of the
    two (the caller caches its answer: cached_measure)."""
    check_precision(value)
    if value != "auto":
        return value, None
    device = torch.device(device)
    if not native_bf16(device):
        return "no", None
    if device.type == "cuda":
        return "bf16-autocast", None
    timings = measure()
    return min(timings, key=timings.get), timings


def describe(precision, timings=None):
    """'float32', 'bf16 networks' or 'bf16 autocast'; with auto's timings, what they were."""
    text = DESCRIPTIONS[precision]
    if timings:
        measured = ", ".join(f"{DESCRIPTIONS[p]} {1000 * s:.0f} ms" for p, s in timings.items())
        text += f" (auto: per step {measured})"
    return text


def cache_key(settings, device):
    """What the speed of a precision depends on: the CPU, the threads, torch, the method and
    its networks and batch (the config without its paths, schedules and run lengths)."""
    compute = {section: value for section, value in to_dict(settings).items()
               if section not in ("train", "eval", "data", "optim")}
    compute["batch_size"] = settings.train.batch_size
    compute["data"] = settings.data.name
    text = json.dumps([cpu_identity(), torch.get_num_threads(), torch.__version__, str(device), compute],
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_path():
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ddgan" / "precision.json"
    return Path(os.environ.get(CACHE_ENV, default))


def cached_measure(key, measure):
    """measure(), or the timings it gave before for `key` (a JSON file, cache_path())."""
    path = cache_path()
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        cache = {}
    if key not in cache:
        cache[key] = measure()
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(cache, indent=1) + "\n")
        temporary.replace(path)
    return cache[key]


def to_bf16(value):
    return value.to(torch.bfloat16) if torch.is_tensor(value) and value.dtype == torch.float32 else value


def to_float32(value):
    return value.float() if torch.is_tensor(value) and value.dtype == torch.bfloat16 else value


class Bf16Network(nn.Module):
    """`module` computed in bf16 from its float32 weights and buffers (the 'bf16' precision).

    Its parameters are the module's own, so optimisers, the EMA and state dicts see float32;
    master(network) is the module. The module reads its inputs in its weights' dtype (the
    networks cast them on entry), and the outputs come back float32. Buffers keep their dtype:
    a module casts one where it uses it (the FIR kernels to x's dtype), or keeps it float32
    (the Fourier features' frequencies, whose phases bf16 would blur).
    """

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, *args, **kwargs):
        weights = {name: to_bf16(w) for name, w in self.module.named_parameters()}
        return tree_map(to_float32, functional_call(self.module, weights, args, kwargs))


class AutocastNetwork(nn.Module):
    """`module` called under bf16 autocast on its weights' device (the 'bf16-autocast'
    precision), its outputs cast up to float32; master(network) is the module."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, *args, **kwargs):
        device_type = next(self.module.parameters()).device.type
        with torch.autocast(device_type, torch.bfloat16):
            out = self.module(*args, **kwargs)
        return tree_map(to_float32, out)


WRAPPERS = {"bf16": Bf16Network, "bf16-autocast": AutocastNetwork}


def in_precision(module, precision):
    """The module as it computes in `precision` (resolved): wrapped for bf16, else itself."""
    return WRAPPERS[precision](module) if precision in WRAPPERS else module


def master(module):
    """The float32 module behind a precision's wrapper (any other module is its own)."""
    return module.module if isinstance(module, tuple(WRAPPERS.values())) else module
