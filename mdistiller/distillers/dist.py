"""DIST: Huang et al. 2022, "Knowledge Distillation from A Stronger Teacher" (config node `DIST`).

`DIST.CE_WEIGHT * CE + tau^2 * (DIST.BETA * inter + DIST.GAMMA * intra)` at temperature
`DIST.TAU`, with `losses.dist_terms`: inter = 1 - the Pearson correlation of student and teacher
probabilities across classes, averaged over samples; intra = the same across samples, averaged
over classes. Defaults are the authors' CIFAR-100 setting (beta = gamma = 2, tau = 4, CE 1).
Like KD it takes one view, and uses only the weak view of a two-view batch.
`EXPERIMENT.LOGIT_STAND` standardizes both logits first (our extension; logit_stand.py).
"""
import torch.nn.functional as F

from .base import Distiller, WeakViewOnly
from .cfg_checks import check_non_negative, check_positive
from .logit_stand import logit_transform
from .losses import dist_terms
from .registry import register


@register("DIST")
class DIST(WeakViewOnly, Distiller):
    """Relation distillation: correlations of predictions across classes and across samples."""
    teacher_logits_only = True  # replayable from a teacher cache (engine/teacher_cache.py)

    def __init__(self, student, teacher, cfg):
        super().__init__(student, teacher)
        self.check_cfg(cfg)
        node = cfg.DIST
        self.ce_loss_weight, self.beta, self.gamma = node.CE_WEIGHT, node.BETA, node.GAMMA
        self.temperature = float(node.TAU)
        self.transform = logit_transform(cfg)

    @classmethod
    def check_cfg(cls, cfg):
        check_positive(cfg, "DIST.TAU", 4)
        check_non_negative(cfg, "DIST.CE_WEIGHT", "DIST.BETA", "DIST.GAMMA")

    def distill(self, student_outs, teacher_outs, target, epoch=1, **kwargs):
        logits_student, logits_teacher = student_outs[0][0], teacher_outs[0][0]
        inter, intra = dist_terms(self.transform(logits_student), self.transform(logits_teacher), self.temperature)
        return logits_student, {
            "loss_ce": self.ce_loss_weight * F.cross_entropy(logits_student, target),
            "loss_kd": self.beta * inter + self.gamma * intra,
        }
