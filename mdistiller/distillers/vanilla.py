"""NONE: plain cross-entropy training of the student (mdistiller's `Vanilla`)."""
import torch.nn.functional as F

from .base import Distiller
from .registry import register


@register("NONE")
class Vanilla(Distiller):
    """The student alone; built as `Vanilla(student)` (no teacher, no config), as in mdistiller."""

    needs_teacher = False

    def __init__(self, student):
        super().__init__(student, None)

    def run_teacher(self, views):
        return [None] * len(views)  # there is no teacher to run

    def distill(self, student_outs, teacher_outs, target, epoch=1, **kwargs):
        logits = student_outs[0][0]
        return logits, {"loss_ce": F.cross_entropy(logits, target)}
