"""The device a command samples, evaluates or trains a feature network on: --device, else
cuda when a GPU is visible, else cpu. A device that is not there is an error naming it."""
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
