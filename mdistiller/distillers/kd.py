"""KD: Hinton et al. 2015, "Distilling the Knowledge in a Neural Network".

`CE_WEIGHT * CE(s, y) + KD_WEIGHT * KL(softmax(t/T) || softmax(s/T)) * T^2` (config node `KD`).
This is the true vanilla KD; the SLD authors' file named KD swaps the teacher first — that
variant is `KD_SWAP` here (see swap.py). `EXPERIMENT.LOGIT_STAND` standardizes both logits
first (logit_stand.py).
"""
import torch.nn.functional as F

from .base import Distiller
from .cfg_checks import check_non_negative, check_positive
from .logit_stand import logit_transform
from .losses import kd_loss
from .registry import register


class WeakViewOnly:
    """Mixin for one-view methods that also accept the two-view call (`image_weak=`,
    `image_strong=`), as the official two-view trainer issues it: only the weak view is used.
    The strong view is not even run through the models — running the student on it would
    update its BatchNorm statistics with images the loss never sees, and waste a forward."""

    views = (1, 2)

    def teacher_views(self, n):
        return (0,)

    def run_student(self, views):
        return super().run_student(views[:1])


@register("KD")
class KD(WeakViewOnly, Distiller):
    """Vanilla knowledge distillation at one temperature."""

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher)
        self.check_cfg(cfg)
        self.temperature = float(cfg.KD.TEMPERATURE)
        self.ce_loss_weight = cfg.KD.LOSS.CE_WEIGHT
        self.kd_loss_weight = cfg.KD.LOSS.KD_WEIGHT
        self.transform = logit_transform(cfg)

    @classmethod
    def check_cfg(cls, cfg):
        check_positive(cfg, "KD.TEMPERATURE", 4)
        check_non_negative(cfg, "KD.LOSS.CE_WEIGHT", "KD.LOSS.KD_WEIGHT")

    def distill(self, student_outs, teacher_outs, target, epoch=1, **kwargs):
        logits_student, logits_teacher = student_outs[0][0], teacher_outs[0][0]
        kd = kd_loss(self.transform(logits_student), self.transform(logits_teacher), self.temperature)
        return logits_student, {
            "loss_ce": self.ce_loss_weight * F.cross_entropy(logits_student, target),
            "loss_kd": self.kd_loss_weight * kd,
        }
