"""The training step: one function for a solo run, a paired group and a CUDA-graphed run.

`train_step(runs, batch, epoch, iteration, shared=None)` is what `Trainer` calls per batch.
Read top to bottom, for each batch:
  1. the batch's views: `image`, or `image_weak` + `image_strong` (`batch_views`);
  2. the teacher's outputs, once, in inference mode, on the views the runs need
     (`teacher_outputs` -> `distillers.base.teacher_pass`), or replayed from a teacher cache
     (engine/teacher_cache.py): the step does not care which. Only a `shared` step (an
     engine.paired.SharedTeacherStep: a paired group, or a run that replays) hands teacher
     outputs in; a solo run's distiller runs the same `teacher_pass` inside its forward (which
     is what a CUDA graph captures);
  3. each run's forward: the student on its views and the loss terms (`forward_losses` ->
     `Distiller.forward_train(..., teacher_outs=...)` -> `distill`);
  4. its update: `run.update(run, losses)`, one backward + optimizer step (trainer.backward_step)
     or DOT's two-pass update (engine/dot.py);
  5. its metrics, accumulated on the device (`StudentRun.record`: no host sync).
A run with SOLVER.CUDA_GRAPH replays steps 3-4 (engine/graph_step.py captures `forward_losses`,
the backward and the SGD update); 1, 2 and 5 are the same.
"""
from ..distillers.base import collect_views, teacher_pass
from .device import autocast


def batch_views(batch):
    """[image] or [weak, strong]: the views a batch dict carries."""
    return collect_views(batch.get("image"), batch.get("image_weak"), batch.get("image_strong"))


def teacher_outputs(teacher, views, needed, chunk, device, amp):
    """The teacher's outputs per view of the batch (None for views no run needs): one pass over
    the `needed` view indices (ascending), `chunk` samples per forward (0: all at once)."""
    outs = [None] * len(views)
    if needed:
        with autocast(device, amp):
            for i, out in zip(needed, teacher_pass(teacher, [views[i] for i in needed], chunk)):
                outs[i] = out
    return outs


def forward_losses(model, batch, epoch, teacher_outs=None):
    """(predictions, {term: loss}): a run's training forward on `batch`. `teacher_outs` (one
    per view) come from the caller's teacher pass; None: the distiller runs its teacher."""
    extra = {} if teacher_outs is None else {"teacher_outs": teacher_outs}
    return model(**batch, epoch=epoch, **extra)


def run_step(run, batch, epoch, iteration, teacher_outs=None):
    """Steps 3-5 for one run."""
    if run.graphed is not None:
        loss, losses, preds, stats = run.graphed(batch, epoch, run.lr)
    else:
        with autocast(run.device, run.amp):
            preds, losses = forward_losses(run.model, batch, epoch, teacher_outs)
        loss, stats = run.update(run, losses), None
    run.record(loss, losses, preds, batch["target"], iteration, stats)


def train_step(runs, batch, epoch, iteration, shared=None):
    """Train every run on one batch (module docstring). `shared`: the paired group's teacher
    pass and its per-run batches and streams; None: each run on the whole batch, by itself."""
    if shared is None:
        for run in runs:
            run_step(run, batch, epoch, iteration)
        return
    views = batch_views(batch)
    outs = shared.teacher_outs(runs, batch, views, epoch, iteration)
    for run in runs:
        with shared.stream_of(run):
            own_batch, own_outs = shared.serve(run, batch, views, outs)
            run_step(run, own_batch, epoch, iteration, own_outs)
    shared.join(runs)
