"""The Distiller contract (mdistiller's surface, plus a separable step).

mdistiller plug-ins keep working: a subclass that overrides `forward_train(image=..., target=...,
epoch=...)` and calls `self.student` / `self.teacher` itself runs unchanged. It is called with the
keyword arguments mdistiller's trainer for the batch passes (`UPSTREAM_CALLS`), or, when its
signature has no `**kwargs`, with those of the batch's arguments that it names.

Built-in distillers instead implement `distill(student_outs, teacher_outs, target, epoch)`;
the base class runs the models once per step:
  * the teacher once, on all views concatenated, without gradient (exact because the teacher
    stays in eval mode, so BatchNorm uses running statistics); `teacher_chunk` > 0 feeds that
    batch to it in micro-batches of that many samples (`teacher_forward`: also exact, and
    faster on CPUs — DISTILLER.TEACHER_CHUNK, set by the trainer);
  * the student once per view (never concatenated: batch statistics would change).
Keeping "run the models" and "compute the losses" apart is what lets stacks add loss terms
without a second forward pass, and a paired benchmark share one teacher pass among students.
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


class Distiller(nn.Module):
    """Holds `student` and `teacher`; the teacher never trains and never gets gradients.

    Class attributes describing what a distiller needs from the data pipeline:
      views: (1,) one view (`image`), (2,) weak + strong views, (1, 2) either.
      needs_index: the batch must carry sample indices (and contrastive indices) — CRD.
    """

    views = (1,)
    needs_index = False
    teacher_chunk = 0  # samples per teacher forward in run_teacher; 0 = the whole batch

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
    def run_teacher(self, views):
        """One teacher pass over all views (`teacher_chunk` samples per forward); returns a list of
        (logits, feats) per view."""
        with torch.no_grad():
            if len(views) == 1:
                return [teacher_forward(self.teacher, views[0], self.teacher_chunk)]
            out = teacher_forward(self.teacher, torch.cat(views, dim=0), self.teacher_chunk)
        return split_outputs(out, [v.shape[0] for v in views])

    def run_student(self, views):
        return [self.student(v) for v in views]

    def forward_train(self, image=None, target=None, epoch=1, image_weak=None, image_strong=None, **kwargs):
        views = collect_views(image, image_weak, image_strong)
        if len(views) not in self.views:
            raise ValueError(f"{type(self).__name__} needs {self.views} view(s) but got {len(views)}; "
                             "set DATASET.VIEWS auto (or 2 for two views, 1 for one)")
        teacher_outs = self.run_teacher(views)
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
            if overrides_forward_train(type(self)):
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


def vars_along_mro(cls):
    """Attribute names defined by `cls` or a base class below Distiller."""
    names = set()
    for klass in cls.__mro__:
        if klass is Distiller:
            break
        names.update(vars(klass))
    return names


def overrides_forward_train(cls):
    """Whether `cls` is an mdistiller-style plug-in: it (or a base below Distiller) defines forward_train."""
    return "forward_train" in vars_along_mro(cls)


def legacy_arguments(forward_train, batch):
    """The keyword arguments an mdistiller-style `forward_train` gets from a batch dict (which
    also carries `epoch`): mdistiller's trainer's when it takes **kwargs, else the ones it names."""
    params = inspect.signature(forward_train).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        kind = "two_views" if "image_weak" in batch else "crd" if "contrastive_index" in batch else "base"
        return {k: batch[k] for k in UPSTREAM_CALLS[kind] if k in batch}
    return {k: v for k, v in batch.items() if k in params}
