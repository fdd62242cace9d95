"""Which device a run uses and the memory layout it prefers: what models and data need to
place tensors. The engine's speed settings (engine/device.py) build on these.

SOLVER.CHANNELS_LAST auto is on for CUDA and for CPUs with oneDNN (its convolutions prefer
NHWC; the README's Speed section has the measured step ratios), off elsewhere.
"""
import torch

from ..errors import ConfigError


def resolve_device(name="auto", local_rank=None):
    """`DEVICE` key -> torch.device. Under torchrun each process takes cuda:LOCAL_RANK."""
    if name == "cpu":
        return torch.device("cpu")
    if name == "auto" and not torch.cuda.is_available():
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ConfigError(f"config key DEVICE is {name!r} but CUDA is not available here; set DEVICE cpu or auto")
    if local_rank is not None:
        return torch.device("cuda", local_rank)
    index = int(name[5:]) if name.startswith("cuda:") else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise ConfigError(f"config key DEVICE is {name!r} but only {torch.cuda.device_count()} CUDA "
                          "device(s) exist; pick one of them or set DEVICE auto")
    return torch.device("cuda", index)


def resolve_channels_last(setting, device):
    """SOLVER.CHANNELS_LAST -> bool (module docstring: what `auto` picks)."""
    if setting != "auto":
        return bool(setting)
    if device.type == "cuda":
        return True
    return device.type == "cpu" and torch.backends.mkldnn.is_available()
