"""Where tensors live and in what precision — chosen here and nowhere else.

Model and loss code never calls `.cuda()`; the trainer moves the distiller and each batch to
the device returned by `resolve_device` and wraps forward passes in `autocast(...)`.
"""
import contextlib

import torch

from ..errors import ConfigError

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


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


def configure_backends(device, deterministic=False):
    """cuDNN autotuning on CUDA (inputs have fixed shapes), unless determinism is asked for."""
    if deterministic:
        # cuBLAS needs this before its first call to be deterministic; harmless on CPU.
        import os
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = not deterministic
        torch.backends.cudnn.deterministic = deterministic


def autocast(device, amp):
    """Context for forward passes: bf16/fp16 autocast, or nothing for SOLVER.AMP none."""
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[amp])


def grad_scaler(device, amp):
    """fp16 needs loss scaling against gradient underflow; bf16 and fp32 do not (disabled
    scaler = plain backward/step, so the trainer has one code path)."""
    return torch.amp.GradScaler(device.type, enabled=amp == "fp16")


def to_device(value, device, channels_last=False):
    """Move a tensor, or a dict/list/tuple of them, to `device` (images optionally NHWC)."""
    if torch.is_tensor(value):
        value = value.to(device, non_blocking=True)
        if channels_last and value.dim() == 4:
            value = value.contiguous(memory_format=torch.channels_last)
        return value
    if isinstance(value, dict):
        return {k: to_device(v, device, channels_last) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_device(v, device, channels_last) for v in value)
    return value


def prepare_model(model, device, channels_last=False):
    """Move a module to `device`, in NHWC layout when asked."""
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def compile_networks(distiller):
    """SOLVER.COMPILE: compile the student and the teacher (not the distiller, whose Python
    control flow differs per method). In-place `Module.compile()` keeps state-dict keys
    unchanged, so checkpoints stay loadable without compile."""
    for name in ("student", "teacher"):
        net = getattr(distiller, name, None)
        if net is not None:
            net.compile()


def slow_amp_warning(amp, device):
    """A one-line warning for a legitimate but slow SOLVER.AMP choice on `device`, else None."""
    if amp == "fp16" and device.type == "cpu":
        return ("warning: SOLVER.AMP fp16 on a CPU is very slow (CPUs lack fast fp16 kernels); use SOLVER.AMP bf16 "
                "or none there")
    return None
