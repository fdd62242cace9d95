"""Teacher-output replay (DISTILLER.TEACHER_CACHE): the teacher's logits for every (epoch,
iteration, view) of one batch stream, computed once and read back by every run of that stream.
This module owns the cache's files: what identifies a stream, the writer and the reader.

Layout: `<root>/<stream key>/` (root: DISTILLER.TEACHER_CACHE, `on` = <LOG.PREFIX>/teacher_cache)
  stream.json        the stream identity (`stream_identity`); the key is a digest of it
  epoch_0001.pt ...  {"format", "key", "epoch", "storage", "dtype", "sizes" (samples per
                     iteration), "index" (sample indices, in batch order), "logits" (one tensor
                     per view, the epoch's iterations one after another), "rng" (the RNG state
                     after the epoch: where the writer resumes)}
  <folder>.lock      held by the job that writes the cache (engine/run_lock.py)
An epoch file is written through a temp file + fsync + rename, so it appears under its name
only complete: a reader never sees a half-written epoch, and a killed writer resumes after
its last complete epoch (`epochs_done`). Caches are only ever added to, never deleted here.

What identifies a stream (`stream_identity`): the teacher's weights (content digest), the
dataset and its settings (DATASET.*), the seed, the batch size, the views and sample indices
the loader carries, and the teacher's numerics: device type, SOLVER.AMP, the channels_last
layout and a compiled teacher (both change the logits' bits), torch's version, DETERMINISTIC,
and the storage (`exact`, or float16 with DISTILLER.TEACHER_CACHE_FP16, which is NOT exact).
DISTILLER.TEACHER_CHUNK counts on GPUs only (on CPUs micro-batches give the same bits, which
tests/test_teacher_cache.py checks). SOLVER.EPOCHS does not count: epoch e's stream does not
depend on how many epochs follow, so a longer cache serves a shorter run. On the fast loader a
one-view run replays a two-view cache's view 0 (`serving_identities`), so KD and SLD share one.
A run replays only when every component matches; otherwise it runs its teacher and its start
line says which component differs (`find_cache`). Replay is exact: the logits are stored in
the dtype the teacher produced, so the student's weights are bit-identical to a live run's.
Each replayed batch's sample indices are compared with the cached ones (a guard: a stream
component the identity missed would show up as another sample order and stop the run); on a
GPU only each epoch's first batch, as the comparison waits for the device.
"""
import glob
import hashlib
import itertools
import json
import os
import re
import time

import torch

from ..errors import CheckpointError, UserError
from ..runtime.checkpoint_io import load_checkpoint, save_atomic
from ..runtime.digest import state_dict_sha256
from ..runtime.safe_write import read_json_object, write_text_atomic
from .device import speed_settings
from .paired import leaves, shares_teacher
from .progress import say
from .run_lock import describe, holder_alive, read_lock

FORMAT = 1
STREAM_FILE = "stream.json"
EPOCH_FILE = re.compile(r"^epoch_(\d{4,})\.pt$")
# DATASET keys that do not decide the training batches: where decoded arrays are cached, whether
# a missing dataset is downloaded, the test split's settings. VIEWS/INDICES count as resolved.
NOT_STREAM_KEYS = ("DATASET.CACHE_DIR", "DATASET.DOWNLOAD", "DATASET.TEST.", "DATASET.TEST_SUBSET", "DATASET.VIEWS",
                   "DATASET.INDICES")
WAIT_POLL_S = 0.5  # how often a reader looks for an epoch file that a live writer has not written yet


class CacheMismatch(UserError):
    """A cache's batches are not this run's (a stream component the identity did not cover)."""


def cache_root(cfg):
    """The folder holding the caches, or None when DISTILLER.TEACHER_CACHE is off."""
    setting = cfg.DISTILLER.TEACHER_CACHE
    if setting == "off":
        return None
    return os.path.join(cfg.LOG.PREFIX, "teacher_cache") if setting == "on" else setting


def _plain(value):
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def stream_identity(cfg, teacher, device, views, with_index):
    """{component: value}: everything that decides the teacher's logits of a run's batches
    (module docstring). `views`, `with_index`: what the run's loader carries."""
    speed = speed_settings(cfg, device)
    identity = {"format": FORMAT, "teacher": cfg.DISTILLER.TEACHER,
                "teacher weights sha256": state_dict_sha256(teacher.state_dict()),
                "SEED": cfg.SEED, "SOLVER.BATCH_SIZE": cfg.SOLVER.BATCH_SIZE, "views": views,
                "indices": bool(with_index), "device": device.type, "SOLVER.AMP": cfg.SOLVER.AMP,
                "SOLVER.CHANNELS_LAST": speed["channels_last"], "DISTILLER.TEACHER_COMPILE": speed["teacher_compile"],
                "DETERMINISTIC": cfg.DETERMINISTIC, "torch": torch.__version__,
                "storage": "float16" if cfg.DISTILLER.TEACHER_CACHE_FP16 else "exact"}
    if device.type != "cpu":
        identity["DISTILLER.TEACHER_CHUNK"] = speed["teacher_chunk"]
    for key, value in leaves(cfg, "DATASET"):
        if not key.startswith(NOT_STREAM_KEYS):
            identity[key] = os.path.abspath(value) if key == "DATASET.ROOT" and value else _plain(value)
    return identity


