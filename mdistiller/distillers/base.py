"""The Distiller contract (mdistiller's surface, plus a separable step).

mdistiller plug-ins keep working: a subclass that overrides `forward_train(image=..., target=...,
epoch=...)` and calls `self.student` / `self.teacher` itself runs unchanged. It is called with the
keyword arguments mdistiller's trainer for the batch passes (`UPSTREAM_CALLS`), or, when its
signature has no `**kwargs`, with those of the batch's arguments that it names.

Built-in distillers instead implement `distill(student_outs, teacher_outs, target, epoch)`
and declare which views their teacher must see (`teacher_views`); the models run once per step:
  * the teacher once, without gradient, on the declared views (`teacher_pass`: exact because the
    teacher stays in eval mode, so BatchNorm uses running statistics). With `teacher_chunk` > 0
    (DISTILLER.TEACHER_CHUNK, set by the trainer; faster on CPUs) each view goes through it in
    micro-batches of that many samples; with 0 (GPUs) the views go through concatenated, in one
    forward (fewer kernel launches), and the output is split per view;
  * the student once per view (never concatenated: batch statistics would change).
`forward_train(..., teacher_outs=None)` runs the teacher itself (`run_teacher`); a caller that
already has the teacher's outputs (paired training: one pass for several students) passes them,
one per batch view. Keeping "run the models" and "compute the losses" apart is what lets stacks
add loss terms without a second forward pass, and a paired group share one teacher pass.
The training step that calls all this is engine/step.py.
"""
import inspect

import torch
from torch import nn

# What mdistiller's trainers pass to forward_train: "ours" (MLKD/SLD, two views), "crd", and
# "base"/"dot". The batch tells which: two views, or contrastive indices, or neither.
UPSTREAM_CALLS = {
    "two_views": ("image_weak", "image_strong", "target", "epoch"),
    "crd": ("image", "target", "index", "contrastive_index"),
    "base": ("image", "target", "epoch"),
}


def split_outputs(outputs, sizes):
    """Split one model output `(logits, feats)` along the batch into len(sizes) outputs."""
    logits, feats = outputs
    parts = [dict() for _ in sizes]
    for key, value in feats.items():
        if torch.is_tensor(value):
            for part, piece in zip(parts, value.split(sizes)):
                part[key] = piece
        elif isinstance(value, (list, tuple)):
            pieces = [v.split(sizes) if torch.is_tensor(v) else [v] * len(sizes) for v in value]
            for i, part in enumerate(parts):
                part[key] = [p[i] for p in pieces]
        else:
            for part in parts:
                part[key] = value
    return list(zip(logits.split(sizes), parts))


def concat_outputs(outputs):
    """The inverse of `split_outputs`: model outputs of consecutive batch pieces -> one output."""
    logits = torch.cat([out[0] for out in outputs])
    feats = {}
    for key, value in outputs[0][1].items():
        values = [out[1][key] for out in outputs]
        if torch.is_tensor(value):
            feats[key] = torch.cat(values)
        elif isinstance(value, (list, tuple)):
            feats[key] = [torch.cat(parts) if torch.is_tensor(parts[0]) else parts[0] for parts in zip(*values)]
        else:
            feats[key] = value
    return logits, feats


def teacher_forward(teacher, x, chunk=0):
    """`teacher(x)`, run on micro-batches of `chunk` samples when 0 < chunk < len(x). Exact for a
    model in eval mode (no sample depends on another); the pieces' outputs are concatenated."""
    if not chunk or x.shape[0] <= chunk:
        return teacher(x)
    return concat_outputs([teacher(piece) for piece in x.split(chunk)])


def teacher_pass(teacher, views, chunk=0):
    """The teacher's outputs, one (logits, feats) per view, without gradient. `chunk` > 0: each
    view on its own, in micro-batches of `chunk` samples (no concatenation of outputs across
    views); 0: one forward over the views concatenated, split per view. Solo and paired steps
    both call this, so a run gets the same outputs in either."""
    with torch.no_grad():
        if chunk or len(views) == 1:
            return [teacher_forward(teacher, view, chunk) for view in views]
        return split_outputs(teacher(torch.cat(views, dim=0)), [v.shape[0] for v in views])


