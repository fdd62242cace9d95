"""Paired training: several students (any distillers, stacks included, any student networks)
learn from ONE teacher on ONE data stream, in one process. Each step draws one batch, runs the
teacher once, and every student takes its own optimizer step on exactly that batch, so method
differences are measured on identical data (paired) and the teacher is paid once, not K times.

The step is engine/step.py's `train_step`, with `SharedTeacherStep` as its `shared` part:
  1. the teacher runs once, without gradient, on the union of the views the runs' distillers
     declare (`Distiller.teacher_views`), through the same `teacher_pass` a solo run uses;
  2. the runs, one after another, each on its solo batch (`serve`) with its views' teacher
     outputs handed to its forward (`forward_train(..., teacher_outs=...)`), then its own update
     (optimizer, grad scaler, DOT's two-pass update) and metrics. Per-run LR schedules,
     checkpoints, logs and output folders are the Trainer's, i.e. what a solo run writes; the
     rules of several runs in one loop (a diverged run stops, runs ahead wait after a kill)
     are engine/run_group.py's.

Views (the union rule): the group's loader carries two views (weak + strong) when any run's
solo config would get two (`distillers.input_views`); every run gets as many views as its
solo run would, and a one-view run of a two-view group gets the weak view (the one-view
pipeline's augmentation), as the `image` its distiller expects.

Exactness. A one-run group does the same floating-point operations and draws the same random
numbers as `tools/train.py`: its weights are bit-identical on CPU. With several runs, each run
equals the solo run that sees the same data stream (same SEED, same views) provided that
  * the students' steps draw no random numbers (no dropout; true of the CIFAR zoo and of the
    logit distillers): the runs share the global generators, so a run that draws shifts what
    the runs after it draw (the data stream is unaffected: loaders own their generators);
  * with DISTILLER.TEACHER_CHUNK 0 (GPUs), the run's teacher views equal the group's: a run
    needing fewer views (KD beside SLD's weak + strong) gets its rows of the larger teacher
    forward, equal up to float rounding. With a chunk (CPUs) every view has a forward of its
    own, so it gets exactly its solo outputs.
A one-view run in a two-view group sees the group's stream, not its solo one-view stream
(two-view loading draws more random numbers); the paired comparison is what matters there.

Sharing the teacher: the runs' distillers must hold the same teacher object, or teachers with
identical weights (checked; ValueError otherwise). mdistiller plug-ins that override
`forward_train` (no `distill`), distillers whose teacher trains (mdistiller-faithful OFD) and
ones that override `run_teacher` without declaring `teacher_views` cannot share: they run their
own forward, teacher included.

Memory: the runs go one after another, so the peak is about the teacher's outputs plus the
largest student's step. `overlap=True` runs each student on its own CUDA stream so that small
students' kernels overlap (peak: teacher + all students); on CPU it has no effect.
"""
import contextlib

import torch

from ..config import run_name
from ..distillers.base import Distiller, is_legacy, runs_own_teacher
from ..errors import ConfigError
from .run_folder import run_folder
from .step import teacher_outputs, train_step

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
    """Whether the step can serve this distiller's teacher outputs: it implements `distill`
    instead of overriding forward_train, says which views its teacher needs (`teacher_views`,
    inherited unless it overrides `run_teacher`), and keeps its teacher in eval mode
    (mdistiller-faithful OFD trains its own, see engine.build.build_paired_runs)."""
    cls = type(distiller)
    return (isinstance(distiller, Distiller) and not is_legacy(cls) and not runs_own_teacher(cls)
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


def solo_batch(batch, views, n):
    """The batch as a run with `n` views receives it alone: `image` = the weak view for one."""
    if n == 1 and len(views) == 2:
        batch = {k: v for k, v in batch.items() if k not in VIEW_KEYS}
        batch["image"] = views[0]
    return batch


class SharedTeacherStep:
    """Trainer step for paired runs (module docstring): `train_step` with this as its shared
    part. `views`: each run's view count (default: what its config gives a solo run);
    `overlap`: one CUDA stream per run; `replay`: the teacher cache to read teacher outputs from."""

    def __init__(self, runs, views=None, overlap=False, replay=None):
        if views is None:
            from ..distillers.inputs import input_views

            views = [input_views(run.cfg) for run in runs]
        self.views = {id(run): n for run, n in zip(runs, views)}
        shares = {id(run): shares_teacher(run.distiller) for run in runs}
        for run, n in zip(runs, views):
            allowed = getattr(run.distiller, "views", (1, 2))
            if shares[id(run)] and n not in allowed:
                raise ValueError(f"{type(run.distiller).__name__} takes {allowed} view(s), not {n}")
        self.teacher = shared_teacher(runs)
        # id(run) -> the views whose teacher outputs the step hands it (None: it runs its own teacher)
        self.served = {id(run): tuple(run.distiller.teacher_views(n))
                       if shares[id(run)] and run.distiller.teacher is not None else None
                       for run, n in zip(runs, views)}
        # The shared pass runs as the first sharing run's solo pass would (DISTILLER.TEACHER_CHUNK).
        self.teacher_chunk = next((run.distiller.teacher_chunk for run in runs if shares[id(run)]), 0)
        first = runs[0]
        self.device, self.amp = first.device, first.amp
        for run in runs[1:]:
            if (run.device, run.amp) != (self.device, self.amp):
                raise ValueError("paired runs must use one device and one SOLVER.AMP")
        self.overlap = overlap and self.device.type == "cuda"
        self.streams = {}
        self.replay = replay  # an engine.teacher_cache.TeacherReplay, or None: the teacher runs

    def teacher_outs(self, runs, batch, views, epoch, iteration):
        """The teacher's outputs per view: replayed when the teacher cache has this batch, else
        one pass over the views these runs need."""
        if self.replay is not None:
            outs = self.replay.outputs(epoch, iteration, batch.get("index"))
            if outs is not None:
                return outs
        return teacher_outputs(self.teacher, views, self.needed(runs), self.teacher_chunk, self.device, self.amp)

    def __call__(self, runs, batch, epoch, iteration):
        train_step(runs, batch, epoch, iteration, shared=self)

    def needed(self, runs):
        """The views (indices, ascending) the teacher pass must cover for these runs."""
        return tuple(sorted({i for run in runs for i in self.served[id(run)] or ()}))

    def serve(self, run, batch, views, outs):
        """(the batch as the run gets it alone, the teacher outputs handed to its forward)."""
        n = self.views[id(run)]
        return solo_batch(batch, views, n), None if self.served[id(run)] is None else outs[:n]

    def stream_of(self, run):
        if not self.overlap:
            return contextlib.nullcontext()
        stream = self.streams.setdefault(id(run), torch.cuda.Stream(self.device))
        stream.wait_stream(torch.cuda.current_stream(self.device))  # the batch and teacher outputs are ready
        return torch.cuda.stream(stream)

    def join(self, runs):
        """The main stream waits for every run's stream (overlap only)."""
        if self.overlap:
            main = torch.cuda.current_stream(self.device)
            for run in runs:
                main.wait_stream(self.streams[id(run)])
