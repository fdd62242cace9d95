"""Reading and writing checkpoints safely.

Reading: `torch.load(weights_only=True)` with an allow-list of the few harmless types that real
mdistiller/RepDistiller files carry (argparse.Namespace for "opt", numpy scalars for
"accuracy"). Anything else is refused with a one-line `CheckpointError`, never unpickled. A `.safetensors`
file (tensors only, no pickle at all) is read with the safetensors package as a bare state dict.

Writing: temp file in the same folder, fsync, then rename (and fsync of the folder), so a
crash mid-write never destroys the previous file. A write that fails (full disk, read-only
folder) raises a one-line `OutputError` naming the path (runtime/safe_write.py).
"""
import argparse
import os
import pickle
import re

import numpy as np
import torch

from ..errors import CheckpointError, UnreadableCheckpoint
from .safe_write import fsync_folder, write_temp, writing


def _safe_globals():
    allowed = [argparse.Namespace, np.dtype, np.ndarray]
    core = getattr(np, "_core", None) or getattr(np, "core")
    allowed.append(core.multiarray.scalar)
    allowed.append(core.multiarray._reconstruct)
    # Files written under numpy 1.x (all published mdistiller/RepDistiller checkpoints) name these
    # functions "numpy.core.multiarray.*"; numpy 2 moved them to numpy._core, so allow both names.
    allowed.append((core.multiarray.scalar, "numpy.core.multiarray.scalar"))
    allowed.append((core.multiarray._reconstruct, "numpy.core.multiarray._reconstruct"))
    # numpy >= 1.25 pickles dtypes through their classes (np.dtypes.Float64DType, ...)
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        allowed += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return allowed


