"""Seeds and random-number-generator snapshots (for runs that repeat and resumes that are exact).

Snapshots hold only tensors, ints, floats and tuples so that they pass the safe
(`weights_only`) checkpoint loader.
"""
import random

import numpy as np
import torch


def seed_everything(seed):
    """Seed python, numpy and torch (all CUDA devices included)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _generator_of(obj):
    gen = getattr(obj, "generator", None)
    return gen if isinstance(gen, torch.Generator) else None


def loader_generators(loader):
    """The private torch.Generators that decide a loader's order, if it has any (a loader or
    sampler built with `generator=`); loaders without one draw from the global torch RNG."""
    found = {}
    for name, obj in (("loader", loader), ("sampler", getattr(loader, "sampler", None)),
                      ("batch_sampler", getattr(getattr(loader, "batch_sampler", None), "sampler", None))):
        gen = _generator_of(obj) if obj is not None else None
        if gen is not None and all(gen is not g for g in found.values()):
            found[name] = gen
    return found


def capture_rng_state(train_loader=None, test_loader=None):
    """Every RNG state that decides what happens next in training."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": (version, tuple(internal), gauss),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "loaders": {},
    }
    for role, loader in (("train", train_loader), ("test", test_loader)):
        if loader is None:
            continue
        for name, gen in loader_generators(loader).items():
            state["loaders"][f"{role}.{name}"] = gen.get_state()
        if callable(getattr(loader, "state_dict", None)):  # loaders with their own RNG (fast loader)
            state["loaders"][f"{role}.state"] = loader.state_dict()
    return state


def restore_rng_state(state, train_loader=None, test_loader=None):
    """Inverse of `capture_rng_state`."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    saved = state.get("loaders", {})
    for role, loader in (("train", train_loader), ("test", test_loader)):
        if loader is None:
            continue
        for name, gen in loader_generators(loader).items():
            if f"{role}.{name}" in saved:
                gen.set_state(saved[f"{role}.{name}"])
        if f"{role}.state" in saved and callable(getattr(loader, "load_state_dict", None)):
            loader.load_state_dict(saved[f"{role}.state"])
