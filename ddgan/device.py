"""The device a command samples, evaluates or trains a feature network on: --device, else
cuda when a GPU is visible, else cpu. A device that is not there is an error naming it.
describe() names a device in results, so that their timings say what they were measured on."""
import platform
from pathlib import Path

import torch


def resolve_device(name=None):
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:  # torch's message lists every device type it knows
        raise ValueError(f"--device {name}: not a device name; use cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"--device {name}: no CUDA GPU is visible here; use --device cpu, "
                             f"or leave --device unset to use a GPU only when there is one")
        if device.index is not None and device.index >= count:
            raise ValueError(f"--device {name}: this machine has {count} CUDA GPU(s), "
                             f"cuda:0 to cuda:{count - 1}")
    elif device.type != "cpu":
        raise ValueError(f"--device {name}: only cpu and cuda are supported here")
    return device


def _cpuinfo(keys):
    """The first processor's /proc/cpuinfo values of `keys`, in their order there (Linux), or None."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return None
    block = cpuinfo.read_text(errors="replace").split("\n\n")[0]
    return [line.split(":", 1)[1].strip() for line in block.splitlines()
            if ":" in line and line.split(":", 1)[0].strip() in keys]


def cpu_model():
    """The CPU's model name (/proc/cpuinfo on Linux), else what the platform module reports."""
    return next(iter(_cpuinfo({"model name"}) or []), None) or platform.processor() or platform.machine()


def cpu_identity():
    """The CPU's vendor, family, model, model name and stepping: a model name like 'AMD EPYC'
    covers several generations, with different speeds in bf16."""
    fields = _cpuinfo({"vendor_id", "cpu family", "model", "model name", "stepping"})
    return "; ".join(fields) if fields else platform.processor() or platform.machine()


def native_bf16(device):
    """Whether `device` computes in bf16 natively: a CUDA GPU that supports it, or a CPU with
    AVX-512 BF16 or AMX. Elsewhere bf16 is emulated, and far slower than float32."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return False


def describe(device):
    """e.g. 'NVIDIA H200' or 'cpu AMD EPYC (AVX512, native bf16), 1 thread': for a CPU, the
    vector instructions torch uses and the thread count, which set its speed more than its name."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    features = torch.backends.cpu.get_cpu_capability() + (", native bf16" if native_bf16(device) else "")
    threads = torch.get_num_threads()
    return f"cpu {cpu_model()} ({features}), {threads} thread{'s' if threads > 1 else ''}"
