"""The device a command samples, evaluates or trains a feature network on: --device, else
cuda when a GPU is visible, else cpu. A device that is not there is an error naming it.
describe() names a device in results, so that their timings say what they were measured on."""
import platform
from pathlib import Path

import torch

from .precision import native_bf16


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


def cpu_model():
    """The CPU's model name (/proc/cpuinfo on Linux), else what the platform module reports."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name") and ":" in line:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def describe(device):
    """e.g. 'NVIDIA H200' or 'cpu AMD EPYC (AVX512, native bf16), 1 thread': for a CPU, the
    vector instructions torch uses and the thread count, which set its speed more than its name."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    features = torch.backends.cpu.get_cpu_capability() + (", native bf16" if native_bf16(device) else "")
    threads = torch.get_num_threads()
    return f"cpu {cpu_model()} ({features}), {threads} thread{'s' if threads > 1 else ''}"
