"""The SLD swap as a teacher transform, and swapped variants of other logit distillers.

`SwappedTeacher` is a mixin: placed before a distiller class, it swaps the teacher's logits of
every view (`losses.swap_logits`: target and argmax exchange places where the teacher is wrong)
before that distiller's losses see them. The registered variants serve ablations, e.g. KD_SWAP
is KD towards the swapped teacher, DKD_SWAP decouples the swapped teacher instead. (The SLD
authors' own "KD" file matches KD_SWAP only up to epoch 150: it then adds a student-swap term,
at a hard-coded epoch and with a fixed KD weight of 4.0; that file is not reproduced here.)
Like SLD, they report the teacher's swap statistics (`distillers/swap_stats.py`) every step, and
swap as `SLD.SWAP_MODE` says ("max", the official exchange, or our "rotate").
"""
from .swap_stats import teacher_statistics
from .dkd import DKD
from .kd import KD
from .cfg_checks import check_choice
from .losses import SWAP_MODES, swap_logits
from .mlkd import MLKD
from .registry import register


def swap_teacher_outputs(teacher_outs, target, mode="max"):
    """[(logits, feats), ...] per view -> the same with swapped logits (features untouched)."""
    return [(swap_logits(logits, target, mode), feats) for logits, feats in teacher_outs]


class SwappedTeacher:
    """Mixin: the parent distiller learns from the swapped teacher logits."""

    def __init__(self, student, teacher, cfg, *args):
        super().__init__(student, teacher, cfg, *args)  # runs check_cfg below
        self.swap_mode = cfg.SLD.SWAP_MODE

    @classmethod
    def check_cfg(cls, cfg):
        super().check_cfg(cfg)
        check_choice(cfg, "SLD.SWAP_MODE", SWAP_MODES)

    def distill(self, student_outs, teacher_outs, target, epoch=1, **kwargs):
        self.last_stats = teacher_statistics([logits for logits, _ in teacher_outs], target)
        return super().distill(student_outs, swap_teacher_outputs(teacher_outs, target, self.swap_mode), target,
                               epoch=epoch, **kwargs)


@register("KD_SWAP")
class KDSwap(SwappedTeacher, KD):
    """KD towards the swapped teacher (KD.TEMPERATURE, KD.LOSS weights); see the module docstring
    for how the SLD authors' "KD" file differs."""


@register("DKD_SWAP")
class DKDSwap(SwappedTeacher, DKD):
    """DKD towards the swapped teacher."""


@register("MLKD_SWAP")
class MLKDSwap(SwappedTeacher, MLKD):
    """MLKD towards the swapped teacher; its confidence masks then come from swapped logits too
    (the top probability is unchanged by a swap, the per-class sums are not)."""
