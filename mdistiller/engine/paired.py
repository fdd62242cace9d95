"""Paired training: several students (any distillers, stacks included, any student networks)
learn from ONE teacher on ONE data stream, in one process. Each step draws one batch, runs the
teacher once, and every student takes its own optimizer step on exactly that batch, so method
differences are measured on identical data (paired) and the teacher is paid once, not K times.

The step (`SharedTeacherStep`), per batch:
  1. the teacher runs once, without gradient, on the views the runs ask for (one view, or the
     views concatenated, exactly as `Distiller.run_teacher` feeds it);
  2. the runs, one after another: the distiller's own `run_teacher` is called with a stand-in
     teacher (`ServedTeacher`) that answers from the shared pass, then `run_student`,
     `distill`, the run's own update (optimizer, grad scaler, DOT's two-pass update) and its
     metrics — the calls `forward_train` makes, in the same order. Per-run LR schedules,
     checkpoints, logs and output folders are the Trainer's, i.e. what a solo run writes.

Views (the union rule): the group's loader carries two views (weak + strong) when any run's
solo config would get two (`distillers.input_views`); every run gets as many views as its
solo run would, and a one-view run of a two-view group gets the weak view (the one-view
pipeline's augmentation), as the `image` its distiller expects.

Which teacher rows a run needs is found once, on the first batch, by calling its
`run_teacher` on one-sample copies of the views with a recording stand-in (`ProbeTeacher`). A
`run_teacher` may feed the teacher one of the views it was given or the first t of them
concatenated (what every built-in does); anything else is refused with a ValueError.

Exactness. A one-run group does the same floating-point operations and draws the same random
numbers as `tools/train.py`: its weights are bit-identical on CPU. With several runs, each run
equals the solo run that sees the same data stream (same SEED, same views) provided that
  * the students' steps draw no random numbers (no dropout; true of the CIFAR zoo and of the
    logit distillers): the runs share the global generators, so a run that draws shifts what
    the runs after it draw (the data stream is unaffected: loaders own their generators);
  * the run's teacher input equals the group's: a run needing fewer views (KD beside SLD's
    weak + strong) gets its rows of the larger teacher batch, equal up to float rounding.
A one-view run in a two-view group sees the group's stream, not its solo one-view stream
(two-view loading draws more random numbers); the paired comparison is what matters there.

Sharing the teacher: the runs' distillers must hold the same teacher object, or teachers with
identical weights (checked; ValueError otherwise). mdistiller plug-ins that override
`forward_train` (no `distill`) cannot share: they run their own forward, teacher included.

Memory: the runs go one after another, so the peak is about the teacher's outputs plus the
largest student's step. `overlap=True` runs each student on its own CUDA stream so that small
students' kernels overlap (peak: teacher + all students); on CPU it has no effect.
"""
import contextlib

import torch
from torch import nn

from ..config import run_name
from ..distillers.base import Distiller, collect_views, split_outputs, teacher_forward
from ..distillers.stack import vars_along_mro
from ..errors import ConfigError
from .device import autocast
from .run_folder import run_folder

VIEW_KEYS = ("image", "image_weak", "image_strong")
# Config keys every run of a group shares: they decide the data stream, the loop and the
# teacher pass. Keys a run may set for itself: its distiller, student, SOLVER.LR and schedule,
# optimizer, SOLVER.UPDATE, DATASET.VIEWS/INDICES, EXPERIMENT.*, LOG.* (the first config's LOG.QUIET and
# LOG.TENSORBOARD_FREQ drive the shared loop).
SHARED_KEYS = ("SEED", "DEVICE", "DETERMINISTIC", "DATASET", "SOLVER.BATCH_SIZE", "SOLVER.EPOCHS", "SOLVER.AMP",
               "SOLVER.CHANNELS_LAST")
PER_RUN_KEYS = ("DATASET.VIEWS", "DATASET.INDICES")  # the group's loader carries the union (module docstring)
TEACHER_KEYS = ("DISTILLER.TEACHER",)  # among runs that use a teacher (weights are compared when built)
INDEX_KEYS = ("CRD.NCE.K", "CRD.MODE")  # among runs whose batches carry contrast indices (one sampler)


def leaves(cfg, key):
    """[(full key, value)] of a config key, a section expanded into its leaf keys."""
    node = cfg
    for part in key.split("."):
        node = node[part]
    if isinstance(node, dict):
        return [pair for sub in node for pair in leaves(cfg, f"{key}.{sub}")]
    return [(key, node)]


