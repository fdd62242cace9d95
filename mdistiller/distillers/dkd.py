"""DKD: Zhao et al. 2022, "Decoupled Knowledge Distillation" (config node `DKD`).

`CE_WEIGHT * CE + min(epoch / WARMUP, 1) * (ALPHA * TCKD + BETA * NCKD)` at temperature `T`.
Like KD it takes one view, and uses only the weak view of a two-view batch.
`EXPERIMENT.LOGIT_STAND` standardizes both logits first (logit_stand.py).
"""
import torch.nn.functional as F

from .base import Distiller, WeakViewOnly
from .cfg_checks import check_non_negative, check_positive
from .logit_stand import logit_transform
from .losses import dkd_terms
from .registry import register


@register("DKD")
class DKD(WeakViewOnly, Distiller):
    """Decoupled KD: target-class and non-target-class terms weighted separately."""
    teacher_logits_only = True  # replayable from a teacher cache (engine/teacher_cache.py)

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher)
        self.check_cfg(cfg)
        self.ce_loss_weight = cfg.DKD.CE_WEIGHT
        self.alpha = cfg.DKD.ALPHA
        self.beta = cfg.DKD.BETA
        self.temperature = float(cfg.DKD.T)
        self.warmup = cfg.DKD.WARMUP
        self.transform = logit_transform(cfg)

    @classmethod
    def check_cfg(cls, cfg):
        check_positive(cfg, "DKD.T", 4)
        check_positive(cfg, "DKD.WARMUP", 20)
        check_non_negative(cfg, "DKD.CE_WEIGHT", "DKD.ALPHA", "DKD.BETA")

    def distill(self, student_outs, teacher_outs, target, epoch=1, **kwargs):
        logits_student, logits_teacher = student_outs[0][0], teacher_outs[0][0]
        tckd, nckd = dkd_terms(self.transform(logits_student), self.transform(logits_teacher), target,
                               self.temperature)
        warmup = min(epoch / self.warmup, 1.0)
        return logits_student, {
            "loss_ce": self.ce_loss_weight * F.cross_entropy(logits_student, target),
            "loss_kd": warmup * (self.alpha * tckd + self.beta * nckd),
        }