def load_checkpoint(path, map_location="cpu"):
    """Load a checkpoint file without executing arbitrary pickled code; a missing, empty,
    truncated, foreign or unsafe file is one CheckpointError line naming it."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UnreadableCheckpoint(f"checkpoint {path} does not exist")
    if os.path.getsize(path) == 0:
        raise UnreadableCheckpoint(f"checkpoint {path} is empty (0 bytes; a write that never finished?)")
    if path.endswith(".safetensors"):
        return load_safetensors(path, map_location)
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        # torch's message is several lines of advice; the useful part is the refused global's name.
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        if not found:
            raise UnreadableCheckpoint(f"checkpoint {path} is not a PyTorch checkpoint (its bytes do not unpickle)") from None
        raise UnreadableCheckpoint(
            f"checkpoint {path} holds a pickled {found.group(1)} that is not safe to load; "
            "re-save it with only tensors, numbers, strings and argparse.Namespace") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise UnreadableCheckpoint(f"checkpoint {path} could not be read ({_first_sentence(err)}); "
                              "the file is truncated or not a PyTorch checkpoint") from None
    except (KeyError, IndexError, TypeError):  # torch's legacy reader on other bytes (a text file: KeyError)
        raise UnreadableCheckpoint(f"checkpoint {path} is not a PyTorch checkpoint (its bytes are in no "
                                   "checkpoint format)") from None


def load_safetensors(path, map_location="cpu"):
    """A .safetensors file as a {name: tensor} dict."""
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise CheckpointError(f"checkpoint {path} is a .safetensors file, which needs the safetensors package; "
                              "install it with pip install -e \".[timm]\" (or pip install safetensors)") from None
    try:
        return load_file(path, device=str(map_location))
    except Exception as err:  # noqa: BLE001 - safetensors raises its own error types for bad headers
        raise UnreadableCheckpoint(f"checkpoint {path} could not be read as safetensors ({_first_sentence(err)}); "
                                   "the file is truncated or not a .safetensors file") from None


def _first_sentence(err):
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text.split(". ")[0][:160]


def extract_state_dict(ckpt, path="checkpoint"):
    """The model weights inside a loaded checkpoint: `{"model": sd}`, `{"state_dict": sd}` or a
    bare state dict, with DataParallel/DDP `module.` prefixes removed."""
    if isinstance(ckpt, dict) and "model" in ckpt and isinstance(ckpt["model"], dict):
        sd = ckpt["model"]
    elif isinstance(ckpt, dict) and "state_dict" in ckpt and isinstance(ckpt["state_dict"], dict):
        sd = ckpt["state_dict"]
    elif isinstance(ckpt, dict) and ckpt and all(torch.is_tensor(v) for v in ckpt.values()):
        sd = ckpt
    else:
        keys = ", ".join(list(ckpt)[:8]) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(f"{path} has no model weights (found: {keys}); expected a state dict, "
                              "{'model': state_dict} or {'state_dict': state_dict}")
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


RUN_WEIGHT_FILES = ("student_best", "student_latest", "best", "latest")  # what to name inside a run folder


def missing_weights_words(path):
    """Why `path` (not a file) cannot be a weights file, and which file to name instead:
    'is a folder; name the checkpoint file inside it, e.g. RUN/student_best' or 'does not exist'."""
    if not os.path.isdir(path):
        return "does not exist"
    inside = next((name for name in RUN_WEIGHT_FILES if os.path.isfile(os.path.join(path, name))), None)
    example = os.path.join(path, inside) if inside else os.path.join(path, "<checkpoint file>")
    return f"is a folder; name the checkpoint file inside it, e.g. {example}"


def check_weights(sd, own, path):
    """Every file tensor that fills a floating-point model tensor must be a finite real float
    (an int/bool/complex or NaN/inf tensor would load by a silent cast, or poison the model)."""
    for key, target in own.items():
        value = sd[key]
        if not torch.is_tensor(value):
            raise CheckpointError(f"checkpoint {path} holds a {type(value).__name__} at {key}, not a tensor; "
                                  "it is not a state dict of model weights: point to a checkpoint saved from a model")
        if not target.is_floating_point():
            continue
        if not value.is_floating_point():
            raise CheckpointError(f"checkpoint {path} holds {key} as {str(value.dtype).replace('torch.', '')}, "
                                  "not floating point: these are not trained weights; re-save them as float "
                                  "tensors or point to another checkpoint")
        if not torch.isfinite(value).all():
            raise CheckpointError(f"checkpoint {path} holds NaN/inf values in {key}: the weights are broken "
                                  "(a diverged run?); point to an intact checkpoint, e.g. an earlier epoch_N")


def extract_student_state_dict(ckpt, path="checkpoint"):
    """A classifier's weights from any checkpoint a run or the model zoo produces: a student or
    teacher file (`{"model": sd}`) as is, or the student part of a full distiller checkpoint
    (`latest`/`best`/`epoch_N`, keys `student.*`)."""
    sd = extract_state_dict(ckpt, path)
    prefix = "student."
    if any(k.startswith(prefix) for k in sd):
        sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    return sd


def load_weights(model, path, strict=True, extract=extract_state_dict):
    """Load weights from `path` into `model`, with a clear message when they do not fit.
    `extract=extract_student_state_dict` also takes the student out of a full run checkpoint."""
    sd = extract(load_checkpoint(path), path)
    missing, unexpected = [], []
    own = model.state_dict()
    for k in own:
        if k not in sd:
            missing.append(k)
    for k in sd:
        if k not in own:
            unexpected.append(k)
    check_weights(sd, {k: v for k, v in own.items() if k in sd}, path)
    bad_shape = [k for k in own if k in sd and tuple(own[k].shape) != tuple(sd[k].shape)]
    if strict and (missing or unexpected or bad_shape):
        detail = []
        if missing:
            detail.append(f"missing {len(missing)} (e.g. {missing[0]})")
        if unexpected:
            detail.append(f"unexpected {len(unexpected)} (e.g. {unexpected[0]})")
        if bad_shape:
            k = bad_shape[0]
            detail.append(f"shape mismatch at {k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}")
        raise CheckpointError(f"checkpoint {path} does not fit {type(model).__name__}: {'; '.join(detail)}; "
                              "check the architecture name and number of classes")
    model.load_state_dict(sd, strict=strict)
    return model


def save_atomic(obj, path):
    """torch.save to `path` through a temp file + fsync + rename (never a half-written `path`);
    OutputError when it cannot be written."""
    path = os.fspath(path)
    with writing(path):
        _save_atomic(obj, path)


def _save_atomic(obj, path):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = write_temp(folder, ".tmp_" + os.path.basename(path), lambda f: torch.save(obj, f))
    try:
        os.replace(tmp, path)
    except BaseException:
        os.remove(tmp)
        raise
    fsync_folder(folder)  # the rename itself survives a power loss only once its folder is synced