def check_group(cfgs):
    """ConfigError unless the configs can train as one paired group (SHARED_KEYS and co. agree,
    output folders differ)."""
    from ..distillers import teacher_required
    from ..distillers.inputs import needs_index

    if not cfgs:
        raise ConfigError("paired training needs at least one config")
    graphed = next((c for c in cfgs if c.SOLVER.CUDA_GRAPH), None)
    if graphed is not None:
        raise ConfigError(f"config key SOLVER.CUDA_GRAPH is True in {run_name(graphed)}, but paired training runs "
                          "its students' steps itself; set SOLVER.CUDA_GRAPH False, or train that run alone")
    folders = [run_folder(c) for c in cfgs]
    clash = next((f for f in folders if folders.count(f) > 1), None)
    if clash:
        raise ConfigError(f"two paired runs would write to the same folder {clash}; give them distinct EXPERIMENT.NAME")
    groups = ((SHARED_KEYS, list(cfgs)), (TEACHER_KEYS, [c for c in cfgs if teacher_required(c)]),
              (INDEX_KEYS, [c for c in cfgs if needs_index(c)]))
    for keys, members in groups:
        for key in keys:
            for c in members[1:]:
                for (name, first), (_, value) in zip(leaves(members[0], key), leaves(c, key)):
                    if value != first and name not in PER_RUN_KEYS:
                        raise ConfigError(f"paired runs must agree on {name}: {run_name(members[0])} has {first!r} "
                                          f"but {run_name(c)} has {value!r}; set one value in every config, "
                                          "or train them separately")


def shares_teacher(distiller):
    """Whether the step can serve this distiller's teacher: it splits its forward into
    run_teacher / run_student / distill instead of overriding forward_train, and keeps its teacher
    in eval mode (mdistiller-faithful OFD trains its own, see engine.build.build_paired_runs)."""
    return (isinstance(distiller, Distiller) and "forward_train" not in vars_along_mro(type(distiller))
            and not getattr(distiller, "teacher_trains", False))


def same_weights(a, b):
    """Same class and bit-identical state dicts."""
    if type(a) is not type(b):
        return False
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k].to(sa[k].device)) for k in sa)


def shared_teacher(runs):
    """The teacher of the runs that share one (None when no run uses a teacher). ValueError
    when two of them hold different teachers."""
    holders = [run for run in runs if shares_teacher(run.distiller) and run.distiller.teacher is not None]
    if not holders:
        return None
    first = holders[0].distiller.teacher
    for run in holders[1:]:
        if run.distiller.teacher is not first and not same_weights(first, run.distiller.teacher):
            raise ValueError(f"paired runs need one teacher, but {run.files.folder} holds a different one than "
                             f"{holders[0].files.folder}; use the same DISTILLER.TEACHER and TEACHER_WEIGHTS")
    return first


def teacher_rows(views, x, who):
    """(start, stop): the views a teacher input stands for — views[i] itself, or views[:t]
    concatenated. ValueError for anything else (the shared pass could not answer it)."""
    for i, view in enumerate(views):
        if x is view:
            return i, i + 1
    rows = 0
    for t, view in enumerate(views, 1):
        rows += view.shape[0]
        if t > 1 and x.shape[0] == rows and x.shape[1:] == view.shape[1:]:
            return 0, t
    raise ValueError(f"{who}.run_teacher fed the teacher an input that is neither one of the batch's views nor "
                     "its first views concatenated; paired training cannot share the teacher pass with it")


class ProbeTeacher(nn.Module):
    """Stand-in teacher that records which views each call asks for and runs the real teacher."""

    def __init__(self, teacher, views, who):
        super().__init__()
        self.real = [teacher]  # a list: not registered as a submodule
        self.views, self.who, self.stop = views, who, 0

    def forward(self, x):
        self.stop = max(self.stop, teacher_rows(self.views, x, self.who)[1])
        return self.real[0](x)


class ServedTeacher(nn.Module):
    """Stand-in teacher that answers each call from the shared pass `out` over views[:len(sizes)]."""

    def __init__(self, views, out, who):
        super().__init__()
        self.views, self.out, self.who = views, out, who
        self.sizes = [v.shape[0] for v in views]
        self.pieces = None  # per-view outputs, split when first asked for

    def forward(self, x):
        start, stop = teacher_rows(self.views, x, self.who)
        if (start, stop) == (0, len(self.sizes)):
            return self.out  # the very tensors a solo run's teacher call returns
        if stop - start == 1:
            if self.pieces is None:
                self.pieces = split_outputs(self.out, self.sizes)
            return self.pieces[start]
        rows = sum(self.sizes[:stop])
        return split_outputs(self.out, [rows, sum(self.sizes) - rows])[0]


