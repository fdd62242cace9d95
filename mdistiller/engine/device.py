"""Where tensors live, in what precision and layout — chosen here and nowhere else.

Model and loss code never calls `.cuda()`; the trainer moves the distiller and each batch to
the device returned by `resolve_device` and wraps forward passes in `autocast(...)`.

Exact speed settings (results change by float rounding at most) default to `auto`, resolved
for the device by `speed_settings(cfg, device)`:
  SOLVER.CHANNELS_LAST auto    on for CUDA and for CPUs with oneDNN (its convolutions prefer
                               NHWC; the README's Speed section has the measured step ratios),
                               off elsewhere, and off for mdistiller-style distillers (they run
                               the models themselves and may `.view()` the features, which
                               needs the NCHW layout mdistiller gave them: `legacy_distillers`);
  DISTILLER.TEACHER_CHUNK auto on a CPU the teacher runs in micro-batches of CPU_TEACHER_CHUNK
                               samples, so that its activations stay in cache and under glibc's
                               32 MiB mmap limit (res32x4, 1 thread, CPU seconds for 128 images
                               in chunks of 128 / 64 / 32: 2.08 / 1.89 / 1.83 NCHW, 1.61 / 1.52 /
                               1.60 channels_last, with `keep_freed_memory`); on an accelerator
                               the whole batch in one call.
  DISTILLER.TEACHER_COMPILE    False by default (an option: on the reference 2-core CPU it gave
                               no step-level gain, README "Speed"); auto: on a CPU with a C++
                               compiler, in float32, for long runs only (SOLVER.EPOCHS >=
                               TEACHER_COMPILE_MIN_EPOCHS on the whole training set): the teacher
                               is compiled with inductor's freezing (`compile_networks`), which
                               costs seconds of compiling per input shape, repaid after a few
                               hundred steps; off elsewhere (tests and short runs never wait for a
                               compiler; on CUDA, SOLVER.COMPILE and SOLVER.CUDA_GRAPH are the tools).
A fixed rule rather than a timing at start-up: a resumed run makes the same choice, so it
repeats the uninterrupted one bit for bit. `configure_backends` also keeps freed memory in the
process on a CPU (`keep_freed_memory`).
"""
import contextlib
import ctypes
import ctypes.util
import os
import shutil

import torch

from ..errors import ConfigError
from ..runtime.devices import resolve_channels_last, resolve_device  # noqa: F401 (this module's names too)

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
CPU_TEACHER_CHUNK = 64  # DISTILLER.TEACHER_CHUNK auto on a CPU (module docstring)
TEACHER_COMPILE_MIN_EPOCHS = 10  # DISTILLER.TEACHER_COMPILE auto: runs at least this long (module docstring)
# glibc mallopt parameters (malloc.h) and the values keep_freed_memory sets.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
TRIM_THRESHOLD = 1 << 30  # free memory kept at the top of the heap before it is returned
MMAP_THRESHOLD = 1 << 25  # allocations up to 32 MiB (glibc's maximum) come from the heap


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
    else:
        keep_freed_memory()


def keep_freed_memory():
    """Let glibc's malloc reuse freed blocks of up to 32 MiB instead of unmapping them.

    A CPU step allocates and frees the same multi-MiB tensors (activations, augmented blocks)
    every iteration; by default glibc serves each from fresh pages (mmap) and returns them on
    free, so every step pays a page fault per 4 KiB touched (measured on the fast loader:
    ~1,800 faults per 1,000 samples, 5-10x fewer with this). Memory then stays with the
    process at its peak. One arena for all threads: a thread's own arena lives in heaps that
    glibc unmaps whenever they empty, whatever the thresholds, so the fast loader's worker
    threads paid the page faults again (15-25% of their CPU time in the kernel; ~1-3% with one
    arena; few, large allocations, so the shared arena's lock costs nothing measurable). Call it
    before threads allocate (configure_backends does). No effect (False) where the C library is
    not glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) and libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                    and libc.mallopt(M_ARENA_MAX, 1))
    except (OSError, AttributeError, TypeError):
        return False


def resolve_teacher_chunk(setting, device):
    """DISTILLER.TEACHER_CHUNK -> samples per teacher forward, 0 = the whole batch at once."""
    if setting != "auto":
        return int(setting)
    return CPU_TEACHER_CHUNK if device.type == "cpu" else 0


def cpp_compiler():
    """The C++ compiler torch.compile's CPU code generation calls ($CXX, else g++), or None."""
    return shutil.which(os.environ.get("CXX") or "g++")


