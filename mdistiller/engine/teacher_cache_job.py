"""The job that writes a teacher cache (engine/teacher_cache.py): `write_teacher_cache(cfg)`
is what tools/teacher_cache.py runs.

It draws the batches exactly as a run of `cfg` does (same loaders, same seeding, same epoch
boundaries) and runs only the teacher, as that run's teacher pass would (device, SOLVER.AMP,
channels_last, DISTILLER.TEACHER_CHUNK, a compiled teacher). The student's steps draw no random
numbers for the logit methods that replay, so the run's stream and the job's are the same.
Each epoch's logits are written when the epoch ends; the job holds the cache's lock while it
writes, and a job started again (after a kill) goes on after the last complete epoch from the
RNG state stored with it, so the cache equals an uninterrupted job's.
"""
import glob
import os
import time

from ..distillers import teacher_required
from ..distillers.inputs import input_views, needs_index
from ..errors import ConfigError, OutputError
from .build import build_models
from .device import configure_backends, freeze_and_compile, prepare_model, resolve_device, speed_settings, to_device
from .progress import say
from .run_lock import describe, release, try_claim
from .seeding import capture_rng_state, restore_rng_state, seed_everything
from .step import batch_views, teacher_outputs
from .teacher_cache import (EpochRecorder, cache_root, create_cache, epochs_done, human_bytes, read_epoch,
                            size_on_disk, stream_identity)
from .trainer import as_batch_dict, set_loader_epoch


def check_job_cfg(cfg):
    if cache_root(cfg) is None:
        raise ConfigError("config key DISTILLER.TEACHER_CACHE is off; set it on (<LOG.PREFIX>/teacher_cache) or to "
                          "a folder to write a teacher cache there")
    if not teacher_required(cfg):
        raise ConfigError(f"DISTILLER.TYPE {cfg.DISTILLER.TYPE} uses no teacher, so there is nothing to cache; use "
                          "the config of a run that distils (e.g. KD or SLD)")


def build_teacher_stream(cfg, device, views):
    """(teacher ready to run as a run's teacher pass runs it, train loader, test loader, samples,
    classes, whether batches carry indices)."""
    from ..data import build_loaders

    with_index = needs_index(cfg)
    seed_everything(cfg.SEED)
    train_loader, test_loader, num_data, num_classes = build_loaders(cfg, views, with_index=with_index,
                                                                     device=device)
    _, teacher = build_models(cfg, num_classes)
    speed = speed_settings(cfg, device)
    teacher = prepare_model(teacher.eval().requires_grad_(False), device, speed["channels_last"])
    return teacher, train_loader, test_loader, num_data, num_classes, with_index


def write_teacher_cache(cfg, views=None, announce=None):
    """Write (or complete) the teacher cache of `cfg`'s stream; `views` overrides the view count
    (a paired group's stream carries the most views of its runs); `announce(folder)` is called
    once the job holds the cache (a benchmark's students wait for it). Returns the cache folder."""
    check_job_cfg(cfg)
    device = resolve_device(cfg.DEVICE)
    configure_backends(device, cfg.DETERMINISTIC)
    views = views or input_views(cfg)
    teacher, train_loader, test_loader, num_data, num_classes, with_index = build_teacher_stream(cfg, device, views)
    identity = stream_identity(cfg, teacher, device, views, with_index)
    folder = create_cache(cache_root(cfg), identity)
    ok, holder = try_claim(folder)
    if not ok:
        raise OutputError(f"teacher cache {folder} is being written by {describe(holder)}; wait for it, or stop "
                          "that job first")
    try:
        if announce is not None:
            announce(folder)
        if speed_settings(cfg, device)["teacher_compile"]:
            freeze_and_compile(teacher)
        for stale in glob.glob(os.path.join(glob.escape(folder), ".tmp_*")):
            os.remove(stale)  # a killed job's unfinished epoch file (we hold the lock: it is ours)
        done = epochs_done(folder)
        first = resume_stream(cfg, folder, done, train_loader, test_loader)
        element = 2 if cfg.DISTILLER.TEACHER_CACHE_FP16 or cfg.SOLVER.AMP != "none" else 4
        total = size_on_disk(num_data, views, num_classes, cfg.SOLVER.EPOCHS, element)
        say(f"teacher cache {folder}: {cfg.SOLVER.EPOCHS} epochs x {num_data} samples x {views} view(s) x "
            f"{num_classes} logits = {human_bytes(total)} on disk; {len(done)} epoch(s) already complete")
        for epoch in range(first, cfg.SOLVER.EPOCHS + 1):
            write_epoch(cfg, folder, epoch, teacher, train_loader, test_loader, device)
    finally:
        release(folder)
    return folder


def resume_stream(cfg, folder, done, train_loader, test_loader):
    """The first epoch to write; the RNG state is set to where it starts (after the last
    complete epoch, or SEED as a run's first epoch starts)."""
    last = max((e for e in done if e == done.index(e) + 1), default=0)  # complete from epoch 1 on
    if last:
        restore_rng_state(read_epoch(folder, last)["rng"], train_loader, test_loader)
    else:
        seed_everything(cfg.SEED)
    return last + 1


def write_epoch(cfg, folder, epoch, teacher, loader, test_loader, device):
    """Run the teacher over one epoch of the stream and write its file."""
    speed = speed_settings(cfg, device)
    start = time.perf_counter()
    set_loader_epoch(loader, epoch)
    recorder = EpochRecorder(folder, epoch, cfg.DISTILLER.TEACHER_CACHE_FP16)
    for batch in loader:
        batch = to_device(as_batch_dict(batch), device, speed["channels_last"])
        views = batch_views(batch)
        outs = teacher_outputs(teacher, views, tuple(range(len(views))), speed["teacher_chunk"], device,
                               cfg.SOLVER.AMP)
        recorder.add(batch.get("index"), [logits for logits, _ in outs])
    recorder.save(capture_rng_state(loader, test_loader))
    say(f"teacher cache: epoch {epoch}/{cfg.SOLVER.EPOCHS} written ({time.perf_counter() - start:.1f} s)")