@contextlib.contextmanager
def standing_in(distiller, stand_in):
    """Temporarily replace `distiller.teacher` (only during its run_teacher); the stand-in takes
    the whole input in one call (the shared pass was already run in micro-batches)."""
    real, chunk = distiller.teacher, distiller.teacher_chunk
    distiller.teacher, distiller.teacher_chunk = stand_in, 0
    try:
        yield
    finally:
        distiller.teacher, distiller.teacher_chunk = real, chunk


def solo_batch(batch, views, n):
    """The batch as a run with `n` views receives it alone: `image` = the weak view for one."""
    if n == 1 and len(views) == 2:
        batch = {k: v for k, v in batch.items() if k not in VIEW_KEYS}
        batch["image"] = views[0]
    return batch


class SharedTeacherStep:
    """Trainer step for paired runs (module docstring). `views`: each run's view count (default:
    what its config gives a solo run); `overlap`: one CUDA stream per run."""

    def __init__(self, runs, views=None, overlap=False):
        if views is None:
            from ..distillers.inputs import input_views

            views = [input_views(run.cfg) for run in runs]
        self.views = {id(run): n for run, n in zip(runs, views)}
        self.shares = {id(run): shares_teacher(run.distiller) for run in runs}
        for run, n in zip(runs, views):
            allowed = getattr(run.distiller, "views", (1, 2))
            if self.shares[id(run)] and n not in allowed:
                raise ValueError(f"{type(run.distiller).__name__} takes {allowed} view(s), not {n}")
        self.teacher = shared_teacher(runs)
        # The shared pass runs as the first sharing run's solo pass would (DISTILLER.TEACHER_CHUNK).
        self.teacher_chunk = next((run.distiller.teacher_chunk for run in runs if self.shares[id(run)]), 0)
        first = runs[0]
        self.device, self.amp = first.device, first.amp
        for run in runs[1:]:
            if (run.device, run.amp) != (self.device, self.amp):
                raise ValueError("paired runs must use one device and one SOLVER.AMP")
        self.overlap = overlap and self.device.type == "cuda"
        self.streams = {}
        self.stops = {}  # id(run) -> views of the teacher pass the run reads (0: none)

    def __call__(self, runs, batch, epoch, iteration):
        views = collect_views(batch.get("image"), batch.get("image_weak"), batch.get("image_strong"))
        target = batch["target"]
        kwargs = {k: v for k, v in batch.items() if k not in VIEW_KEYS and k != "target"}
        if self.overlap:
            main = torch.cuda.current_stream(self.device)
        out, need = None, max(self._teacher_views(run, views) for run in runs)
        if need:
            with torch.no_grad(), autocast(self.device, self.amp):
                out = teacher_forward(self.teacher, views[0] if need == 1 else torch.cat(views[:need], dim=0),
                                      self.teacher_chunk)
        for run in runs:
            with self._stream_of(run):
                self._run_one(run, batch, views, out, need, target, kwargs, epoch, iteration)
        if self.overlap:
            for run in runs:
                main.wait_stream(self.streams[id(run)])

    def _stream_of(self, run):
        if not self.overlap:
            return contextlib.nullcontext()
        stream = self.streams.setdefault(id(run), torch.cuda.Stream(self.device))
        stream.wait_stream(torch.cuda.current_stream(self.device))  # the batch and teacher outputs are ready
        return torch.cuda.stream(stream)

    def _teacher_views(self, run, views):
        """How many of the batch's views this run's run_teacher reads (probed on the first batch)."""
        key = id(run)
        if key not in self.stops:
            distiller = run.distiller
            if not self.shares[key] or distiller.teacher is None:
                self.stops[key] = 0
            else:
                probe_views = [v[:1].clone() for v in views]
                probe = ProbeTeacher(self.teacher, probe_views, type(distiller).__name__)
                with standing_in(distiller, probe), autocast(self.device, self.amp):
                    distiller.run_teacher(probe_views[:self.views[key]])
                self.stops[key] = probe.stop
        return self.stops[key]

    def _run_one(self, run, batch, views, out, need, target, kwargs, epoch, iteration):
        n = self.views[id(run)]
        distiller = run.distiller
        if not self.shares[id(run)]:
            run.step(solo_batch(batch, views, n), epoch, iteration)
            return
        own = views[:n]
        with autocast(run.device, run.amp):
            if distiller.teacher is None:
                teacher_outs = distiller.run_teacher(own)
            else:
                with standing_in(distiller, ServedTeacher(views[:need], out, type(distiller).__name__)):
                    teacher_outs = distiller.run_teacher(own)
            student_outs = distiller.run_student(own)
            preds, losses = distiller.distill(student_outs, teacher_outs, target, epoch=epoch, **kwargs)
        loss = run.update(run, losses)
        run.record(loss, losses, preds, target, iteration)