class Distiller(nn.Module):
    """Holds `student` and `teacher`; the teacher never trains and never gets gradients.

    Class attributes describing what a distiller needs from the data pipeline:
      views: (1,) one view (`image`), (2,) weak + strong views, (1, 2) either.
      needs_index: the batch must carry sample indices (and contrastive indices) — CRD.
      teacher_logits_only: `distill` reads only the teacher's logits (`teacher_outs[i][0]`),
        never its features, so its teacher outputs may be replayed from a teacher cache
        (engine/teacher_cache.py) that stores logits alone.
    """

    views = (1,)
    needs_index = False
    teacher_logits_only = False
    teacher_chunk = 0  # samples per teacher forward (teacher_pass); 0 = all views in one forward

    def __init__(self, student, teacher):
        super().__init__()
        self.student = student
        self.teacher = teacher

    def train(self, mode=True):
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        self.training = mode
        for module in self.children():
            module.train(mode)
        if self.teacher is not None:
            self.teacher.eval()  # teacher BatchNorm/Dropout stay in inference behaviour
        return self

    def get_learnable_parameters(self):
        """Parameters the optimizer updates: the student's and any connector modules'."""
        return [p for name, p in self.named_parameters() if not name.startswith("teacher.")]

    def get_extra_parameters(self):
        """Number of learnable parameters outside the student (connectors, embeddings)."""
        return sum(p.numel() for name, p in self.named_parameters()
                   if not name.startswith(("teacher.", "student.")))

    # ------------------------------------------------------------------ the step
    def teacher_views(self, n):
        """Which of a batch's `n` views the teacher must see (indices, ascending): `distill`
        receives their outputs in this order. Default: all of them."""
        return tuple(range(n))

    def run_teacher(self, views):
        """The teacher pass over the views `teacher_views` declares, when the caller has none."""
        return teacher_pass(self.teacher, [views[i] for i in self.teacher_views(len(views))], self.teacher_chunk)

    def run_student(self, views):
        return [self.student(v) for v in views]

    def forward_train(self, image=None, target=None, epoch=1, image_weak=None, image_strong=None, teacher_outs=None,
                      **kwargs):
        """(predictions, {term: loss}). `teacher_outs`: the teacher's outputs, one per batch view
        (those of views this distiller does not declare may be None); None: run the teacher here."""
        views = collect_views(image, image_weak, image_strong)
        if len(views) not in self.views:
            raise ValueError(f"{type(self).__name__} needs {self.views} view(s) but got {len(views)}; "
                             "set DATASET.VIEWS auto (or 2 for two views, 1 for one)")
        if teacher_outs is None:
            teacher_outs = self.run_teacher(views)
        else:
            teacher_outs = [teacher_outs[i] for i in self.teacher_views(len(views))]
        student_outs = self.run_student(views)
        return self.distill(student_outs, teacher_outs, target, epoch=epoch, **kwargs)

    def distill(self, student_outs, teacher_outs, target, epoch=1, **kwargs):
        """Losses from model outputs. `student_outs`/`teacher_outs`: one (logits, feats) per view.
        Returns (logits used for train accuracy, {term name: scalar loss})."""
        raise NotImplementedError

    def forward_test(self, image):
        return self.student(image)[0]

    def forward(self, **kwargs):
        if self.training:
            if is_legacy(type(self)):
                kwargs = legacy_arguments(self.forward_train, kwargs)
            return self.forward_train(**kwargs)
        return self.forward_test(kwargs["image"])


def collect_views(image=None, image_weak=None, image_strong=None):
    """The list of input views a batch carries: [image] or [weak, strong]."""
    if image_weak is not None:
        return [image_weak] if image_strong is None else [image_weak, image_strong]
    if image is None:
        raise ValueError("forward_train needs image=... or image_weak=... (and image_strong=...)")
    return [image]


def defined_below_distiller(cls, name):
    """Whether `cls`, or one of its base classes below Distiller, defines attribute `name`."""
    for klass in cls.__mro__:
        if klass is Distiller:
            return False
        if name in vars(klass):
            return True
    return False


def is_legacy(cls):
    """The one test of a distiller's style. Legacy (mdistiller-style): `cls`, or a base class below
    Distiller, overrides `forward_train` and runs the models itself. New-style: it implements
    `distill` and lets its caller run the models (so it can be stacked and share a teacher pass)."""
    return defined_below_distiller(cls, "forward_train")


def runs_own_teacher(cls):
    """A new-style distiller that overrides `run_teacher` without declaring `teacher_views`: its
    caller cannot know which views it feeds the teacher, so it runs its own teacher pass."""
    return defined_below_distiller(cls, "run_teacher") and not defined_below_distiller(cls, "teacher_views")


class WeakViewOnly:
    """Mixin for one-view methods that also accept the two-view call (`image_weak=`,
    `image_strong=`), as the official two-view trainer issues it: only the weak view is used.
    The strong view is not even run through the models — running the student on it would
    update its BatchNorm statistics with images the loss never sees, and waste a forward.
    Put it before Distiller: `class MyKD(WeakViewOnly, Distiller)`."""

    views = (1, 2)

    def teacher_views(self, n):
        return (0,)

    def run_student(self, views):
        return super().run_student(views[:1])


def legacy_arguments(forward_train, batch):
    """The keyword arguments an mdistiller-style `forward_train` gets from a batch dict (which
    also carries `epoch`): mdistiller's trainer's when it takes **kwargs, else the ones it names."""
    params = inspect.signature(forward_train).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kind = "two_views" if "image_weak" in batch else "crd" if "contrastive_index" in batch else "base"
        return {k: batch[k] for k in UPSTREAM_CALLS[kind] if k in batch}
    return {k: v for k, v in batch.items() if k in params}
