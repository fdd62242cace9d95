"""KD: Hinton et al. 2015, "Distilling the Knowledge in a Neural Network".

`CE_WEIGHT * CE(s, y) + KD_WEIGHT * KL(softmax(t/T) || softmax(s/T)) * T^2` (config node `KD`).
This is the true vanilla KD; the SLD authors' file named KD swaps the teacher first — that
variant is `KD_SWAP` here (see swap.py). `EXPERIMENT.LOGIT_STAND` standardizes both logits
first (logit_stand.py).
"""
import torch.nn.functional as F

from .base import Distiller, WeakViewOnly  # noqa: F401  (WeakViewOnly: its old home)
from .cfg_checks import check_non_negative, check_positive
from .logit_stand import logit_transform
from .losses import kd_loss
from .registry import register


@register("KD")
class KD(WeakViewOnly, Distiller):
    """Vanilla knowledge distillation at one temperature."""
    teacher_logits_only = True  # replayable from a teacher cache (engine/teacher_cache.py)

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