def stream_key(identity):
    """The cache folder's name: a digest of the identity."""
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_identity(folder):
    """A cache folder's stream.json (None when missing or unreadable: not a cache)."""
    return read_json_object(os.path.join(folder, STREAM_FILE))


def differences(cached, wanted):
    """[(component, cache's value, run's value)] where two identities differ."""
    return [(k, cached.get(k, "(absent)"), wanted.get(k, "(absent)"))
            for k in sorted(set(cached) | set(wanted)) if cached.get(k, "(absent)") != wanted.get(k, "(absent)")]


def serving_identities(identity):
    """The identities of the caches that hold this stream's logits: its own, and for a one-view
    run on the fast loader a two-view cache, whose view 0 is that run's view (the fast loader
    draws a block's weak crops first whatever the view count: data/fast/augment.py). Not where
    a GPU teacher pass takes both views in one forward (TEACHER_CHUNK 0): its rows of a larger
    batch may differ in the last bit."""
    yield identity
    per_view = identity["device"] == "cpu" or identity.get("DISTILLER.TEACHER_CHUNK", 0) > 0
    if identity["views"] == 1 and identity.get("DATASET.LOADER") == "fast" and per_view:
        yield dict(identity, views=2)


def find_cache(root, identity):
    """(folder, None) of a cache holding this stream, or (None, why there is none): the closest
    cache in `root` and the components it differs in."""
    for candidate in serving_identities(identity):
        folder = os.path.join(root, stream_key(candidate))
        if read_identity(folder) == candidate:
            return folder, None
    others = [(f, read_identity(f)) for f in sorted(glob.glob(os.path.join(glob.escape(root), "*"))) if os.path.isdir(f)]
    others = [(f, differences(ident, identity)) for f, ident in others if ident is not None]
    if not others:
        return None, f"no teacher cache in {root}"
    closest, diff = min(others, key=lambda pair: len(pair[1]))
    shown = "; ".join(f"{k} (cache {a!r}, this run {b!r})" for k, a, b in diff[:2])
    more = f" and {len(diff) - 2} more" if len(diff) > 2 else ""
    return None, f"the closest teacher cache {closest} differs in {shown}{more}"


def create_cache(root, identity):
    """The cache folder of this stream, its stream.json written if new."""
    folder = os.path.join(root, stream_key(identity))
    found = read_identity(folder)
    if found is None:
        os.makedirs(folder, exist_ok=True)
        write_text_atomic(os.path.join(folder, STREAM_FILE), json.dumps(identity, indent=1, sort_keys=True) + "\n")
    elif found != identity:
        k, a, b = differences(found, identity)[0]
        raise CheckpointError(f"teacher cache {folder} holds another stream ({k}: {a!r}, wanted {b!r}); "
                              "move it aside, or set DISTILLER.TEACHER_CACHE to another folder")
    return folder


def epoch_path(folder, epoch):
    return os.path.join(folder, f"epoch_{epoch:04d}.pt")


def epochs_done(folder):
    """The complete epochs of a cache, ascending (every epoch file is complete: module docstring)."""
    names = os.listdir(folder) if os.path.isdir(folder) else []
    return sorted(int(m.group(1)) for m in map(EPOCH_FILE.match, names) if m)


def size_on_disk(samples, views, classes, epochs, element_bytes):
    """Bytes of a cache: logits plus the int64 sample indices, per epoch."""
    return epochs * samples * (views * classes * element_bytes + 8)