def resolve_teacher_compile(setting, cfg, device):
    """DISTILLER.TEACHER_COMPILE -> bool (module docstring: what `auto` picks). ConfigError for
    True on a CPU without a C++ compiler (torch.compile would fail at the first step)."""
    if setting != "auto":
        if setting and device.type == "cpu" and cpp_compiler() is None:
            raise ConfigError("config key DISTILLER.TEACHER_COMPILE is True but no C++ compiler ($CXX or g++) "
                              "was found, which torch.compile needs on a CPU; install g++ or set it False")
        return bool(setting)
    long_run = cfg.SOLVER.EPOCHS >= TEACHER_COMPILE_MIN_EPOCHS and not cfg.DATASET.TRAIN_SUBSET
    return device.type == "cpu" and cfg.SOLVER.AMP == "none" and long_run and cpp_compiler() is not None


def legacy_distillers(cfg):
    """Names of the configured distillers (DISTILLER.TYPE, DISTILLER.STACK) written in
    mdistiller's style: they override `forward_train` and run the models themselves."""
    from ..distillers.base import is_legacy
    from ..distillers.inputs import distiller_classes

    names = [cfg.DISTILLER.TYPE, *cfg.DISTILLER.STACK]
    return [name for name, cls in zip(names, distiller_classes(cfg)) if is_legacy(cls)]


def speed_settings(cfg, device):
    """The resolved exact speed settings of a config on `device`: {"channels_last": bool,
    "teacher_chunk": int, "teacher_compile": bool}. CHANNELS_LAST auto never changes what an
    mdistiller-style distiller sees (module docstring)."""
    auto_nchw = cfg.SOLVER.CHANNELS_LAST == "auto" and bool(legacy_distillers(cfg))
    return {"channels_last": resolve_channels_last(cfg.SOLVER.CHANNELS_LAST, device) and not auto_nchw,
            "teacher_chunk": resolve_teacher_chunk(cfg.DISTILLER.TEACHER_CHUNK, device),
            "teacher_compile": resolve_teacher_compile(cfg.DISTILLER.TEACHER_COMPILE, cfg, device)}


def describe_speed_settings(cfg, device):
    """One line for the run's output: each setting, and `(auto)` where the config left it to us."""
    chosen = speed_settings(cfg, device)
    chunk = chosen["teacher_chunk"] or "whole batch"
    auto = lambda value: " (auto)" if value == "auto" else ""
    layout = auto(cfg.SOLVER.CHANNELS_LAST)
    legacy = legacy_distillers(cfg) if layout else []
    if legacy:
        layout = f" (auto: off for the mdistiller-style distiller {', '.join(legacy)})"
    return (f"SOLVER.CHANNELS_LAST {chosen['channels_last']}{layout} | "
            f"DISTILLER.TEACHER_CHUNK {chunk}{auto(cfg.DISTILLER.TEACHER_CHUNK)} | "
            f"DISTILLER.TEACHER_COMPILE {chosen['teacher_compile']}{auto(cfg.DISTILLER.TEACHER_COMPILE)}")


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
    """Move a tensor, or a dict/list/tuple of them, to `device`, images (4-D) in the layout the
    run chose: NHWC with `channels_last`, else NCHW, whatever layout the loader produced (the fast
    loader may give NHWC, which would make the convolutions' outputs NHWC too)."""
    if torch.is_tensor(value):
        value = value.to(device, non_blocking=True)
        if value.dim() == 4:
            value = value.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
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


def compile_networks(distiller, compile_all=True, freeze_teacher=False):
    """Compile the networks in place (not the distiller, whose Python control flow differs per
    method); `Module.compile()` keeps state-dict keys unchanged, so checkpoints stay loadable
    without compile. The one call site for both settings (the trainer passes both):
      compile_all     SOLVER.COMPILE: the student and the teacher;
      freeze_teacher  DISTILLER.TEACHER_COMPILE: the teacher with inductor's freezing, whatever
                      compile_all says (`freeze_and_compile`).
    """
    student, teacher = getattr(distiller, "student", None), getattr(distiller, "teacher", None)
    if compile_all and student is not None:
        student.compile()
    if teacher is not None and freeze_teacher:
        freeze_and_compile(teacher)
    elif teacher is not None and compile_all:
        teacher.compile()


def freeze_and_compile(teacher):
    """torch.compile a network that only runs in eval mode without gradient, with inductor's
    freezing: weights become constants, so BatchNorm folds into the convolutions, ReLUs fuse
    into them and oneDNN gets prepacked weights. Exact up to float rounding (the folded
    weights are rounded once). The option is passed to this compile only, so other compiles in
    the process (a user's, SOLVER.COMPILE's student) keep torch's defaults. Each input shape
    compiles once (dynamic=False: the chunk size, and an epoch's last, smaller batch, are
    separate specialised graphs, not one slower dynamic one). The weights are read at the first
    call: loading other weights into the network after that needs a new compile."""
    teacher.compile(dynamic=False, options={"freezing": True})


def slow_amp_warning(amp, device):
    """A one-line warning for a legitimate but slow SOLVER.AMP choice on `device`, else None."""
    if amp == "fp16" and device.type == "cpu":
        return ("warning: SOLVER.AMP fp16 on a CPU is very slow (CPUs lack fast fp16 kernels); use SOLVER.AMP bf16 "
                "or none there")
    return None