def human_bytes(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1000


class EpochRecorder:
    """The writer's side of one epoch: `add` per iteration, then `save`."""

    def __init__(self, folder, epoch, fp16=False):
        self.folder, self.epoch, self.fp16 = folder, epoch, fp16
        self.sizes, self.index, self.logits = [], [], []

    def add(self, index, view_logits):
        """One iteration: its sample indices (or None) and the teacher's logits per view."""
        self.sizes.append(int(view_logits[0].shape[0]))
        if index is not None:
            self.index.append(index.detach().to("cpu", torch.int64))
        self.logits.append([t.detach().to("cpu") for t in view_logits])

    def save(self, rng):
        """Write the epoch file atomically (it appears complete or not at all)."""
        dtype = self.logits[0][0].dtype
        per_view = [torch.cat(parts) for parts in zip(*self.logits)]
        if self.fp16:
            per_view = [t.to(torch.float16) for t in per_view]
        record = {"format": FORMAT, "key": os.path.basename(self.folder), "epoch": self.epoch,
                  "storage": "float16" if self.fp16 else "exact", "dtype": str(dtype).replace("torch.", ""),
                  "sizes": self.sizes, "index": torch.cat(self.index) if self.index else None,
                  "logits": per_view, "rng": rng}
        save_atomic(record, epoch_path(self.folder, self.epoch))


def read_epoch(folder, epoch):
    """The epoch file's record, checked to belong to this cache and epoch."""
    path = epoch_path(folder, epoch)
    record = load_checkpoint(path)
    if not isinstance(record, dict) or record.get("key") != os.path.basename(folder) or record.get("epoch") != epoch:
        raise CheckpointError(f"teacher cache file {path} is not epoch {epoch} of this cache; move the cache "
                              "aside and write it again (tools/teacher_cache.py), or set DISTILLER.TEACHER_CACHE off")
    return record


class TeacherReplay:
    """The reader's side: the teacher's outputs of (epoch, iteration), one (logits, {}) per view,
    or None where the cache has no such epoch (the caller then runs its teacher). An epoch that
    the cache's writer (holding its lock) is still computing is waited for."""

    def __init__(self, folder, device):
        self.folder, self.device = folder, device
        self.epoch, self.batches, self.offsets = None, None, None

    def outputs(self, epoch, iteration, index=None):
        if epoch != self.epoch:
            self.epoch, self.batches = epoch, self._load(epoch)
        if self.batches is None:
            return None
        sizes, logits, cached_index = self.batches
        start, n = self.offsets[iteration], sizes[iteration]
        # Every batch on a CPU; on a GPU an epoch's first (the comparison waits for the device).
        checked = index is not None and cached_index is not None and (iteration == 0 or index.device.type == "cpu")
        if checked and not torch.equal(cached_index[start:start + n], index.detach().to("cpu", torch.int64)):
            raise CacheMismatch(f"teacher cache {self.folder} holds other samples than this run's batch at epoch "
                                f"{epoch}, iteration {iteration + 1}; set DISTILLER.TEACHER_CACHE off for this "
                                "run and report the config (its stream identity misses a setting)")
        return [(view[start:start + n].to(self.device), {}) for view in logits]

    def _load(self, epoch):
        if not self._wait_for(epoch):
            say(f"teacher cache {self.folder} has no epoch {epoch}: running the teacher for it")
            return None
        record = read_epoch(self.folder, epoch)
        dtype = getattr(torch, record["dtype"])
        logits = [t.to(dtype) for t in record["logits"]]  # float16 storage: back to the teacher's dtype
        sizes = list(record["sizes"])
        self.offsets = [0, *itertools.accumulate(sizes)][:-1]
        return sizes, logits, record["index"]

    def _wait_for(self, epoch):
        """Whether the epoch's file exists, after waiting while a live writer holds the cache."""
        path, told = epoch_path(self.folder, epoch), False
        while not os.path.exists(path):
            holder = read_lock(self.folder)
            if not holder or not holder_alive(holder):
                return os.path.exists(path)  # it may have landed just before the writer left
            if not told:
                say(f"waiting for epoch {epoch} of teacher cache {self.folder} (written by {describe(holder)})")
                told = True
            time.sleep(WAIT_POLL_S)
        return True


def replay_obstacle(runs, world_size):
    """Why these runs cannot replay teacher outputs (None: they can)."""
    if world_size > 1:
        return "replay runs in one process, not under torchrun"
    if any(run.cfg.SOLVER.CUDA_GRAPH for run in runs):
        return "SOLVER.CUDA_GRAPH captures the teacher pass in its graph"
    for run in runs:
        d = run.distiller
        if d.teacher is not None and not (shares_teacher(d) and d.teacher_logits_only):
            return f"{run.cfg.DISTILLER.TYPE} reads more of the teacher than its logits"
    return None


def replay_for(runs, views, with_index, device, world_size=1):
    """(TeacherReplay or None, the start line saying which and why; None when the cache is off
    or no run uses a teacher). `views`, `with_index`: what the runs' loader carries."""
    root = cache_root(runs[0].cfg)
    teachers = [run for run in runs if run.distiller.teacher is not None]
    if root is None or not teachers:
        return None, None
    why = replay_obstacle(runs, world_size)
    folder = None
    if why is None:
        identity = stream_identity(teachers[0].cfg, teachers[0].distiller.teacher, device, views, with_index)
        folder, why = find_cache(root, identity)
    if folder is None:
        return None, f"teacher cache: not used ({why}); running the teacher"
    return TeacherReplay(folder, device), (f"teacher cache: replaying {folder} "
                                           f"({len(epochs_done(folder))} epoch(s) complete)")
